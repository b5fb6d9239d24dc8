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
use super::peer::PeerError;
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
    Peer { pid: i32, why: PeerError },
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
                | LaunchError::NotAStream { .. }
                | LaunchError::InheritFds { .. }
                | LaunchError::TerminalFds { .. }
                | LaunchError::Plan(_)
                | LaunchError::PortInUse { .. }
                | LaunchError::PortUnavailable { .. }
                | LaunchError::Limits(_)
                | LaunchError::NoDelegation { .. } => ErrorCode::InvalidRequest,
                LaunchError::DevNull(_)
                | LaunchError::Pipe(_)
                | LaunchError::CopyPipe(_)
                | LaunchError::Identity(_) => ErrorCode::Internal,
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
                hutch_core::limits::check_cpu(percent, crate::plan::host::cores())
                    .map_err(RequestError::Cpu)?;
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
            anatomy.security.user_namespaces = match &info.user_namespaces {
                Some(why) => format!("allowed: {why}"),
                None => "refused (seccomp)".into(),
            };
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

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;
    use std::path::PathBuf;

    use hutch_core::limits::Limits;
    use hutch_core::protocol::{IdMapKind, SandboxInfo, SandboxState};

    use super::super::pool::SupervisorError;
    use super::*;
    use crate::cgroup::{Cgroups, Mode};

    /// A daemon's state with no sandbox, in the degraded cgroup mode, whose folders (never
    /// created) are under a temporary folder of this test process.
    fn state() -> State {
        let dir = std::env::temp_dir().join(format!("hutch-dispatch-{}", std::process::id()));
        State {
            uid: nix::unistd::getuid().as_raw(),
            registry: Default::default(),
            runtime_dir: dir.join("runtime"),
            socket: dir.join("runtime/helper.sock"),
            profiles_dir: dir.join("profiles"),
            machine_ids_dir: dir.join("machine-ids"),
            host: crate::plan::host::FactsCache::new(Vec::new(), dir.join("homes")),
            socket_activated: false,
            cgroups: Cgroups {
                mode: Mode::Degraded {
                    reason: "a unit test".into(),
                },
            },
            prepare_key: Default::default(),
            pool: Default::default(),
            bounds: super::super::Bounds::DEFAULT,
            connections: Default::default(),
        }
    }

    /// A sandbox that is starting: listed, its pid 1 not known yet.
    fn starting(id: &str) -> SandboxInfo {
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

    /// A client's connection, for the fds a request brings (none here).
    fn client() -> (Receiver, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        (Receiver::new(ours), theirs)
    }

    fn refused(state: &State, request: Request) -> RequestError {
        let (mut rx, _peer) = client();
        match dispatch(state, request, &mut rx) {
            Ok(reply) => panic!("answered {reply:?}"),
            Err(e) => e,
        }
    }

    fn answered(state: &State, request: Request) -> Response {
        let (mut rx, _peer) = client();
        match dispatch(state, request, &mut rx) {
            Ok(Reply::Answer(response)) => response,
            other => panic!("no plain answer: {other:?}"),
        }
    }

    fn io() -> std::io::Error {
        std::io::Error::from_raw_os_error(libc::EACCES)
    }

    fn cgroup_error() -> CgroupError {
        CgroupError {
            what: "cannot write",
            path: PathBuf::from("/sys/fs/cgroup/x/cgroup.freeze"),
            err: io(),
        }
    }

    #[test]
    fn every_error_has_its_code() {
        let id = || "ab12".to_owned();
        let registry = |e: RegistryError| RequestError::Registry(e);
        let launch = |e: LaunchError| RequestError::Launch(e);
        let prepare = |e: PrepareError| launch(LaunchError::Prepare(e));
        let table: Vec<(RequestError, ErrorCode)> = vec![
            (RequestError::NotHello, ErrorCode::Handshake),
            (RequestError::HelloAgain, ErrorCode::Handshake),
            (
                RequestError::Version { protocol: 0 },
                ErrorCode::UnsupportedVersion,
            ),
            (
                RequestError::OtherUser { ours: 1, theirs: 2 },
                ErrorCode::Denied,
            ),
            (
                RequestError::Peer {
                    pid: 7,
                    why: PeerError::Refused("it runs inside a Hutch sandbox".into()),
                },
                ErrorCode::Denied,
            ),
            (RequestError::Busy { max: 1 }, ErrorCode::Denied),
            (
                RequestError::BadFrame(ChannelError::Stalled(3)),
                ErrorCode::BadFrame,
            ),
            (RequestError::WatchCaller(io()), ErrorCode::Internal),
            (RequestError::NotASignal(999), ErrorCode::InvalidRequest),
            (
                RequestError::NoCgroups { mode: "x".into() },
                ErrorCode::InvalidRequest,
            ),
            (RequestError::Freeze(cgroup_error()), ErrorCode::Internal),
            (
                RequestError::Cpu(LimitError::Cpu("lots".into())),
                ErrorCode::InvalidRequest,
            ),
            (
                RequestError::Limits(cgroup_error()),
                ErrorCode::InvalidRequest,
            ),
            (
                RequestError::Inspect {
                    id: id(),
                    err: io(),
                },
                ErrorCode::Internal,
            ),
            (
                RequestError::Counters {
                    id: id(),
                    err: io(),
                },
                ErrorCode::Internal,
            ),
            (RequestError::LostTrack { id: id() }, ErrorCode::Internal),
            (
                registry(RegistryError::NotLive { id: id() }),
                ErrorCode::NotFound,
            ),
            (
                registry(RegistryError::NoRunning { id: id() }),
                ErrorCode::NotFound,
            ),
            (
                registry(RegistryError::NoSandbox { id: id() }),
                ErrorCode::NotFound,
            ),
            (
                registry(RegistryError::Unknown { id: id() }),
                ErrorCode::NotFound,
            ),
            (
                registry(RegistryError::Exited { id: id() }),
                ErrorCode::NotFound,
            ),
            (
                registry(RegistryError::Ambiguous { id: id() }),
                ErrorCode::NotFound,
            ),
            (
                registry(RegistryError::NoLog { id: id() }),
                ErrorCode::InvalidRequest,
            ),
            (
                registry(RegistryError::Starting { id: id() }),
                ErrorCode::InvalidRequest,
            ),
            (
                registry(RegistryError::Signal {
                    id: id(),
                    err: io(),
                }),
                ErrorCode::Internal,
            ),
            (
                launch(LaunchError::TooMany { running: 2, max: 2 }),
                ErrorCode::InvalidRequest,
            ),
            (
                launch(LaunchError::Profile(
                    hutch_core::profile::ProfileError::NotFound {
                        name: "x".into(),
                        dir: "/p".into(),
                    },
                )),
                ErrorCode::Profile,
            ),
            (
                launch(LaunchError::InheritFds { got: 0 }),
                ErrorCode::InvalidRequest,
            ),
            (
                launch(LaunchError::TerminalFds { wanted: 1, got: 0 }),
                ErrorCode::InvalidRequest,
            ),
            (launch(LaunchError::DevNull(io())), ErrorCode::Internal),
            (launch(LaunchError::Pipe(io())), ErrorCode::Internal),
            (launch(LaunchError::CopyPipe(io())), ErrorCode::Internal),
            (
                launch(LaunchError::Identity(
                    super::super::identity::IdentityError::Random(io()),
                )),
                ErrorCode::Internal,
            ),
            (
                launch(LaunchError::Plan(crate::plan::PlanError::ShareInvalid(
                    "x".into(),
                ))),
                ErrorCode::InvalidRequest,
            ),
            (
                launch(LaunchError::PortInUse {
                    addr: [127, 0, 0, 1].into(),
                    port: 8080,
                }),
                ErrorCode::InvalidRequest,
            ),
            (
                launch(LaunchError::PortUnavailable {
                    addr: [127, 0, 0, 1].into(),
                    port: 80,
                    err: io(),
                }),
                ErrorCode::InvalidRequest,
            ),
            (
                launch(LaunchError::Limits(cgroup_error())),
                ErrorCode::InvalidRequest,
            ),
            (
                launch(LaunchError::NoDelegation { reason: "x".into() }),
                ErrorCode::InvalidRequest,
            ),
            (
                launch(LaunchError::Registry(RegistryError::Unknown { id: id() })),
                ErrorCode::NotFound,
            ),
            (
                launch(LaunchError::HandOver(ChannelError::Closed)),
                ErrorCode::Setup,
            ),
            (
                launch(LaunchError::Supervisor(SupervisorError::Failed("x".into()))),
                ErrorCode::Setup,
            ),
            (
                prepare(PrepareError::CreateFolder {
                    path: "/r".into(),
                    err: io(),
                }),
                ErrorCode::Setup,
            ),
            (
                prepare(PrepareError::Cgroup(cgroup_error())),
                ErrorCode::Setup,
            ),
            (prepare(PrepareError::Socketpair(io())), ErrorCode::Internal),
            (
                prepare(PrepareError::SpawnSupervisor(io())),
                ErrorCode::Setup,
            ),
            (
                prepare(PrepareError::Unreachable(ChannelError::Closed)),
                ErrorCode::Setup,
            ),
            (
                prepare(PrepareError::Supervisor(SupervisorError::Silent(
                    ChannelError::Closed,
                ))),
                ErrorCode::Setup,
            ),
        ];
        for (err, code) in &table {
            assert_eq!(err.code(), *code, "{err:?}");
            assert_eq!(
                err.response(),
                Response::Error {
                    code: *code,
                    message: err.to_string()
                }
            );
        }
    }

    #[test]
    fn messages_name_what_they_are_about() {
        let err = RequestError::Registry(RegistryError::NoRunning { id: "ab12".into() });
        assert_eq!(
            err.to_string(),
            "no running sandbox with id ab12 (see `hutch ps`)"
        );
        let err = RequestError::Launch(LaunchError::Prepare(PrepareError::CreateFolder {
            path: "/run/x".into(),
            err: io(),
        }));
        assert!(
            err.to_string()
                .starts_with("cannot create folder /run/x: Permission denied"),
            "{err}"
        );
        let err = RequestError::Launch(LaunchError::Supervisor(SupervisorError::unexpected(
            &crate::sandbox::SupervisorEvent::Failed {
                message: "no /usr".into(),
            },
        )));
        assert_eq!(err.to_string(), "sandbox setup failed: no /usr");
    }

    #[test]
    fn a_request_for_an_unknown_sandbox_is_not_found_and_names_its_id() {
        let state = state();
        let id = || "feedbeef".to_owned();
        let requests = [
            Request::Signal {
                id: id(),
                signal: 15,
            },
            Request::Stop {
                id: id(),
                grace_ms: None,
            },
            Request::Pause { id: id() },
            Request::Resume { id: id() },
            Request::Inspect { id: id() },
            Request::Stats { id: id() },
            Request::Processes { id: id() },
            Request::Limit {
                id: id(),
                limits: Limits::default(),
            },
            Request::Logs {
                id: id(),
                since: None,
            },
        ];
        for request in requests {
            let err = refused(&state, request.clone());
            assert_eq!(err.code(), ErrorCode::NotFound, "{request:?}: {err}");
            assert!(err.to_string().contains("feedbeef"), "{request:?}: {err}");
            assert!(!err.ends_connection());
        }
    }

    #[test]
    fn a_second_hello_is_refused_and_ends_the_connection() {
        let err = refused(
            &state(),
            Request::Hello {
                protocol: PROTOCOL_VERSION,
                client: "test".into(),
            },
        );
        assert_eq!(err.code(), ErrorCode::Handshake);
        assert_eq!(err.to_string(), "hello was already sent");
        assert!(err.ends_connection());
    }

    #[test]
    fn requests_about_a_starting_sandbox() {
        let state = state();
        state.registry.insert(starting("ab12cd34"));
        let Response::Sandboxes { sandboxes } = answered(&state, Request::List) else {
            panic!("not a list");
        };
        assert_eq!(sandboxes.len(), 1);
        // A prefix names it; a number that is no signal is refused before any is sent.
        let err = refused(
            &state,
            Request::Signal {
                id: "ab".into(),
                signal: 999,
            },
        );
        assert_eq!(err.code(), ErrorCode::InvalidRequest);
        assert_eq!(err.to_string(), "999 is not a signal number");
        for request in [
            Request::Signal {
                id: "ab".into(),
                signal: 15,
            },
            Request::Processes { id: "ab".into() },
            Request::Inspect { id: "ab".into() },
        ] {
            let err = refused(&state, request);
            assert_eq!(err.code(), ErrorCode::InvalidRequest);
            assert_eq!(err.to_string(), "sandbox ab12cd34 is still starting");
        }
        // Without delegation there is no cgroup to freeze.
        let err = refused(&state, Request::Pause { id: "ab".into() });
        assert_eq!(err.code(), ErrorCode::InvalidRequest);
        assert!(err.to_string().contains("a unit test"), "{err}");
        let err = refused(
            &state,
            Request::Logs {
                id: "ab".into(),
                since: None,
            },
        );
        assert_eq!(err.code(), ErrorCode::InvalidRequest);
        assert!(err.to_string().contains("keeps no log"), "{err}");
    }

    #[test]
    fn runs_refused_before_anything_starts() {
        let mut state = state();
        let run = |json: &str| Request::Run(Box::new(serde_json::from_str(json).unwrap()));
        let err = refused(
            &state,
            run(r#"{"profile":"no-such-profile","stdio":{"mode":"null"}}"#),
        );
        assert_eq!(err.code(), ErrorCode::Profile);
        assert!(err.to_string().contains("no-such-profile"), "{err}");
        // The built-in profile, but the caller's stdio did not come with the frame.
        let err = refused(&state, run(r#"{"stdio":{"mode":"inherit"}}"#));
        assert_eq!(err.code(), ErrorCode::InvalidRequest);
        assert!(err.to_string().ends_with("got 0"), "{err}");
        // No room for another sandbox.
        state.bounds.max_sandboxes = 1;
        state.registry.insert(starting("ab12cd34"));
        let err = refused(&state, run(r#"{"stdio":{"mode":"null"}}"#));
        assert_eq!(err.code(), ErrorCode::InvalidRequest);
        assert!(
            err.to_string().starts_with("1 sandboxes are running"),
            "{err}"
        );
        assert!(state.pool.supervisor_pid().is_none());
    }

    #[test]
    fn a_subscription_samples_within_bounds() {
        let state = state();
        let every = |interval_ms| {
            let (mut rx, _peer) = client();
            match dispatch(&state, Request::Subscribe { interval_ms }, &mut rx) {
                Ok(Reply::Subscribe { every }) => every,
                other => panic!("not a subscription: {other:?}"),
            }
        };
        assert_eq!(every(None), Duration::from_secs(1));
        assert_eq!(every(Some(5)), Duration::from_millis(100));
        assert_eq!(every(Some(60_000)), Duration::from_secs(10));
    }
}
