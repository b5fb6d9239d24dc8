//! Following a running sandbox through its supervisor's events until it ends: its exit (an
//! OOM kill told first) goes to the registry, then its runtime folder and cgroup are removed.
//! Used for the sandboxes this daemon launched and for those it took over.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;

use hutch_core::protocol::{Event, ExitStatus};

use super::State;
use crate::cgroup::Cgroups;
use crate::sandbox::{ExitRecord, SupervisorEvent, files};
use hutch_client::channel::Receiver;

/// The exit a supervisor left in `dir`, if any.
pub fn read_exit(dir: &Path) -> Option<ExitRecord> {
    let text = std::fs::read(dir.join(files::EXIT)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Removes a sandbox's runtime folder and its cgroup, once its processes are gone.
pub fn cleanup(dir: &Path, cgroup: Option<&Path>) {
    for name in files::ALL {
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path).or_else(|_| std::fs::remove_dir(&path));
    }
    let _ = std::fs::remove_dir(dir);
    if let Some(cg) = cgroup {
        Cgroups::remove(cg);
    }
}

/// Starts the thread that follows sandbox `id` through its supervisor's events ([`monitor`]).
pub fn spawn_monitor(
    state: &Arc<State>,
    id: &str,
    rx: Receiver,
    child: Option<Child>,
    dir: PathBuf,
    cgroup: Option<PathBuf>,
) -> std::io::Result<()> {
    let (state, id) = (Arc::clone(state), id.to_owned());
    std::thread::Builder::new()
        .name(format!("sandbox-{id}"))
        .spawn(move || monitor(state, id, rx, child, dir, cgroup))
        .map(drop)
}

/// Records the sandbox's exit as soon as the supervisor reports it, then waits for the
/// supervisor itself (`child`, when this daemon started it) and cleans up.
fn monitor(
    state: Arc<State>,
    id: String,
    mut rx: Receiver,
    child: Option<Child>,
    dir: PathBuf,
    cgroup: Option<PathBuf>,
) {
    let mut reported = false;
    loop {
        match rx.recv::<SupervisorEvent>() {
            Ok(SupervisorEvent::Exited { status }) if !reported => {
                reported = true;
                // An OOM kill is told before the exit it caused (the cgroup still exists).
                if let Ok(Some(cg)) = state.registry.cgroup(&id) {
                    let events =
                        std::fs::read_to_string(cg.join("memory.events")).unwrap_or_default();
                    let kills = super::stats::keyed(&events, "oom_kill").unwrap_or(0);
                    if kills > 0 {
                        tracing::warn!(%id, kills, "sandbox ran out of memory");
                        state.registry.notify(
                            &id,
                            Event::OutOfMemory {
                                id: id.clone(),
                                kills,
                            },
                        );
                    }
                }
                tracing::info!(%id, %status, "sandbox exited");
                state.registry.finish(&id, status);
            }
            Ok(SupervisorEvent::Failed { message }) => {
                tracing::warn!(%id, %message, "sandbox reported a failure");
            }
            Ok(SupervisorEvent::NetworkDown { message }) => {
                tracing::warn!(%id, %message, "sandbox network is down");
                state.registry.network_down(&id, &message);
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    // A supervisor taken over from an earlier daemon is not our child: its end of the
    // connection closing is its exit, and it leaves the status in its folder.
    let waited = child.map(|mut c| c.wait());
    let left = read_exit(&dir);
    cleanup(&dir, cgroup.as_deref());
    if !reported {
        use std::os::unix::process::ExitStatusExt;
        let status = match (left, waited) {
            (Some(exit), _) => exit.status,
            (None, Some(Ok(s))) => match s.signal() {
                Some(sig) => ExitStatus::Signal(sig),
                None => ExitStatus::Code(s.code().unwrap_or(1)),
            },
            _ => ExitStatus::Code(1),
        };
        tracing::warn!(%id, %status, "sandbox supervisor ended without reporting an exit");
        state.registry.finish(&id, status);
    }
}
