//! Taking over sandboxes after the daemon that started them died (a crash, `kill -9`).
//!
//! A sandbox's supervisor is a process of its own: it runs on without a daemon, listening on
//! `sandboxes/ID/supervisor.sock` in the runtime folder, saving the app's output, and leaving
//! the exit status in `exit.json` if the app ends before a daemon comes back. A daemon that
//! starts looks at every such folder before it serves anyone: a supervisor that answers hands
//! its sandbox over (the record the first daemon made, pid 1's pidfd, the output pipe); a
//! folder with an exit record becomes a recently exited sandbox; anything else is a leftover
//! (a sandbox prepared for a launch that never came) and is removed.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hutch_core::protocol::SandboxState;

use super::State;
use super::logs::{self, SharedLog};
use super::monitor::{cleanup, read_exit, spawn_monitor};
use crate::sandbox::{ExitRecord, SandboxRecord, SupervisorEvent, files};
use hutch_client::channel::{ChannelError, Receiver};

/// How long a supervisor may take to answer a new daemon.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a leftover folder's supervisor (a prepared sandbox of the dead daemon) may take
/// to end before its folder is left for a later daemon.
const LEFTOVER_WAIT: Duration = Duration::from_secs(3);

/// Whether a live supervisor holds the folder's lock.
fn supervisor_alive(dir: &Path) -> bool {
    let Ok(file) = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join(files::LOCK))
    else {
        return false;
    };
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).is_err()
}

/// Why a sandbox folder's supervisor did not hand its sandbox over.
#[derive(Debug, thiserror::Error)]
enum TakeOverError {
    #[error("no supervisor holds its folder")]
    NoSupervisor,
    #[error("no supervisor answers on {}: {err}", socket.display())]
    Connect {
        socket: PathBuf,
        err: std::io::Error,
    },
    /// An event (as `Debug` shows it) that is not a handover.
    #[error("unexpected answer {0}")]
    Unexpected(String),
    #[error("no answer: {0}")]
    NoAnswer(ChannelError),
    #[error("no pidfd came with the answer")]
    NoPidfd,
    #[error("cannot start a monitor thread: {0}")]
    Monitor(std::io::Error),
}

/// Takes over every sandbox the previous daemon left; returns how many run on.
pub fn take_over_all(state: &Arc<State>) -> usize {
    let root = state.runtime_dir.join("sandboxes");
    let Ok(entries) = std::fs::read_dir(&root) else {
        return 0;
    };
    let mut running = 0;
    let mut ended = Vec::new();
    let mut leftovers: Vec<(String, PathBuf)> = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Some(id) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let attempt = if supervisor_alive(&dir) {
            take_over(state, &id, &dir)
        } else {
            Err(TakeOverError::NoSupervisor)
        };
        match attempt {
            Ok(()) => {
                tracing::info!(%id, "took over a running sandbox");
                running += 1;
            }
            Err(why) => match read_exit(&dir) {
                Some(exit) => {
                    let when = std::fs::metadata(dir.join(files::EXIT))
                        .and_then(|m| m.modified())
                        .unwrap_or(SystemTime::UNIX_EPOCH);
                    ended.push((when, id, dir, exit));
                }
                None => {
                    tracing::debug!(%id, %why, "a leftover sandbox folder");
                    leftovers.push((id, dir));
                }
            },
        }
    }
    // Oldest first: the list shows the latest exit on top.
    ended.sort_by_key(|(when, ..)| *when);
    for (_, id, dir, exit) in ended {
        record_ended(state, &id, &dir, exit);
    }
    // A prepared sandbox of the dead daemon ends by itself (its daemon's socket closed): once
    // its supervisor has let go of the folder, the folder and its cgroup go. A supervisor that
    // holds on (a sandbox of another live helper, one that did not answer in time) keeps its
    // folder.
    if !leftovers.is_empty() {
        let state = Arc::clone(state);
        let _ = std::thread::Builder::new()
            .name("leftovers".into())
            .spawn(move || {
                let deadline = std::time::Instant::now() + LEFTOVER_WAIT;
                while !leftovers.is_empty() {
                    leftovers.retain(|(id, dir)| {
                        if supervisor_alive(dir) {
                            return true;
                        }
                        match read_exit(dir) {
                            // It ended while this daemon looked.
                            Some(exit) => record_ended(&state, id, dir, exit),
                            None => cleanup(dir, state.cgroups.sandbox_dir(id).as_deref()),
                        }
                        false
                    });
                    if std::time::Instant::now() >= deadline {
                        for (id, _) in &leftovers {
                            tracing::warn!(%id, "a sandbox supervisor neither hands over nor ends; leaving its folder");
                        }
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
    }
    running
}

/// Lists a sandbox that ended while no daemon ran, and removes its folder.
fn record_ended(state: &State, id: &str, dir: &Path, exit: ExitRecord) {
    tracing::info!(%id, status = %exit.status, "a sandbox ended while no helper ran");
    let ExitRecord {
        record,
        status,
        lost_output,
    } = exit;
    let mut info = record.info;
    info.id = id.to_owned();
    state.registry.insert(info);
    state.registry.set_log(id, saved_output(dir, lost_output));
    state.registry.finish(id, status);
    cleanup(dir, record.cgroup.as_deref());
}

/// Output a supervisor saved while no daemon drained it, as the start of a log.
fn saved_output(dir: &Path, lost: u64) -> SharedLog {
    let path = dir.join(files::OUTPUT);
    let saved = std::fs::read(&path).ok();
    let _ = std::fs::remove_file(&path);
    let log = SharedLog::default();
    {
        let mut buffer = log.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bytes) = &saved {
            buffer.push(bytes);
        }
        if lost > 0 {
            buffer.push(
                format!("\n[hutch: {lost} bytes of output were dropped while no helper ran]\n")
                    .as_bytes(),
            );
        }
    }
    log
}

/// Asks the supervisor listening in `dir` for its sandbox.
fn take_over(state: &Arc<State>, id: &str, dir: &Path) -> Result<(), TakeOverError> {
    let socket = dir.join(files::SOCKET);
    let stream = match UnixStream::connect(&socket) {
        Ok(stream) => stream,
        Err(err) => return Err(TakeOverError::Connect { socket, err }),
    };
    let _ = stream.set_read_timeout(Some(ANSWER_TIMEOUT));
    let mut rx = Receiver::new(stream);
    let (record, init_pid, app_pid, network_down, log, lost_output) =
        match rx.recv::<SupervisorEvent>() {
            Ok(SupervisorEvent::Adopted {
                record,
                init_pid,
                app_pid,
                network_down,
                log,
                lost_output,
            }) => (record, init_pid, app_pid, network_down, log, lost_output),
            Ok(other) => return Err(TakeOverError::Unexpected(format!("{other:?}"))),
            Err(e) => return Err(TakeOverError::NoAnswer(e)),
        };
    let mut fds = rx.take_fds(2).into_iter();
    let pidfd = fds.next().ok_or(TakeOverError::NoPidfd)?;
    let log_fd = if log { fds.next() } else { None };
    let _ = rx.stream().set_read_timeout(None);

    let SandboxRecord {
        mut info,
        cgroup,
        landlock,
    } = *record;
    let paused = cgroup.as_ref().is_some_and(|cg| {
        std::fs::read_to_string(cg.join("cgroup.freeze")).is_ok_and(|v| v.trim() == "1")
    });
    info.id = id.to_owned();
    info.state = if paused {
        SandboxState::Paused
    } else {
        SandboxState::Running
    };
    info.pid = Some(app_pid.unwrap_or(init_pid) as u32);
    info.exit = None;
    info.network.up = network_down.is_none();
    state
        .registry
        .adopt(info, cgroup.clone(), landlock, (pidfd, init_pid));
    if let Some(fd) = log_fd {
        let log = saved_output(dir, lost_output);
        state.registry.set_log(id, SharedLog::clone(&log));
        logs::drain(id.to_owned(), std::fs::File::from(fd), log);
    } else if dir.join(files::OUTPUT).exists() {
        // The app closed its output while no helper ran: what it wrote is all there is.
        let log = saved_output(dir, lost_output);
        log.lock().unwrap_or_else(|p| p.into_inner()).close();
        state.registry.set_log(id, log);
    }
    spawn_monitor(state, id, rx, None, dir.to_owned(), cgroup).map_err(TakeOverError::Monitor)
}
