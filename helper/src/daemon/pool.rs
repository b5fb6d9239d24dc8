//! The sandbox prepared ahead for the next launch: a supervisor whose namespaces exist, whose
//! id maps are written and whose root base is built, waiting for a plan. The daemon keeps one
//! ([`Pool`]), prepared by the `prewarm` thread after each launch; a launch takes it
//! ([`Pool::take`]) and puts it back when the launch is refused before anything started
//! ([`Taken`] does, when dropped).

use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio as ProcStdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::State;
use super::monitor::cleanup;
use super::prepare_key::PrepareKey;
use crate::cgroup::CgroupError;
use crate::sandbox::supervisor::CONTROL_FD;
use crate::sandbox::{SupervisorCommand, SupervisorEvent};
use crate::sys;
use hutch_client::channel::{self, ChannelError, Receiver};

/// How long after a launch the next sandbox is prepared: soon enough to be ready for the next
/// launch a person makes, late enough not to compete with the launch that just happened (for
/// the CPUs and the kernel's mount lock).
const PREWARM_DELAY: Duration = Duration::from_millis(20);

/// How long sandbox setup may take before the launch is abandoned.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// What a supervisor answered instead of the report that was expected.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("sandbox setup failed: {0}")]
    Failed(String),
    /// An event (as `Debug` shows it) that does not belong here.
    #[error("unexpected supervisor event {0}")]
    Unexpected(String),
    #[error("the supervisor did not report: {0}")]
    Silent(ChannelError),
}

impl SupervisorError {
    /// What `event` says when it is not the report that was expected.
    pub fn unexpected(event: &SupervisorEvent) -> Self {
        match event {
            SupervisorEvent::Failed { message } => Self::Failed(message.clone()),
            other => Self::Unexpected(format!("{other:?}")),
        }
    }
}

/// Why a sandbox could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("cannot create folder {}: {err}", path.display())]
    CreateFolder { path: PathBuf, err: std::io::Error },
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("socketpair: {0}")]
    Socketpair(std::io::Error),
    #[error("cannot start the sandbox supervisor: {0}")]
    SpawnSupervisor(std::io::Error),
    #[error("cannot reach the sandbox supervisor: {0}")]
    Unreachable(ChannelError),
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
}

/// A new random sandbox id: 8 hex digits.
fn new_id() -> String {
    let mut bytes = [0u8; 4];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_err()
    {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes = (nanos as u32 ^ std::process::id()).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates `path` (and its parents) with mode 0700.
pub fn make_private_dir(path: &Path) -> Result<(), PrepareError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|err| PrepareError::CreateFolder {
            path: path.to_owned(),
            err,
        })
}

fn spawn_supervisor(control: UnixStream) -> Result<Child, PrepareError> {
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("hutch-sandbox")
        .arg("supervise")
        .env_clear()
        .stdin(ProcStdio::null())
        .stdout(ProcStdio::null())
        .stderr(ProcStdio::null());
    sys::pass_fd_as(&mut cmd, OwnedFd::from(control), CONTROL_FD);
    cmd.spawn().map_err(PrepareError::SpawnSupervisor)
}

/// A supervisor whose sandbox namespaces exist, id maps are written and root base is built,
/// waiting for a plan.
#[derive(Debug)]
pub struct Prepared {
    pub id: String,
    pub dir: PathBuf,
    pub child: Child,
    pub rx: Receiver,
    key: PrepareKey,
    /// Its cgroup, when the helper has a delegated one.
    pub cgroup: Option<PathBuf>,
}

impl Prepared {
    /// The pid of its supervisor, whose child is the sandbox's pid 1.
    pub fn supervisor_pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Ends an unused prepared sandbox.
    fn discard(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        cleanup(&self.dir, self.cgroup.as_deref());
    }
}

/// Starts a supervisor and has it prepare a sandbox for `key`.
fn spawn_prepared(state: &State, key: &PrepareKey) -> Result<Prepared, PrepareError> {
    let sandboxes = state.runtime_dir.join("sandboxes");
    // Not the id of a sandbox this daemon took over, nor one whose folder is left.
    let id = loop {
        let id = new_id();
        if !sandboxes.join(&id).exists() {
            break id;
        }
    };
    let dir = sandboxes.join(&id);
    make_private_dir(&dir.join("root"))?;
    let cgroup = match state.cgroups.create(&id) {
        Ok(cg) => cg,
        Err(e) => {
            cleanup(&dir, None);
            return Err(e.into());
        }
    };
    let (ours, theirs) = UnixStream::pair().map_err(PrepareError::Socketpair)?;
    let mut child = match spawn_supervisor(theirs) {
        Ok(child) => child,
        Err(e) => {
            cleanup(&dir, cgroup.as_deref());
            return Err(e);
        }
    };
    let mut fail = |err: PrepareError| {
        let _ = child.kill();
        let _ = child.wait();
        cleanup(&dir, cgroup.as_deref());
        err
    };
    let command = SupervisorCommand::Prepare {
        id_map: key.id_map.clone(),
        root: dir.join("root"),
        base_mounts: key.base_mounts.clone(),
        cgroup: cgroup.clone(),
    };
    if let Err(e) = channel::send(&ours, &command, &[]) {
        return Err(fail(PrepareError::Unreachable(e)));
    }
    let _ = ours.set_read_timeout(Some(SETUP_TIMEOUT));
    let mut rx = Receiver::new(ours);
    match rx.recv::<SupervisorEvent>() {
        Ok(SupervisorEvent::Ready) => {}
        Ok(other) => return Err(fail(SupervisorError::unexpected(&other).into())),
        Err(e) => return Err(fail(SupervisorError::Silent(e).into())),
    }
    Ok(Prepared {
        id,
        dir,
        child,
        rx,
        key: key.clone(),
        cgroup,
    })
}

/// The prepared sandbox waiting for the next launch, and the thread that prepares it.
#[derive(Debug, Default)]
pub struct Pool {
    /// A sandbox prepared ahead (namespaces made, id maps written) for the next launch.
    prepared: Mutex<Option<Prepared>>,
    /// Prepares the sandbox the next launch takes.
    prewarmer: Prewarmer,
}

impl Pool {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Prepared>> {
        self.prepared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The pid of the waiting sandbox's supervisor, if one waits.
    pub fn supervisor_pid(&self) -> Option<i32> {
        self.slot().as_ref().map(Prepared::supervisor_pid)
    }

    /// Keeps one prepared sandbox for the next launch, replacing any older one.
    fn stash(&self, prepared: Prepared) {
        let old = self.slot().replace(prepared);
        if let Some(old) = old {
            old.discard();
        }
    }

    /// Ends the prepared sandbox, if any (on shutdown).
    pub fn discard(&self) {
        let prepared = self.slot().take();
        if let Some(prepared) = prepared {
            prepared.discard();
        }
    }

    /// The prepared sandbox if it fits `key`, else a new one; put back when dropped unused.
    pub fn take<'a>(&'a self, state: &State, key: &PrepareKey) -> Result<Taken<'a>, PrepareError> {
        let ready = self.slot().take();
        let prepared = match ready {
            Some(prepared) if prepared.key == *key => prepared,
            Some(stale) => {
                stale.discard();
                spawn_prepared(state, key)?
            }
            None => spawn_prepared(state, key)?,
        };
        Ok(Taken {
            pool: self,
            prepared: Some(prepared),
        })
    }

    /// Asks for a sandbox to be prepared (returns at once).
    pub fn ask(&self) {
        self.prewarmer.ask();
    }

    /// Starts the thread that prepares sandboxes for `state`: for the daemon's whole life,
    /// woken by [`Pool::ask`], it prepares one sandbox [`PREWARM_DELAY`] after it was asked
    /// (asks until then make one preparation), unless the sandbox waiting still fits.
    pub fn start(state: &Arc<State>) -> std::io::Result<()> {
        let state = Arc::clone(state);
        std::thread::Builder::new()
            .name("prewarm".into())
            .spawn(move || {
                let pool = &state.pool;
                loop {
                    pool.prewarmer.wait();
                    std::thread::sleep(PREWARM_DELAY);
                    pool.prewarmer.take();
                    let host = state.host.get();
                    let key = state.prepare_key.get(&host);
                    let stashed = pool.slot();
                    if stashed.as_ref().is_some_and(|p| p.key == key) {
                        // The one waiting still fits.
                        continue;
                    }
                    drop(stashed);
                    match spawn_prepared(&state, &key) {
                        Ok(prepared) => pool.stash(prepared),
                        Err(e) => {
                            tracing::debug!(message = %e, "could not prepare a sandbox ahead")
                        }
                    }
                }
            })
            .map(drop)
    }
}

/// A prepared sandbox a launch took from the [`Pool`]: dropped unused, it goes back for the
/// next launch (nothing was started in it); [`Taken::discard`] ends it instead, and
/// [`Taken::launch`] hands it to the launch for good.
#[derive(Debug)]
pub struct Taken<'a> {
    pool: &'a Pool,
    prepared: Option<Prepared>,
}

impl Taken<'_> {
    /// The sandbox taken (there until [`Taken::launch`] or [`Taken::discard`] consume it).
    pub fn get(&self) -> &Prepared {
        self.prepared
            .as_ref()
            .expect("a taken sandbox is there until consumed")
    }

    /// Ends it: it was changed (its cgroup's limits) and fits no other launch.
    pub fn discard(mut self) {
        if let Some(prepared) = self.prepared.take() {
            prepared.discard();
        }
    }

    /// The sandbox, for the launch that uses it.
    pub fn launch(mut self) -> Prepared {
        self.prepared
            .take()
            .expect("a taken sandbox is there until consumed")
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if let Some(prepared) = self.prepared.take() {
            self.pool.stash(prepared);
        }
    }
}

/// Wakes the prewarm thread: asks since its last preparation make one.
#[derive(Debug, Default)]
struct Prewarmer {
    asked: Mutex<bool>,
    wake: Condvar,
}

impl Prewarmer {
    /// Asks for a sandbox to be prepared (returns at once).
    fn ask(&self) {
        *self.asked.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.wake.notify_one();
    }

    /// Waits until asked.
    fn wait(&self) {
        let mut asked = self.asked.lock().unwrap_or_else(|p| p.into_inner());
        while !*asked {
            asked = self.wake.wait(asked).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Takes the asks so far: one preparation serves them all.
    fn take(&self) {
        *self.asked.lock().unwrap_or_else(|p| p.into_inner()) = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::IdMapPlan;
    use hutch_core::protocol::IdMapKind;

    /// A stand-in for a prepared sandbox: a child process as its supervisor, a folder of its
    /// own under the temporary folder.
    fn prepared(name: &str) -> Prepared {
        let dir = std::env::temp_dir().join(format!("hutch-pool-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ours, _theirs) = UnixStream::pair().unwrap();
        Prepared {
            id: name.to_owned(),
            dir,
            child: Command::new("sleep").arg("30").spawn().unwrap(),
            rx: Receiver::new(ours),
            key: PrepareKey {
                id_map: IdMapPlan {
                    kind: IdMapKind::SingleId,
                    uid_lines: Vec::new(),
                    gid_lines: Vec::new(),
                    newuidmap: None,
                    newgidmap: None,
                },
                base_mounts: Vec::new(),
                sources: Vec::new(),
            },
            cgroup: None,
        }
    }

    fn taken(pool: &Pool) -> Taken<'_> {
        Taken {
            pool,
            prepared: pool.slot().take(),
        }
    }

    #[test]
    fn a_taken_sandbox_goes_back_unless_launched_or_discarded() {
        let pool = Pool::default();
        pool.stash(prepared("back"));
        let pid = pool.supervisor_pid().expect("one waits");
        // A launch refused before it used the sandbox: the next launch finds it.
        let first = taken(&pool);
        assert_eq!(pool.supervisor_pid(), None);
        assert_eq!(first.get().supervisor_pid(), pid);
        drop(first);
        assert_eq!(pool.supervisor_pid(), Some(pid));
        // A launch that used it: it is the launch's.
        let mut launched = taken(&pool).launch();
        assert_eq!(pool.supervisor_pid(), None);
        assert_eq!(launched.supervisor_pid(), pid);
        launched.child.kill().unwrap();
        launched.child.wait().unwrap();
        std::fs::remove_dir(&launched.dir).unwrap();
        // A sandbox changed by a refused launch: ended, its folder removed.
        pool.stash(prepared("discarded"));
        let dir = taken(&pool).get().dir.clone();
        taken(&pool);
        assert!(dir.exists(), "it went back");
        taken(&pool).discard();
        assert_eq!(pool.supervisor_pid(), None);
        assert!(!dir.exists(), "{} is left", dir.display());
    }
}
