//! Rootless cgroup v2: find the cgroup this helper was given, decide whether it is delegated,
//! and give each sandbox its own child cgroup with its limits.
//!
//! ```text
//! D (delegated to the user: systemd's Delegate=yes, or the VM test recipe)
//! ├── helper/            the helper itself (a cgroup with processes cannot enable
//! │                       controllers for its children, so the helper moves out of D)
//! └── sandboxes/
//!     └── ID/            one sandbox: memory.max, cpu.max, pids.max ...; pid 1 and the app
//! ```
//!
//! Without delegation the helper runs in a degraded mode: no limits (requests for them are
//! refused with the reason and the fix), metrics from /proc.

pub mod systemd;

use std::path::{Path, PathBuf};

use hutch_core::limits::Limits;

/// Controllers Hutch needs; `io` is used when present.
pub const REQUIRED: &[&str] = &["memory", "cpu", "pids"];

/// What this helper can do with cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `root` (D) is delegated to us with these controllers.
    Delegated {
        root: PathBuf,
        controllers: Vec<String>,
    },
    /// No usable delegation, and why.
    Degraded { reason: String },
}

impl Mode {
    pub fn is_delegated(&self) -> bool {
        matches!(self, Self::Delegated { .. })
    }

    /// One line for `hutch doctor` and the handshake.
    pub fn describe(&self) -> String {
        match self {
            Self::Delegated { root, controllers } => {
                format!(
                    "{} is delegated with {}",
                    root.display(),
                    controllers.join(" ")
                )
            }
            Self::Degraded { reason } => {
                format!("degraded mode (no limits; metrics from /proc): {reason}")
            }
        }
    }
}

/// A cgroup operation failed.
#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {err}", path.display())]
pub struct CgroupError {
    pub what: &'static str,
    pub path: PathBuf,
    pub err: std::io::Error,
}

fn write(path: &Path, value: &str, what: &'static str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(|err| CgroupError {
        what,
        path: path.to_owned(),
        err,
    })
}

/// The cgroup v2 path of this process, from `/proc/self/cgroup` text.
pub fn own_path(proc_self_cgroup: &str) -> Option<String> {
    proc_self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
}

/// Where the cgroup v2 hierarchy is mounted under `sys_root` (pure v2, or hybrid's unified).
pub fn mount_point(sys_root: &Path) -> Option<PathBuf> {
    ["fs/cgroup", "fs/cgroup/unified"]
        .into_iter()
        .map(|p| sys_root.join(p))
        .find(|p| p.join("cgroup.controllers").exists())
}

/// Decides whether the cgroup at `rel` (under `mount`) is delegated to `uid`.
///
/// A helper that moved itself into `D/helper` earlier (and restarted) finds D again.
pub fn detect(mount: &Path, rel: &str, uid: u32) -> Mode {
    use std::os::unix::fs::MetadataExt;
    let mut dir = mount.join(rel.trim_start_matches('/'));
    if dir.file_name().is_some_and(|n| n == "helper")
        && let Some(parent) = dir.parent()
        && std::fs::metadata(parent).is_ok_and(|m| m.uid() == uid)
    {
        dir = parent.to_owned();
    }
    let owner = |p: &Path| std::fs::metadata(p).map(|m| m.uid()).ok();
    match owner(&dir) {
        Some(o) if o == uid => {}
        Some(o) => {
            return Mode::Degraded {
                reason: format!(
                    "{} is owned by uid {o}, not delegated to you",
                    dir.display()
                ),
            };
        }
        None => {
            return Mode::Degraded {
                reason: format!("cannot read {}", dir.display()),
            };
        }
    }
    for file in ["cgroup.procs", "cgroup.subtree_control"] {
        if owner(&dir.join(file)) != Some(uid) {
            return Mode::Degraded {
                reason: format!("{} is not writable by you", dir.join(file).display()),
            };
        }
    }
    let available = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let controllers: Vec<String> = available.split_whitespace().map(str::to_owned).collect();
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|c| !controllers.iter().any(|h| h == c))
        .collect();
    if !missing.is_empty() {
        return Mode::Degraded {
            reason: format!(
                "{} lacks the {} controller(s){}",
                dir.display(),
                missing.join(", "),
                if mount.ends_with("unified") {
                    " (hybrid hierarchy: they are bound to cgroup v1)"
                } else {
                    ""
                }
            ),
        };
    }
    Mode::Delegated {
        root: dir,
        controllers,
    }
}

/// The helper's cgroups, once set up.
#[derive(Debug)]
pub struct Cgroups {
    pub mode: Mode,
}

impl Cgroups {
    /// Detects delegation for this process and, when delegated, moves it into `D/helper` and
    /// enables the controllers for sandboxes. Any failure leaves a degraded mode saying why.
    pub fn set_up() -> Self {
        let uid = nix::unistd::getuid().as_raw();
        let detect_now = || {
            let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
            match (own_path(&own), mount_point(Path::new("/sys"))) {
                (Some(rel), Some(mount)) => detect(&mount, &rel, uid),
                (None, _) => Mode::Degraded {
                    reason: "this process is in no cgroup v2 hierarchy".into(),
                },
                (_, None) => Mode::Degraded {
                    reason: "no cgroup v2 hierarchy is mounted".into(),
                },
            }
        };
        let mut mode = detect_now();
        // Not delegated: ask the systemd user manager for a delegated scope, then look again.
        if let Mode::Degraded { reason } = &mode {
            match systemd::move_into_delegated_scope() {
                Ok(unit) => {
                    tracing::info!(%unit, "moved into a delegated systemd scope");
                    mode = detect_now();
                }
                Err(e) => {
                    tracing::info!("no delegated systemd scope: {e}");
                    mode = Mode::Degraded {
                        reason: format!("{reason}; {e}"),
                    };
                }
            }
        }
        let mode = match mode {
            Mode::Delegated { root, controllers } => {
                match Self::prepare_tree(&root, &controllers) {
                    Ok(()) => Mode::Delegated { root, controllers },
                    Err(e) => Mode::Degraded {
                        reason: e.to_string(),
                    },
                }
            }
            degraded => degraded,
        };
        Self { mode }
    }

    fn prepare_tree(root: &Path, controllers: &[String]) -> Result<(), CgroupError> {
        let helper = root.join("helper");
        let sandboxes = root.join("sandboxes");
        for dir in [&helper, &sandboxes] {
            if !dir.exists() {
                std::fs::create_dir(dir).map_err(|err| CgroupError {
                    what: "cannot create cgroup",
                    path: dir.clone(),
                    err,
                })?;
            }
        }
        // Out of D first: a cgroup with processes cannot hand controllers to its children.
        write(
            &helper.join("cgroup.procs"),
            &std::process::id().to_string(),
            "cannot move the helper into",
        )?;
        let enable: String = controllers
            .iter()
            .filter(|c| REQUIRED.contains(&c.as_str()) || c.as_str() == "io")
            .map(|c| format!("+{c} "))
            .collect();
        write(
            &root.join("cgroup.subtree_control"),
            enable.trim(),
            "cannot enable controllers in",
        )?;
        write(
            &sandboxes.join("cgroup.subtree_control"),
            enable.trim(),
            "cannot enable controllers in",
        )
    }

    /// The cgroup folder of sandbox `id`, when delegated.
    pub fn sandbox_dir(&self, id: &str) -> Option<PathBuf> {
        match &self.mode {
            Mode::Delegated { root, .. } => Some(root.join("sandboxes").join(id)),
            Mode::Degraded { .. } => None,
        }
    }

    /// Creates the cgroup of sandbox `id` (delegated mode only).
    pub fn create(&self, id: &str) -> Result<Option<PathBuf>, CgroupError> {
        let Some(dir) = self.sandbox_dir(id) else {
            return Ok(None);
        };
        std::fs::create_dir(&dir).map_err(|err| CgroupError {
            what: "cannot create cgroup",
            path: dir.clone(),
            err,
        })?;
        Ok(Some(dir))
    }

    /// Removes a sandbox's cgroup once its processes are gone (they may take a moment).
    pub fn remove(dir: &Path) {
        for _ in 0..50 {
            if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        tracing::warn!(cgroup = %dir.display(), "could not remove a sandbox cgroup");
    }
}

/// Freezes (`true`) or thaws a sandbox's cgroup, and waits until the kernel says it is done.
pub fn freeze(dir: &Path, frozen: bool) -> Result<(), CgroupError> {
    write(
        &dir.join("cgroup.freeze"),
        if frozen { "1" } else { "0" },
        "cannot freeze or thaw",
    )?;
    let want = if frozen { "frozen 1" } else { "frozen 0" };
    for _ in 0..200 {
        let events = std::fs::read_to_string(dir.join("cgroup.events")).unwrap_or_default();
        if events.lines().any(|l| l == want) {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Err(CgroupError {
        what: "timed out waiting for",
        path: dir.join("cgroup.events"),
        err: std::io::Error::new(std::io::ErrorKind::TimedOut, want),
    })
}

/// Writes `limits` into the sandbox cgroup `dir`. Files of controllers that are not delegated
/// (io, often) are skipped when their limit is unset and refused when it is set.
pub fn apply_limits(dir: &Path, limits: &Limits) -> Result<(), CgroupError> {
    for (file, value) in limits.cgroup_files() {
        let path = dir.join(file);
        if !path.exists() && file == "memory.oom.group" {
            continue;
        }
        write(&path, &value, "cannot set limit")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn own_path_is_the_unified_line() {
        let text = "12:memory:/user.slice\n0::/user.slice/user-1000.slice/user@1000.service/app.slice/hutch.service\n";
        assert_eq!(
            own_path(text).unwrap(),
            "/user.slice/user-1000.slice/user@1000.service/app.slice/hutch.service"
        );
        assert_eq!(own_path("3:cpu:/\n"), None);
    }

    fn fake_tree(controllers: &str) -> tempfile_dir::Dir {
        let d = tempfile_dir::Dir::new();
        let cg = d.path().join("fs/cgroup/user/hutch");
        std::fs::create_dir_all(&cg).unwrap();
        for f in ["cgroup.procs", "cgroup.subtree_control"] {
            std::fs::write(cg.join(f), "").unwrap();
        }
        std::fs::write(
            d.path().join("fs/cgroup/cgroup.controllers"),
            "cpu memory pids io",
        )
        .unwrap();
        std::fs::write(cg.join("cgroup.controllers"), controllers).unwrap();
        std::fs::set_permissions(&cg, std::fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    /// A throwaway folder (the test's own, so it is owned by the test's uid).
    mod tempfile_dir {
        pub struct Dir(std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let p = std::env::temp_dir().join(format!(
                    "hutch-cgroup-test-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::SeqCst)
                ));
                std::fs::create_dir_all(&p).unwrap();
                Self(p)
            }
            pub fn path(&self) -> &std::path::Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn a_folder_we_own_with_the_controllers_is_delegated() {
        let d = fake_tree("cpu memory pids io");
        let uid = nix::unistd::getuid().as_raw();
        let mount = mount_point(d.path()).unwrap();
        let mode = detect(&mount, "/user/hutch", uid);
        assert!(mode.is_delegated(), "{mode:?}");
        // After moving into D/helper, a restarted helper finds D again.
        std::fs::create_dir(mount.join("user/hutch/helper")).unwrap();
        assert_eq!(detect(&mount, "/user/hutch/helper", uid), mode);
    }

    #[test]
    fn missing_controllers_or_another_owner_degrade_with_a_reason() {
        let d = fake_tree("cpu pids");
        let uid = nix::unistd::getuid().as_raw();
        let mount = mount_point(d.path()).unwrap();
        let Mode::Degraded { reason } = detect(&mount, "/user/hutch", uid) else {
            panic!()
        };
        assert!(reason.contains("lacks the memory controller"), "{reason}");
        let Mode::Degraded { reason } = detect(&mount, "/user/hutch", uid + 1) else {
            panic!()
        };
        assert!(reason.contains("not delegated to you"), "{reason}");
        assert!(
            Mode::Degraded { reason }
                .describe()
                .starts_with("degraded mode")
        );
    }

    #[test]
    fn limits_are_written_as_files() {
        let d = tempfile_dir::Dir::new();
        for f in [
            "memory.oom.group",
            "memory.max",
            "memory.swap.max",
            "pids.max",
        ] {
            std::fs::write(d.path().join(f), "").unwrap();
        }
        let limits = Limits {
            memory: Some(64 << 20),
            pids: Some(10),
            ..Default::default()
        };
        apply_limits(d.path(), &limits).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("memory.max")).unwrap(),
            (64u64 << 20).to_string()
        );
        assert_eq!(
            std::fs::read_to_string(d.path().join("memory.swap.max")).unwrap(),
            "0"
        );
        assert_eq!(
            std::fs::read_to_string(d.path().join("pids.max")).unwrap(),
            "10"
        );
        assert_eq!(
            std::fs::read_to_string(d.path().join("memory.oom.group")).unwrap(),
            "1"
        );
    }
}
