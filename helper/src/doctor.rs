//! `hutch doctor`: what this machine can do for sandboxes, and how to fix what it cannot.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use hutch_core::protocol::{Check, CheckStatus, DoctorReport};

use crate::cgroup::Mode;
use crate::plan::host;

fn check(id: &str, title: &str, status: CheckStatus, detail: String, fix: Option<String>) -> Check {
    Check {
        id: id.into(),
        title: title.into(),
        status,
        detail,
        fix,
    }
}

/// What the checks look at, found on the live system by [`observe`]; the checks themselves
/// ([`judge`]) are pure, so each is tested failing with its fix.
#[derive(Debug, Clone)]
pub struct Observations {
    /// Whether a user and mount namespace could be made, or why not.
    pub user_namespaces: Result<(), String>,
    pub facts: host::HostFacts,
    /// Whether newuidmap and newgidmap are setuid root or file-capable.
    pub uidmap_privileged: bool,
    /// What the helper found at its start.
    pub cgroups: Mode,
    /// The user-mode stack `--net user` would use, and whether the tun device it needs opens.
    pub network: NetworkProbe,
    /// The kernel's Landlock ABI, or why there is none.
    pub landlock: Result<i32, String>,
    /// `WAYLAND_DISPLAY` and `DISPLAY` as the helper has them.
    pub display: (Option<String>, Option<String>),
    /// The helper's runtime folder, its socket, and the folder's mode.
    pub runtime: (PathBuf, PathBuf, u32),
}

/// The user-mode network stack, as far as `doctor` can try it.
#[derive(Debug, Clone)]
pub struct NetworkProbe {
    /// pasta and slirp4netns where installed.
    pub found: Vec<PathBuf>,
    /// Opening `/dev/net/tun` for reading and writing, as both stacks do inside the sandbox's
    /// namespace (as this user): a fresh machine without udev leaves it 0600.
    pub tun: Result<(), String>,
}

/// What the running helper found at its start, for the checks about it.
#[derive(Debug, Clone, Copy)]
pub struct Helper<'a> {
    /// cgroup v2 delegation, or the degraded mode.
    pub cgroups: &'a Mode,
    /// Its runtime folder.
    pub runtime_dir: &'a Path,
    /// The socket it listens on.
    pub socket: &'a Path,
}

/// Looks at the live system.
pub fn observe(helper: &Helper<'_>) -> Observations {
    let facts = host::gather(Vec::new(), PathBuf::new());
    let uidmap_privileged = match (&facts.newuidmap, &facts.newgidmap) {
        (Some(u), Some(g)) => privileged(u) && privileged(g),
        _ => false,
    };
    let user_namespaces = match Command::new("/proc/self/exe").arg("probe-userns").output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        Err(e) => Err(e.to_string()),
    };
    let tun = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map(drop)
        .map_err(|e| {
            let mode = std::fs::metadata("/dev/net/tun")
                .map(|m| format!("mode {:o}", m.permissions().mode() & 0o7777))
                .unwrap_or_else(|_| "missing".into());
            format!("/dev/net/tun ({mode}): {e}")
        });
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    Observations {
        user_namespaces,
        uidmap_privileged,
        cgroups: helper.cgroups.clone(),
        network: NetworkProbe {
            found: ["pasta", "slirp4netns"]
                .into_iter()
                .filter_map(host::find_tool)
                .collect(),
            tun,
        },
        landlock: crate::sys::landlock_abi().map_err(|e| match e.raw_os_error() {
            Some(libc::ENOSYS) => "this kernel is built without Landlock".to_owned(),
            Some(libc::EOPNOTSUPP) => "Landlock is built in but not enabled at boot".to_owned(),
            _ => e.to_string(),
        }),
        display: (env("WAYLAND_DISPLAY"), env("DISPLAY")),
        runtime: (
            helper.runtime_dir.to_owned(),
            helper.socket.to_owned(),
            std::fs::metadata(helper.runtime_dir)
                .map(|m| m.mode() & 0o777)
                .unwrap_or(0),
        ),
        facts,
    }
}

/// Runs every check on the live system.
pub fn run(helper: &Helper<'_>) -> DoctorReport {
    judge(&observe(helper))
}

/// Every check, from what was observed.
pub fn judge(o: &Observations) -> DoctorReport {
    DoctorReport {
        checks: vec![
            user_namespaces(&o.user_namespaces),
            subordinate_ids(&o.facts),
            uidmap_tools(&o.facts, o.uidmap_privileged),
            cgroups(&o.cgroups),
            network(&o.network),
            landlock(&o.landlock),
            display(&o.display),
            runtime_dir(&o.runtime),
        ],
    }
}

fn user_namespaces(probe: &Result<(), String>) -> Check {
    match probe {
        Ok(()) => check(
            "user_namespaces",
            "Unprivileged user namespaces",
            CheckStatus::Ok,
            "a user, mount and pid namespace can be created without root".into(),
            None,
        ),
        Err(why) => check(
            "user_namespaces",
            "Unprivileged user namespaces",
            CheckStatus::Fail,
            format!("cannot create a user namespace: {why}"),
            Some(
                "enable them: `sudo sysctl -w kernel.unprivileged_userns_clone=1` (Debian), \
                 or on Ubuntu `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`"
                    .into(),
            ),
        ),
    }
}

fn subordinate_ids(facts: &host::HostFacts) -> Check {
    let fix = format!(
        "sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {}",
        facts.user
    );
    match (facts.subuids.first(), facts.subgids.first()) {
        (Some(u), Some(g)) => check(
            "subordinate_ids",
            "Subordinate uid/gid range",
            CheckStatus::Ok,
            format!(
                "{}: uids {}-{}, gids {}-{}",
                facts.user,
                u.start,
                u.start as u64 + u.count as u64 - 1,
                g.start,
                g.start as u64 + g.count as u64 - 1
            ),
            None,
        ),
        _ => check(
            "subordinate_ids",
            "Subordinate uid/gid range",
            CheckStatus::Warn,
            format!(
                "{} has no range in /etc/subuid and /etc/subgid: sandboxes get a single-uid map \
                 (programs that switch users fail inside)",
                facts.user
            ),
            Some(fix),
        ),
    }
}

fn privileged(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o4000 != 0 && m.uid() == 0)
        || xattr_caps(path)
}

/// Whether the file carries file capabilities (some distributions ship newuidmap that way).
fn xattr_caps(path: &Path) -> bool {
    Command::new("getcap")
        .arg(path)
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cap_set"))
}

fn uidmap_tools(facts: &host::HostFacts, privileged: bool) -> Check {
    match (&facts.newuidmap, &facts.newgidmap) {
        (Some(u), Some(g)) if privileged => check(
            "uidmap",
            "newuidmap and newgidmap",
            CheckStatus::Ok,
            format!("{} and {} are installed setuid", u.display(), g.display()),
            None,
        ),
        (Some(u), Some(_)) => check(
            "uidmap",
            "newuidmap and newgidmap",
            CheckStatus::Warn,
            format!(
                "{} is installed but neither setuid root nor file-capable",
                u.display()
            ),
            Some("reinstall the `uidmap` package: `sudo apt install --reinstall uidmap`".into()),
        ),
        _ => check(
            "uidmap",
            "newuidmap and newgidmap",
            CheckStatus::Warn,
            "not installed: sandboxes get a single-uid map".into(),
            Some("sudo apt install uidmap".into()),
        ),
    }
}

/// What the helper found at start: delegated cgroups, or the degraded mode and why.
fn cgroups(mode: &Mode) -> Check {
    let title = "cgroup v2 delegation (limits and metrics)";
    match mode {
        Mode::Delegated { .. } => check("cgroups", title, CheckStatus::Ok, mode.describe(), None),
        Mode::Degraded { .. } => check(
            "cgroups",
            title,
            CheckStatus::Warn,
            mode.describe(),
            Some(
                "run the helper as the systemd user service (Delegate=yes), on a system booted \
                 with the unified cgroup v2 hierarchy"
                    .into(),
            ),
        ),
    }
}

fn network(probe: &NetworkProbe) -> Check {
    let title = "User-mode networking";
    let Some(chosen) = probe.found.first() else {
        return check(
            "network",
            title,
            CheckStatus::Warn,
            "neither pasta nor slirp4netns is installed: sandboxes can have no network".into(),
            Some("sudo apt install passt (or slirp4netns)".into()),
        );
    };
    let name = chosen
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let found: Vec<String> = probe
        .found
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    match &probe.tun {
        Ok(()) => check(
            "network",
            title,
            CheckStatus::Ok,
            format!(
                "found {}; `--net user` uses {name} unless --net-backend says otherwise, and \
                 the tun device it needs opens",
                found.join(", ")
            ),
            None,
        ),
        Err(why) => check(
            "network",
            title,
            CheckStatus::Fail,
            format!(
                "{name} is installed but cannot work: it needs the tun device, and {why}; \
                 `--net user` fails"
            ),
            Some(
                "let every user open the tun device, as udev does on a desktop: \
                 `sudo chmod 0666 /dev/net/tun`, and for good a udev rule \
                 `KERNEL==\"tun\", MODE=\"0666\"` (e.g. in /etc/udev/rules.d/60-tun.rules)"
                    .into(),
            ),
        ),
    }
}

fn landlock(abi: &Result<i32, String>) -> Check {
    match abi {
        Ok(abi) => check(
            "landlock",
            "Landlock",
            CheckStatus::Ok,
            format!(
                "ABI {abi}: apps reach only the paths their sandbox grants, whatever is mounted"
            ),
            None,
        ),
        Err(why) => check(
            "landlock",
            "Landlock",
            CheckStatus::Warn,
            format!("not available ({why}): file access is fenced by the sandbox's mounts alone"),
            Some("boot a kernel with Landlock, with landlock in its lsm= option (Linux 5.13 or later)".into()),
        ),
    }
}

fn display((wayland, x11): &(Option<String>, Option<String>)) -> Check {
    match (wayland, x11) {
        (Some(w), _) => check("display", "Display", CheckStatus::Ok, format!("Wayland display {w}"), None),
        (None, Some(x)) => check(
            "display",
            "Display",
            CheckStatus::Warn,
            format!("only X11 ({x}): any X11 client can read every keystroke of the session"),
            Some("log in to a Wayland session to give apps a display safely".into()),
        ),
        (None, None) => check(
            "display",
            "Display",
            CheckStatus::Warn,
            "no display (WAYLAND_DISPLAY and DISPLAY are unset in the helper): graphical apps cannot be shown".into(),
            Some("start the helper from your desktop session (or let the Hutch window start it)".into()),
        ),
    }
}

fn runtime_dir((dir, socket, mode): &(PathBuf, PathBuf, u32)) -> Check {
    let status = if *mode == 0o700 {
        CheckStatus::Ok
    } else {
        CheckStatus::Fail
    };
    check(
        "runtime_dir",
        "Helper socket",
        status,
        format!("{} (folder mode {mode:o})", socket.display()),
        (status != CheckStatus::Ok).then(|| format!("chmod 700 {}", dir.display())),
    )
}

/// The namespaces a sandbox needs could not be made.
#[derive(Debug, thiserror::Error)]
#[error("unshare(CLONE_NEWUSER|CLONE_NEWNS): {}", .0.desc())]
pub struct ProbeError(nix::errno::Errno);

/// `hutch-helper probe-userns`: can this user create the namespaces a sandbox needs?
pub fn probe_userns() -> Result<(), ProbeError> {
    use nix::sched::CloneFlags;
    nix::sched::unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS).map_err(ProbeError)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A machine where everything works.
    fn healthy() -> Observations {
        Observations {
            user_namespaces: Ok(()),
            facts: host::HostFacts::alice(),
            uidmap_privileged: true,
            cgroups: Mode::Delegated {
                root: "/sys/fs/cgroup/user.slice/hutch".into(),
                controllers: vec!["cpu".into(), "memory".into(), "pids".into()],
            },
            network: NetworkProbe {
                found: vec!["/usr/bin/pasta".into()],
                tun: Ok(()),
            },
            landlock: Ok(7),
            display: (Some("wayland-0".into()), None),
            runtime: (
                "/run/user/1000/hutch".into(),
                "/run/user/1000/hutch/helper.sock".into(),
                0o700,
            ),
        }
    }

    fn the(report: &DoctorReport, id: &str) -> Check {
        report
            .checks
            .iter()
            .find(|c| c.id == id)
            .cloned()
            .unwrap_or_else(|| panic!("no check {id}"))
    }

    #[test]
    fn a_healthy_machine_passes_every_check() {
        let report = judge(&healthy());
        assert_eq!(report.checks.len(), 8);
        for c in &report.checks {
            assert_eq!(c.status, CheckStatus::Ok, "{c:?}");
            assert!(c.fix.is_none(), "{c:?}");
        }
    }

    /// Breaks one thing and reads the check that says so, with its fix.
    #[track_caller]
    fn broken(
        id: &str,
        status: CheckStatus,
        detail: &str,
        fix: &str,
        f: impl FnOnce(&mut Observations),
    ) {
        let mut o = healthy();
        f(&mut o);
        let report = judge(&o);
        let c = the(&report, id);
        assert_eq!(c.status, status, "{c:?}");
        assert!(c.detail.contains(detail), "{c:?}");
        assert!(c.fix.as_deref().is_some_and(|f| f.contains(fix)), "{c:?}");
        for other in report.checks.iter().filter(|c| c.id != id) {
            assert_eq!(other.status, CheckStatus::Ok, "only {id} broke: {other:?}");
        }
    }

    #[test]
    fn each_check_fails_with_its_fix() {
        broken(
            "user_namespaces",
            CheckStatus::Fail,
            "EPERM",
            "unprivileged_userns_clone=1",
            |o| o.user_namespaces = Err("unshare(CLONE_NEWUSER|CLONE_NEWNS): EPERM".into()),
        );
        broken(
            "subordinate_ids",
            CheckStatus::Warn,
            "no range in /etc/subuid",
            "usermod --add-subuids",
            |o| o.facts.subuids.clear(),
        );
        broken(
            "uidmap",
            CheckStatus::Warn,
            "not installed",
            "apt install uidmap",
            |o| o.facts.newuidmap = None,
        );
        broken(
            "uidmap",
            CheckStatus::Warn,
            "neither setuid root",
            "--reinstall uidmap",
            |o| o.uidmap_privileged = false,
        );
        broken(
            "cgroups",
            CheckStatus::Warn,
            "degraded",
            "Delegate=yes",
            |o| {
                o.cgroups = Mode::Degraded {
                    reason: "the memory controller is not delegated".into(),
                }
            },
        );
        broken(
            "network",
            CheckStatus::Warn,
            "neither pasta nor slirp4netns",
            "apt install passt",
            |o| o.network.found.clear(),
        );
        broken(
            "network",
            CheckStatus::Fail,
            "(mode 600): Permission denied",
            "chmod 0666 /dev/net/tun",
            |o| {
                o.network.tun =
                    Err("/dev/net/tun (mode 600): Permission denied (os error 13)".into())
            },
        );
        broken(
            "network",
            CheckStatus::Fail,
            "tun device",
            "KERNEL==\"tun\", MODE=\"0666\"",
            |o| o.network.tun = Err("/dev/net/tun (missing): No such file or directory".into()),
        );
        broken(
            "landlock",
            CheckStatus::Warn,
            "not enabled at boot",
            "lsm=",
            |o| o.landlock = Err("Landlock is built in but not enabled at boot".into()),
        );
        broken(
            "display",
            CheckStatus::Warn,
            "only X11",
            "Wayland session",
            |o| o.display = (None, Some(":0".into())),
        );
        broken(
            "display",
            CheckStatus::Warn,
            "no display",
            "desktop session",
            |o| o.display = (None, None),
        );
        broken(
            "runtime_dir",
            CheckStatus::Fail,
            "folder mode 755",
            "chmod 700 /run/user/1000/hutch",
            |o| o.runtime.2 = 0o755,
        );
    }
}
