//! Turns a `Run` request into a running sandbox: profile, plan, stdio, and the prepared
//! supervisor process from the [`pool`](super::pool) (a freshly spawned process, never a fork
//! of this multi-threaded daemon). Once the client has its answer, the sandbox is followed by
//! its [`monitor`](super::monitor).

use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::process::Child;
use std::sync::Arc;

use hutch_core::protocol::{ExitStatus, IdMapKind, RunRequest, SandboxInfo, SandboxState, Stdio};

use super::State;
use super::identity::{self, IdentityError};
use super::logs;
use super::monitor::{cleanup, spawn_monitor};
use super::pool::{self, PrepareError, Prepared, SupervisorError};
use super::registry::RegistryError;
use crate::cgroup::{self, CgroupError, Mode};
use crate::plan::NetworkPlan;
use crate::plan::{self, PlanError, host};
use crate::sandbox::{SandboxRecord, SupervisorCommand, SupervisorEvent};
use hutch_client::channel::{self, ChannelError, Receiver};
use hutch_client::profiles;
use hutch_core::network::NetworkMode;
use hutch_core::profile::ProfileError;
use hutch_core::protocol::NetworkInfo;

/// Why a sandbox could not be launched.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(
        "{running} sandboxes are running, the most this helper runs at once \
         (HUTCH_MAX_SANDBOXES={max}): stop one first (`hutch ps`, `hutch stop ID`)"
    )]
    TooMany { running: usize, max: usize },
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(
        "a run with stdio \"inherit\" needs exactly 3 fds (stdin, stdout, stderr) \
         attached to its frame; got {got}"
    )]
    InheritFds { got: usize },
    #[error(
        "a terminal run keeping {wanted} of its streams needs {wanted} fds \
         attached to its frame; got {got}"
    )]
    TerminalFds { wanted: usize, got: usize },
    #[error(
        "the app's {stream} is {what}: a sandbox's standard streams may be pipes, files or \
         terminals (a folder held open is a way into it). Share the folder instead: \
         --share PATH"
    )]
    NotAStream {
        stream: &'static str,
        what: &'static str,
    },
    #[error("open /dev/null: {0}")]
    DevNull(std::io::Error),
    #[error("cannot make a pipe: {0}")]
    Pipe(std::io::Error),
    #[error("cannot copy the output pipe: {0}")]
    CopyPipe(std::io::Error),
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("published port {addr}:{port} is already in use on the host: choose another host port")]
    PortInUse { addr: IpAddr, port: u16 },
    #[error("published port {addr}:{port} cannot be opened on the host: {err}")]
    PortUnavailable {
        addr: IpAddr,
        port: u16,
        err: std::io::Error,
    },
    #[error(transparent)]
    Limits(#[from] CgroupError),
    #[error(
        "limits need cgroup v2 delegation, which this helper does not have: {reason}. \
         Run the helper as the systemd user service (Delegate=yes) on a system with \
         the unified cgroup v2 hierarchy; `hutch doctor` shows the details"
    )]
    NoDelegation { reason: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("cannot hand the plan to the supervisor: {0}")]
    HandOver(ChannelError),
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
}

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
        state.pool.ask();
    }
}

/// The app's stdin, stdout and stderr: the caller's fds, /dev/null, a pipe to the helper's
/// log (its read end is returned beside them), or none for a terminal (made inside the
/// sandbox, in its own devpts, and sent back with `Started`).
fn stdio_for(
    request: &RunRequest,
    fds: Vec<OwnedFd>,
) -> Result<(Vec<OwnedFd>, Option<std::fs::File>), LaunchError> {
    match request.stdio {
        Stdio::Inherit if fds.len() == 3 => {
            check_streams(&fds, [true; 3])?;
            Ok((fds, None))
        }
        Stdio::Inherit => Err(LaunchError::InheritFds { got: fds.len() }),
        Stdio::Null => Ok(((0..3).map(|_| open_null()).collect::<Result<_, _>>()?, None)),
        Stdio::Log => {
            let (reader, writer) = logs::pipe().map_err(LaunchError::Pipe)?;
            let second = writer.try_clone().map_err(LaunchError::Pipe)?;
            Ok((vec![open_null()?, writer, second], Some(reader)))
        }
        Stdio::Tty { keep, .. } => {
            let wanted = keep.iter().filter(|k| **k).count();
            if fds.len() == wanted {
                check_streams(&fds, keep)?;
                Ok((fds, None))
            } else {
                Err(LaunchError::TerminalFds {
                    wanted,
                    got: fds.len(),
                })
            }
        }
    }
}

/// Refuses a caller's fd that is no stream: a folder, or a descriptor opened only for its path
/// (`O_PATH`), which the app could open anew as the file or folder it names, or go into.
/// `given` marks which of stdin, stdout and stderr the fds are, in order.
fn check_streams(fds: &[OwnedFd], given: [bool; 3]) -> Result<(), LaunchError> {
    let names = ["stdin", "stdout", "stderr"];
    let streams = names.iter().zip(given).filter(|(_, g)| *g).map(|(n, _)| *n);
    for (fd, stream) in fds.iter().zip(streams) {
        let path_only = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)
            .map(|flags| {
                nix::fcntl::OFlag::from_bits_retain(flags).contains(nix::fcntl::OFlag::O_PATH)
            })
            .unwrap_or(true);
        let folder = nix::sys::stat::fstat(fd)
            .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
            .unwrap_or(true);
        if folder || path_only {
            return Err(LaunchError::NotAStream {
                stream,
                what: if folder {
                    "a folder"
                } else {
                    "a descriptor opened only for its path (O_PATH)"
                },
            });
        }
    }
    Ok(())
}

fn open_null() -> Result<OwnedFd, LaunchError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map(OwnedFd::from)
        .map_err(LaunchError::DevNull)
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
fn check_published_ports(plan: &NetworkPlan) -> Result<(), LaunchError> {
    let NetworkPlan::User { publish, .. } = plan else {
        return Ok(());
    };
    for forward in publish {
        if let Err(err) = std::net::TcpListener::bind((forward.host_addr, forward.host_port)) {
            let (addr, port) = (forward.host_addr, forward.host_port);
            return Err(if err.kind() == std::io::ErrorKind::AddrInUse {
                LaunchError::PortInUse { addr, port }
            } else {
                LaunchError::PortUnavailable { addr, port, err }
            });
        }
    }
    Ok(())
}

/// Starts a sandbox; returns once its app runs (with what is left to do after answering the
/// client), or why it could not.
/// `caller` is a pidfd of the client a sandbox is bound to ([`RunRequest::bound_to_caller`]).
pub fn launch(
    state: &State,
    request: RunRequest,
    fds: Vec<OwnedFd>,
    caller: Option<OwnedFd>,
) -> Result<(Started, Follow), LaunchError> {
    let running = state.registry.live_count();
    if running >= state.bounds.max_sandboxes {
        return Err(LaunchError::TooMany {
            running,
            max: state.bounds.max_sandboxes,
        });
    }
    let profile = profiles::load(&state.profiles_dir, request.profile.as_deref())?;
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
        .map_err(LaunchError::CopyPipe)?;
    let key = state.prepare_key.get(&host);
    let base = key.base_mounts.clone();
    // Until the plan goes to it, nothing is started in the prepared sandbox: a launch refused
    // before that drops `taken`, which keeps it for the next launch.
    let taken = state.pool.take(state, &key)?;
    let machine_id = identity::machine_id(&state.machine_ids_dir, &profile.name)?;
    let root = taken.get().dir.join("root");
    let chosen = plan::Chosen {
        id: &taken.get().id,
        root: &root,
        machine_id: &machine_id,
    };
    let mut plan = plan::build(chosen, &profile, &request, &host, base, &host::RealFs)?;
    for dir in &plan.prepare_dirs {
        pool::make_private_dir(dir)?;
    }
    check_published_ports(&plan.network)?;
    match (&taken.get().cgroup, &state.cgroups.mode) {
        (Some(cg), _) => {
            if let Err(e) = cgroup::apply_limits(cg, &plan.limits) {
                // Its cgroup has some of this launch's limits now: it fits no other.
                taken.discard();
                return Err(e.into());
            }
        }
        (None, Mode::Degraded { reason }) if !plan.limits.is_empty() => {
            return Err(LaunchError::NoDelegation {
                reason: reason.clone(),
            });
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
    } = taken.launch();
    let info = SandboxInfo {
        id: id.clone(),
        profile: profile.name.clone(),
        pid: Some(child.id()),
        started_at_ms: hutch_client::now_ms(),
        command: plan.argv.clone(),
        state: SandboxState::Starting,
        id_map: plan.id_map.kind,
        exit: None,
        network: network_info(&plan.network),
        user_namespaces: plan.user_namespaces.clone(),
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
    let abandon = |child: &mut Child, err: LaunchError| {
        let _ = child.kill();
        let _ = child.wait();
        state.registry.remove(&id);
        cleanup(&sandbox_dir, sandbox_cgroup.as_deref());
        err
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
        return Err(abandon(&mut child, LaunchError::HandOver(e)));
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
            Ok(SupervisorEvent::NetworkDown { message }) => {
                // The stack died between coming up and the app's start; the app still
                // starts, and the sandbox is listed with its network down.
                tracing::warn!(%id, %message, "sandbox network is down");
                state.registry.network_down(&id, &message);
            }
            Ok(other) => {
                return Err(abandon(
                    &mut child,
                    SupervisorError::unexpected(&other).into(),
                ));
            }
            Err(e) => {
                return Err(abandon(&mut child, SupervisorError::Silent(e).into()));
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
