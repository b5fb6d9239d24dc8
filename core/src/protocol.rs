//! The messages between a client (`hutch` CLI or GUI) and `hutch-helper`.
//!
//! A connection starts with [`Request::Hello`]; the helper answers [`Response::Hello`] or an
//! error and closes. After that the client sends requests and the helper sends
//! [`ServerMessage`]s: a [`Response`] for each request, in order, and [`Event`]s at any time.
//! File descriptors (the caller's stdio for [`Request::Run`], a pseudo-terminal for `tty` runs)
//! travel beside the frame that names them, as `SCM_RIGHTS`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::anatomy::IdMapKind;
use crate::limits::Limits;
pub use crate::network::NetworkInfo;
use crate::network::{NetBackend, NetworkMode, PortForward};
use crate::profile::{DisplayMode, HomeMode, ShareMode};

/// Bumped on any incompatible change to these types.
pub const PROTOCOL_VERSION: u32 = 3;

/// What a client asks of the helper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Must be the first frame of every connection.
    Hello { protocol: u32, client: String },
    /// Start a sandbox.
    Run(Box<RunRequest>),
    /// List the sandboxes the helper knows.
    List,
    /// SIGTERM the sandbox, then SIGKILL after `grace_ms`; answered once it has exited.
    Stop {
        id: String,
        #[serde(default)]
        grace_ms: Option<u64>,
    },
    /// Deliver a signal to the sandboxed app (its pid 1 forwards it).
    Signal { id: String, signal: i32 },
    /// Run the system checks.
    Doctor,
    /// Current counters of a sandbox.
    Stats { id: String },
    /// Change limits of a running sandbox (only those given).
    Limit { id: String, limits: Limits },
    /// Freeze every process of a sandbox (cgroup.freeze).
    Pause { id: String },
    /// Thaw a paused sandbox.
    Resume { id: String },
    /// What a running sandbox is made of.
    Inspect { id: String },
    /// Send samples of every running sandbox every `interval_ms` (100 to 10000; default
    /// 1000), as [`Event::Samples`], plus OOM and limit events, until the connection closes.
    Subscribe {
        #[serde(default)]
        interval_ms: Option<u64>,
    },
    /// The output kept of a sandbox started with [`Stdio::Log`], from byte `since` of it on
    /// (default: all that is still kept). Works for recently exited sandboxes too.
    Logs {
        id: String,
        #[serde(default)]
        since: Option<u64>,
    },
    /// The processes inside a running sandbox.
    Processes { id: String },
}

/// How the sandboxed app gets its standard streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum Stdio {
    /// The three fds sent beside the `Run` frame become the app's stdin, stdout and stderr.
    Inherit,
    /// The helper makes a pseudo-terminal for the app and sends its controller side back with
    /// [`Response::Started`]; the client relays it to its own terminal. The streams `keep`
    /// marks (stdin, stdout, stderr) are instead the fds sent beside the `Run` frame, in that
    /// order: the client keeps its pipes and files, and the app never holds its terminal.
    Tty {
        rows: u16,
        cols: u16,
        #[serde(default)]
        keep: [bool; 3],
    },
    /// /dev/null for all three.
    Null,
    /// stdin is /dev/null; stdout and stderr go to a bounded log kept by the helper
    /// ([`Request::Logs`]), for apps started without a terminal (from the window).
    Log,
}

/// A shared path as given on the command line (`--share PATH[:ro|:rw][,sockets]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareSpec {
    pub path: String,
    pub mode: ShareMode,
    /// The Unix sockets in it stay reachable (see [`crate::profile::Share::sockets`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sockets: bool,
}

impl ShareSpec {
    /// A share of `path` with its sockets hidden.
    pub fn new(path: impl Into<String>, mode: ShareMode) -> Self {
        Self {
            path: path.into(),
            mode,
            sockets: false,
        }
    }

    /// Parses `PATH`, `PATH:ro`, `PATH:rw`, and either followed by `,sockets` (read-only
    /// when no mode is given; sockets hidden unless `sockets` is said).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let unknown = |what: &str| {
            format!(
                "share `{spec}`: unknown mode `{what}` (use PATH, PATH:ro or PATH:rw, and add \
                 `,sockets` to keep its Unix sockets reachable)"
            )
        };
        let (path, options) = match spec.rsplit_once(':') {
            Some((path, options)) if !options.contains('/') => (path, Some(options)),
            _ => (spec, None),
        };
        let mut mode = ShareMode::ReadOnly;
        let mut sockets = false;
        if let Some(options) = options {
            for (i, option) in options.split(',').enumerate() {
                match (i, option) {
                    (0, "ro") => mode = ShareMode::ReadOnly,
                    (0, "rw") => mode = ShareMode::ReadWrite,
                    (1.., "sockets") if !sockets => sockets = true,
                    (_, other) => return Err(unknown(other)),
                }
            }
        }
        if path.is_empty() {
            return Err(format!("share `{spec}`: the path is empty"));
        }
        Ok(Self {
            path: path.to_owned(),
            mode,
            sockets,
        })
    }
}

/// Everything needed to start one sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Profile name; `None` means the built-in default profile.
    #[serde(default)]
    pub profile: Option<String>,
    /// The command and its arguments; empty means the profile's `command`.
    #[serde(default)]
    pub command: Vec<String>,
    /// Paths shared on top of the profile's.
    #[serde(default)]
    pub shares: Vec<ShareSpec>,
    /// Overrides the profile's home mode.
    #[serde(default)]
    pub home: Option<HomeMode>,
    /// The client's environment; the helper keeps only its documented allowlist.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The client's working directory, used inside when it is shared.
    #[serde(default)]
    pub cwd: Option<String>,
    pub stdio: Stdio,
    /// Overrides the profile's network mode.
    #[serde(default)]
    pub net: Option<NetworkMode>,
    /// Overrides the profile's network backend.
    #[serde(default)]
    pub net_backend: Option<NetBackend>,
    /// Opens the host's loopback to the sandbox (on top of the profile's setting).
    #[serde(default)]
    pub allow_host_loopback: bool,
    /// Ports published on top of the profile's.
    #[serde(default)]
    pub publish: Vec<PortForward>,
    /// Limits on top of the profile's, one by one.
    #[serde(default)]
    pub limits: Limits,
    /// Overrides the profile's display permission.
    #[serde(default)]
    pub display: Option<DisplayMode>,
    /// Turns the sound server on (on top of the profile's).
    #[serde(default)]
    pub audio: bool,
    /// Turns the GPU on (on top of the profile's).
    #[serde(default)]
    pub gpu: bool,
    /// The sandbox lives no longer than the client that asks (a foreground `hutch run`): when
    /// that process ends, however it ends, the sandbox is stopped (SIGTERM, SIGKILL a second
    /// later), with or without a helper at that moment.
    #[serde(default)]
    pub bound_to_caller: bool,
}

/// Traffic counters of one network interface, or of several added up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetCounters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
}

/// One sample of a sandbox's counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxStats {
    pub id: String,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Every interface but loopback (traffic that left the sandbox or came in).
    pub net: NetCounters,
    /// Loopback inside the sandbox.
    pub loopback: NetCounters,
    /// `cgroup` (delegated) or `proc` (degraded mode: summed over the sandbox's processes).
    pub source: String,
    /// CPU time used so far, microseconds.
    pub cpu_usage_usec: u64,
    /// Memory in use, bytes (memory.current; resident set size in the degraded mode).
    pub memory_bytes: u64,
    /// Highest memory use seen (memory.peak), when the kernel reports it.
    #[serde(default)]
    pub memory_peak: Option<u64>,
    /// memory.max, when limited.
    #[serde(default)]
    pub memory_limit: Option<u64>,
    /// Processes and threads.
    pub pids: u64,
    #[serde(default)]
    pub pids_limit: Option<u64>,
    /// OOM kills so far (memory.events oom_kill).
    #[serde(default)]
    pub oom_kills: u64,
    /// Times the process limit refused a fork (pids.events max).
    #[serde(default)]
    pub pids_limit_hits: u64,
    /// Bytes read and written (io.stat), when the io controller is delegated.
    #[serde(default)]
    pub io_read_bytes: Option<u64>,
    #[serde(default)]
    pub io_write_bytes: Option<u64>,
    /// Pressure stall information, "some avg10" in percent: cpu, memory, io.
    #[serde(default)]
    pub pressure: Option<[f64; 3]>,
    /// Throttled periods under a CPU cap (cpu.stat nr_throttled).
    #[serde(default)]
    pub cpu_throttled: Option<u64>,
}

/// A sandbox's exit: the app's exit code, or the signal that killed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    /// The status a shell would report: the code, or 128 + the signal number.
    pub fn shell_code(self) -> i32 {
        match self {
            Self::Code(code) => code,
            Self::Signal(sig) => 128 + sig,
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Code(code) => write!(f, "exit code {code}"),
            Self::Signal(sig) => write!(f, "killed by signal {sig}"),
        }
    }
}

/// Where a sandbox is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxState {
    Starting,
    Running,
    Paused,
    Stopping,
    Exited,
}

/// One sandbox as `hutch ps` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxInfo {
    pub id: String,
    pub profile: String,
    /// Host pid of the app (or of the sandbox's pid 1 until the app has started).
    pub pid: Option<u32>,
    /// Milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    pub command: Vec<String>,
    pub state: SandboxState,
    pub id_map: IdMapKind,
    #[serde(default)]
    pub exit: Option<ExitStatus>,
    pub network: NetworkInfo,
    /// Why the app may make user namespaces (its own sandbox, or its profile), when it may.
    #[serde(default)]
    pub user_namespaces: Option<String>,
}

/// One process inside a sandbox, as `/proc` shows it from the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessInfo {
    /// Host pid.
    pub pid: u32,
    /// The pid the sandbox sees (its pid namespace).
    pub ns_pid: u32,
    /// Host pid of the parent.
    pub ppid: u32,
    /// The command name (`comm`).
    pub name: String,
    /// The arguments, when readable.
    #[serde(default)]
    pub cmdline: Vec<String>,
    /// `R`, `S`, `D`, `Z`, `T`...
    pub state: String,
    pub threads: u64,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// CPU time used so far, microseconds.
    pub cpu_usec: u64,
}

/// The result of one system check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Ok,
    Warn,
    Fail,
}

/// One line of `hutch doctor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// Stable identifier, e.g. `user_namespaces`.
    pub id: String,
    pub title: String,
    pub status: CheckStatus,
    pub detail: String,
    /// What to do about a warning or failure.
    #[serde(default)]
    pub fix: Option<String>,
}

/// The system checks the helper ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoctorReport {
    pub checks: Vec<Check>,
}

impl DoctorReport {
    /// The worst status among the checks.
    pub fn overall(&self) -> CheckStatus {
        let statuses = self.checks.iter().map(|c| c.status);
        if statuses.clone().any(|s| s == CheckStatus::Fail) {
            CheckStatus::Fail
        } else if statuses.clone().any(|s| s == CheckStatus::Warn) {
            CheckStatus::Warn
        } else {
            CheckStatus::Ok
        }
    }
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame could not be read (bad length, bad JSON, unknown request).
    BadFrame,
    /// The first frame was not `hello`, or `hello` came twice.
    Handshake,
    /// The client speaks another protocol version.
    UnsupportedVersion,
    /// The peer is not allowed (another uid).
    Denied,
    /// The named sandbox does not exist.
    NotFound,
    /// The profile is missing or invalid.
    Profile,
    /// The request itself is invalid (a missing shared path, an empty command...).
    InvalidRequest,
    /// The sandbox could not be set up.
    Setup,
    /// A fault inside the helper.
    Internal,
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    Hello {
        protocol: u32,
        helper_version: String,
        helper_pid: u32,
        /// Whether limits work (cgroup v2 delegation), and how the helper's cgroups stand.
        #[serde(default)]
        limits: bool,
        #[serde(default)]
        cgroups: String,
    },
    /// The app is running. With [`Stdio::Tty`], the terminal's controller fd is attached.
    Started {
        id: String,
        pid: u32,
        id_map: IdMapKind,
        /// Things the user should know (e.g. the single-uid fallback).
        #[serde(default)]
        warnings: Vec<String>,
    },
    Sandboxes {
        sandboxes: Vec<SandboxInfo>,
    },
    /// The sandbox stopped (answer to [`Request::Stop`]).
    Stopped {
        id: String,
        status: ExitStatus,
    },
    /// The signal was delivered.
    Signaled {
        id: String,
    },
    Doctor {
        report: DoctorReport,
    },
    Stats {
        stats: Box<SandboxStats>,
    },
    Anatomy {
        anatomy: Box<crate::anatomy::Anatomy>,
    },
    /// Output of a sandbox: bytes `start..end` of everything it wrote (older bytes were
    /// dropped from the bounded log when `start` is above the `since` asked for).
    Logs {
        id: String,
        start: u64,
        end: u64,
        text: String,
        /// The sandbox has exited: no more output will come.
        finished: bool,
    },
    Processes {
        id: String,
        processes: Vec<ProcessInfo>,
    },
    /// The limits were changed, or the sandbox paused or resumed.
    Done {
        id: String,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

/// Something that happened, sent without being asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// A sandbox this connection started has exited.
    Exited { id: String, status: ExitStatus },
    /// The user-mode network stack of a sandbox this connection started has died.
    NetworkDown { id: String, message: String },
    /// One sample of every running sandbox (for subscribers).
    Samples { samples: Vec<SandboxStats> },
    /// The kernel killed processes of a sandbox for memory (its memory limit).
    OutOfMemory { id: String, kills: u64 },
    /// A fork in a sandbox was refused by its process limit.
    ProcessLimit { id: String, hits: u64 },
    /// The table of sandboxes (as [`Request::List`] answers), sent to subscribers when they
    /// subscribe and whenever a sandbox starts, changes state or exits.
    Sandboxes { sandboxes: Vec<SandboxInfo> },
}

/// Every frame the helper sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerMessage {
    Response(Response),
    Event(Event),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_spec_parses_modes() {
        assert_eq!(
            ShareSpec::parse("/data:rw").unwrap(),
            ShareSpec::new("/data", ShareMode::ReadWrite)
        );
        let with_sockets = ShareSpec::parse("/data:rw,sockets").unwrap();
        assert_eq!(
            (with_sockets.mode, with_sockets.sockets),
            (ShareMode::ReadWrite, true)
        );
        assert!(ShareSpec::parse("/data:ro,sockets").unwrap().sockets);
        assert!(!ShareSpec::parse("/data:ro").unwrap().sockets);
        for bad in [
            "/data:sockets",
            "/data:rw,sockets,sockets",
            "/data:rw,socket",
        ] {
            assert!(ShareSpec::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            ShareSpec::parse("/data:ro").unwrap().mode,
            ShareMode::ReadOnly
        );
        assert_eq!(ShareSpec::parse("/data").unwrap().mode, ShareMode::ReadOnly);
        // A colon inside a path is kept when what follows it is a path, not a mode.
        assert_eq!(ShareSpec::parse("/a:b/c").unwrap().path, "/a:b/c");
        let err = ShareSpec::parse("/data:rx").unwrap_err();
        assert!(err.contains("unknown mode `rx`"), "{err}");
        assert!(ShareSpec::parse(":rw").is_err());
    }

    #[test]
    fn requests_have_a_stable_wire_form() {
        let json = serde_json::to_string(&Request::Stop {
            id: "ab12".into(),
            grace_ms: None,
        })
        .unwrap();
        assert_eq!(json, r#"{"type":"stop","id":"ab12","grace_ms":null}"#);
        let run: Request = serde_json::from_str(
            r#"{"type":"run","command":["true"],"stdio":{"mode":"tty","rows":24,"cols":80}}"#,
        )
        .unwrap();
        let Request::Run(run) = run else {
            panic!("not a run request")
        };
        assert_eq!(
            run.stdio,
            Stdio::Tty {
                rows: 24,
                cols: 80,
                keep: [false; 3]
            }
        );
        assert!(run.shares.is_empty() && run.profile.is_none());
    }

    #[test]
    fn unknown_fields_and_requests_are_refused() {
        assert!(serde_json::from_str::<Request>(r#"{"type":"stop","id":"a","x":1}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"type":"reboot"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"[1,2,3]"#).is_err());
    }

    #[test]
    fn server_messages_round_trip() {
        let msgs = [
            ServerMessage::Event(Event::Exited {
                id: "x".into(),
                status: ExitStatus::Signal(9),
            }),
            ServerMessage::Response(Response::Error {
                code: ErrorCode::Profile,
                message: "bad".into(),
            }),
        ];
        for msg in msgs {
            let json = serde_json::to_string(&msg).unwrap();
            assert_eq!(serde_json::from_str::<ServerMessage>(&json).unwrap(), msg);
        }
    }

    #[test]
    fn exit_status_maps_to_shell_codes() {
        assert_eq!(ExitStatus::Code(3).shell_code(), 3);
        assert_eq!(ExitStatus::Signal(15).shell_code(), 143);
        assert_eq!(ExitStatus::Signal(9).to_string(), "killed by signal 9");
    }

    #[test]
    fn doctor_overall_is_the_worst_check() {
        let check = |status| Check {
            id: "x".into(),
            title: "x".into(),
            status,
            detail: String::new(),
            fix: None,
        };
        let mut report = DoctorReport {
            checks: vec![check(CheckStatus::Ok)],
        };
        assert_eq!(report.overall(), CheckStatus::Ok);
        report.checks.push(check(CheckStatus::Warn));
        assert_eq!(report.overall(), CheckStatus::Warn);
        report.checks.push(check(CheckStatus::Fail));
        assert_eq!(report.overall(), CheckStatus::Fail);
    }
}
