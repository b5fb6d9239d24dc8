//! `hutch-helper supervise`: a fresh, single-threaded process per sandbox.
//!
//! 1. On [`SupervisorCommand::Prepare`] it clones pid 1 into new namespaces and writes the id
//!    maps from outside (newuidmap needs the child's pid and must run in the parent user
//!    namespace), then says [`SupervisorEvent::Ready`]. The daemon keeps one such prepared
//!    supervisor idle, so a launch does not wait for process start-up and the id-map tools.
//! 2. On [`SupervisorCommand::Launch`] it hands the plan and the app's stdio to pid 1, relays
//!    pid 1's reports to the daemon, and exits after pid 1.
//!
//! If the daemon goes away before the launch, the prepared sandbox is discarded.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use hutch_core::protocol::ExitStatus;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::{
    InitCommand, InitReport, NAMESPACES, SupervisorCommand, SupervisorEvent, idmap, init, network,
};
use crate::channel::{self, Receiver};
use crate::plan::{IdMapPlan, MountOp};
use crate::sys;

/// The fd on which the daemon passes the control socket.
pub const CONTROL_FD: i32 = 3;

fn tell(control: &UnixStream, event: &SupervisorEvent) {
    tell_with(control, event, &[]);
}

fn tell_with(control: &UnixStream, event: &SupervisorEvent, fds: &[BorrowedFd<'_>]) {
    // The daemon may have crashed; the sandbox keeps running without it.
    let _ = channel::send(control, event, fds);
}

/// The app's host pid: the only child of pid 1.
fn app_host_pid(init: Pid) -> Option<i32> {
    let children = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

fn kill_and_reap(child: Pid) {
    let _ = kill(child, Signal::SIGKILL);
    let _ = waitpid(child, None);
}

/// pid 1, cloned and mapped, its base root built, waiting for its plan.
struct Prepared {
    child: Pid,
    go: UnixStream,
    reports: Receiver,
    id_map: IdMapPlan,
    root: PathBuf,
    base_mounts: Vec<MountOp>,
}

fn prepare(
    id_map: IdMapPlan,
    root: PathBuf,
    base_mounts: Vec<MountOp>,
    cgroup: Option<PathBuf>,
    control: &UnixStream,
) -> Result<Prepared, String> {
    let (go, go_child) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    let (report_r, report_w) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    let child = match sys::clone_process(NAMESPACES) {
        Ok(sys::CloneResult::Child) => {
            drop((go, report_r));
            // pid 1 must not hold the daemon's control socket (the daemon learns of the
            // supervisor's death by its end of file). `init::run` never returns, so the
            // borrowed stream is never used or closed again.
            let _ = nix::unistd::close(control.as_raw_fd());
            init::run(go_child, report_w)
        }
        Ok(sys::CloneResult::Parent { child }) => child,
        Err(e) => {
            return Err(format!(
                "cannot create the sandbox's namespaces: {e} (check `hutch doctor`: user \
                 namespaces must be enabled)"
            ));
        }
    };
    drop((go_child, report_w));
    // Into the sandbox's own cgroup before anything runs in it (the app is forked by pid 1
    // later, so it starts there too).
    if let Some(dir) = &cgroup {
        let procs = dir.join("cgroup.procs");
        if let Err(e) = std::fs::write(&procs, child.to_string()) {
            kill_and_reap(child);
            return Err(format!("cannot move pid 1 into {}: {e}", procs.display()));
        }
    }
    if let Err(e) = idmap::write(child, &id_map) {
        kill_and_reap(child);
        return Err(format!("cannot write the sandbox's id maps: {e}"));
    }
    let mut reports = Receiver::new(report_r);
    let command = InitCommand::Prepare {
        root: root.clone(),
        base_mounts: base_mounts.clone(),
        cgroup_ns: cgroup.is_some(),
    };
    let prepared = channel::send(&go, &command, &[])
        .map_err(|e| format!("the sandbox's pid 1 did not answer: {e}"))
        .and_then(|()| match reports.recv::<InitReport>() {
            Ok(InitReport::Prepared) => Ok(()),
            Ok(InitReport::SetupFailed { message }) => Err(message),
            Ok(other) => Err(format!("unexpected report from pid 1: {other:?}")),
            Err(e) => Err(format!("the sandbox's pid 1 did not report: {e}")),
        });
    if let Err(message) = prepared {
        kill_and_reap(child);
        return Err(message);
    }
    Ok(Prepared {
        child,
        go,
        reports,
        id_map,
        root,
        base_mounts,
    })
}

/// Runs the supervisor on `control`; returns its exit code.
pub fn run(control: OwnedFd) -> i32 {
    let control = UnixStream::from(control);
    let mut commands = match control.try_clone() {
        Ok(stream) => Receiver::new(stream),
        Err(e) => {
            tell(
                &control,
                &SupervisorEvent::Failed {
                    message: format!("dup control socket: {e}"),
                },
            );
            return 1;
        }
    };
    // Out of the daemon's session and process group: its terminal signals are not ours.
    let _ = nix::unistd::setsid();
    let fail = |message: String| {
        tell(&control, &SupervisorEvent::Failed { message });
        1
    };

    let (id_map, root, base_mounts, cgroup) = match commands.recv::<SupervisorCommand>() {
        Ok(SupervisorCommand::Prepare {
            id_map,
            root,
            base_mounts,
            cgroup,
        }) => (id_map, root, base_mounts, cgroup),
        Ok(other) => return fail(format!("expected prepare, got {other:?}")),
        Err(e) => return fail(format!("read the prepare command: {e}")),
    };
    let prepared = match prepare(id_map, root, base_mounts, cgroup, &control) {
        Ok(p) => p,
        Err(message) => return fail(message),
    };
    tell(&control, &SupervisorEvent::Ready);

    let plan = match commands.recv::<SupervisorCommand>() {
        Ok(SupervisorCommand::Launch { plan }) => plan,
        Ok(other) => {
            kill_and_reap(prepared.child);
            return fail(format!("expected launch, got {other:?}"));
        }
        Err(e) => {
            // The daemon went away (or shut down) while this sandbox was idle.
            kill_and_reap(prepared.child);
            if e.is_closed() {
                return 0;
            }
            return fail(format!("read the launch command: {e}"));
        }
    };
    if plan.id_map != prepared.id_map
        || plan.root != prepared.root
        || plan.base_mounts != prepared.base_mounts
    {
        kill_and_reap(prepared.child);
        return fail("the plan does not fit the prepared sandbox".into());
    }
    let stdio = commands.take_fds(3);
    // The network comes up before the app starts.
    let stack = match network::start(
        &plan.network,
        prepared.child,
        &network::state_dir(&plan.root),
    ) {
        Ok(stack) => stack,
        Err(e) => {
            kill_and_reap(prepared.child);
            return fail(format!("the sandbox's network could not start: {e}"));
        }
    };
    let fds: Vec<BorrowedFd<'_>> = stdio.iter().map(|fd| fd.as_fd()).collect();
    if let Err(e) = channel::send(&prepared.go, &InitCommand::Launch(plan), &fds) {
        kill_and_reap(prepared.child);
        if let Some(stack) = stack {
            stack.stop();
        }
        return fail(format!("the sandbox's pid 1 did not take its plan: {e}"));
    }
    // pid 1 and the app hold the caller's stdio from here; the supervisor keeps no copy.
    drop(stdio);
    drop(prepared.go);
    supervise(prepared.child, prepared.reports, &control, stack)
}

/// Waits for pid 1's next report, telling the daemon if the network stack dies meanwhile.
fn next_report(
    reports: &mut Receiver,
    stack: &mut Option<network::Stack>,
    control: &UnixStream,
) -> Result<InitReport, crate::channel::ChannelError> {
    while let Some(live) = stack.as_mut() {
        let (report_ready, stack_died) = {
            let mut fds = [
                PollFd::new(reports.stream().as_fd(), PollFlags::POLLIN),
                PollFd::new(live.pidfd.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(std::io::Error::from(e).into()),
                Ok(_) => {}
            }
            let ready = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), ready(&fds[1]))
        };
        if stack_died {
            let message = live.death_message();
            tell(control, &SupervisorEvent::NetworkDown { message });
            *stack = None;
        }
        if report_ready {
            break;
        }
    }
    reports.recv::<InitReport>()
}

/// Relays pid 1's reports until it exits.
fn supervise(
    child: Pid,
    mut reports: Receiver,
    control: &UnixStream,
    mut stack: Option<network::Stack>,
) -> i32 {
    let mut started = false;
    let mut failed = false;
    let mut final_status = None;
    loop {
        let report = match next_report(&mut reports, &mut stack, control) {
            Ok(report) => report,
            Err(e) if e.is_closed() => break,
            Err(e) => {
                let message = format!("bad report from pid 1: {e}");
                tell(control, &SupervisorEvent::Failed { message });
                break;
            }
        };
        match report {
            InitReport::Prepared => {}
            InitReport::Running { .. } => {
                started = true;
                let terminal = reports.take_fds(1);
                let fds: Vec<BorrowedFd<'_>> = terminal.iter().map(|fd| fd.as_fd()).collect();
                let event = SupervisorEvent::Started {
                    init_pid: child.as_raw(),
                    app_pid: app_host_pid(child),
                };
                tell_with(control, &event, &fds);
            }
            InitReport::SetupFailed { message } => {
                failed = true;
                tell(control, &SupervisorEvent::Failed { message });
            }
            InitReport::Exited { status } => {
                // Tell at once: tearing down the namespaces after pid 1 exits takes a few
                // milliseconds nobody needs to wait for.
                final_status = Some(status);
                tell(control, &SupervisorEvent::Exited { status });
            }
        }
    }
    // The network ends with the sandbox.
    if let Some(stack) = stack {
        stack.stop();
    }
    let waited = loop {
        match waitpid(child, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other,
        }
    };
    let status = final_status.unwrap_or(match waited {
        Ok(WaitStatus::Exited(_, code)) => ExitStatus::Code(code),
        Ok(WaitStatus::Signaled(_, sig, _)) => ExitStatus::Signal(sig as i32),
        _ => ExitStatus::Code(super::SETUP_FAILED_CODE),
    });
    if !started && !failed {
        let message = format!("the sandbox's pid 1 ended ({status}) before starting the app");
        tell(control, &SupervisorEvent::Failed { message });
        return 1;
    }
    if started && final_status.is_none() {
        // pid 1 died without reporting (killed): its wait status is the sandbox's.
        tell(control, &SupervisorEvent::Exited { status });
    }
    0
}
