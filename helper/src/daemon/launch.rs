//! Turns a `Run` request into a running sandbox: profile, plan, stdio, and a freshly spawned
//! supervisor process (never a fork of this multi-threaded daemon).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio as ProcStdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hutch_core::protocol::{
    ErrorCode, ExitStatus, IdMapKind, RunRequest, SandboxInfo, SandboxState, Stdio,
};

use super::State;
use super::logs;
use super::prepare_key::PrepareKey;
use super::registry::Refusal;
use crate::cgroup::{self, Cgroups, Mode};
use crate::plan::NetworkPlan;
use crate::plan::{self, host};
use crate::sandbox::supervisor::CONTROL_FD;
use crate::sandbox::{SandboxRecord, SupervisorCommand, SupervisorEvent, files};
use crate::sys;
use hutch_client::channel::{self, Receiver};
use hutch_client::profiles;
use hutch_core::network::NetworkMode;
use hutch_core::protocol::{Event, NetworkInfo};

/// How long after a launch the next sandbox is prepared: soon enough to be ready for the next
/// launch a person makes, late enough not to compete with the launch that just happened (for
/// the CPUs and the kernel's mount lock).
const PREWARM_DELAY: Duration = Duration::from_millis(20);

/// How long sandbox setup may take before the launch is abandoned.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A started sandbox, as the connection reports it.
#[derive(Debug)]
pub struct Started {
    pub id: String,
    pub pid: u32,
    pub id_map: IdMapKind,
    pub warnings: Vec<String>,
    /// The terminal's controller side for `tty` runs.
    pub tty: Option<OwnedFd>,
    /// The sandbox's events, its exit last (subscribed before it could exit).
    pub events: std::sync::mpsc::Receiver<hutch_core::protocol::Event>,
}

/// What is left to do for a started sandbox once the client has its answer: the client need
/// not wait for a log line and two threads to start.
#[derive(Debug)]
pub struct Follow {
    id: String,
    rx: Receiver,
    child: Child,
    dir: PathBuf,
    cgroup: Option<PathBuf>,
    /// For the log line.
    profile: String,
    argv: Vec<String>,
    init_pid: i32,
    app_pid: Option<i32>,
}

impl Follow {
    /// Follows the sandbox through its supervisor's events (a thread of its own), and
    /// prepares the next sandbox.
    pub fn start(self, state: &Arc<State>) {
        let Self {
            id,
            rx,
            child,
            dir,
            cgroup,
            profile,
            argv,
            init_pid,
            app_pid,
        } = self;
        tracing::info!(%id, %profile, init_pid, ?app_pid, ?argv, "sandbox started");
        let supervisor = nix::unistd::Pid::from_raw(child.id() as i32);
        let (kept_dir, kept_cgroup) = (dir.clone(), cgroup.clone());
        if let Err(e) = spawn_monitor(state, &id, rx, Some(child), dir, cgroup) {
            // Nothing would learn of its exit: end it rather than leave it unwatched.
            tracing::error!(%id, "cannot start the monitor thread, stopping the sandbox: {e}");
            let _ = nix::sys::signal::kill(supervisor, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(supervisor, None);
            state
                .registry
                .finish(&id, ExitStatus::Signal(libc::SIGKILL));
            cleanup(&kept_dir, kept_cgroup.as_deref());
        }
        // The next launch finds a sandbox prepared.
        state.prewarmer.ask();
    }
}

fn refuse(code: ErrorCode) -> impl FnOnce(String) -> Refusal {
    move |msg| (code, msg)
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

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// The app's stdin, stdout and stderr: the caller's fds, /dev/null, a pipe to the helper's
/// log (its read end is returned beside them), or none for a terminal (made inside the
/// sandbox, in its own devpts, and sent back with `Started`).
fn stdio_for(
    request: &RunRequest,
    fds: Vec<OwnedFd>,
) -> Result<(Vec<OwnedFd>, Option<std::fs::File>), Refusal> {
    match request.stdio {
        Stdio::Inherit if fds.len() == 3 => Ok((fds, None)),
        Stdio::Inherit => Err((
            ErrorCode::InvalidRequest,
            format!(
                "a run with stdio \"inherit\" needs exactly 3 fds (stdin, stdout, stderr) \
                 attached to its frame; got {}",
                fds.len()
            ),
        )),
        Stdio::Null => Ok(((0..3).map(|_| open_null()).collect::<Result<_, _>>()?, None)),
        Stdio::Log => {
            let io = |e: std::io::Error| (ErrorCode::Internal, format!("cannot make a pipe: {e}"));
            let (reader, writer) = logs::pipe().map_err(io)?;
            let second = writer.try_clone().map_err(io)?;
            Ok((vec![open_null()?, writer, second], Some(reader)))
        }
        Stdio::Tty { keep, .. } => {
            let wanted = keep.iter().filter(|k| **k).count();
            if fds.len() == wanted {
                Ok((fds, None))
            } else {
                Err((
                    ErrorCode::InvalidRequest,
                    format!(
                        "a terminal run keeping {wanted} of its streams needs {wanted} fds \
                         attached to its frame; got {}",
                        fds.len()
                    ),
                ))
            }
        }
    }
}

fn open_null() -> Result<OwnedFd, Refusal> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map(OwnedFd::from)
        .map_err(|e| (ErrorCode::Internal, format!("open /dev/null: {e}")))
}

fn make_private_dir(path: &Path) -> Result<(), Refusal> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| {
            (
                ErrorCode::Setup,
                format!("cannot create folder {}: {e}", path.display()),
            )
        })
}

fn spawn_supervisor(control: UnixStream) -> Result<Child, Refusal> {
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("hutch-sandbox")
        .arg("supervise")
        .env_clear()
        .stdin(ProcStdio::null())
        .stdout(ProcStdio::null())
        .stderr(ProcStdio::null());
    sys::pass_fd_as(&mut cmd, OwnedFd::from(control), CONTROL_FD);
    cmd.spawn().map_err(|e| {
        (
            ErrorCode::Setup,
            format!("cannot start the sandbox supervisor: {e}"),
        )
    })
}

/// A supervisor whose sandbox namespaces exist, id maps are written and root base is built,
/// waiting for a plan.
#[derive(Debug)]
pub struct Prepared {
    id: String,
    dir: PathBuf,
    child: Child,
    rx: Receiver,
    key: PrepareKey,
    /// Its cgroup, when the helper has a delegated one.
    cgroup: Option<PathBuf>,
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
fn spawn_prepared(state: &State, key: &PrepareKey) -> Result<Prepared, Refusal> {
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
            return Err((ErrorCode::Setup, e.to_string()));
        }
    };
    let (ours, theirs) =
        UnixStream::pair().map_err(|e| (ErrorCode::Internal, format!("socketpair: {e}")))?;
    let mut child = match spawn_supervisor(theirs) {
        Ok(child) => child,
        Err(e) => {
            cleanup(&dir, cgroup.as_deref());
            return Err(e);
        }
    };
    let mut fail = |msg: String| {
        let _ = child.kill();
        let _ = child.wait();
        cleanup(&dir, cgroup.as_deref());
        (ErrorCode::Setup, msg)
    };
    let command = SupervisorCommand::Prepare {
        id_map: key.id_map.clone(),
        root: dir.join("root"),
        base_mounts: key.base_mounts.clone(),
        cgroup: cgroup.clone(),
    };
    if let Err(e) = channel::send(&ours, &command, &[]) {
        return Err(fail(format!("cannot reach the sandbox supervisor: {e}")));
    }
    let _ = ours.set_read_timeout(Some(SETUP_TIMEOUT));
    let mut rx = Receiver::new(ours);
    match rx.recv::<SupervisorEvent>() {
        Ok(SupervisorEvent::Ready) => {}
        Ok(SupervisorEvent::Failed { message }) => {
            return Err(fail(format!("sandbox setup failed: {message}")));
        }
        Ok(other) => return Err(fail(format!("unexpected supervisor event {other:?}"))),
        Err(e) => return Err(fail(format!("the supervisor did not report: {e}"))),
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

/// Keeps one prepared sandbox for the next launch, replacing any older one.
fn stash(state: &State, prepared: Prepared) {
    let old = state
        .prepared
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .replace(prepared);
    if let Some(old) = old {
        old.discard();
    }
}

/// Prepares the next sandbox in the background, so the next launch finds it ready: a thread
/// for the daemon's whole life, woken by [`Prewarmer::ask`], which prepares one sandbox
/// [`PREWARM_DELAY`] after it was asked (asks until then make one preparation), unless the
/// sandbox waiting still fits.
#[derive(Debug, Default)]
pub struct Prewarmer {
    asked: std::sync::Mutex<bool>,
    wake: std::sync::Condvar,
}

impl Prewarmer {
    /// Asks for a sandbox to be prepared (returns at once).
    pub fn ask(&self) {
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

    /// Starts the thread that prepares sandboxes for `state`.
    pub fn start(state: &Arc<State>) -> std::io::Result<()> {
        let state = Arc::clone(state);
        std::thread::Builder::new()
            .name("prewarm".into())
            .spawn(move || {
                loop {
                    state.prewarmer.wait();
                    std::thread::sleep(PREWARM_DELAY);
                    state.prewarmer.take();
                    let host = state.host.get();
                    let key = state.prepare_key.get(&host);
                    let stashed = state.prepared.lock().unwrap_or_else(|p| p.into_inner());
                    if stashed.as_ref().is_some_and(|p| p.key == key) {
                        // The one waiting still fits.
                        continue;
                    }
                    drop(stashed);
                    match spawn_prepared(&state, &key) {
                        Ok(prepared) => stash(&state, prepared),
                        Err((_, message)) => {
                            tracing::debug!(%message, "could not prepare a sandbox ahead")
                        }
                    }
                }
            })
            .map(drop)
    }
}

/// Ends the prepared sandbox, if any (on shutdown).
pub fn discard_prepared(state: &State) {
    let prepared = state
        .prepared
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(prepared) = prepared {
        prepared.discard();
    }
}

/// The prepared sandbox if it fits `key`, else a new one.
fn take_prepared(state: &State, key: &PrepareKey) -> Result<Prepared, Refusal> {
    let ready = state
        .prepared
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    match ready {
        Some(prepared) if prepared.key == *key => Ok(prepared),
        Some(stale) => {
            stale.discard();
            spawn_prepared(state, key)
        }
        None => spawn_prepared(state, key),
    }
}

/// Removes a sandbox's runtime folder and its cgroup, once its processes are gone.
pub(super) fn cleanup(dir: &Path, cgroup: Option<&Path>) {
    for name in files::ALL {
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path).or_else(|_| std::fs::remove_dir(&path));
    }
    let _ = std::fs::remove_dir(dir);
    if let Some(cg) = cgroup {
        Cgroups::remove(cg);
    }
}

/// The network as `hutch ps` shows it.
fn network_info(plan: &NetworkPlan) -> NetworkInfo {
    match plan {
        NetworkPlan::None => NetworkInfo {
            mode: NetworkMode::None,
            backend: None,
            up: true,
            publish: Vec::new(),
            host_loopback: false,
        },
        NetworkPlan::User {
            backend,
            allow_host_loopback,
            publish,
            ..
        } => NetworkInfo {
            mode: NetworkMode::User,
            backend: Some(backend.name().to_owned()),
            up: true,
            publish: publish.clone(),
            host_loopback: *allow_host_loopback,
        },
    }
}

/// Refuses a published port the host already uses, before anything starts.
fn check_published_ports(plan: &NetworkPlan) -> Result<(), Refusal> {
    let NetworkPlan::User { publish, .. } = plan else {
        return Ok(());
    };
    for forward in publish {
        if let Err(e) = std::net::TcpListener::bind((forward.host_addr, forward.host_port)) {
            let why = if e.kind() == std::io::ErrorKind::AddrInUse {
                "is already in use on the host: choose another host port".to_owned()
            } else {
                format!("cannot be opened on the host: {e}")
            };
            return Err((
                ErrorCode::InvalidRequest,
                format!(
                    "published port {}:{} {why}",
                    forward.host_addr, forward.host_port
                ),
            ));
        }
    }
    Ok(())
}

/// Starts a sandbox; returns once its app runs (with what is left to do after answering the
/// client), or why it could not.
/// `caller` is a pidfd of the client a sandbox is bound to ([`RunRequest::bound_to_caller`]).
pub fn launch(
    state: &Arc<State>,
    request: RunRequest,
    fds: Vec<OwnedFd>,
    caller: Option<OwnedFd>,
) -> Result<(Started, Follow), Refusal> {
    let running = state.registry.live_count();
    if running >= state.bounds.max_sandboxes {
        return Err((
            ErrorCode::InvalidRequest,
            format!(
                "{running} sandboxes are running, the most this helper runs at once \
                 (HUTCH_MAX_SANDBOXES={}): stop one first (`hutch ps`, `hutch stop ID`)",
                state.bounds.max_sandboxes
            ),
        ));
    }
    let profile = profiles::load(&state.profiles_dir, request.profile.as_deref())
        .map_err(|e| refuse(ErrorCode::Profile)(e.to_string()))?;
    let mut host = state.host.get();
    if profile
        .limits
        .overridden_by(&request.limits)
        .cpu_percent
        .is_some()
    {
        // The CPU limit is checked against the cores there are now.
        host.cores = host::cores();
    }
    let (stdio, log_reader) = stdio_for(&request, fds)?;
    // The supervisor keeps a copy of the output pipe's read end: the pipe outlives this daemon.
    let log_copy = log_reader
        .as_ref()
        .map(|r| r.try_clone().map(OwnedFd::from))
        .transpose()
        .map_err(|e| {
            (
                ErrorCode::Internal,
                format!("cannot copy the output pipe: {e}"),
            )
        })?;
    let key = state.prepare_key.get(&host);
    let base = key.base_mounts.clone();
    let prepared = take_prepared(state, &key)?;
    let built = plan::build(
        &prepared.id,
        prepared.dir.join("root"),
        &profile,
        &request,
        &host,
        base,
        &host::RealFs,
    );
    let mut plan = match built {
        Ok(plan) => plan,
        Err(e) => {
            // Nothing was started: the prepared sandbox serves the next launch.
            stash(state, prepared);
            return Err((ErrorCode::InvalidRequest, e.to_string()));
        }
    };
    for dir in &plan.prepare_dirs {
        if let Err(e) = make_private_dir(dir) {
            stash(state, prepared);
            return Err(e);
        }
    }
    if let Err(e) = check_published_ports(&plan.network) {
        stash(state, prepared);
        return Err(e);
    }
    match (&prepared.cgroup, &state.cgroups.mode) {
        (Some(cg), _) => {
            if let Err(e) = cgroup::apply_limits(cg, &plan.limits) {
                prepared.discard();
                return Err((ErrorCode::InvalidRequest, e.to_string()));
            }
        }
        (None, Mode::Degraded { reason }) if !plan.limits.is_empty() => {
            stash(state, prepared);
            return Err((
                ErrorCode::InvalidRequest,
                format!(
                    "limits need cgroup v2 delegation, which this helper does not have: {reason}. \
                     Run the helper as the systemd user service (Delegate=yes) on a system with \
                     the unified cgroup v2 hierarchy; `hutch doctor` shows the details"
                ),
            ));
        }
        _ => {}
    }
    let Prepared {
        id,
        dir: sandbox_dir,
        mut child,
        mut rx,
        cgroup: sandbox_cgroup,
        ..
    } = prepared;
    let info = SandboxInfo {
        id: id.clone(),
        profile: profile.name.clone(),
        pid: Some(child.id()),
        started_at_ms: now_ms(),
        command: plan.argv.clone(),
        state: SandboxState::Starting,
        id_map: plan.id_map.kind,
        exit: None,
        network: network_info(&plan.network),
    };
    let record = SandboxRecord {
        info: info.clone(),
        cgroup: sandbox_cgroup.clone(),
        landlock: None,
    };
    state.registry.insert(info);
    state.registry.set_cgroup(&id, sandbox_cgroup.clone());
    if let Some(reader) = log_reader {
        let log = logs::SharedLog::default();
        state.registry.set_log(&id, logs::SharedLog::clone(&log));
        logs::drain(id.clone(), reader, log);
    }
    let events = state.registry.listen(&id)?;
    let abandon = |child: &mut Child, msg: String| {
        let _ = child.kill();
        let _ = child.wait();
        state.registry.remove(&id);
        cleanup(&sandbox_dir, sandbox_cgroup.as_deref());
        (ErrorCode::Setup, msg)
    };
    // What is needed of the plan after it went to the supervisor (not cloned whole).
    let (tty, argv, id_map, warnings) = (
        plan.tty.is_some(),
        plan.argv.clone(),
        plan.id_map.kind,
        std::mem::take(&mut plan.warnings),
    );
    let command = SupervisorCommand::Launch {
        plan: Box::new(plan),
        record: Box::new(record),
        log: log_copy.is_some(),
        caller: caller.is_some(),
    };
    let fds: Vec<BorrowedFd<'_>> = stdio
        .iter()
        .chain(log_copy.as_ref())
        .chain(caller.as_ref())
        .map(|fd| fd.as_fd())
        .collect();
    if let Err(e) = channel::send(rx.stream(), &command, &fds) {
        return Err(abandon(
            &mut child,
            format!("cannot hand the plan to the supervisor: {e}"),
        ));
    }
    // The app holds the caller's stdio now; the helper keeps no copy.
    drop(fds);
    drop(stdio);
    drop(log_copy);
    let mut warnings = warnings;
    let (init_pid, app_pid, landlock) = loop {
        match rx.recv::<SupervisorEvent>() {
            Ok(SupervisorEvent::Started {
                init_pid,
                app_pid,
                landlock,
                notes,
            }) => {
                warnings.extend(notes);
                break (init_pid, app_pid, landlock);
            }
            Ok(SupervisorEvent::Failed { message }) => {
                return Err(abandon(
                    &mut child,
                    format!("sandbox setup failed: {message}"),
                ));
            }
            Ok(SupervisorEvent::NetworkDown { message }) => {
                // The stack died between coming up and the app's start; the app still
                // starts, and the sandbox is listed with its network down.
                tracing::warn!(%id, %message, "sandbox network is down");
                state.registry.network_down(&id, &message);
            }
            Ok(other) => {
                return Err(abandon(
                    &mut child,
                    format!("unexpected supervisor event {other:?}"),
                ));
            }
            Err(e) => {
                return Err(abandon(
                    &mut child,
                    format!("the supervisor did not report: {e}"),
                ));
            }
        }
    };
    let tty = tty.then(|| rx.take_fds(1).pop()).flatten();
    let _ = rx.stream().set_read_timeout(None);
    state.registry.started(&id, init_pid, app_pid, landlock);

    let follow = Follow {
        id: id.clone(),
        rx,
        child,
        dir: sandbox_dir,
        cgroup: sandbox_cgroup,
        profile: profile.name,
        argv,
        init_pid,
        app_pid,
    };
    let started = Started {
        id,
        pid: app_pid.unwrap_or(init_pid) as u32,
        id_map,
        warnings,
        tty,
        events,
    };
    Ok((started, follow))
}

/// Starts the thread that follows sandbox `id` through its supervisor's events ([`monitor`]).
pub(super) fn spawn_monitor(
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
    let left = super::adopt::read_exit(&dir);
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
