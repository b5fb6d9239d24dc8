//! The sandboxes this helper runs, and who waits for them to end.

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use hutch_core::protocol::{Event, ExitStatus, SandboxInfo, SandboxState};
use nix::unistd::Pid;

use super::logs::SharedLog;
use crate::sys;

/// Exited sandboxes kept for `hutch ps`.
const RECENT_EXITED: usize = 32;

struct Slot {
    info: SandboxInfo,
    /// pidfd of the sandbox's pid 1: signals cannot reach a recycled pid.
    init: Option<OwnedFd>,
    /// Host pid of pid 1 (for its /proc: network counters).
    init_pid: Option<i32>,
    /// The sandbox's cgroup folder, when delegated.
    cgroup: Option<std::path::PathBuf>,
    /// How far Landlock confines the app, as it reported.
    landlock: Option<String>,
    /// Connections that want every event of this sandbox (the one that started it).
    listeners: Vec<mpsc::Sender<Event>>,
}

#[derive(Default)]
struct Inner {
    live: BTreeMap<String, Slot>,
    exited: VecDeque<SandboxInfo>,
    /// Output of sandboxes started with `Stdio::Log`, live and recently exited.
    logs: BTreeMap<String, SharedLog>,
    /// Subscribers, woken whenever the table changes.
    watchers: Vec<mpsc::Sender<()>>,
}

impl Inner {
    fn changed(&mut self) {
        self.watchers.retain(|w| w.send(()).is_ok());
    }
}

/// The live sandbox `id`, or why not.
fn live<'a>(inner: &'a mut Inner, id: &str) -> Result<&'a mut Slot, RegistryError> {
    inner
        .live
        .get_mut(id)
        .ok_or_else(|| RegistryError::NotLive { id: id.to_owned() })
}

/// Waits among a sandbox's events (from [`Registry::listen`]) for its exit, at most `timeout`
/// (`None`: as long as it takes). `None` when the time ran out or the sandbox was forgotten.
pub fn wait_exit(events: &mpsc::Receiver<Event>, timeout: Option<Duration>) -> Option<ExitStatus> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let event = match deadline {
            Some(d) => events
                .recv_timeout(d.checked_duration_since(Instant::now())?)
                .ok()?,
            None => events.recv().ok()?,
        };
        if let Event::Exited { status, .. } = event {
            return Some(status);
        }
    }
}

/// Why the registry cannot do what was asked of a sandbox. Each names the id as the client
/// gave it (a prefix, perhaps).
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A full id that is no longer among the running sandboxes.
    #[error("no running sandbox with id {id}")]
    NotLive { id: String },
    /// No running sandbox has this id or prefix.
    #[error("no running sandbox with id {id} (see `hutch ps`)")]
    NoRunning { id: String },
    /// No running or recently exited sandbox has this id or prefix.
    #[error("no sandbox with id {id} (see `hutch ps -a`)")]
    NoSandbox { id: String },
    /// No running or recently exited sandbox has this full id.
    #[error("no sandbox with id {id}")]
    Unknown { id: String },
    #[error("sandbox {id} has already exited")]
    Exited { id: String },
    #[error("id {id} matches several sandboxes: give more of it")]
    Ambiguous { id: String },
    #[error(
        "sandbox {id} keeps no log: it was started with a terminal or with the caller's own output"
    )]
    NoLog { id: String },
    /// Its pid 1 is not known yet.
    #[error("sandbox {id} is still starting")]
    Starting { id: String },
    #[error("cannot signal sandbox {id}: {err}")]
    Signal { id: String, err: std::io::Error },
}

/// Thread-safe table of sandboxes.
#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("live", &self.lock().live.len())
            .finish()
    }
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking request thread must not take the whole helper down with a poisoned lock.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, info: SandboxInfo) {
        let id = info.id.clone();
        let mut inner = self.lock();
        inner.live.insert(
            id,
            Slot {
                info,
                init: None,
                init_pid: None,
                cgroup: None,
                landlock: None,
                listeners: Vec::new(),
            },
        );
        inner.changed();
    }

    /// A running sandbox taken over from an earlier daemon (`info` as it is now), with the
    /// pidfd of its pid 1.
    pub fn adopt(
        &self,
        info: SandboxInfo,
        cgroup: Option<std::path::PathBuf>,
        landlock: Option<String>,
        init: (OwnedFd, i32),
    ) {
        let mut inner = self.lock();
        inner.live.insert(
            info.id.clone(),
            Slot {
                info,
                init: Some(init.0),
                init_pid: Some(init.1),
                cgroup,
                landlock,
                listeners: Vec::new(),
            },
        );
        inner.changed();
    }

    /// Sandboxes starting or running.
    pub fn live_count(&self) -> usize {
        self.lock().live.len()
    }

    /// A channel woken whenever a sandbox starts, changes state or exits.
    pub fn watch(&self) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel();
        self.lock().watchers.push(tx);
        rx
    }

    /// Keeps the output log of a sandbox.
    pub fn set_log(&self, id: &str, log: SharedLog) {
        self.lock().logs.insert(id.to_owned(), log);
    }

    /// The output log of a live or recently exited sandbox (a unique id prefix is enough).
    pub fn log(&self, id: &str) -> Result<(String, SharedLog), RegistryError> {
        let inner = self.lock();
        let known =
            |full: &str| inner.live.contains_key(full) || inner.exited.iter().any(|s| s.id == full);
        let matches: Vec<(&String, &SharedLog)> = inner
            .logs
            .iter()
            .filter(|(k, _)| !id.is_empty() && k.starts_with(id) && known(k))
            .collect();
        match matches[..] {
            [(full, log)] => Ok((full.clone(), SharedLog::clone(log))),
            [] if known(id)
                || inner
                    .live
                    .keys()
                    .any(|k| !id.is_empty() && k.starts_with(id)) =>
            {
                Err(RegistryError::NoLog { id: id.to_owned() })
            }
            [] => Err(RegistryError::NoSandbox { id: id.to_owned() }),
            _ => Err(RegistryError::Ambiguous { id: id.to_owned() }),
        }
    }

    /// Marks a sandbox running with its host pids and its Landlock status.
    pub fn started(&self, id: &str, init_pid: i32, app_pid: Option<i32>, landlock: Option<String>) {
        let pidfd = sys::pidfd_open(Pid::from_raw(init_pid)).ok();
        if let Some(slot) = self.lock().live.get_mut(id) {
            slot.info.state = SandboxState::Running;
            slot.info.pid = Some(app_pid.unwrap_or(init_pid) as u32);
            slot.init = pidfd;
            slot.init_pid = Some(init_pid);
            slot.landlock = landlock;
        }
        self.lock().changed();
    }

    /// Records that the sandbox's network stack died, and tells its listeners.
    pub fn network_down(&self, id: &str, message: &str) {
        let mut inner = self.lock();
        if let Some(slot) = inner.live.get_mut(id) {
            slot.info.network.up = false;
            let event = Event::NetworkDown {
                id: id.to_owned(),
                message: message.to_owned(),
            };
            slot.listeners.retain(|l| l.send(event.clone()).is_ok());
            inner.changed();
        }
    }

    /// The host pids every process of a live sandbox descends from: its pid 1, and while it
    /// starts its supervisor.
    pub fn ancestors(&self) -> Vec<i32> {
        self.lock()
            .live
            .values()
            .flat_map(|s| s.init_pid.into_iter().chain(s.info.pid.map(|p| p as i32)))
            .collect()
    }

    /// (id, pid 1's host pid, cgroup) of every running sandbox, for sampling.
    pub fn live_targets(&self) -> Vec<(String, i32, Option<std::path::PathBuf>)> {
        self.lock()
            .live
            .iter()
            .filter_map(|(id, s)| Some((id.clone(), s.init_pid?, s.cgroup.clone())))
            .collect()
    }

    /// Tells the listeners of a sandbox (the connection that started it) about `event`.
    pub fn notify(&self, id: &str, event: Event) {
        if let Some(slot) = self.lock().live.get_mut(id) {
            slot.listeners.retain(|l| l.send(event.clone()).is_ok());
        }
    }

    /// What `hutch ps` shows of a running sandbox.
    pub fn info(&self, id: &str) -> Result<SandboxInfo, RegistryError> {
        Ok(live(&mut self.lock(), id)?.info.clone())
    }

    /// Records the cgroup folder of a sandbox.
    pub fn set_cgroup(&self, id: &str, dir: Option<std::path::PathBuf>) {
        if let Some(slot) = self.lock().live.get_mut(id) {
            slot.cgroup = dir;
        }
    }

    /// The cgroup folder of a running sandbox (`None` in the degraded mode).
    pub fn cgroup(&self, id: &str) -> Result<Option<std::path::PathBuf>, RegistryError> {
        Ok(live(&mut self.lock(), id)?.cgroup.clone())
    }

    /// How far Landlock confines a running sandbox's app, as it reported.
    pub fn landlock(&self, id: &str) -> Result<Option<String>, RegistryError> {
        Ok(live(&mut self.lock(), id)?.landlock.clone())
    }

    /// Marks a sandbox paused or running again.
    pub fn set_paused(&self, id: &str, paused: bool) {
        let mut inner = self.lock();
        if let Some(slot) = inner.live.get_mut(id) {
            slot.info.state = if paused {
                SandboxState::Paused
            } else {
                SandboxState::Running
            };
            inner.changed();
        }
    }

    /// Host pid of a running sandbox's pid 1.
    pub fn init_pid(&self, id: &str) -> Result<i32, RegistryError> {
        live(&mut self.lock(), id)?
            .init_pid
            .ok_or_else(|| RegistryError::Starting { id: id.to_owned() })
    }

    /// A channel that receives every event of a sandbox, its exit last (at once, if it has
    /// exited already).
    pub fn listen(&self, id: &str) -> Result<mpsc::Receiver<Event>, RegistryError> {
        let (tx, rx) = mpsc::channel();
        let mut inner = self.lock();
        if let Some(slot) = inner.live.get_mut(id) {
            slot.listeners.push(tx);
            return Ok(rx);
        }
        if let Some(status) = inner
            .exited
            .iter()
            .find(|s| s.id == id)
            .and_then(|s| s.exit)
        {
            let _ = tx.send(Event::Exited {
                id: id.to_owned(),
                status,
            });
            return Ok(rx);
        }
        Err(RegistryError::Unknown { id: id.to_owned() })
    }

    /// Records the exit and wakes everyone waiting for it.
    pub fn finish(&self, id: &str, status: ExitStatus) {
        let mut inner = self.lock();
        let Some(mut slot) = inner.live.remove(id) else {
            return;
        };
        slot.info.state = SandboxState::Exited;
        slot.info.exit = Some(status);
        for listener in slot.listeners.drain(..) {
            let _ = listener.send(Event::Exited {
                id: id.to_owned(),
                status,
            });
        }
        inner.exited.push_front(slot.info);
        inner.exited.truncate(RECENT_EXITED);
        let Inner {
            live, exited, logs, ..
        } = &mut *inner;
        logs.retain(|k, _| live.contains_key(k) || exited.iter().any(|s| &s.id == k));
        inner.changed();
    }

    /// Forgets a sandbox that never started.
    pub fn remove(&self, id: &str) {
        let mut inner = self.lock();
        inner.live.remove(id);
        inner.logs.remove(id);
        inner.changed();
    }

    /// Running sandboxes first, then recently exited ones.
    pub fn list(&self) -> Vec<SandboxInfo> {
        let inner = self.lock();
        inner
            .live
            .values()
            .map(|s| s.info.clone())
            .chain(inner.exited.iter().cloned())
            .collect()
    }

    /// The full id of the live sandbox `id` names (a unique prefix is enough).
    pub fn resolve(&self, id: &str) -> Result<String, RegistryError> {
        let inner = self.lock();
        if inner.live.contains_key(id) {
            return Ok(id.to_owned());
        }
        let matches: Vec<&String> = inner
            .live
            .keys()
            .filter(|k| !id.is_empty() && k.starts_with(id))
            .collect();
        match matches[..] {
            [one] => Ok(one.clone()),
            [] if inner
                .exited
                .iter()
                .any(|s| s.id.starts_with(id) && !id.is_empty()) =>
            {
                Err(RegistryError::Exited { id: id.to_owned() })
            }
            [] => Err(RegistryError::NoRunning { id: id.to_owned() }),
            _ => Err(RegistryError::Ambiguous { id: id.to_owned() }),
        }
    }

    /// Sends `signal` to the sandbox's pid 1, which forwards it to the app.
    pub fn signal(&self, id: &str, signal: i32, stopping: bool) -> Result<(), RegistryError> {
        let mut inner = self.lock();
        let slot = live(&mut inner, id)?;
        let Some(pidfd) = &slot.init else {
            return Err(RegistryError::Starting { id: id.to_owned() });
        };
        sys::pidfd_send_signal(pidfd.as_fd(), signal).map_err(|err| RegistryError::Signal {
            id: id.to_owned(),
            err,
        })?;
        if stopping && slot.info.state != SandboxState::Stopping {
            slot.info.state = SandboxState::Stopping;
            inner.changed();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hutch_core::protocol::IdMapKind;

    fn info(id: &str) -> SandboxInfo {
        SandboxInfo {
            id: id.into(),
            profile: "default".into(),
            pid: None,
            started_at_ms: 0,
            command: vec!["true".into()],
            state: SandboxState::Starting,
            id_map: IdMapKind::SingleId,
            exit: None,
            network: hutch_core::protocol::NetworkInfo {
                mode: hutch_core::network::NetworkMode::None,
                backend: None,
                up: true,
                publish: Vec::new(),
                host_loopback: false,
            },
            user_namespaces: None,
        }
    }

    #[test]
    fn prefixes_resolve_when_unique() {
        let reg = Registry::default();
        reg.insert(info("ab12"));
        reg.insert(info("ab34"));
        reg.insert(info("cd56"));
        assert_eq!(reg.resolve("cd").unwrap(), "cd56");
        assert_eq!(reg.resolve("ab12").unwrap(), "ab12");
        assert!(
            reg.resolve("ab")
                .unwrap_err()
                .to_string()
                .contains("several")
        );
        assert!(
            reg.resolve("zz")
                .unwrap_err()
                .to_string()
                .contains("hutch ps")
        );
        assert!(reg.resolve("").is_err());
    }

    #[test]
    fn waiters_learn_the_exit_even_after_it_happened() {
        let reg = Registry::default();
        reg.insert(info("ab12"));
        let before = reg.listen("ab12").unwrap();
        reg.finish("ab12", ExitStatus::Code(3));
        let second = Some(Duration::from_secs(1));
        assert_eq!(wait_exit(&before, second), Some(ExitStatus::Code(3)));
        assert_eq!(
            wait_exit(&reg.listen("ab12").unwrap(), second),
            Some(ExitStatus::Code(3))
        );
        let listed = reg.list();
        assert_eq!(listed[0].state, SandboxState::Exited);
        assert!(
            reg.resolve("ab12")
                .unwrap_err()
                .to_string()
                .contains("already exited")
        );
    }

    #[test]
    fn listeners_hear_network_down_then_the_exit() {
        let reg = Registry::default();
        reg.insert(info("ab12"));
        let events = reg.listen("ab12").unwrap();
        reg.network_down("ab12", "slirp4netns exited");
        assert!(!reg.list()[0].network.up);
        reg.finish("ab12", ExitStatus::Code(0));
        assert!(
            matches!(events.recv().unwrap(), Event::NetworkDown { message, .. } if message == "slirp4netns exited")
        );
        assert!(matches!(
            events.recv().unwrap(),
            Event::Exited {
                status: ExitStatus::Code(0),
                ..
            }
        ));
        // Listening after the exit still hears it.
        let late = reg.listen("ab12").unwrap();
        assert!(matches!(late.recv().unwrap(), Event::Exited { .. }));
        assert!(reg.listen("zz").is_err());
    }

    #[test]
    fn watchers_are_woken_by_every_change_and_logs_outlive_the_exit() {
        let reg = Registry::default();
        let changes = reg.watch();
        reg.insert(info("ab12"));
        reg.set_log("ab12", SharedLog::default());
        reg.started("ab12", std::process::id() as i32, None, None);
        reg.set_paused("ab12", true);
        reg.finish("ab12", ExitStatus::Code(0));
        assert_eq!(changes.try_iter().count(), 4);
        assert_eq!(reg.log("ab").unwrap().0, "ab12");
        reg.insert(info("cd34"));
        let err = reg.log("cd34").unwrap_err();
        assert!(err.to_string().contains("keeps no log"), "{err:?}");
        assert!(matches!(
            reg.log("zz").unwrap_err(),
            RegistryError::NoSandbox { .. }
        ));
        // Logs are forgotten with the sandbox once it falls out of the recent list.
        for i in 0..RECENT_EXITED {
            let id = format!("x{i}");
            reg.insert(info(&id));
            reg.finish(&id, ExitStatus::Code(0));
        }
        assert!(reg.log("ab12").is_err());
    }

    #[test]
    fn signalling_a_starting_sandbox_is_refused() {
        let reg = Registry::default();
        reg.insert(info("ab12"));
        assert!(matches!(
            reg.signal("ab12", 15, true).unwrap_err(),
            RegistryError::Starting { .. }
        ));
        assert!(matches!(
            reg.signal("nope", 15, true).unwrap_err(),
            RegistryError::NotLive { .. }
        ));
    }
}
