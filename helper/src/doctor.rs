//! `hutch doctor`: what this machine can do for sandboxes, and how to fix what it cannot.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use hutch_core::protocol::{Check, CheckStatus, DoctorReport};

use crate::cgroup::Mode;
use crate::daemon::State;
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

/// Runs every check.
pub fn run(state: &State) -> DoctorReport {
    let facts = host::gather(Vec::new(), PathBuf::new());
    DoctorReport {
        checks: vec![
            user_namespaces(),
            subordinate_ids(&facts),
            uidmap_tools(&facts),
            cgroups(state),
            network_tools(),
            landlock(),
            display(),
            runtime_dir(state),
        ],
    }
}

fn user_namespaces() -> Check {
    let probe = Command::new("/proc/self/exe").arg("probe-userns").output();
    match probe {
        Ok(out) if out.status.success() => check(
            "user_namespaces",
            "Unprivileged user namespaces",
            CheckStatus::Ok,
            "a user, mount and pid namespace can be created without root".into(),
            None,
        ),
        other => {
            let why = match other {
                Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                Err(e) => e.to_string(),
            };
            check(
                "user_namespaces",
                "Unprivileged user namespaces",
                CheckStatus::Fail,
                format!("cannot create a user namespace: {why}"),
                Some(
                    "enable them: `sudo sysctl -w kernel.unprivileged_userns_clone=1` (Debian), \
                     or on Ubuntu `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`"
                        .into(),
                ),
            )
        }
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

fn uidmap_tools(facts: &host::HostFacts) -> Check {
    match (&facts.newuidmap, &facts.newgidmap) {
        (Some(u), Some(g)) if privileged(u) && privileged(g) => check(
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
fn cgroups(state: &State) -> Check {
    let title = "cgroup v2 delegation (limits and metrics)";
    match &state.cgroups.mode {
        Mode::Delegated { .. } => check(
            "cgroups",
            title,
            CheckStatus::Ok,
            state.cgroups.mode.describe(),
            None,
        ),
        Mode::Degraded { .. } => check(
            "cgroups",
            title,
            CheckStatus::Warn,
            state.cgroups.mode.describe(),
            Some(
                "run the helper as the systemd user service (Delegate=yes), on a system booted \
                 with the unified cgroup v2 hierarchy"
                    .into(),
            ),
        ),
    }
}

fn network_tools() -> Check {
    let found: Vec<String> = ["pasta", "slirp4netns"]
        .into_iter()
        .filter_map(|t| host::find_tool(t).map(|p| p.display().to_string()))
        .collect();
    if found.is_empty() {
        check(
            "network",
            "User-mode networking",
            CheckStatus::Warn,
            "neither pasta nor slirp4netns is installed: sandboxes can have no network".into(),
            Some("sudo apt install passt (or slirp4netns)".into()),
        )
    } else {
        check(
            "network",
            "User-mode networking",
            CheckStatus::Ok,
            format!(
                "found {}; `--net user` uses {} unless --net-backend says otherwise",
                found.join(", "),
                if found.iter().any(|f| f.ends_with("/pasta")) {
                    "pasta"
                } else {
                    "slirp4netns"
                }
            ),
            None,
        )
    }
}

fn landlock() -> Check {
    let lsm = std::fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default();
    if lsm.split(',').any(|m| m.trim() == "landlock") {
        check(
            "landlock",
            "Landlock",
            CheckStatus::Ok,
            "active: apps reach only the paths their sandbox grants, whatever is mounted".into(),
            None,
        )
    } else {
        check(
            "landlock",
            "Landlock",
            CheckStatus::Warn,
            format!(
                "not among this kernel's active security modules ({}): file access is fenced by \
                 the sandbox's mounts alone",
                if lsm.trim().is_empty() {
                    "none listed"
                } else {
                    lsm.trim()
                }
            ),
            Some("boot with landlock in the lsm= kernel option (Linux 5.13 or later)".into()),
        )
    }
}

fn display() -> Check {
    let wayland = std::env::var("WAYLAND_DISPLAY")
        .ok()
        .filter(|v| !v.is_empty());
    let x11 = std::env::var("DISPLAY").ok().filter(|v| !v.is_empty());
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

fn runtime_dir(state: &State) -> Check {
    let mode = std::fs::metadata(&state.runtime_dir)
        .map(|m| m.mode() & 0o777)
        .unwrap_or(0);
    let status = if mode == 0o700 {
        CheckStatus::Ok
    } else {
        CheckStatus::Fail
    };
    check(
        "runtime_dir",
        "Helper socket",
        status,
        format!("{} (folder mode {mode:o})", state.socket.display()),
        (status != CheckStatus::Ok).then(|| format!("chmod 700 {}", state.runtime_dir.display())),
    )
}

/// `hutch-helper probe-userns`: can this user create the namespaces a sandbox needs?
pub fn probe_userns() -> Result<(), String> {
    use nix::sched::CloneFlags;
    nix::sched::unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("unshare(CLONE_NEWUSER|CLONE_NEWNS): {}", e.desc()))
}
