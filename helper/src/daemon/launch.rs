//! Turns a `Run` request into a running sandbox: profile, plan, stdio, and a freshly spawned
//! supervisor process (never a fork of this multi-threaded daemon).

use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio as ProcStdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hutch_core::protocol::{ErrorCode, IdMapKind, RunRequest, SandboxInfo, SandboxState, Stdio};

use super::State;
use super::registry::Refusal;
use crate::channel::{self, Receiver};
use crate::plan::{self, host};
use crate::profiles;
use crate::sandbox::SupervisorEvent;
use crate::sandbox::supervisor::CONTROL_FD;
use crate::sys;

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

/// The three stdio fds for the supervisor.
fn stdio_for(request: &RunRequest, mut fds: Vec<OwnedFd>) -> Result<[OwnedFd; 3], Refusal> {
    match request.stdio {
        Stdio::Inherit => {
            if fds.len() != 3 {
                return Err((
                    ErrorCode::InvalidRequest,
                    format!(
                        "a run with stdio \"inherit\" needs exactly 3 fds (stdin, stdout, stderr) \
                         attached to its frame; got {}",
                        fds.len()
                    ),
                ));
            }
            let err = fds.pop().expect("3 fds");
            let out = fds.pop().expect("3 fds");
            let inp = fds.pop().expect("3 fds");
            Ok([inp, out, err])
        }
        // The terminal is made inside the sandbox (its own devpts) and comes back with the
        // supervisor's Started event; the supervisor itself gets /dev/null.
        Stdio::Null | Stdio::Tty { .. } => {
            let null = |_| {
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/null")
                    .map(OwnedFd::from)
                    .map_err(|e| (ErrorCode::Internal, format!("open /dev/null: {e}")))
            };
            Ok([null(0)?, null(1)?, null(2)?])
        }
    }
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

fn spawn_supervisor(stdio: [OwnedFd; 3], control: UnixStream) -> Result<Child, Refusal> {
    let [inp, out, err] = stdio;
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("hutch-sandbox")
        .arg("supervise")
        .env_clear()
        .stdin(ProcStdio::from(inp))
        .stdout(ProcStdio::from(out))
        .stderr(ProcStdio::from(err));
    sys::pass_fd_as(&mut cmd, OwnedFd::from(control), CONTROL_FD);
    cmd.spawn().map_err(|e| {
        (
            ErrorCode::Setup,
            format!("cannot start the sandbox supervisor: {e}"),
        )
    })
}

fn cleanup(dir: &Path) {
    let _ = std::fs::remove_dir(dir.join("root"));
    let _ = std::fs::remove_dir(dir);
}

/// Starts a sandbox; returns once its app runs, or why it could not.
pub fn launch(
    state: &Arc<State>,
    request: RunRequest,
    fds: Vec<OwnedFd>,
) -> Result<Started, Refusal> {
    let profile = profiles::load(&state.profiles_dir, request.profile.as_deref())
        .map_err(|e| refuse(ErrorCode::Profile)(e.to_string()))?;
    let id = new_id();
    let sandbox_dir = state.runtime_dir.join("sandboxes").join(&id);
    let host = host::gather(state.private_dirs.clone(), state.homes_dir.clone());
    let plan = plan::build(
        &id,
        sandbox_dir.join("root"),
        &profile,
        &request,
        &host,
        &host::RealFs,
    )
    .map_err(|e| refuse(ErrorCode::InvalidRequest)(e.to_string()))?;
    let stdio = stdio_for(&request, fds)?;
    for dir in &plan.prepare_dirs {
        make_private_dir(dir)?;
    }
    make_private_dir(&plan.root)?;

    let (ours, theirs) =
        UnixStream::pair().map_err(|e| (ErrorCode::Internal, format!("socketpair: {e}")))?;
    let mut child = match spawn_supervisor(stdio, theirs) {
        Ok(child) => child,
        Err(e) => {
            cleanup(&sandbox_dir);
            return Err(e);
        }
    };
    let info = SandboxInfo {
        id: id.clone(),
        profile: profile.name.clone(),
        pid: Some(child.id()),
        started_at_ms: now_ms(),
        command: plan.argv.clone(),
        state: SandboxState::Starting,
        id_map: plan.id_map.kind,
        exit: None,
    };
    state.registry.insert(info);
    let abandon = |child: &mut Child, msg: String| {
        let _ = child.kill();
        let _ = child.wait();
        state.registry.remove(&id);
        cleanup(&sandbox_dir);
        (ErrorCode::Setup, msg)
    };
    if let Err(e) = channel::send(&ours, &plan, &[]) {
        return Err(abandon(
            &mut child,
            format!("cannot hand the plan to the supervisor: {e}"),
        ));
    }
    let _ = ours.set_read_timeout(Some(SETUP_TIMEOUT));
    let mut rx = Receiver::new(ours);
    let (init_pid, app_pid) = match rx.recv::<SupervisorEvent>() {
        Ok(SupervisorEvent::Started { init_pid, app_pid }) => (init_pid, app_pid),
        Ok(SupervisorEvent::Failed { message }) => {
            return Err(abandon(
                &mut child,
                format!("sandbox setup failed: {message}"),
            ));
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
    };
    let tty = plan.tty.and_then(|_| rx.take_fds(1).pop());
    let _ = rx.stream().set_read_timeout(None);
    state.registry.started(&id, init_pid, app_pid);
    tracing::info!(%id, profile = %profile.name, init_pid, ?app_pid, argv = ?plan.argv, "sandbox started");

    let monitor_state = Arc::clone(state);
    let monitor_id = id.clone();
    std::thread::Builder::new()
        .name(format!("sandbox-{id}"))
        .spawn(move || monitor(monitor_state, monitor_id, rx, child, sandbox_dir))
        .map_err(|e| {
            (
                ErrorCode::Internal,
                format!("cannot start monitor thread: {e}"),
            )
        })?;

    Ok(Started {
        id,
        pid: app_pid.unwrap_or(init_pid) as u32,
        id_map: plan.id_map.kind,
        warnings: plan.warnings,
        tty,
    })
}

/// Waits for the supervisor's last word and records the exit.
fn monitor(state: Arc<State>, id: String, mut rx: Receiver, mut child: Child, dir: PathBuf) {
    let mut status = None;
    loop {
        match rx.recv::<SupervisorEvent>() {
            Ok(SupervisorEvent::Exited { status: s }) => status = Some(s),
            Ok(SupervisorEvent::Failed { message }) => {
                tracing::warn!(%id, %message, "sandbox reported a failure");
            }
            Ok(SupervisorEvent::Started { .. }) => {}
            Err(_) => break,
        }
    }
    let waited = child.wait();
    let status = status.unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        match waited {
            Ok(s) if s.signal().is_some() => {
                hutch_core::protocol::ExitStatus::Signal(s.signal().unwrap_or(9))
            }
            Ok(s) => hutch_core::protocol::ExitStatus::Code(s.code().unwrap_or(1)),
            Err(_) => hutch_core::protocol::ExitStatus::Code(1),
        }
    });
    tracing::info!(%id, %status, "sandbox exited");
    cleanup(&dir);
    state.registry.finish(&id, status);
}
