//! One client connection: the peer check and the handshake, then requests answered in order
//! (each decided by [`dispatch`], its answer written here, by [`answer`]).
//!
//! A bad frame (oversized, truncated, not JSON, an unknown request) gets an error response
//! and the connection is closed; other connections are not affected.

use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hutch_core::protocol::{Event, PROTOCOL_VERSION, Request, Response, ServerMessage};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

use super::State;
use super::dispatch::{Reply, RequestError, dispatch};
use super::launch::{Follow, Started};
use hutch_client::channel::{self, ChannelError, Receiver};

/// How long a client may take to say hello.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The writing half, shared with threads that send events.
type Writer = Arc<Mutex<UnixStream>>;

fn send(writer: &Writer, msg: &ServerMessage, fds: &[BorrowedFd<'_>]) -> bool {
    let stream = writer.lock().unwrap_or_else(|p| p.into_inner());
    channel::send(&stream, msg, fds).is_ok()
}

fn reply(writer: &Writer, response: Response) -> bool {
    send(writer, &ServerMessage::Response(response), &[])
}

/// Answers with `err`; `false` when the client could not be told.
fn refuse(writer: &Writer, err: &RequestError) -> bool {
    reply(writer, err.response())
}

/// Answers a connection over the limit with an error and closes it, without a thread (the
/// error frame is small: it fits the socket's buffer, so the write does not block).
pub fn refuse_busy(stream: UnixStream, max: usize) {
    tracing::warn!(max, "refused a connection: too many at once");
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let _ = channel::send(
        &stream,
        &ServerMessage::Response(RequestError::Busy { max }.response()),
        &[],
    );
}

/// Serves one connection until it closes or misbehaves.
pub fn serve(stream: UnixStream, state: Arc<State>) {
    let peer = match getsockopt(&stream, PeerCredentials) {
        Ok(cred) => cred,
        Err(e) => {
            tracing::warn!("cannot read peer credentials, closing: {e}");
            return;
        }
    };
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let writer: Writer = Arc::new(Mutex::new(write_half));
    if peer.uid() != state.uid {
        tracing::warn!(
            uid = peer.uid(),
            pid = peer.pid(),
            "refused a connection from another user"
        );
        refuse(
            &writer,
            &RequestError::OtherUser {
                ours: state.uid,
                theirs: peer.uid(),
            },
        );
        return;
    }
    if let Err(why) = super::peer::check(stream.as_fd(), peer.pid(), &state.supervisor_pids()) {
        tracing::warn!(pid = peer.pid(), "refused a connection: {why}");
        refuse(
            &writer,
            &RequestError::Peer {
                pid: peer.pid(),
                why,
            },
        );
        return;
    }
    let mut rx = Receiver::new(stream);
    rx.set_frame_timeout(Some(state.bounds.frame_timeout));
    rx.set_idle_timeout(Some(HANDSHAKE_TIMEOUT));
    match rx.recv::<Request>() {
        Ok(Request::Hello { protocol, client }) if protocol == PROTOCOL_VERSION => {
            tracing::debug!(pid = peer.pid(), %client, "client connected");
            reply(
                &writer,
                Response::Hello {
                    protocol: PROTOCOL_VERSION,
                    helper_version: env!("CARGO_PKG_VERSION").to_owned(),
                    helper_pid: std::process::id(),
                    limits: state.cgroups.mode.is_delegated(),
                    cgroups: state.cgroups.mode.describe(),
                },
            );
        }
        Ok(Request::Hello { protocol, .. }) => {
            refuse(&writer, &RequestError::Version { protocol });
            return;
        }
        Ok(_) => {
            refuse(&writer, &RequestError::NotHello);
            return;
        }
        Err(e) => {
            bad_frame(&writer, e);
            return;
        }
    }
    // After the handshake a client may stay idle as long as it likes (a subscriber, a `run`
    // waiting for the exit); the number of connections is bounded instead.
    rx.set_idle_timeout(None);
    loop {
        match rx.recv::<Request>() {
            Ok(request) => {
                let outcome = dispatch(&state, request, &mut rx);
                if !answer(&writer, &state, outcome) {
                    break;
                }
                rx.discard_fds();
            }
            Err(e) => {
                bad_frame(&writer, e);
                break;
            }
        }
    }
}

fn bad_frame(writer: &Writer, err: ChannelError) {
    if err.is_closed() {
        return;
    }
    tracing::warn!("bad frame from client, closing its connection: {err}");
    refuse(writer, &RequestError::BadFrame(err));
}

/// Writes the answer to one request; `false` closes the connection.
fn answer(writer: &Writer, state: &Arc<State>, outcome: Result<Reply, RequestError>) -> bool {
    match outcome {
        Ok(Reply::Answer(response)) => reply(writer, response),
        Ok(Reply::Started(started)) => {
            let (started, follow) = *started;
            started_answer(writer, state, started, follow)
        }
        Ok(Reply::Subscribe { every }) => {
            if !reply(writer, Response::Done { id: String::new() }) {
                return false;
            }
            let writer = Arc::clone(writer);
            let state = Arc::clone(state);
            let _ = std::thread::Builder::new()
                .name("subscriber".into())
                .spawn(move || subscriber(&writer, &state, every));
            true
        }
        Err(err) => refuse(writer, &err) && !err.ends_connection(),
    }
}

/// Feeds one subscriber: the table of sandboxes at once and on every change, samples of the
/// running ones every `every`, and events when an OOM kill or a refused fork is seen. Ends
/// when the client goes away.
fn subscriber(writer: &Writer, state: &State, every: Duration) {
    let changes = state.registry.watch();
    let mut seen: std::collections::HashMap<String, (u64, u64)> = Default::default();
    let event = |event| send(writer, &ServerMessage::Event(event), &[]);
    let table = || Event::Sandboxes {
        sandboxes: state.registry.list(),
    };
    if !event(table()) {
        return;
    }
    let mut next_sample = std::time::Instant::now();
    loop {
        let now = std::time::Instant::now();
        if now >= next_sample {
            next_sample = now + every;
            let samples = super::stats::sample_all(&state.registry.live_targets());
            for s in &samples {
                let (oom, hits) = seen.get(&s.id).copied().unwrap_or((0, 0));
                if s.oom_kills > oom
                    && !event(Event::OutOfMemory {
                        id: s.id.clone(),
                        kills: s.oom_kills,
                    })
                {
                    return;
                }
                if s.pids_limit_hits > hits
                    && !event(Event::ProcessLimit {
                        id: s.id.clone(),
                        hits: s.pids_limit_hits,
                    })
                {
                    return;
                }
                seen.insert(s.id.clone(), (s.oom_kills, s.pids_limit_hits));
            }
            if !event(Event::Samples { samples }) {
                return;
            }
        }
        match changes.recv_timeout(next_sample.saturating_duration_since(now)) {
            Ok(()) => {
                // Several changes at once (a start is two) make one table.
                while changes.try_recv().is_ok() {}
                if !event(table()) {
                    return;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Answers `Started` (with the terminal's fd), relays the sandbox's events to the client until
/// its exit, and has the sandbox followed.
fn started_answer(writer: &Writer, state: &Arc<State>, started: Started, follow: Follow) -> bool {
    let response = ServerMessage::Response(Response::Started {
        id: started.id.clone(),
        pid: started.pid,
        id_map: started.id_map,
        warnings: started.warnings,
    });
    let fds: Vec<BorrowedFd<'_>> = started.tty.iter().map(|fd| fd.as_fd()).collect();
    let answered = send(writer, &response, &fds);
    drop(fds);
    drop(started.tty);
    if answered {
        // The client's events first: a short app's exit comes within a millisecond.
        let (id, events) = (started.id, started.events);
        let writer = Arc::clone(writer);
        let _ = std::thread::Builder::new()
            .name(format!("events-{id}"))
            .spawn(move || {
                // Until the exit, which ends the sandbox's events.
                while let Ok(event) = events.recv() {
                    let last = matches!(event, Event::Exited { .. });
                    if !send(&writer, &ServerMessage::Event(event), &[]) || last {
                        break;
                    }
                }
            });
    }
    // Followed even when the client is gone: the sandbox runs on.
    follow.start(state);
    answered
}
