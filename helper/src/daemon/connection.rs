//! One client connection: the handshake, then requests answered in order.
//!
//! A bad frame (oversized, truncated, not JSON, an unknown request) gets an error response
//! and the connection is closed; other connections are not affected.

use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hutch_core::protocol::{
    ErrorCode, Event, PROTOCOL_VERSION, Request, Response, RunRequest, ServerMessage,
};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

use super::registry::wait_exit;
use super::{State, launch};
use crate::doctor;
use hutch_client::channel::{self, ChannelError, Receiver};

/// How long a client may take to say hello.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time between SIGTERM and SIGKILL for `stop`.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// The writing half, shared with threads that send events.
type Writer = Arc<Mutex<UnixStream>>;

fn send(writer: &Writer, msg: &ServerMessage, fds: &[BorrowedFd<'_>]) -> bool {
    let stream = writer.lock().unwrap_or_else(|p| p.into_inner());
    channel::send(&stream, msg, fds).is_ok()
}

fn reply(writer: &Writer, response: Response) -> bool {
    send(writer, &ServerMessage::Response(response), &[])
}

fn error(writer: &Writer, code: ErrorCode, message: impl Into<String>) -> bool {
    reply(
        writer,
        Response::Error {
            code,
            message: message.into(),
        },
    )
}

/// Answers a connection over the limit with an error and closes it, without a thread (the
/// error frame is small: it fits the socket's buffer, so the write does not block).
pub fn refuse_busy(stream: UnixStream, max: usize) {
    tracing::warn!(max, "refused a connection: too many at once");
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let _ = channel::send(
        &stream,
        &ServerMessage::Response(Response::Error {
            code: ErrorCode::Denied,
            message: format!(
                "the helper serves at most {max} connections at once (HUTCH_MAX_CONNECTIONS): \
                 close some clients and try again"
            ),
        }),
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
        error(
            &writer,
            ErrorCode::Denied,
            format!(
                "this helper serves uid {} only; you are uid {}",
                state.uid,
                peer.uid()
            ),
        );
        return;
    }
    if let Err(why) = super::peer::check(stream.as_fd(), peer.pid(), &state.supervisor_pids()) {
        tracing::warn!(pid = peer.pid(), "refused a connection: {why}");
        error(
            &writer,
            ErrorCode::Denied,
            format!("this helper refuses the client (pid {}): {why}", peer.pid()),
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
            error(
                &writer,
                ErrorCode::UnsupportedVersion,
                format!(
                    "client speaks protocol {protocol}, this helper speaks {PROTOCOL_VERSION}: \
                     restart the helper with `hutch-helper` from the same Hutch version"
                ),
            );
            return;
        }
        Ok(_) => {
            error(
                &writer,
                ErrorCode::Handshake,
                "the first request must be hello",
            );
            return;
        }
        Err(e) => {
            bad_frame(&writer, &e);
            return;
        }
    }
    // After the handshake a client may stay idle as long as it likes (a subscriber, a `run`
    // waiting for the exit); the number of connections is bounded instead.
    rx.set_idle_timeout(None);
    loop {
        match rx.recv::<Request>() {
            Ok(request) => {
                if !handle(request, &mut rx, &writer, &state) {
                    break;
                }
                rx.discard_fds();
            }
            Err(e) => {
                bad_frame(&writer, &e);
                break;
            }
        }
    }
}

fn bad_frame(writer: &Writer, err: &ChannelError) {
    if err.is_closed() {
        return;
    }
    tracing::warn!("bad frame from client, closing its connection: {err}");
    error(writer, ErrorCode::BadFrame, err.to_string());
}

/// The cgroup of a running sandbox, or why limits cannot be had.
fn cgroup_of(state: &State, id: &str) -> Result<std::path::PathBuf, super::registry::Refusal> {
    match state.registry.cgroup(id)? {
        Some(dir) => Ok(dir),
        None => Err((
            ErrorCode::InvalidRequest,
            format!(
                "limits and pausing need cgroup v2 delegation, which this helper does not have: {}",
                state.cgroups.mode.describe()
            ),
        )),
    }
}

/// Pauses (freezes) or resumes a sandbox's cgroup and answers.
fn freeze(writer: &Writer, state: &State, id: &str, pause: bool) -> bool {
    let result = state.registry.resolve(id).and_then(|id| {
        let dir = cgroup_of(state, &id)?;
        crate::cgroup::freeze(&dir, pause).map_err(|e| (ErrorCode::Internal, e.to_string()))?;
        state.registry.set_paused(&id, pause);
        Ok(id)
    });
    match result {
        Ok(id) => reply(writer, Response::Done { id }),
        Err((code, msg)) => error(writer, code, msg),
    }
}

/// Answers one request; `false` closes the connection.
fn handle(request: Request, rx: &mut Receiver, writer: &Writer, state: &Arc<State>) -> bool {
    match request {
        Request::Hello { .. } => {
            error(writer, ErrorCode::Handshake, "hello was already sent");
            false
        }
        Request::Run(run) => {
            let fds = rx.take_fds(3);
            let caller = if run.bound_to_caller {
                match super::peer::caller_pidfd(rx.stream().as_fd()) {
                    Ok(fd) => Some(fd),
                    Err(e) => {
                        return error(
                            writer,
                            ErrorCode::Internal,
                            format!("cannot watch the client the sandbox is bound to: {e}"),
                        );
                    }
                }
            } else {
                None
            };
            handle_run(*run, fds, caller, writer, state)
        }
        Request::List => reply(
            writer,
            Response::Sandboxes {
                sandboxes: state.registry.list(),
            },
        ),
        Request::Signal { id, signal } => {
            let result = state.registry.resolve(&id).and_then(|id| {
                nix::sys::signal::Signal::try_from(signal).map_err(|_| {
                    (
                        ErrorCode::InvalidRequest,
                        format!("{signal} is not a signal number"),
                    )
                })?;
                state.registry.signal(&id, signal, false).map(|()| id)
            });
            match result {
                Ok(id) => reply(writer, Response::Signaled { id }),
                Err((code, msg)) => error(writer, code, msg),
            }
        }
        Request::Stop { id, grace_ms } => {
            let grace = grace_ms.map(Duration::from_millis).unwrap_or(DEFAULT_GRACE);
            match stop(state, &id, grace) {
                Ok((id, status)) => reply(writer, Response::Stopped { id, status }),
                Err((code, msg)) => error(writer, code, msg),
            }
        }
        Request::Doctor => reply(
            writer,
            Response::Doctor {
                report: doctor::run(&doctor::Helper {
                    cgroups: &state.cgroups.mode,
                    runtime_dir: &state.runtime_dir,
                    socket: &state.socket,
                }),
            },
        ),
        Request::Subscribe { interval_ms } => {
            let every = Duration::from_millis(interval_ms.unwrap_or(1000).clamp(100, 10_000));
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
        Request::Logs { id, since } => {
            let result = state.registry.log(&id).map(|(id, log)| {
                let log = super::logs::lock(&log);
                let (start, bytes) = log.read_from(since.unwrap_or(0));
                Response::Logs {
                    id,
                    start,
                    end: log.end(),
                    text: String::from_utf8_lossy(&bytes).into_owned(),
                    finished: log.closed(),
                }
            });
            match result {
                Ok(response) => reply(writer, response),
                Err((code, msg)) => error(writer, code, msg),
            }
        }
        Request::Processes { id } => {
            let result = state.registry.resolve(&id).and_then(|id| {
                let init = state.registry.init_pid(&id)?;
                Ok(Response::Processes {
                    processes: super::processes::list(init),
                    id,
                })
            });
            match result {
                Ok(response) => reply(writer, response),
                Err((code, msg)) => error(writer, code, msg),
            }
        }
        Request::Limit { id, limits } => {
            let result = state.registry.resolve(&id).and_then(|id| {
                if let Some(percent) = limits.cpu_percent {
                    let cores = std::thread::available_parallelism()
                        .map(|n| n.get() as u32)
                        .unwrap_or(1);
                    hutch_core::limits::check_cpu(percent, cores)
                        .map_err(|e| (ErrorCode::InvalidRequest, e.to_string()))?;
                }
                let dir = cgroup_of(state, &id)?;
                crate::cgroup::apply_limits(&dir, &limits)
                    .map_err(|e| (ErrorCode::InvalidRequest, e.to_string()))?;
                tracing::info!(%id, ?limits, "limits changed");
                Ok(id)
            });
            match result {
                Ok(id) => reply(writer, Response::Done { id }),
                Err((code, msg)) => error(writer, code, msg),
            }
        }
        Request::Pause { id } => freeze(writer, state, &id, true),
        Request::Resume { id } => freeze(writer, state, &id, false),
        Request::Inspect { id } => {
            let result = state.registry.resolve(&id).and_then(|id| {
                let info = state.registry.info(&id)?;
                let pid = info.pid.ok_or_else(|| {
                    (
                        ErrorCode::InvalidRequest,
                        format!("sandbox {id} is still starting"),
                    )
                })?;
                let cgroup = state.registry.cgroup(&id)?;
                let landlock = state.registry.landlock(&id)?;
                let mut anatomy =
                    super::inspect::inspect(&id, pid, info.id_map, info.network, cgroup.as_deref())
                        .map_err(|e| {
                            (
                                ErrorCode::Internal,
                                format!("cannot inspect sandbox {id}: {e}"),
                            )
                        })?;
                anatomy.security.landlock =
                    landlock.unwrap_or_else(|| "not reported by the sandbox".into());
                Ok(anatomy)
            });
            match result {
                Ok(anatomy) => reply(
                    writer,
                    Response::Anatomy {
                        anatomy: Box::new(anatomy),
                    },
                ),
                Err((code, msg)) => error(writer, code, msg),
            }
        }
        Request::Stats { id } => {
            let result = state.registry.resolve(&id).and_then(|id| {
                let init = state.registry.init_pid(&id)?;
                let cgroup = state.registry.cgroup(&id)?;
                super::stats::sample(&id, init, cgroup.as_deref()).map_err(|e| {
                    (
                        ErrorCode::Internal,
                        format!("cannot read the counters of {id}: {e}"),
                    )
                })
            });
            match result {
                Ok(stats) => reply(
                    writer,
                    Response::Stats {
                        stats: Box::new(stats),
                    },
                ),
                Err((code, msg)) => error(writer, code, msg),
            }
        }
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

fn stop(
    state: &State,
    id: &str,
    grace: Duration,
) -> Result<(String, hutch_core::protocol::ExitStatus), super::registry::Refusal> {
    let id = state.registry.resolve(id)?;
    let events = state.registry.listen(&id)?;
    state.registry.signal(&id, libc::SIGTERM, true)?;
    let status = match wait_exit(&events, Some(grace)) {
        Some(status) => status,
        None => {
            tracing::info!(%id, "grace period over, killing the sandbox");
            // It may have exited just now; the status still arrives below.
            let _ = state.registry.signal(&id, libc::SIGKILL, true);
            wait_exit(&events, None)
                .ok_or_else(|| (ErrorCode::Internal, format!("lost track of sandbox {id}")))?
        }
    };
    Ok((id, status))
}

fn handle_run(
    run: RunRequest,
    fds: Vec<std::os::fd::OwnedFd>,
    caller: Option<std::os::fd::OwnedFd>,
    writer: &Writer,
    state: &Arc<State>,
) -> bool {
    match launch::launch(state, run, fds, caller) {
        Ok((started, follow)) => {
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
        Err((code, message)) => {
            tracing::info!(?code, %message, "run refused");
            error(writer, code, message)
        }
    }
}
