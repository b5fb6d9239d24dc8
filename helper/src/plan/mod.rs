//! A sandbox as data: the launch request and profile turned into a validated plan.
//!
//! The plan says everything the sandbox will be (id maps, the mount list, hostname, argv,
//! environment, filter options) before a single syscall is made. It is built from
//! [`host::HostFacts`] and a [`host::HostFs`], so every rule here is unit tested against a
//! made-up host; `sandbox::*` then executes it step by step.

pub mod desktop;
pub mod env;
pub mod host;
pub mod idmap;
pub mod landlock;
pub mod own_sandbox;
pub mod source;

use std::path::{Component, Path, PathBuf};

use hutch_core::limits::{LimitError, Limits, check_cpu};
use hutch_core::network::{NetBackend, NetworkMode, PortForward};
use hutch_core::profile::{HomeMode, Profile, ShareMode, validate_share_path};
use hutch_core::protocol::{IdMapKind, RunRequest, Stdio};
use serde::{Deserialize, Serialize};

use host::{Entry, HostFacts, HostFs};
use idmap::MapLine;
use source::{Checked, FileId, Unchecked};

/// Host top-level folders bound read-only when they are folders, recreated when symlinks.
const SYSTEM_DIRS: &[&str] = &[
    "usr", "opt", "bin", "sbin", "lib", "lib32", "lib64", "libx32",
];

/// Entries of the host's /etc that programs need, bound read-only when present: an allowlist
/// (see SECURITY.md, "The /etc an app sees"), so a host secret there (shadow, sudoers, ssh host
/// keys, saved network passwords, the real machine id, subuid) is never named, whatever the
/// host has installed. passwd, group, hostname, hosts and machine-id are generated instead.
const ETC_ENTRIES: &[&str] = &[
    // the system: libraries, names, certificates, locale, time
    "alternatives",
    "bash.bashrc",
    "ca-certificates",
    "ca-certificates.conf",
    "crypto-policies",
    "fonts",
    "gai.conf",
    "host.conf",
    "inputrc",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "locale.alias",
    "locale.conf",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "pki",
    "profile",
    "ssl",
    "terminfo",
    "timezone",
    // the desktop: toolkits, menus and defaults, sound, graphics drivers' settings
    "X11",
    "alsa",
    "asound.conf",
    "dconf",
    "drirc",
    "glvnd",
    "gtk-2.0",
    "gtk-3.0",
    "gtk-4.0",
    "mailcap",
    "pipewire",
    "pulse",
    "vulkan",
    "xdg",
    // browsers' own settings (policies, default flags, the launcher's scripts)
    "chromium",
    "chromium.d",
    "firefox",
    "firefox-esr",
];

/// Device nodes bound from the host's /dev.
const DEV_NODES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Read-only or read-write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// One step of building the sandbox's root. Paths are as seen inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MountOp {
    /// An empty folder.
    Dir { path: PathBuf, mode: u32 },
    /// A symbolic link at `path` pointing to `target`.
    Symlink { target: PathBuf, path: PathBuf },
    /// A fresh tmpfs.
    Tmpfs { path: PathBuf, mode: u32 },
    /// A host file or folder bound at `path`. `source` is a real path (no link in it), and
    /// `id` what was found there when the plan was made: pid 1 opens `source` without
    /// following links and binds it only if it is still that file. `None` only for a folder
    /// Hutch makes for the launch in its own data folder (a kept home).
    Bind {
        source: PathBuf,
        path: PathBuf,
        access: Access,
        dir: bool,
        id: Option<FileId>,
        /// The app may connect to Unix sockets beneath it (Landlock, where the kernel controls
        /// that): a desktop socket, a share that says `sockets`, its own kept home.
        #[serde(default)]
        sockets: bool,
        /// The Unix sockets beneath it are hidden, once every mount is made (each under an
        /// empty read-only file, found on the mount itself: `sandbox::sockets`).
        #[serde(default)]
        hide_sockets: bool,
    },
    /// A small generated file (read-only once the root is sealed).
    File { path: PathBuf, contents: String },
    /// The sandbox's own /proc (its pid namespace), with kernel knobs read-only.
    Proc { path: PathBuf },
    /// A private devpts instance.
    Devpts { path: PathBuf },
}

impl MountOp {
    /// Where this op mounts a file system (hiding what was at that path before), if it does.
    pub fn mounted_at(&self) -> Option<&Path> {
        match self {
            Self::Tmpfs { path, .. }
            | Self::Bind { path, .. }
            | Self::Proc { path }
            | Self::Devpts { path } => Some(path),
            Self::Dir { .. } | Self::Symlink { .. } | Self::File { .. } => None,
        }
    }
}

/// How the user namespace's id maps are written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapPlan {
    pub kind: IdMapKind,
    pub uid_lines: Vec<MapLine>,
    pub gid_lines: Vec<MapLine>,
    pub newuidmap: Option<PathBuf>,
    pub newgidmap: Option<PathBuf>,
}

/// The sandbox's address on a user network, its gateway (the host, when its loopback is
/// allowed) and its DNS server: slirp4netns's defaults, which Hutch sets for pasta too so both
/// look the same from inside.
pub const SANDBOX_ADDR: &str = "10.0.2.100";
pub const GATEWAY_ADDR: &str = "10.0.2.2";
pub const DNS_ADDR: &str = "10.0.2.3";
/// The sandbox's IPv6 address and gateway on a user network, where the stack gives IPv6
/// (pasta): slirp4netns's IPv6 layout, so the host's own address is not shown inside.
pub const SANDBOX_ADDR6: &str = "fd00::100";
pub const GATEWAY_ADDR6: &str = "fd00::2";
/// MTU of the user network's interface.
pub const NET_MTU: u32 = 65520;

/// A user-mode network stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    Slirp4netns,
    Pasta,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Slirp4netns => "slirp4netns",
            Self::Pasta => "pasta",
        }
    }
    /// The Debian package that installs it.
    pub fn package(self) -> &'static str {
        match self {
            Self::Slirp4netns => "slirp4netns",
            Self::Pasta => "passt",
        }
    }
}

/// The sandbox's network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum NetworkPlan {
    /// Loopback only.
    None,
    /// A user-mode stack on the sandbox's network namespace.
    User {
        backend: BackendKind,
        program: PathBuf,
        allow_host_loopback: bool,
        publish: Vec<PortForward>,
        /// slirp4netns's own sandbox (`--enable-sandbox`) needs uid 0 mapped in the sandbox,
        /// which a single-id map lacks.
        confine_backend: bool,
    },
}

/// Everything one sandbox will be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxPlan {
    pub id: String,
    pub profile: String,
    /// Host folder on which the sandbox's tmpfs root is built (in its own mount namespace).
    pub root: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub id_map: IdMapPlan,
    /// The part of the root that is the same for every sandbox of this host (system folders,
    /// /proc, /dev, /tmp, /var/tmp, /run): built ahead, in a prepared sandbox.
    pub base_mounts: Vec<MountOp>,
    /// The rest, applied on top: /etc, the home, the shares.
    pub mounts: Vec<MountOp>,
    pub hostname: String,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub allow_user_namespaces: bool,
    /// Why the app may make user namespaces, when it may (`inspect` says it).
    #[serde(default)]
    pub user_namespaces: Option<String>,
    /// Landlock rules: the paths the app may reach and how (applied where the kernel has
    /// Landlock).
    pub landlock: Vec<landlock::FsRule>,
    pub network: NetworkPlan,
    /// cgroup limits (the profile's, overridden one by one by the request's).
    pub limits: Limits,
    /// A pseudo-terminal of this size (rows, columns), made inside the sandbox's own devpts.
    pub tty: Option<(u16, u16)>,
    /// With a terminal: which of stdin, stdout and stderr are the caller's fds instead.
    #[serde(default)]
    pub keep: [bool; 3],
    /// Host folders to create (mode 0700) before the sandbox starts (persistent homes).
    pub prepare_dirs: Vec<PathBuf>,
    /// What the user should know about this sandbox (e.g. the single-uid fallback).
    pub warnings: Vec<String>,
}

/// Why a launch request cannot become a plan. Nothing has been started when this is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "no command given, and profile `{profile}` has no `command`: put the command after `--`, \
         or set `command` in the profile"
    )]
    NoCommand { profile: String },
    #[error("invalid shared path: {0}")]
    ShareInvalid(String),
    #[error("shared path {} does not exist (check --share and the profile's [[share]] entries)", .0.display())]
    ShareMissing(PathBuf),
    #[error("shared path {} is not a file or folder (sockets and devices cannot be shared)", .0.display())]
    ShareNotShareable(PathBuf),
    #[error(
        "sharing {} is refused: {why}{}",
        share.display(),
        leads_to(share, real)
    )]
    ShareForbidden {
        share: PathBuf,
        real: PathBuf,
        why: String,
    },
    #[error(
        "{} changed while it was checked (a link or folder was swapped at {}): the launch is \
         refused. An app that can write there may be trying to redirect what is bound; look at \
         what the path leads to now",
        path.display(), at.display()
    )]
    Changed { path: PathBuf, at: PathBuf },
    #[error(
        "sharing {} is refused: {} is a folder where programs of your session listen on Unix \
         sockets (ssh-agent, tmux, the display, the session bus), and an app that reaches one \
         can make that program act for it outside the sandbox{}. Share a folder beside it, or \
         say so in so many words: `--share {}:ro,sockets` (a profile's share: `sockets = true`)",
        share.display(),
        folder.display(),
        leads_to(share, real),
        share.display()
    )]
    ShareSocketFolder {
        share: PathBuf,
        real: PathBuf,
        folder: PathBuf,
    },
    #[error("the command's program name is empty")]
    EmptyProgram,
    #[error(
        "{} is not installed: install it with `sudo apt install {}`, or choose another \
         --net-backend",
        .0.name(), .0.package()
    )]
    BackendMissing(BackendKind),
    #[error(
        "no user-mode network stack is installed: install one with `sudo apt install passt` \
         (or slirp4netns)"
    )]
    NoBackend,
    #[error("publishing ports ({0}) needs a user network: add --net user")]
    PublishWithoutNetwork(String),
    #[error(
        "{whence} publishes host port {first} and then {second}: one host port can be \
         forwarded to one sandbox port only; drop one of them"
    )]
    PublishRepeated {
        first: String,
        second: String,
        whence: String,
    },
    #[error("{0}")]
    Limit(LimitError),
    #[error("display: {0}")]
    Display(String),
    #[error("audio: {0}")]
    Audio(String),
    #[error("gpu: {0}")]
    Gpu(String),
}

/// ` (PATH leads to REAL)` when a link made them differ.
fn leads_to(path: &Path, real: &Path) -> String {
    if path == real {
        String::new()
    } else {
        format!(" ({} leads to {})", path.display(), real.display())
    }
}

/// A path shared into the sandbox: where it is mounted inside (the path as given, after `~/`
/// expansion) and what it really is on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ResolvedShare {
    path: PathBuf,
    source: Checked,
    access: Access,
    /// Its sockets stay reachable (the share said `sockets`).
    sockets: bool,
}

impl ResolvedShare {
    fn dir(&self) -> bool {
        self.source.kind == Entry::Dir
    }
}

/// Checks the host path behind a bind: what it really is, and that no rule forbids it.
pub(crate) fn checked(
    fs: &dyn HostFs,
    host: &HostFacts,
    path: &Path,
) -> Result<Option<Checked>, PlanError> {
    match fs.check(path) {
        Ok(found) => match source::forbidden(&found.path, host) {
            Some(why) => Err(PlanError::ShareForbidden {
                share: path.to_owned(),
                real: found.path,
                why,
            }),
            None => Ok(Some(found)),
        },
        Err(Unchecked::Missing) => Ok(None),
        Err(Unchecked::Changed(at)) => Err(PlanError::Changed {
            path: path.to_owned(),
            at,
        }),
    }
}

/// What the daemon chose for one sandbox before its plan: its id, the host folder its root is
/// built on, and the machine id of its profile (kept with the profile, see `daemon::identity`).
#[derive(Debug, Clone, Copy)]
pub struct Chosen<'a> {
    pub id: &'a str,
    pub root: &'a Path,
    /// 32 lowercase hex digits, as `/etc/machine-id` holds.
    pub machine_id: &'a str,
}

/// Builds the plan for the sandbox the daemon `chose`. `base` is [`base_mounts`] of this host,
/// as the prepared sandbox was built with (the caller has it already).
pub fn build(
    chosen: Chosen<'_>,
    profile: &Profile,
    request: &RunRequest,
    host: &HostFacts,
    base: Vec<MountOp>,
    fs: &dyn HostFs,
) -> Result<SandboxPlan, PlanError> {
    let argv = if request.command.is_empty() {
        profile.command.clone()
    } else {
        request.command.clone()
    };
    match argv.first() {
        None => {
            return Err(PlanError::NoCommand {
                profile: profile.name.clone(),
            });
        }
        Some(p) if p.is_empty() => return Err(PlanError::EmptyProgram),
        Some(_) => {}
    }

    let shares = resolve_shares(profile, request, host, fs)?;
    let home_mode = request.home.unwrap_or(profile.home);
    let mut prepare_dirs = Vec::new();

    let network = network_plan(profile, request, host)?;
    let limits = profile.limits.overridden_by(&request.limits);
    if let Some(percent) = limits.cpu_percent {
        check_cpu(percent, host.cores).map_err(PlanError::Limit)?;
    }
    let mut mounts = hostname_files(&profile.hostname);
    mounts.extend(machine_id_files(chosen.machine_id));
    mounts.push(MountOp::File {
        path: "/etc/resolv.conf".into(),
        contents: match network {
            NetworkPlan::None => "# this sandbox has no network\n".into(),
            NetworkPlan::User { .. } => format!("nameserver {DNS_ADDR}\n"),
        },
    });

    // The home and the shares, shallowest first, so a share inside the home lands on top of it.
    let home_op = match home_mode {
        HomeMode::Tmp => MountOp::Tmpfs {
            path: host.home.clone(),
            mode: 0o700,
        },
        HomeMode::Persist => {
            let dir = host.homes_dir.join(&profile.name);
            prepare_dirs.push(dir.clone());
            MountOp::Bind {
                source: dir,
                path: host.home.clone(),
                access: Access::ReadWrite,
                dir: true,
                // Made for the launch in Hutch's data folder, which no sandbox sees.
                id: None,
                sockets: true,
                hide_sockets: false,
            }
        }
    };
    let desktop = desktop::plan(profile, request, host, fs)?;
    mounts.extend(desktop.mounts.iter().cloned());
    let mut placed: Vec<(usize, MountOp)> = vec![(depth(&host.home), home_op)];
    for op in &desktop.home_mounts {
        if let MountOp::Bind { path, .. } = op {
            placed.push((depth(path), op.clone()));
        }
    }
    let mut warnings = Vec::new();
    for share in &shares {
        // A read-only share of something every sandbox sees read-only already, at the same
        // path (a program in /usr named by its path, or by a path through /bin), needs no
        // mount of its own. A symlink elsewhere to such a thing is still shared: its path
        // must exist inside.
        if share.access == Access::ReadOnly
            && covered_read_only(&through_base_links(&share.path, &base), &base)
        {
            continue;
        }
        placed.push((
            depth(&share.path),
            MountOp::Bind {
                source: share.source.path.clone(),
                path: share.path.clone(),
                access: share.access,
                dir: share.dir(),
                id: Some(share.source.id),
                sockets: share.sockets,
                // A folder's sockets are hidden unless the share says `sockets`.
                hide_sockets: share.dir() && !share.sockets,
            },
        ));
        if share.dir() && share.sockets {
            warnings.push(format!(
                "{} is shared with its Unix sockets: the app can talk to whatever listens on \
                 them, outside the sandbox",
                share.path.display()
            ));
            if source::holds_x11_sockets(&share.source.path) {
                warnings.push(desktop::X11_WARNING.into());
            }
        }
    }
    placed.sort_by_key(|(d, _)| *d);
    mounts.extend(placed.into_iter().map(|(_, op)| op));

    let cwd = request
        .cwd
        .as_deref()
        .map(PathBuf::from)
        .filter(|cwd| shares.iter().any(|s| s.dir() && cwd.starts_with(&s.path)))
        .unwrap_or_else(|| host.home.clone());

    let home = host.home.display().to_string();
    let mut env = env::build(
        &request.env,
        env::Identity {
            user: &host.user,
            home: &home,
            shell: &host.shell,
            hostname: &profile.hostname,
        },
        &profile.env,
    );
    for (key, value) in &desktop.env {
        env.retain(|(k, _)| k != key);
        env.push((key.clone(), value.clone()));
    }

    // Programs with a sandbox of their own make user namespaces; others may not.
    let user_namespaces = match profile.allow_user_namespaces {
        Some(true) => Some("the profile allows them (allow_user_namespaces = true)".to_owned()),
        Some(false) => None,
        None => own_sandbox::detect(&argv[0], fs).map(|kind| {
            warnings.push(format!(
                "{} keeps its own sandbox: it may make user namespaces for it (and nothing else \
                 more). Set allow_user_namespaces = false in profile `{}` to refuse them",
                kind.name(),
                profile.name
            ));
            format!("{}'s own sandbox", kind.name())
        }),
    };
    let (id_map, warning) = id_map_plan(host);
    warnings.splice(0..0, warning);
    warnings.extend(desktop.warnings);
    let base_mounts = base;
    let landlock = landlock::rules(base_mounts.iter().chain(&mounts));
    Ok(SandboxPlan {
        id: chosen.id.to_owned(),
        profile: profile.name.clone(),
        root: chosen.root.to_owned(),
        uid: host.uid,
        gid: host.gid,
        id_map,
        base_mounts,
        mounts,
        hostname: profile.hostname.clone(),
        argv,
        env,
        cwd,
        allow_user_namespaces: user_namespaces.is_some(),
        user_namespaces,
        landlock,
        network,
        limits,
        keep: match request.stdio {
            Stdio::Tty { keep, .. } => keep,
            _ => [false; 3],
        },
        tty: match request.stdio {
            Stdio::Tty { rows, cols, .. } => Some((rows.max(1), cols.max(1))),
            _ => None,
        },
        prepare_dirs,
        warnings,
    })
}

fn network_plan(
    profile: &Profile,
    request: &RunRequest,
    host: &HostFacts,
) -> Result<NetworkPlan, PlanError> {
    let mode = request.net.unwrap_or(profile.network);
    // One host port, one forward: a second one for the same port would be silently lost.
    for (list, whence) in [
        (&profile.publish, format!("profile `{}`", profile.name)),
        (&request.publish, "the command line".to_owned()),
    ] {
        for (i, a) in list.iter().enumerate() {
            if let Some(b) = list[..i].iter().find(|b| clashes(a, b)) {
                return Err(PlanError::PublishRepeated {
                    first: b.to_string(),
                    second: a.to_string(),
                    whence,
                });
            }
        }
    }
    // The command line's forward of a port replaces the profile's.
    let mut publish = profile.publish.clone();
    for forward in &request.publish {
        publish.retain(|p| !clashes(p, forward));
        publish.push(forward.clone());
    }
    if mode == NetworkMode::None {
        if !publish.is_empty() {
            let list: Vec<String> = publish.iter().map(ToString::to_string).collect();
            return Err(PlanError::PublishWithoutNetwork(list.join(", ")));
        }
        return Ok(NetworkPlan::None);
    }
    let (backend, program) = match request.net_backend.unwrap_or(profile.net_backend) {
        NetBackend::Auto => match (&host.pasta, &host.slirp4netns) {
            (Some(p), _) => (BackendKind::Pasta, p.clone()),
            (None, Some(s)) => (BackendKind::Slirp4netns, s.clone()),
            (None, None) => return Err(PlanError::NoBackend),
        },
        NetBackend::Pasta => (
            BackendKind::Pasta,
            host.pasta
                .clone()
                .ok_or(PlanError::BackendMissing(BackendKind::Pasta))?,
        ),
        NetBackend::Slirp4netns => (
            BackendKind::Slirp4netns,
            host.slirp4netns
                .clone()
                .ok_or(PlanError::BackendMissing(BackendKind::Slirp4netns))?,
        ),
    };
    let confine_backend = !host.subuids.is_empty()
        && !host.subgids.is_empty()
        && host.newuidmap.is_some()
        && host.newgidmap.is_some();
    Ok(NetworkPlan::User {
        backend,
        program,
        allow_host_loopback: profile.allow_host_loopback || request.allow_host_loopback,
        publish,
        confine_backend,
    })
}

/// Whether two forwards want the same host port (on the same address, or one on every
/// address).
fn clashes(a: &PortForward, b: &PortForward) -> bool {
    a.host_port == b.host_port
        && (a.host_addr == b.host_addr
            || a.host_addr.is_unspecified()
            || b.host_addr.is_unspecified())
}

fn depth(path: &Path) -> usize {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count()
}

fn expand_home(path: &str, home: &Path) -> PathBuf {
    match path.strip_prefix("~/") {
        Some(rest) => home.join(rest),
        None => PathBuf::from(path),
    }
}

fn resolve_shares(
    profile: &Profile,
    request: &RunRequest,
    host: &HostFacts,
    fs: &dyn HostFs,
) -> Result<Vec<ResolvedShare>, PlanError> {
    let wanted = profile
        .shares
        .iter()
        .map(|s| (s.path.as_str(), s.mode, s.sockets))
        .chain(
            request
                .shares
                .iter()
                .map(|s| (s.path.as_str(), s.mode, s.sockets)),
        );
    let mut out: Vec<ResolvedShare> = Vec::new();
    for (raw, mode, sockets) in wanted {
        validate_share_path(raw).map_err(PlanError::ShareInvalid)?;
        let path = expand_home(raw, &host.home);
        let path = PathBuf::from(path.to_string_lossy().trim_end_matches('/'));
        // Looked at once: every rule below runs on what the path really leads to now, and
        // pid 1 binds that file only.
        let source =
            checked(fs, host, &path)?.ok_or_else(|| PlanError::ShareMissing(path.clone()))?;
        if !matches!(source.kind, Entry::Dir | Entry::File) {
            return Err(PlanError::ShareNotShareable(path));
        }
        if source.kind == Entry::Dir
            && !sockets
            && let Some(folder) = source::socket_folder(&source.path, host)
        {
            return Err(PlanError::ShareSocketFolder {
                share: path,
                real: source.path,
                folder,
            });
        }
        let access = match mode {
            ShareMode::ReadOnly => Access::ReadOnly,
            ShareMode::ReadWrite => Access::ReadWrite,
        };
        // The same path twice: the later one (the command line) wins.
        out.retain(|s| s.path != path);
        out.push(ResolvedShare {
            path,
            source,
            access,
            sockets,
        });
    }
    Ok(out)
}

/// The part of every sandbox's root that depends only on the host and the user: read-only
/// system folders, /etc (but its host name files), the sandbox's own /proc, a minimal /dev,
/// and empty /tmp, /var/tmp and /run.
pub fn base_mounts(host: &HostFacts, fs: &dyn HostFs) -> Vec<MountOp> {
    let mut mounts = system_mounts(fs);
    mounts.extend(etc_mounts(host, fs));
    mounts.push(MountOp::Proc {
        path: "/proc".into(),
    });
    mounts.extend(dev_mounts(fs));
    mounts.extend([
        MountOp::Tmpfs {
            path: "/tmp".into(),
            mode: 0o1777,
        },
        MountOp::Dir {
            path: "/var".into(),
            mode: 0o755,
        },
        MountOp::Tmpfs {
            path: "/var/tmp".into(),
            mode: 0o1777,
        },
        MountOp::Tmpfs {
            path: "/run".into(),
            mode: 0o755,
        },
    ]);
    mounts
}

/// Whether `path` lies in a folder the base root binds read-only at its own path.
fn covered_read_only(path: &Path, base: &[MountOp]) -> bool {
    base.iter().any(|op| {
        matches!(op, MountOp::Bind { source, path: at, access: Access::ReadOnly, dir: true, .. }
            if source == at && path.starts_with(at))
    })
}

/// `path` as the base root resolves it through its own links (`/bin/ls` is `/usr/bin/ls`
/// where `/bin` links to `usr/bin`).
fn through_base_links(path: &Path, base: &[MountOp]) -> PathBuf {
    for op in base {
        if let MountOp::Symlink { target, path: link } = op
            && let Ok(rest) = path.strip_prefix(link)
        {
            let target = link.parent().unwrap_or(Path::new("/")).join(target);
            return normalize(&target.join(rest));
        }
    }
    path.to_owned()
}

/// A read-only or device bind of a host system file at `path` (owned by root: no rule but
/// its identity applies), from its real path; `None` when it cannot be looked at.
fn system_bind(fs: &dyn HostFs, path: PathBuf, access: Access) -> Option<MountOp> {
    let found = fs.check(&path).ok()?;
    let dir = match found.kind {
        Entry::Dir => true,
        Entry::File => false,
        // Device nodes (in /dev only).
        Entry::Other if path.starts_with("/dev") => false,
        _ => return None,
    };
    Some(MountOp::Bind {
        source: found.path,
        path,
        access,
        dir,
        id: Some(found.id),
        sockets: false,
        hide_sockets: false,
    })
}

fn system_mounts(fs: &dyn HostFs) -> Vec<MountOp> {
    let mut ops = Vec::new();
    for name in SYSTEM_DIRS {
        let path = Path::new("/").join(name);
        match fs.entry(&path) {
            Some(Entry::Dir) => ops.extend(system_bind(fs, path, Access::ReadOnly)),
            Some(Entry::Symlink(target)) => ops.push(MountOp::Symlink { target, path }),
            _ => {}
        }
    }
    ops
}

/// The generated /etc files naming users: only the sandbox's own user and group.
fn generated_users(host: &HostFacts) -> [(&'static str, String); 2] {
    let home = host.home.display();
    let (user, uid, gid, shell) = (&host.user, host.uid, host.gid, &host.shell);
    let mut passwd = String::new();
    let mut group = String::new();
    if uid != 0 {
        passwd.push_str("root:x:0:0:root:/root:/bin/sh\n");
    }
    passwd.push_str(&format!("{user}:x:{uid}:{gid}:{user}:{home}:{shell}\n"));
    passwd.push_str("nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
    if gid != 0 {
        group.push_str("root:x:0:\n");
    }
    group.push_str(&format!("{}:x:{gid}:\n", host.group));
    group.push_str("nogroup:x:65534:\n");
    [("passwd", passwd), ("group", group)]
}

/// The app's own machine id (D-Bus, Chromium, systemd's libraries read it): its profile's,
/// never the host's, also where older D-Bus looks (`/var/lib/dbus/machine-id`).
fn machine_id_files(machine_id: &str) -> Vec<MountOp> {
    vec![
        MountOp::File {
            path: "/etc/machine-id".into(),
            contents: format!("{machine_id}\n"),
        },
        MountOp::Dir {
            path: "/var/lib/dbus".into(),
            mode: 0o755,
        },
        MountOp::Symlink {
            target: "/etc/machine-id".into(),
            path: "/var/lib/dbus/machine-id".into(),
        },
    ]
}

/// The /etc files naming the sandbox's host.
fn hostname_files(hostname: &str) -> Vec<MountOp> {
    [
        ("hostname", format!("{hostname}\n")),
        (
            "hosts",
            format!(
                "127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            ),
        ),
    ]
    .into_iter()
    .map(|(name, contents)| MountOp::File {
        path: Path::new("/etc").join(name),
        contents,
    })
    .collect()
}

/// /etc: the generated user files and the host's files programs need, read-only.
fn etc_mounts(host: &HostFacts, fs: &dyn HostFs) -> Vec<MountOp> {
    let mut ops = vec![MountOp::Dir {
        path: "/etc".into(),
        mode: 0o755,
    }];
    for (name, contents) in generated_users(host) {
        ops.push(MountOp::File {
            path: Path::new("/etc").join(name),
            contents,
        });
    }
    for name in ETC_ENTRIES {
        let path = Path::new("/etc").join(name);
        match fs.entry(&path) {
            Some(Entry::File | Entry::Dir) => {
                ops.extend(system_bind(fs, path, Access::ReadOnly));
            }
            Some(Entry::Symlink(target)) => {
                let absolute = Path::new("/etc").join(&target);
                if normalize(&absolute).starts_with("/usr") {
                    // e.g. localtime -> /usr/share/zoneinfo/..., os-release -> ../usr/lib/...
                    ops.push(MountOp::Symlink { target, path });
                } else if let Some(Entry::File | Entry::Dir) = fs.resolved(&path) {
                    // e.g. host.conf -> /run/conf/host.conf: bind its target, by its real path.
                    ops.extend(system_bind(fs, path, Access::ReadOnly));
                }
            }
            _ => {}
        }
    }
    ops
}

fn dev_mounts(fs: &dyn HostFs) -> Vec<MountOp> {
    let mut ops = vec![MountOp::Tmpfs {
        path: "/dev".into(),
        mode: 0o755,
    }];
    for name in DEV_NODES {
        let path = Path::new("/dev").join(name);
        if fs.entry(&path).is_some() {
            ops.extend(system_bind(fs, path, Access::ReadWrite));
        }
    }
    ops.push(MountOp::Devpts {
        path: "/dev/pts".into(),
    });
    ops.push(MountOp::Symlink {
        target: "pts/ptmx".into(),
        path: "/dev/ptmx".into(),
    });
    ops.push(MountOp::Tmpfs {
        path: "/dev/shm".into(),
        mode: 0o1777,
    });
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ops.push(MountOp::Symlink {
            target: target.into(),
            path: Path::new("/dev").join(name),
        });
    }
    ops
}

/// Resolves `.` and `..` lexically.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// The id maps for this user, and a warning when they fall back to a single id.
pub fn id_map_plan(host: &HostFacts) -> (IdMapPlan, Option<String>) {
    let tools = host.newuidmap.is_some() && host.newgidmap.is_some();
    let ranges = !host.subuids.is_empty() && !host.subgids.is_empty();
    if tools && ranges {
        let plan = IdMapPlan {
            kind: IdMapKind::SubordinateRange,
            uid_lines: idmap::build_map(host.uid, &host.subuids),
            gid_lines: idmap::build_map(host.gid, &host.subgids),
            newuidmap: host.newuidmap.clone(),
            newgidmap: host.newgidmap.clone(),
        };
        return (plan, None);
    }
    let why = if !tools {
        "newuidmap/newgidmap are not installed (install the `uidmap` package)".to_owned()
    } else {
        format!(
            "{user} has no range in /etc/subuid and /etc/subgid (add one with `sudo usermod \
             --add-subuids 100000-165535 --add-subgids 100000-165535 {user}`)",
            user = host.user
        )
    };
    let plan = IdMapPlan {
        kind: IdMapKind::SingleId,
        uid_lines: idmap::build_map(host.uid, &[]),
        gid_lines: idmap::build_map(host.gid, &[]),
        newuidmap: None,
        newgidmap: None,
    };
    let warning = format!(
        "single-uid sandbox: {why}; only your own uid exists inside, so programs that switch \
         users will fail"
    );
    (plan, Some(warning))
}

#[cfg(test)]
mod tests;
