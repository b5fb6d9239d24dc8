//! The daemon: one per user, listening on `$XDG_RUNTIME_DIR/hutch/helper.sock`.

pub(crate) mod adopt;
pub(crate) mod connection;
pub(crate) mod dispatch;
pub(crate) mod identity;
pub(crate) mod inspect;
pub(crate) mod launch;
pub(crate) mod logs;
pub(crate) mod monitor;
pub(crate) mod peer;
pub(crate) mod pool;
pub(crate) mod prepare_key;
pub(crate) mod processes;
pub(crate) mod registry;
pub(crate) mod stats;

use std::fs::{DirBuilder, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::{Flock, FlockArg};

use hutch_client::paths;

/// What the daemon shares between its threads.
#[derive(Debug)]
pub struct State {
    pub uid: u32,
    pub registry: registry::Registry,
    pub runtime_dir: PathBuf,
    pub socket: PathBuf,
    pub profiles_dir: PathBuf,
    /// Each profile's machine id (`identity`).
    pub machine_ids_dir: PathBuf,
    /// The facts about the user and the host that plans are built from (with the folders a
    /// sandbox may never see, and where persistent homes live).
    pub host: crate::plan::host::FactsCache,
    /// The socket came from systemd (socket activation): it is systemd's to remove.
    pub socket_activated: bool,
    /// cgroup v2 delegation (or the degraded mode).
    pub cgroups: crate::cgroup::Cgroups,
    /// The key of the sandbox the next launch needs, kept while the host does not change.
    pub prepare_key: prepare_key::KeyCache,
    /// The sandbox prepared ahead (namespaces made, id maps written) for the next launch, and
    /// the thread that prepares it.
    pub pool: pool::Pool,
    /// What one user's clients may use of this helper.
    pub bounds: Bounds,
    /// Connections being served.
    pub connections: std::sync::atomic::AtomicUsize,
}

impl State {
    /// The pids every process in one of this helper's sandboxes descends from (the prepared
    /// sandbox's supervisor too): a client below one of them runs inside a sandbox.
    pub fn supervisor_pids(&self) -> Vec<i32> {
        let mut pids = self.registry.ancestors();
        pids.extend(self.pool.supervisor_pid());
        pids
    }
}

/// Bounds on what clients may use, from the environment (`HUTCH_MAX_SANDBOXES`,
/// `HUTCH_MAX_CONNECTIONS`, `HUTCH_FRAME_TIMEOUT_MS`) or the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Sandboxes running at once.
    pub max_sandboxes: usize,
    /// Connections served at once; more are refused with an error.
    pub max_connections: usize,
    /// How long a client may take between the first and the last byte of a frame.
    pub frame_timeout: std::time::Duration,
}

impl Bounds {
    pub const DEFAULT: Self = Self {
        max_sandboxes: 64,
        max_connections: 128,
        frame_timeout: std::time::Duration::from_secs(10),
    };

    /// The defaults, overridden by the environment; a bad value is an error naming it.
    pub fn from_env() -> Result<Self, DaemonError> {
        let num = |key: &'static str, default: u64| -> Result<u64, DaemonError> {
            match std::env::var(key) {
                Err(_) => Ok(default),
                Ok(v) => v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(DaemonError::BadSetting { key, value: v }),
            }
        };
        Ok(Self {
            max_sandboxes: num("HUTCH_MAX_SANDBOXES", Self::DEFAULT.max_sandboxes as u64)? as usize,
            max_connections: num(
                "HUTCH_MAX_CONNECTIONS",
                Self::DEFAULT.max_connections as u64,
            )? as usize,
            frame_timeout: std::time::Duration::from_millis(num(
                "HUTCH_FRAME_TIMEOUT_MS",
                Self::DEFAULT.frame_timeout.as_millis() as u64,
            )?),
        })
    }
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Paths(#[from] paths::PathError),
    #[error("another hutch-helper{} is already serving {}", pid.map(|p| format!(" (pid {p})")).unwrap_or_default(), socket.display())]
    AlreadyRunning { socket: PathBuf, pid: Option<u32> },
    #[error("{} is owned by uid {owner}, not by you (uid {uid}): remove it or choose another XDG_RUNTIME_DIR", path.display())]
    NotOurs { path: PathBuf, owner: u32, uid: u32 },
    #[error("{key}={value:?} is not a positive whole number")]
    BadSetting { key: &'static str, value: String },
    #[error("{what} {}: {err}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        err: std::io::Error,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DaemonError {
    let path = path.to_owned();
    move |err| DaemonError::Io { what, path, err }
}

/// Creates `dir` with mode 0700, or checks an existing one is ours and makes it 0700.
fn private_dir(dir: &Path, uid: u32) -> Result<(), DaemonError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err("cannot create", dir))?;
    let meta = std::fs::metadata(dir).map_err(io_err("cannot inspect", dir))?;
    if meta.uid() != uid {
        return Err(DaemonError::NotOurs {
            path: dir.to_owned(),
            owner: meta.uid(),
            uid,
        });
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err("cannot chmod 0700", dir))?;
    }
    Ok(())
}

/// The listening socket systemd passed (socket activation: `LISTEN_PID`, `LISTEN_FDS`, fd 3).
fn activated_listener() -> Option<UnixListener> {
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
    let fds: u32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    if pid != std::process::id() || fds < 1 {
        return None;
    }
    // Not for our children.
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        crate::sys::remove_env_single_threaded(var);
    }
    let fd = crate::sys::take_inherited_fd(3).ok()?;
    Some(UnixListener::from(fd))
}

/// A bound listener, holding the single-instance lock while it lives.
#[derive(Debug)]
pub struct Listening {
    pub listener: UnixListener,
    pub state: Arc<State>,
    _lock: Flock<std::fs::File>,
}

/// Takes the single-instance lock, replaces a stale socket and binds.
pub fn bind(socket: PathBuf) -> Result<Listening, DaemonError> {
    let uid = nix::unistd::getuid().as_raw();
    let runtime_dir = paths::runtime_dir()?;
    private_dir(&runtime_dir, uid)?;
    private_dir(&runtime_dir.join("sandboxes"), uid)?;
    if let Some(parent) = socket.parent()
        && parent != runtime_dir
    {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(io_err("cannot create", parent))?;
    }
    let lock_path = paths::lock_path(&socket);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(io_err("cannot open lock file", &lock_path))?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((mut file, _)) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(DaemonError::AlreadyRunning {
                socket,
                pid: text.trim().parse().ok(),
            });
        }
    };
    let _ = lock.set_len(0);
    let _ = lock.rewind();
    let _ = writeln!(lock, "{}", std::process::id());
    let (listener, activated) = match activated_listener() {
        Some(listener) => {
            tracing::info!(socket = %socket.display(), "using the socket passed by systemd");
            (listener, true)
        }
        None => {
            // We hold the lock, so a socket file left here belongs to a helper that died.
            if std::fs::symlink_metadata(&socket).is_ok() {
                tracing::info!(socket = %socket.display(), "replacing a stale socket");
                std::fs::remove_file(&socket)
                    .map_err(io_err("cannot remove stale socket", &socket))?;
            }
            let listener =
                UnixListener::bind(&socket).map_err(io_err("cannot listen on", &socket))?;
            std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
                .map_err(io_err("cannot chmod", &socket))?;
            (listener, false)
        }
    };
    let config_dir = paths::config_dir()?;
    let data_dir = paths::data_dir()?;
    let state = State {
        uid,
        registry: registry::Registry::default(),
        host: crate::plan::host::FactsCache::new(
            vec![
                config_dir,
                data_dir.clone(),
                runtime_dir.clone(),
                socket.clone(),
            ],
            paths::homes_dir()?,
        ),
        runtime_dir,
        socket,
        profiles_dir: paths::profiles_dir()?,
        machine_ids_dir: paths::machine_ids_dir()?,
        prepare_key: prepare_key::KeyCache::default(),
        pool: pool::Pool::default(),
        cgroups: crate::cgroup::Cgroups::set_up(),
        socket_activated: activated,
        bounds: Bounds::from_env()?,
        connections: std::sync::atomic::AtomicUsize::new(0),
    };
    Ok(Listening {
        listener,
        state: Arc::new(state),
        _lock: lock,
    })
}

/// Signals that end the daemon cleanly.
const SHUTDOWN_SIGNALS: &[nix::sys::signal::Signal] = &[
    nix::sys::signal::Signal::SIGTERM,
    nix::sys::signal::Signal::SIGINT,
    nix::sys::signal::Signal::SIGHUP,
];

/// Blocks the shutdown signals in the calling thread. Called first thing in the daemon's main
/// thread, before any other thread exists (libraries start some, e.g. the D-Bus client), so
/// every thread inherits the mask and only the signal thread takes them.
pub fn block_shutdown_signals() -> std::io::Result<()> {
    shutdown_set().thread_block().map_err(std::io::Error::from)
}

fn shutdown_set() -> nix::sys::signal::SigSet {
    let mut set = nix::sys::signal::SigSet::empty();
    for &sig in SHUTDOWN_SIGNALS {
        set.add(sig);
    }
    set
}

/// On SIGTERM, SIGINT or SIGHUP: remove the socket, end the prepared sandbox and exit. Running
/// sandboxes are left running (their supervisors are processes of their own).
fn shut_down_on_signal(state: Arc<State>) -> std::io::Result<()> {
    let set = shutdown_set();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let sig = loop {
                if let Ok(sig) = set.wait() {
                    break sig;
                }
            };
            tracing::info!(%sig, "shutting down");
            if !state.socket_activated {
                let _ = std::fs::remove_file(&state.socket);
            }
            state.pool.discard();
            std::process::exit(0);
        })?;
    Ok(())
}

/// Accepts connections forever, a thread each.
pub fn serve(listening: Listening) {
    tracing::info!(socket = %listening.state.socket.display(), pid = std::process::id(), "hutch-helper listening");
    if let Err(e) = shut_down_on_signal(Arc::clone(&listening.state)) {
        tracing::warn!("cannot handle shutdown signals: {e}");
    }
    tracing::info!(cgroups = %listening.state.cgroups.mode.describe(), "cgroups");
    // Sandboxes of a daemon that died run on: take them over before answering anyone.
    let adopted = adopt::take_over_all(&listening.state);
    if adopted > 0 {
        tracing::info!(
            adopted,
            "took over the running sandboxes of the previous helper"
        );
    }
    // Without the thread each launch prepares its own sandbox (slower, still correct).
    match pool::Pool::start(&listening.state) {
        Ok(()) => listening.state.pool.ask(),
        Err(e) => tracing::warn!("cannot start the prewarm thread: {e}"),
    }
    for stream in listening.listener.incoming() {
        match stream {
            Ok(stream) => {
                let state = Arc::clone(&listening.state);
                use std::sync::atomic::Ordering;
                let active = state.connections.fetch_add(1, Ordering::SeqCst);
                if active >= state.bounds.max_connections {
                    state.connections.fetch_sub(1, Ordering::SeqCst);
                    connection::refuse_busy(stream, state.bounds.max_connections);
                    continue;
                }
                let spawned = std::thread::Builder::new()
                    .name("client".into())
                    .spawn(move || {
                        connection::serve(stream, Arc::clone(&state));
                        state.connections.fetch_sub(1, Ordering::SeqCst);
                    });
                if let Err(e) = spawned {
                    tracing::error!("cannot start a client thread: {e}");
                }
            }
            Err(e) => tracing::warn!("accept failed: {e}"),
        }
    }
}
