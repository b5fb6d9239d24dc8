//! The app's own process: forked by pid 1 while the sandbox is prepared, it does everything
//! that does not depend on the plan, then waits for its part of the plan ([`AppLaunch`]).
//!
//! Order matters. Before the launch: every signal back to default, a new session (no
//! controlling terminal to inject input into), no_new_privs (needed for an unprivileged seccomp
//! filter, and setuid binaries gain nothing), every capability dropped, the seccomp filters
//! every sandbox gets. At the launch (pid 1 has pivoted into the finished root meanwhile, which
//! moves this process's root with it): the stdio or the terminal, the working folder, fds above
//! 2 marked close-on-exec, Landlock, the profile's seccomp filter last (so that nothing after
//! it needs a denied call), `execve`.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use caps::CapSet;
use nix::errno::Errno;
use seccompiler::BpfProgram;

use serde::{Deserialize, Serialize};

use super::{InitReport, SETUP_FAILED_CODE, SetupError, seccomp};
use crate::plan::SandboxPlan;
use crate::plan::landlock::FsRule;
use crate::sys;
use hutch_client::channel::Receiver;

/// Exit code when the command is not found (as shells do).
pub const NOT_FOUND_CODE: i32 = 127;
/// Exit code when the command exists but cannot be executed.
pub const NOT_EXECUTABLE_CODE: i32 = 126;

/// Drops every capability from every set (bounding and ambient included).
pub fn drop_all_capabilities() -> Result<(), SetupError> {
    for set in [
        CapSet::Ambient,
        CapSet::Bounding,
        CapSet::Inheritable,
        CapSet::Effective,
        CapSet::Permitted,
    ] {
        caps::clear(None, set)
            .map_err(|e| SetupError::new(format!("clear {set:?} capabilities"), e))?;
    }
    Ok(())
}

/// Queued signals the app may hold at most.
const SIGNALS_PENDING: u64 = 4096;

/// How many tasks (processes and threads) the app may have: a quarter of the machine's pids,
/// between 1024 and 8192, or the profile's process limit when it is higher. (A lower process
/// limit is the delegated cgroup's `pids.max` to enforce: it counts what it refuses, which the
/// window and `hutch stats` show.)
pub fn task_share(pids: Option<u64>, pid_max: u64) -> u64 {
    (pid_max / 4).clamp(1024, 8192).max(pids.unwrap_or(0))
}

/// Caps what the app may take of what the kernel counts per user: tasks (`RLIMIT_NPROC`) and
/// queued signals (`RLIMIT_SIGPENDING`). Since Linux 5.15 both are counted per user namespace,
/// so the cap is this sandbox's alone: without it (and without a delegated `pids.max`) one app
/// could take every process of the user, and every pid of the machine, and queue every signal
/// the user may. Limits already lower stay.
fn cap_user_counts(pids: Option<u64>) -> Result<(), SetupError> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(32_768);
    for (resource, cap) in [
        (Resource::RLIMIT_NPROC, task_share(pids, pid_max)),
        (Resource::RLIMIT_SIGPENDING, SIGNALS_PENDING),
    ] {
        let (soft, hard) =
            getrlimit(resource).map_err(|e| SetupError::new(format!("read {resource:?}"), e))?;
        let hard = hard.min(cap);
        setrlimit(resource, soft.min(hard), hard)
            .map_err(|e| SetupError::new(format!("limit {resource:?} to {hard}"), e))?;
    }
    Ok(())
}

/// Finds `name` in `path_var` the way a shell does; names with a `/` are taken as they are.
pub fn resolve_command(name: &str, path_var: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    path_var
        .split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// pid 1 to the waiting app: its part of the plan. The caller's stdio fds come attached
/// unless the app gets a terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppLaunch {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub landlock: Vec<FsRule>,
    /// Where the launch mounted file systems (over or beneath paths of the base root).
    pub mounted: Vec<PathBuf>,
    pub allow_user_namespaces: bool,
    /// The follower side of a terminal made inside the sandbox.
    pub terminal: Option<PathBuf>,
    /// With a terminal: which of stdin, stdout and stderr are the caller's fds (attached, in
    /// that order) instead.
    #[serde(default)]
    pub keep: [bool; 3],
    /// The profile's process limit, if any (it bounds the app's tasks without cgroups too).
    #[serde(default)]
    pub pids: Option<u64>,
}

impl AppLaunch {
    pub fn new(plan: &SandboxPlan, terminal: Option<PathBuf>) -> Self {
        Self {
            argv: plan.argv.clone(),
            env: plan.env.clone(),
            cwd: plan.cwd.clone(),
            landlock: plan.landlock.clone(),
            mounted: plan
                .mounts
                .iter()
                .filter_map(|op| op.mounted_at())
                .map(Path::to_path_buf)
                .collect(),
            allow_user_namespaces: plan.allow_user_namespaces,
            terminal,
            keep: plan.keep,
            pids: plan.limits.pids,
        }
    }
}

fn cstring(s: &str) -> Result<CString, SetupError> {
    CString::new(s).map_err(|_| SetupError::new("prepare exec", format!("{s:?} contains a NUL")))
}

/// Where the app's stdin, stdout and stderr come from.
#[derive(Debug, Clone, Copy)]
enum AppStdio<'a> {
    /// The follower side of a terminal made inside the sandbox, but for the streams `keep`
    /// marks, which are the caller's fds given (in order).
    Terminal(&'a Path, [bool; 3], &'a [OwnedFd]),
    /// The caller's three fds (fewer leave the rest as pid 1 had them: /dev/null).
    Fds(&'a [OwnedFd]),
}

fn dup_to(fd: &OwnedFd, n: usize) -> nix::Result<()> {
    match n {
        0 => nix::unistd::dup2_stdin(fd),
        1 => nix::unistd::dup2_stdout(fd),
        _ => nix::unistd::dup2_stderr(fd),
    }
}

fn attach_stdio(stdio: AppStdio<'_>) -> Result<(), SetupError> {
    match stdio {
        AppStdio::Terminal(path, keep, kept) => {
            let what = format!("attach terminal {}", path.display());
            let tty = nix::fcntl::open(
                path,
                nix::fcntl::OFlag::O_RDWR,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| SetupError::new(what.clone(), e))?;
            let mut kept = kept.iter();
            for (n, keep) in keep.into_iter().enumerate() {
                let fd = match keep {
                    true => kept.next().ok_or_else(|| {
                        SetupError::new(what.clone(), "a kept stream came without its fd")
                    })?,
                    false => &tty,
                };
                dup_to(fd, n).map_err(|e| SetupError::new(what.clone(), e))?;
            }
            // The app's session leads from the terminal (whichever stream it is on).
            sys::set_controlling_tty(tty.as_fd())
                .map_err(|e| SetupError::new("make the terminal controlling", e))
        }
        AppStdio::Fds(fds) => {
            let what = "attach the caller's stdio";
            if let Some(fd) = fds.first() {
                nix::unistd::dup2_stdin(fd).map_err(|e| SetupError::new(what, e))?;
            }
            if let Some(fd) = fds.get(1) {
                nix::unistd::dup2_stdout(fd).map_err(|e| SetupError::new(what, e))?;
            }
            if let Some(fd) = fds.get(2) {
                nix::unistd::dup2_stderr(fd).map_err(|e| SetupError::new(what, e))?;
            }
            Ok(())
        }
    }
}

/// What the app's process does before the plan is known.
fn ready(base_filters: &[BpfProgram]) -> Result<(), SetupError> {
    // Whatever pid 1 blocked or ignored, the app starts with every signal default and unblocked.
    sys::reset_signals().map_err(|e| SetupError::new("reset signals", e))?;
    nix::unistd::setsid().map_err(|e| SetupError::new("setsid", e))?;
    // Like pid 1: while it runs Hutch's code, the app's process is not to be inspected.
    nix::sys::prctl::set_dumpable(false).map_err(|e| SetupError::new("set non-dumpable", e))?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| SetupError::new("set no_new_privs", e))?;
    drop_all_capabilities()?;
    seccomp::install(base_filters).map_err(|e| SetupError::new("install seccomp filter", e))
}

/// What the app's process does once its part of the plan came, before Landlock.
fn attach(launch: &AppLaunch, stdio: &[OwnedFd]) -> Result<(), SetupError> {
    attach_stdio(match &launch.terminal {
        Some(follower) => AppStdio::Terminal(follower, launch.keep, stdio),
        None => AppStdio::Fds(stdio),
    })?;
    cap_user_counts(launch.pids)?;
    std::env::set_current_dir(&launch.cwd)
        .map_err(|e| SetupError::new(format!("chdir {}", launch.cwd.display()), e))?;
    sys::cloexec_from(3).map_err(|e| SetupError::new("mark fds close-on-exec", e))?;
    Ok(())
}

fn report(fd: &OwnedFd, msg: &InitReport) {
    let mut line = serde_json::to_vec(msg).unwrap_or_default();
    line.push(b'\n');
    // If pid 1 is gone there is nobody left to tell.
    let _ = std::fs::File::from(fd.try_clone().expect("dup report fd")).write_all(&line);
}

fn fail(fd: &OwnedFd, err: SetupError) -> ! {
    report(
        fd,
        &InitReport::SetupFailed {
            message: err.to_string(),
        },
    );
    std::process::exit(SETUP_FAILED_CODE)
}

/// Runs in the app's process, forked by pid 1 while the sandbox is prepared; never returns.
///
/// Readies itself, waits on `go` for [`AppLaunch`] (and the stdio fds), then execs the app.
/// Reports to pid 1 on `report_fd` (closed by the exec): [`InitReport::Prepared`] once ready,
/// [`InitReport::Confined`] once confined, or why it failed. Ends quietly if pid 1 goes away
/// first.
///
/// `ahead` is the prepared root with the Landlock rules of its base mounts: the ruleset is
/// made with them now, while nothing waits for it.
pub fn wait_and_run(
    go: UnixStream,
    report_fd: OwnedFd,
    filters: &seccomp::Filters,
    ahead: (&Path, &[FsRule]),
) -> ! {
    if let Err(e) = ready(&filters.base) {
        fail(&report_fd, e);
    }
    // Made afresh at the launch if this fails.
    let pending = super::landlock::begin(ahead.0, ahead.1).ok();
    // pid 1 waits for this before it reports the sandbox prepared: the paths above are looked
    // up under the prepared root, which the launch's pivot_root takes away.
    report(&report_fd, &InitReport::Prepared);
    let mut go = Receiver::new(go);
    let launch = match go.recv::<AppLaunch>() {
        Ok(launch) => launch,
        // pid 1 went away (the sandbox was never used): nobody to tell.
        Err(e) if e.is_closed() => std::process::exit(SETUP_FAILED_CODE),
        Err(e) => fail(&report_fd, SetupError::new("receive the launch", e)),
    };
    let stdio = go.take_fds(3);
    drop(go);
    if let Err(e) = attach(&launch, &stdio) {
        fail(&report_fd, e);
    }
    drop(stdio);
    let policy = seccomp::Policy {
        allow_user_namespaces: launch.allow_user_namespaces,
    };
    let name = &launch.argv[0];
    let path_var = launch
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let Some(program) = resolve_command(name, path_var) else {
        eprintln!("command not found in sandbox: {name}");
        std::process::exit(NOT_FOUND_CODE);
    };
    let built = (|| {
        let program = cstring(&program.to_string_lossy())?;
        let argv = launch
            .argv
            .iter()
            .map(|a| cstring(a))
            .collect::<Result<Vec<_>, _>>()?;
        let env = launch
            .env
            .iter()
            .map(|(k, v)| cstring(&format!("{k}={v}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok::<_, SetupError>((program, argv, env))
    })();
    let (c_program, argv, env) = match built {
        Ok(v) => v,
        Err(e) => fail(&report_fd, e),
    };
    let confined = match pending {
        Some(pending) if pending.fits(&launch.landlock, &launch.mounted) => {
            pending.finish(&launch.landlock, &launch.mounted)
        }
        _ => super::landlock::apply(&launch.landlock),
    };
    match confined {
        Ok(landlock) => report(&report_fd, &InitReport::Confined { landlock }),
        Err(e) => fail(&report_fd, e),
    }
    if let Err(e) = seccomp::install(filters.for_policy(policy)) {
        fail(&report_fd, SetupError::new("install seccomp filter", e));
    }
    let err = match nix::unistd::execve(&c_program, &argv, &env) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    let code = match err {
        Errno::ENOENT => {
            eprintln!("command not found in sandbox: {}", program.display());
            NOT_FOUND_CODE
        }
        other => {
            eprintln!(
                "cannot execute {} in sandbox: {}",
                program.display(),
                other.desc()
            );
            NOT_EXECUTABLE_CODE
        }
    };
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_task_share_is_a_quarter_of_the_pids_or_a_higher_process_limit() {
        assert_eq!(task_share(None, 32_768), 8192);
        assert_eq!(task_share(None, 4_194_304), 8192);
        assert_eq!(task_share(None, 2048), 1024);
        // A lower process limit is the cgroup's to enforce (and count).
        assert_eq!(task_share(Some(16), 32_768), 8192);
        assert_eq!(task_share(Some(20_000), 32_768), 20_000);
    }

    #[test]
    fn commands_resolve_through_path() {
        assert_eq!(
            resolve_command("sh", "/nonexistent:/bin:/usr/bin"),
            Some("/bin/sh".into())
        );
        assert_eq!(resolve_command("./x", "/bin"), Some("./x".into()));
        assert_eq!(
            resolve_command("no-such-command-hutch", "/bin:/usr/bin"),
            None
        );
        // Not executable: /etc/passwd exists but is no program.
        assert_eq!(resolve_command("passwd", "/etc"), None);
    }
}
