//! The sandbox's pid 1: builds the root, starts the app, forwards signals, reaps orphans and
//! reports the app's exit. When it exits, the kernel kills whatever is left in the sandbox.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use hutch_core::protocol::ExitStatus;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::mounts::Host;
use super::{InitCommand, InitReport, SETUP_FAILED_CODE, SetupError, exec, rootfs, seccomp};
use crate::plan::SandboxPlan;
use crate::sys;
use hutch_client::channel::{self, Receiver};

/// Signals pid 1 passes on to the app.
const FORWARDED: &[Signal] = &[
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
    Signal::SIGALRM,
];

fn send(report: &UnixStream, msg: &InitReport, fds: &[BorrowedFd<'_>]) {
    // A vanished supervisor means pid 1 dies next (PDEATHSIG); nothing to do here.
    let _ = channel::send(report, msg, fds);
}

/// A pseudo-terminal from the sandbox's own devpts: its controller and the follower's path.
struct Terminal {
    controller: OwnedFd,
    follower: std::path::PathBuf,
}

fn open_terminal(rows: u16, cols: u16) -> Result<Terminal, SetupError> {
    use nix::fcntl::OFlag;
    use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
    let what = "open a terminal in the sandbox";
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| SetupError::new(what, e))?;
    grantpt(&master).map_err(|e| SetupError::new(what, e))?;
    unlockpt(&master).map_err(|e| SetupError::new(what, e))?;
    let follower = ptsname_r(&master).map_err(|e| SetupError::new(what, e))?;
    hutch_client::sys::set_window_size(master.as_fd(), rows, cols)
        .map_err(|e| SetupError::new(what, e))?;
    let controller = master
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| SetupError::new(what, e))?;
    Ok(Terminal {
        controller,
        follower: follower.into(),
    })
}

/// Finishes the root and enters it; returns what the launch is told (sockets hidden).
fn setup(plan: &SandboxPlan) -> Result<Vec<String>, SetupError> {
    let notes = rootfs::finish_and_enter(&Host, &plan.root, &plan.mounts)?;
    nix::unistd::sethostname(&plan.hostname)
        .map_err(|e| SetupError::new(format!("set host name {:?}", plan.hostname), e))?;
    // Non-dumpable: the app (same uid) cannot open /proc/1/exe or ptrace us (CVE-2019-5736).
    nix::sys::prctl::set_dumpable(false).map_err(|e| SetupError::new("set non-dumpable", e))?;
    Ok(notes)
}

/// The app's process, forked while the sandbox is prepared and waiting for its launch.
struct WaitingApp {
    pid: Pid,
    /// Where its [`exec::AppLaunch`] goes.
    go: UnixStream,
    /// Its reports; end of file once it has exec'd (or died).
    reports: OwnedFd,
}

/// Forks the app's process (see [`exec::wait_and_run`]).
fn fork_app(
    control: &Receiver,
    report: &UnixStream,
    filters: &seccomp::Filters,
    ahead: (&std::path::Path, &[crate::plan::landlock::FsRule]),
) -> Result<WaitingApp, SetupError> {
    let (go, app_go) = UnixStream::pair().map_err(|e| SetupError::new("create app socket", e))?;
    let (exec_r, exec_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| SetupError::new("create exec pipe", e))?;
    match sys::clone_process(nix::sched::CloneFlags::empty()) {
        Ok(sys::CloneResult::Child) => {
            // The app holds none of pid 1's channels to the supervisor, nor pid 1's end of its
            // own. (This forked copy never returns, so their owners never close them again.)
            for fd in [
                control.stream().as_raw_fd(),
                report.as_raw_fd(),
                go.as_raw_fd(),
            ] {
                let _ = nix::unistd::close(fd);
            }
            drop(exec_r);
            exec::wait_and_run(app_go, exec_w, filters, ahead)
        }
        Ok(sys::CloneResult::Parent { child }) => Ok(WaitingApp {
            pid: child,
            go,
            reports: exec_r,
        }),
        Err(e) => Err(SetupError::new("fork the app", e)),
    }
}

/// The first report of the app's process: one line, which it writes before it waits (so no
/// second line can follow it into this read).
fn first_report(reports: &OwnedFd) -> Option<InitReport> {
    let mut line = Vec::new();
    let mut buf = [0u8; 4096];
    while !line.ends_with(b"\n") {
        match nix::unistd::read(reports, &mut buf) {
            Ok(0) => break,
            Ok(n) => line.extend_from_slice(&buf[..n]),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    serde_json::from_slice(line.trim_ascii_end()).ok()
}

/// Why a launch failed whose app's process ended (`status`) before it got its launch.
fn gone_before_launch(status: nix::Result<WaitStatus>) -> SetupError {
    let how = match status {
        Ok(WaitStatus::Signaled(_, sig, _)) => format!("was killed by {sig}"),
        Ok(WaitStatus::Exited(_, code)) => format!("exited with code {code}"),
        _ => "is gone".to_owned(),
    };
    SetupError::new(
        "launch",
        format!("the app's process {how} before the launch"),
    )
}

/// Why pid 1 stops before the app runs (it then exits with [`SETUP_FAILED_CODE`]).
#[derive(Debug)]
enum Stop {
    /// The supervisor gave up (the id maps could not be written), or the sandbox was never
    /// used: nobody waits for a report.
    Quietly,
    /// The app's process reported its own failure: passed on as it is.
    Pass(InitReport),
    /// A step of the setup failed.
    Failed(SetupError),
}

impl From<SetupError> for Stop {
    fn from(e: SetupError) -> Self {
        Self::Failed(e)
    }
}

/// Reports why the sandbox stopped before its app ran, and exits: the one way out before the
/// launch.
fn stop(report: &UnixStream, why: Stop) -> ! {
    match why {
        Stop::Quietly => {}
        Stop::Pass(msg) => send(report, &msg, &[]),
        Stop::Failed(e) => send(
            report,
            &InitReport::SetupFailed {
                message: e.to_string(),
            },
            &[],
        ),
    }
    std::process::exit(SETUP_FAILED_CODE)
}

/// A prepared sandbox, idle until its launch.
struct Prepared {
    go: Receiver,
    root: std::path::PathBuf,
    base_mounts: Vec<crate::plan::MountOp>,
    app: WaitingApp,
    /// The signals pid 1 handles (blocked).
    handled: SigSet,
}

/// Runs as pid 1 of the new pid namespace; never returns.
///
/// Commands arrive on `go`: first [`InitCommand::Prepare`] (once the id maps are written),
/// which builds the base of the root and forks the app's process, which readies itself and
/// waits; then [`InitCommand::Launch`] with the plan and the app's stdin, stdout and stderr
/// (none for a terminal run), which finishes the root and lets the app go. In between it is an
/// idle, pre-made sandbox.
pub fn run(go: UnixStream, report: UnixStream) -> ! {
    // Die with the supervisor, whatever way it dies.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    let (app, handled) = match prepare(go, &report).and_then(|p| launch(p, &report)) {
        Ok(running) => running,
        Err(why) => stop(&report, why),
    };

    // pid 1 keeps no privilege it does not need either.
    let _ = nix::sys::prctl::set_no_new_privs();
    let _ = exec::drop_all_capabilities();

    let status = reap_until(app, &handled);
    send(&report, &InitReport::Exited { status }, &[]);
    std::process::exit(status.shell_code())
}

/// On [`InitCommand::Prepare`]: the base of the root, the sandbox's own clocks and limits, and
/// the app's process, forked and ready; reports [`InitReport::Prepared`].
fn prepare(go: UnixStream, report: &UnixStream) -> Result<Prepared, Stop> {
    let mut go = Receiver::new(go);
    let Ok(InitCommand::Prepare {
        root,
        base_mounts,
        cgroup_ns,
    }) = go.recv()
    else {
        return Err(Stop::Quietly);
    };
    // The supervisor moved us into our own cgroup after the clone: make it the root of a new
    // cgroup namespace, so the app sees only its own cgroup.
    if cgroup_ns {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP).map_err(|e| {
            SetupError::new("enter a cgroup namespace rooted at the sandbox's cgroup", e)
        })?;
    }
    rootfs::prepare(&Host, &root, &base_mounts)?;
    // The app's process (forked below) gets a boot clock of its own.
    own_boot_clock()?;
    share_of_inotify();
    // Every sandbox has its loopback up (the first socket in a network namespace is slow to
    // make: done before the launch).
    sys::loopback_up().map_err(|e| SetupError::new("bring up loopback", e))?;
    let filters =
        seccomp::Filters::build().map_err(|e| SetupError::new("build seccomp filter", e))?;
    // Block the signals we handle before forking, so none is lost in between.
    let mut handled = SigSet::empty();
    handled.add(Signal::SIGCHLD);
    for &sig in FORWARDED {
        handled.add(sig);
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&handled), None)
        .map_err(|e| SetupError::new("block signals", e))?;
    let base_rules = crate::plan::landlock::rules(&base_mounts);
    let app = fork_app(&go, report, &filters, (&root, &base_rules))?;
    // Prepared once the app's process is ready too (it looks paths up under the root that a
    // launch would pivot away).
    match first_report(&app.reports) {
        Some(InitReport::Prepared) => {}
        Some(failed @ InitReport::SetupFailed { .. }) => return Err(Stop::Pass(failed)),
        other => {
            let message = format!("the app's process did not get ready (it said {other:?})");
            return Err(SetupError::new("prepare", message).into());
        }
    }
    send(report, &InitReport::Prepared, &[]);
    Ok(Prepared {
        go,
        root,
        base_mounts,
        app,
        handled,
    })
}

/// On [`InitCommand::Launch`]: the rest of the root, entered, and the app let go; reports
/// [`InitReport::Running`]. Returns the app's pid and the signals pid 1 handles.
fn launch(prepared: Prepared, report: &UnixStream) -> Result<(Pid, SigSet), Stop> {
    let Prepared {
        mut go,
        root,
        base_mounts,
        app,
        handled,
    } = prepared;
    let plan = match go.recv() {
        Ok(InitCommand::Launch(plan)) => plan,
        _ => return Err(Stop::Quietly),
    };
    let stdio = go.take_fds(3);
    drop(go);
    if plan.root != root || plan.base_mounts != base_mounts {
        let why = "the plan does not fit the prepared root";
        return Err(SetupError::new("launch", why).into());
    }
    let plan = &*plan;
    let notes = setup(plan)?;
    let terminal = plan
        .tty
        .map(|(rows, cols)| open_terminal(rows, cols))
        .transpose()?;
    // The app's process waited while the sandbox was idle (ready: a failure to get ready was
    // reported at the preparation): it may have been killed meanwhile.
    let waited = waitpid(app.pid, Some(WaitPidFlag::WNOHANG));
    if !matches!(waited, Ok(WaitStatus::StillAlive)) {
        return Err(gone_before_launch(waited).into());
    }
    let launch = exec::AppLaunch::new(plan, terminal.as_ref().map(|t| t.follower.clone()));
    // With a terminal, only the streams the caller keeps (its pipes and files) come along.
    let fds: Vec<BorrowedFd<'_>> = stdio.iter().map(|fd| fd.as_fd()).collect();
    if channel::send(&app.go, &launch, &fds).is_err() {
        // Its process died since the check above.
        return Err(gone_before_launch(waitpid(app.pid, None)).into());
    }
    drop(fds);
    drop(app.go);
    // Only the app holds the caller's stdio now: its end of file is the caller's.
    drop(stdio);
    // The reports close on a successful exec; before that, the app may report a failure.
    let mut msg = String::new();
    let _ = std::fs::File::from(app.reports).read_to_string(&mut msg);
    let app = app.pid;
    let mut landlock = None;
    for line in msg.lines() {
        match serde_json::from_str(line) {
            Ok(InitReport::Confined { landlock: status }) => landlock = Some(status),
            parsed => {
                let _ = waitpid(app, None);
                return Err(Stop::Pass(parsed.unwrap_or(InitReport::SetupFailed {
                    message: format!("the app failed before exec: {line}"),
                })));
            }
        }
    }
    let fds: Vec<BorrowedFd<'_>> = terminal.iter().map(|t| t.controller.as_fd()).collect();
    send(
        report,
        &InitReport::Running {
            app_pid: app.as_raw(),
            landlock,
            notes,
        },
        &fds,
    );
    // The client holds the controller now; pid 1 keeps no copy.
    drop(terminal);
    Ok((app, handled))
}

/// Puts the children of this process in a time namespace of their own whose boot clock
/// starts now: the sandbox's `/proc/uptime`, `btime` in `/proc/stat`, process start times and
/// `CLOCK_BOOTTIME` count from its making, not from the host's boot (which would tell how long
/// the host has been up and, with the start times of its own processes, identify it).
///
/// The monotonic clock is left alone: Wayland and PipeWire compare timestamps the compositor
/// and sound server take on the host with the app's own, and would break. Kernels without
/// time namespaces (before 5.6) keep the host's clocks.
fn own_boot_clock() -> Result<(), SetupError> {
    let newtime = nix::sched::CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);
    match nix::sched::unshare(newtime) {
        Ok(()) => {}
        Err(nix::errno::Errno::EINVAL) => return Ok(()),
        Err(e) => return Err(SetupError::new("make a time namespace", e)),
    }
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map_err(|e| SetupError::new("read the boot clock", e))?;
    // The offset may not take the clock below zero: it starts at one second.
    let offset = format!("boottime {} 0\n", 1 - now.tv_sec());
    std::fs::write("/proc/self/timens_offsets", offset)
        .map_err(|e| SetupError::io("set the sandbox's boot clock (timens_offsets)".into(), e))
}

/// The share of the user's inotify instances and watches one sandbox may hold: they count
/// against the user's own (`fs.inotify.max_user_instances`, 128 by default), which an app could
/// otherwise use up, leaving the user's programs, and the next launch's look for sockets, none.
const INOTIFY_SHARE: u64 = 4;

/// Caps the sandbox's user namespace at a quarter of the user's inotify instances and watches
/// (`/proc/sys/user/max_inotify_*` are per user namespace, and charged up to the user's; the
/// user's own limits are `fs.inotify.max_user_*`). Best effort: kernels before 4.11 have no
/// such limits per namespace.
fn share_of_inotify() {
    for (knob, user, least) in [
        ("max_inotify_instances", "max_user_instances", 8),
        ("max_inotify_watches", "max_user_watches", 8192),
    ] {
        let users = std::fs::read_to_string(format!("/proc/sys/fs/inotify/{user}"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(128);
        let share = (users / INOTIFY_SHARE).max(least);
        let _ = std::fs::write(format!("/proc/sys/user/{knob}"), share.to_string());
    }
}

/// Forwards signals to `app` and reaps every child until `app` exits.
fn reap_until(app: Pid, handled: &SigSet) -> ExitStatus {
    loop {
        let sig = match handled.wait() {
            Ok(sig) => sig,
            Err(_) => continue,
        };
        if sig != Signal::SIGCHLD {
            let _ = kill(app, sig);
            continue;
        }
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == app => return ExitStatus::Code(code),
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == app => {
                    return ExitStatus::Signal(sig as i32);
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_report_is_one_line_and_anything_else_is_none() {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        nix::unistd::write(&w, b"\"prepared\"\n").unwrap();
        assert_eq!(first_report(&r), Some(InitReport::Prepared));
        nix::unistd::write(&w, b"not a report\n").unwrap();
        assert_eq!(first_report(&r), None);
        drop(w);
        assert_eq!(first_report(&r), None);
    }

    #[test]
    fn an_app_gone_before_its_launch_says_how() {
        let pid = Pid::from_raw(2);
        let killed = gone_before_launch(Ok(WaitStatus::Signaled(pid, Signal::SIGKILL, false)));
        assert_eq!(
            killed.to_string(),
            "launch: the app's process was killed by SIGKILL before the launch"
        );
        let exited = gone_before_launch(Ok(WaitStatus::Exited(pid, 3)));
        assert_eq!(
            exited.to_string(),
            "launch: the app's process exited with code 3 before the launch"
        );
        let gone = gone_before_launch(Err(nix::errno::Errno::ECHILD));
        assert_eq!(
            gone.to_string(),
            "launch: the app's process is gone before the launch"
        );
    }
}
