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

use hutch_core::protocol::{ExitStatus, SandboxState};

use super::State;
use super::launch::{cleanup, monitor};
use super::logs::{self, SharedLog};
use crate::channel::Receiver;
use crate::sandbox::{ExitRecord, SupervisorEvent, files};

/// How long a supervisor may take to answer a new daemon.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// The exit a supervisor left in `dir`, if any.
pub fn read_exit(dir: &Path) -> Option<ExitRecord> {
    let text = std::fs::read(dir.join(files::EXIT)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Takes over every sandbox the previous daemon left; returns how many run on.
pub fn take_over_all(state: &Arc<State>) -> usize {
    let root = state.runtime_dir.join("sandboxes");
    let Ok(entries) = std::fs::read_dir(&root) else {
        return 0;
    };
    let mut running = 0;
    let mut ended = Vec::new();
    let mut leftovers = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Some(id) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        match take_over(state, &id, &dir) {
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
                    tracing::debug!(%id, %why, "removing a leftover sandbox folder");
                    leftovers.push((dir, state.cgroups.sandbox_dir(&id)));
                }
            },
        }
    }
    // Oldest first: the list shows the latest exit on top.
    ended.sort_by_key(|(when, ..)| *when);
    for (_, id, dir, exit) in ended {
        tracing::info!(%id, status = %exit.status, "a sandbox ended while no helper ran");
        let ExitRecord {
            record,
            status,
            lost_output,
        } = exit;
        let mut info = record.info;
        info.id = id.clone();
        state.registry.insert(info);
        if let Some(log) = saved_output(&dir, lost_output) {
            state.registry.set_log(&id, log);
        }
        state.registry.finish(&id, status);
        cleanup(&dir, record.cgroup.as_deref());
    }
    // A prepared sandbox of the dead daemon ends by itself (its daemon's socket closed); its
    // cgroup can be removed once it has, which may take a moment.
    if !leftovers.is_empty() {
        let _ = std::thread::Builder::new()
            .name("leftovers".into())
            .spawn(move || {
                for (dir, cgroup) in leftovers {
                    cleanup(&dir, cgroup.as_deref());
                }
            });
    }
    running
}

/// Output a supervisor saved while no daemon drained it, as the start of a log.
fn saved_output(dir: &Path, lost: u64) -> Option<SharedLog> {
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
    Some(log)
}

/// Asks the supervisor listening in `dir` for its sandbox.
fn take_over(state: &Arc<State>, id: &str, dir: &Path) -> Result<(), String> {
    let socket = dir.join(files::SOCKET);
    let stream = UnixStream::connect(&socket)
        .map_err(|e| format!("no supervisor answers on {}: {e}", socket.display()))?;
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
            Ok(other) => return Err(format!("unexpected answer {other:?}")),
            Err(e) => return Err(format!("no answer: {e}")),
        };
    let mut fds = rx.take_fds(2).into_iter();
    let pidfd = fds.next().ok_or("no pidfd came with the answer")?;
    let log_fd = if log { fds.next() } else { None };
    let _ = rx.stream().set_read_timeout(None);

    let cgroup: Option<PathBuf> = record.cgroup.clone();
    let paused = cgroup.as_ref().is_some_and(|cg| {
        std::fs::read_to_string(cg.join("cgroup.freeze")).is_ok_and(|v| v.trim() == "1")
    });
    let mut info = record.info.clone();
    info.id = id.to_owned();
    info.state = if paused {
        SandboxState::Paused
    } else {
        SandboxState::Running
    };
    info.pid = Some(app_pid.unwrap_or(init_pid) as u32);
    info.exit = None::<ExitStatus>;
    info.network.up = network_down.is_none();
    let landlock = record.landlock.clone();
    state
        .registry
        .adopt(info, cgroup.clone(), landlock, (pidfd, init_pid));
    if let Some(fd) = log_fd
        && let Some(log) = saved_output(dir, lost_output)
    {
        state.registry.set_log(id, SharedLog::clone(&log));
        logs::drain(id.to_owned(), std::fs::File::from(fd), log);
    } else if dir.join(files::OUTPUT).exists()
        && let Some(log) = saved_output(dir, lost_output)
    {
        // The app closed its output while no helper ran: what it wrote is all there is.
        log.lock().unwrap_or_else(|p| p.into_inner()).close();
        state.registry.set_log(id, log);
    }
    let monitor_state = Arc::clone(state);
    let (monitor_id, monitor_dir) = (id.to_owned(), dir.to_owned());
    std::thread::Builder::new()
        .name(format!("sandbox-{id}"))
        .spawn(move || monitor(monitor_state, monitor_id, rx, None, monitor_dir, cgroup))
        .map_err(|e| format!("cannot start a monitor thread: {e}"))?;
    Ok(())
}
