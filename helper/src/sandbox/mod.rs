//! The sandbox, built step by step from a [`SandboxPlan`](crate::plan::SandboxPlan).
//!
//! Process chain (none of it runs in the multi-threaded daemon):
//!
//! ```text
//! hutch-helper (daemon) --spawn--> hutch-helper supervise   fresh, single-threaded process
//!                                   | clone(NEWUSER|NEWNS|NEWPID|NEWIPC|NEWUTS|NEWNET|NEWCGROUP)
//!                                   | writes the id maps (idmap), then lets the child go
//!                                   v
//!                                 pid 1 (init): root (rootfs), hostname, loopback, reaper
//!                                   | fork (while the sandbox is prepared)
//!                                   v
//!                                 app (exec): setsid, no_new_privs, no capabilities, the base
//!                                   seccomp filters; waits for its launch; then stdio, cwd,
//!                                   fds closed, Landlock, the profile's filter, execve
//! ```
//!
//! pid 1 reports to the supervisor ([`InitReport`]) and the supervisor to the daemon
//! ([`SupervisorEvent`]), both as frames on Unix sockets, so that a terminal made inside the
//! sandbox can travel back to the client beside them.

pub mod exec;
pub mod idmap;
pub(crate) mod init;
pub(crate) mod landlock;
pub(crate) mod mounts;
pub(crate) mod network;
pub(crate) mod rootfs;
pub mod seccomp;
pub(crate) mod sockets;
pub mod supervisor;

use hutch_core::protocol::ExitStatus;
use serde::{Deserialize, Serialize};

/// The namespaces every sandbox gets.
pub const NAMESPACES: nix::sched::CloneFlags = nix::sched::CloneFlags::CLONE_NEWUSER
    .union(nix::sched::CloneFlags::CLONE_NEWNS)
    .union(nix::sched::CloneFlags::CLONE_NEWPID)
    .union(nix::sched::CloneFlags::CLONE_NEWIPC)
    .union(nix::sched::CloneFlags::CLONE_NEWUTS)
    .union(nix::sched::CloneFlags::CLONE_NEWNET)
    .union(nix::sched::CloneFlags::CLONE_NEWCGROUP);

/// Exit code of pid 1 when the sandbox could not be set up (as docker/podman use 125).
pub const SETUP_FAILED_CODE: i32 = 125;

/// The supervisor to pid 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitCommand {
    /// The id maps are written: build the base of the root on `root`.
    Prepare {
        root: std::path::PathBuf,
        base_mounts: Vec<crate::plan::MountOp>,
        /// pid 1 was moved into its own cgroup: make that the root of its cgroup namespace.
        cgroup_ns: bool,
    },
    /// Finish the root and start the app (stdio attached unless it gets a terminal).
    Launch(Box<crate::plan::SandboxPlan>),
}

/// pid 1 (and the app before exec) to the supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitReport {
    /// The base of the root is built and the app's process is ready; waiting for the plan.
    /// (Also the app's process to pid 1: ready, waiting for its launch.)
    Prepared,
    /// The app has exec'd; its pid inside the sandbox. With a terminal, its controller fd is
    /// attached.
    Running {
        app_pid: i32,
        /// How far Landlock confines the app.
        #[serde(default)]
        landlock: Option<String>,
        /// What the launch is told (the sockets hidden in shared folders).
        #[serde(default)]
        notes: Vec<String>,
    },
    /// From the app just before exec: its confinement took effect (Landlock's status).
    Confined {
        landlock: String,
    },
    SetupFailed {
        message: String,
    },
    Exited {
        status: ExitStatus,
    },
}

/// The daemon to a supervisor, in this order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SupervisorCommand {
    /// Make the namespaces and write the id maps now; the plan follows later (a pre-made,
    /// idle sandbox takes the id-map cost off the launch).
    Prepare {
        id_map: crate::plan::IdMapPlan,
        /// Host folder for the root, and the part of the root built ahead on it.
        root: std::path::PathBuf,
        base_mounts: Vec<crate::plan::MountOp>,
        /// The sandbox's own cgroup, when the helper has a delegated one.
        cgroup: Option<std::path::PathBuf>,
    },
    /// Build this sandbox in the prepared namespaces. The app's stdin, stdout and stderr are
    /// attached, unless it gets a terminal.
    Launch {
        plan: Box<crate::plan::SandboxPlan>,
        /// What the daemon knows of this sandbox, kept by the supervisor for the next daemon
        /// (after a crash of this one).
        record: Box<SandboxRecord>,
        /// The read end of the app's output pipe ([`Stdio::Log`]) comes after the stdio fds:
        /// the supervisor keeps it, so the pipe outlives the daemon.
        ///
        /// [`Stdio::Log`]: hutch_core::protocol::Stdio::Log
        log: bool,
        /// A pidfd of the client the sandbox is bound to comes last: when that process ends,
        /// the supervisor stops the sandbox (whether or not a daemon is there).
        #[serde(default)]
        caller: bool,
    },
}

/// A sandbox as the daemon lists it, kept by its supervisor so that a daemon started after a
/// crash of the previous one can take the sandbox over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub info: hutch_core::protocol::SandboxInfo,
    /// Its cgroup folder, when the daemon had a delegated one.
    pub cgroup: Option<std::path::PathBuf>,
    /// How far Landlock confines the app (known once it runs).
    #[serde(default)]
    pub landlock: Option<String>,
}

/// What a supervisor leaves in its runtime folder (`$XDG_RUNTIME_DIR/hutch/sandboxes/ID`).
pub mod files {
    /// The supervisor listens here for the next daemon once the app runs.
    pub const SOCKET: &str = "supervisor.sock";
    /// Locked by the supervisor for its whole life: a folder whose lock is free has none.
    pub const LOCK: &str = "supervisor.lock";
    /// The record and the exit status of a sandbox that ended while no daemon listened.
    pub const EXIT: &str = "exit.json";
    /// Output of a [`Stdio::Log`] app while no daemon drained its pipe.
    ///
    /// [`Stdio::Log`]: hutch_core::protocol::Stdio::Log
    pub const OUTPUT: &str = "output.log";
    /// Everything a sandbox's folder may hold, its root folder last.
    pub const ALL: &[&str] = &[
        SOCKET,
        LOCK,
        EXIT,
        OUTPUT,
        "exit.json.new",
        "slirp4netns.sock",
        "pasta.pid",
        "root",
    ];
}

/// The contents of [`files::EXIT`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub record: SandboxRecord,
    pub status: ExitStatus,
    /// Bytes of output dropped because [`files::OUTPUT`] was full.
    #[serde(default)]
    pub lost_output: u64,
}

/// The supervisor to the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SupervisorEvent {
    /// The namespaces exist and the id maps are written: ready for a plan.
    Ready,
    /// The app runs. Host pids of the sandbox's pid 1 and of the app. With a terminal, its
    /// controller fd is attached.
    Started {
        init_pid: i32,
        app_pid: Option<i32>,
        #[serde(default)]
        landlock: Option<String>,
        /// What the launch is told (the sockets hidden in shared folders).
        #[serde(default)]
        notes: Vec<String>,
    },
    /// Nothing runs: the sandbox could not be set up.
    Failed {
        message: String,
    },
    Exited {
        status: ExitStatus,
    },
    /// The user-mode network stack died; the app runs on without a network.
    NetworkDown {
        message: String,
    },
    /// To a daemon that connected to [`files::SOCKET`]: this sandbox is yours now. pid 1's
    /// pidfd is attached, then the read end of the output pipe when `log`. The app's exit
    /// follows as [`SupervisorEvent::Exited`], as for the daemon that started it.
    Adopted {
        record: Box<SandboxRecord>,
        init_pid: i32,
        app_pid: Option<i32>,
        network_down: Option<String>,
        log: bool,
        /// Output saved in [`files::OUTPUT`] while no daemon drained it, and bytes lost beyond
        /// what that file keeps.
        lost_output: u64,
    },
}

/// One failed setup step, naming what was attempted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct SetupError {
    pub what: String,
    pub reason: String,
}

impl SetupError {
    pub fn new(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
    pub fn io(what: String, err: std::io::Error) -> Self {
        Self::new(what, err)
    }
}
