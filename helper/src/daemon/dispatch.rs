//! What the daemon does for each request, decided in one place: [`dispatch`] matches every
//! request kind and returns a [`Reply`] (a plain answer, or the start of a stream the
//! connection then feeds) or a [`RequestError`], whose [`code`](RequestError::code) is the one
//! mapping of errors to the protocol's [`ErrorCode`]. Writing the answer is the connection's.

use std::os::fd::AsFd;
use std::time::Duration;

use hutch_client::channel::{ChannelError, Receiver};
use hutch_core::limits::LimitError;
use hutch_core::protocol::{ErrorCode, ExitStatus, PROTOCOL_VERSION, Request, Response};

use super::State;
use super::launch::{self, Follow, LaunchError, Started};
use super::pool::PrepareError;
use super::registry::{RegistryError, wait_exit};
use crate::cgroup::CgroupError;
use crate::doctor;

/// Default time between SIGTERM and SIGKILL for `stop`.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// What to send back for a request.
#[derive(Debug)]
pub enum Reply {
    /// One answer.
    Answer(Response),
    /// A started sandbox: `Started` (with the terminal's controller fd for a `tty` run), then
    /// the sandbox's events until its exit; the sandbox is followed whether or not the client
    /// is still there.
    Started(Box<(Started, Follow)>),
    /// `Done`, then the table of sandboxes, samples every `every` and events, until the client
    /// goes away.
    Subscribe { every: Duration },
}

/// Why a client's request (or its connection) is refused.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("the first request must be hello")]
    NotHello,
    #[error("hello was already sent")]
    HelloAgain,
    #[error(
        "client speaks protocol {protocol}, this helper speaks {PROTOCOL_VERSION}: \
         restart the helper with `hutch-helper` from the same Hutch version"
    )]
    Version { protocol: u32 },
    #[error("this helper serves uid {ours} only; you are uid {theirs}")]
    OtherUser { ours: u32, theirs: u32 },
    #[error("this helper refuses the client (pid {pid}): {why}")]
    Peer { pid: i32, why: String },
    #[error(
        "the helper serves at most {max} connections at once (HUTCH_MAX_CONNECTIONS): \
         close some clients and try again"
    )]
    Busy { max: usize },
    #[error(transparent)]
    BadFrame(ChannelError),
    #[error("cannot watch the client the sandbox is bound to: {0}")]
    WatchCaller(std::io::Error),
    #[error("{0} is not a signal number")]
    NotASignal(i32),
    /// How the helper's cgroups stand instead.
    #[error(
        "limits and pausing need cgroup v2 delegation, which this helper does not have: {mode}"
    )]
    NoCgroups { mode: String },
    #[error(transparent)]
    Freeze(CgroupError),
    #[error(transparent)]
    Cpu(LimitError),
    #[error(transparent)]
    Limits(CgroupError),
    #[error("cannot inspect sandbox {id}: {err}")]
    Inspect { id: String, err: std::io::Error },
    #[error("cannot read the counters of {id}: {err}")]
    Counters { id: String, err: std::io::Error },
    #[error("lost track of sandbox {id}")]
    LostTrack { id: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Launch(#[from] LaunchError),
}

impl RequestError {
    /// The code the protocol reports this error with: every error, and where it came from.
    pub fn code(&self) -> ErrorCode {
        fn registry(e: &RegistryError) -> ErrorCode {
            match e {
                RegistryError::NotLive { .. }
                | RegistryError::NoRunning { .. }
                | RegistryError::NoSandbox { .. }
                | RegistryError::Unknown { .. }
                | RegistryError::Exited { .. }
                | RegistryError::Ambiguous { .. } => ErrorCode::NotFound,
                RegistryError::NoLog { .. } | RegistryError::Starting { .. } => {
                    ErrorCode::InvalidRequest
                }
                RegistryError::Signal { .. } => ErrorCode::Internal,
            }
        }
        fn prepare(e: &PrepareError) -> ErrorCode {
            match e {
                PrepareError::Socketpair(_) => ErrorCode::Internal,
                PrepareError::CreateFolder { .. }
                | PrepareError::Cgroup(_)
                | PrepareError::SpawnSupervisor(_)
                | PrepareError::Unreachable(_)
                | PrepareError::Supervisor(_) => ErrorCode::Setup,
            }
        }
        fn launch(e: &LaunchError) -> ErrorCode {
            match e {
                LaunchError::Profile(_) => ErrorCode::Profile,
                LaunchError::TooMany { .. }
                | LaunchError::InheritFds { .. }
                | LaunchError::TerminalFds { .. }
                | LaunchError::Plan(_)
                | LaunchError::PortInUse { .. }
                | LaunchError::PortUnavailable { .. }
                | LaunchError::Limits(_)
                | LaunchError::NoDelegation { .. } => ErrorCode::InvalidRequest,
                LaunchError::DevNull(_) | LaunchError::Pipe(_) | LaunchError::CopyPipe(_) => {
                    ErrorCode::Internal
                }
                LaunchError::HandOver(_) | LaunchError::Supervisor(_) => ErrorCode::Setup,
                LaunchError::Prepare(e) => prepare(e),
                LaunchError::Registry(e) => registry(e),
            }
        }
        match self {
            Self::NotHello | Self::HelloAgain => ErrorCode::Handshake,
            Self::Version { .. } => ErrorCode::UnsupportedVersion,
            Self::OtherUser { .. } | Self::Peer { .. } | Self::Busy { .. } => ErrorCode::Denied,
            Self::BadFrame(_) => ErrorCode::BadFrame,
            Self::NotASignal(_) | Self::NoCgroups { .. } | Self::Cpu(_) | Self::Limits(_) => {
                ErrorCode::InvalidRequest
            }
            Self::WatchCaller(_)
            | Self::Freeze(_)
            | Self::Inspect { .. }
            | Self::Counters { .. }
            | Self::LostTrack { .. } => ErrorCode::Internal,
            Self::Registry(e) => registry(e),
            Self::Launch(e) => launch(e),
        }
    }

    /// Whether the connection is closed once the error is answered (the client is not let in,
    /// or does not follow the protocol).
    pub fn ends_connection(&self) -> bool {
        matches!(
            self,
            Self::NotHello
                | Self::HelloAgain
                | Self::Version { .. }
                | Self::OtherUser { .. }
                | Self::Peer { .. }
                | Self::Busy { .. }
                | Self::BadFrame(_)
        )
    }

    /// The error as the client receives it.
    pub fn response(&self) -> Response {
        Response::Error {
            code: self.code(),
            message: self.to_string(),
        }
    }
}

/// Decides one request after the handshake. `from` is the connection it came on: a `Run`
/// takes the fds sent with its frame and, bound to its caller, a pidfd of the client.
pub fn dispatch(
    state: &State,
    request: Request,
    from: &mut Receiver,
) -> Result<Reply, RequestError> {
    let answer = |response| Ok(Reply::Answer(response));
    match request {
        Request::Hello { .. } => Err(RequestError::HelloAgain),
        Request::Run(run) => {
            let fds = from.take_fds(3);
            let caller = if run.bound_to_caller {
                let fd = super::peer::caller_pidfd(from.stream().as_fd())
                    .map_err(RequestError::WatchCaller)?;
                Some(fd)
            } else {
                None
            };
            match launch::launch(state, *run, fds, caller) {
                Ok(started) => Ok(Reply::Started(Box::new(started))),
                Err(e) => {
                    let e = RequestError::from(e);
                    tracing::info!(code = ?e.code(), message = %e, "run refused");
                    Err(e)
                }
            }
        }
        Request::List => answer(Response::Sandboxes {
            sandboxes: state.registry.list(),
        }),
        Request::Signal { id, signal } => {
            let id = state.registry.resolve(&id)?;
            nix::sys::signal::Signal::try_from(signal)
                .map_err(|_| RequestError::NotASignal(signal))?;
            state.registry.signal(&id, signal, false)?;
            answer(Response::Signaled { id })
        }
        Request::Stop { id, grace_ms } => {
            let grace = grace_ms.map(Duration::from_millis).unwrap_or(DEFAULT_GRACE);
            let (id, status) = stop(state, &id, grace)?;
            answer(Response::Stopped { id, status })
        }
        Request::Doctor => answer(Response::Doctor {
            report: doctor::run(&doctor::Helper {
                cgroups: &state.cgroups.mode,
                runtime_dir: &state.runtime_dir,
                socket: &state.socket,
            }),
        }),
        Request::Subscribe { interval_ms } => Ok(Reply::Subscribe {
            every: Duration::from_millis(interval_ms.unwrap_or(1000).clamp(100, 10_000)),
        }),
        Request::Logs { id, since } => {
            let (id, log) = state.registry.log(&id)?;
            let log = super::logs::lock(&log);
            let (start, bytes) = log.read_from(since.unwrap_or(0));
            answer(Response::Logs {
                id,
                start,
                end: log.end(),
                text: String::from_utf8_lossy(&bytes).into_owned(),
                finished: log.closed(),
            })
        }
        Request::Processes { id } => {
            let id = state.registry.resolve(&id)?;
            let init = state.registry.init_pid(&id)?;
            answer(Response::Processes {
                processes: super::processes::list(init),
                id,
            })
        }
        Request::Limit { id, limits } => {
            let id = state.registry.resolve(&id)?;
            if let Some(percent) = limits.cpu_percent {
                let cores = std::thread::available_parallelism()
                    .map(|n| n.get() as u32)
                    .unwrap_or(1);
                hutch_core::limits::check_cpu(percent, cores).map_err(RequestError::Cpu)?;
            }
            let dir = cgroup_of(state, &id)?;
            crate::cgroup::apply_limits(&dir, &limits).map_err(RequestError::Limits)?;
            tracing::info!(%id, ?limits, "limits changed");
            answer(Response::Done { id })
        }
        Request::Pause { id } => answer(Response::Done {
            id: freeze(state, &id, true)?,
        }),
        Request::Resume { id } => answer(Response::Done {
            id: freeze(state, &id, false)?,
        }),
        Request::Inspect { id } => {
            let id = state.registry.resolve(&id)?;
            let info = state.registry.info(&id)?;
            let pid = info
                .pid
                .ok_or_else(|| RegistryError::Starting { id: id.clone() })?;
            let cgroup = state.registry.cgroup(&id)?;
            let landlock = state.registry.landlock(&id)?;
            let mut anatomy =
                super::inspect::inspect(&id, pid, info.id_map, info.network, cgroup.as_deref())
                    .map_err(|err| RequestError::Inspect {
                        id: id.clone(),
                        err,
                    })?;
            anatomy.security.landlock =
                landlock.unwrap_or_else(|| "not reported by the sandbox".into());
            answer(Response::Anatomy {
                anatomy: Box::new(anatomy),
            })
        }
        Request::Stats { id } => {
            let id = state.registry.resolve(&id)?;
            let init = state.registry.init_pid(&id)?;
            let cgroup = state.registry.cgroup(&id)?;
            let stats = super::stats::sample(&id, init, cgroup.as_deref())
                .map_err(|err| RequestError::Counters { id, err })?;
            answer(Response::Stats {
                stats: Box::new(stats),
            })
        }
    }
}

/// The cgroup of a running sandbox, or why limits cannot be had.
fn cgroup_of(state: &State, id: &str) -> Result<std::path::PathBuf, RequestError> {
    state
        .registry
        .cgroup(id)?
        .ok_or_else(|| RequestError::NoCgroups {
            mode: state.cgroups.mode.describe(),
        })
}

/// Pauses (freezes) or resumes a sandbox's cgroup; its full id.
fn freeze(state: &State, id: &str, pause: bool) -> Result<String, RequestError> {
    let id = state.registry.resolve(id)?;
    let dir = cgroup_of(state, &id)?;
    crate::cgroup::freeze(&dir, pause).map_err(RequestError::Freeze)?;
    state.registry.set_paused(&id, pause);
    Ok(id)
}

/// SIGTERM, then SIGKILL once `grace` is over; the full id and the exit status.
fn stop(state: &State, id: &str, grace: Duration) -> Result<(String, ExitStatus), RequestError> {
    let id = state.registry.resolve(id)?;
    let events = state.registry.listen(&id)?;
    state.registry.signal(&id, libc::SIGTERM, true)?;
    let status = match wait_exit(&events, Some(grace)) {
        Some(status) => status,
        None => {
            tracing::info!(%id, "grace period over, killing the sandbox");
            // It may have exited just now; the status still arrives below.
            let _ = state.registry.signal(&id, libc::SIGKILL, true);
            wait_exit(&events, None).ok_or_else(|| RequestError::LostTrack { id: id.clone() })?
        }
    };
    Ok((id, status))
}
