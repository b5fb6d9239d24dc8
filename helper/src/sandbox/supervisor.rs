//! `hutch-helper supervise`: a fresh, single-threaded process per sandbox.
//!
//! It reads the plan from its control socket (fd 3), clones pid 1 into new namespaces, writes
//! the id maps from outside (newuidmap needs the child's pid and must run in the parent user
//! namespace), releases the child, relays pid 1's reports to the daemon and exits after it.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use hutch_core::protocol::ExitStatus;
use nix::fcntl::OFlag;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

use super::{InitReport, NAMESPACES, SupervisorEvent, idmap, init};
use crate::channel::{self, Receiver};
use crate::plan::SandboxPlan;
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

/// Runs the supervisor on `control`; returns its exit code.
pub fn run(control: OwnedFd) -> i32 {
    let control = UnixStream::from(control);
    let plan: SandboxPlan = match control
        .try_clone()
        .map(Receiver::new)
        .map(|mut rx| rx.recv())
    {
        Ok(Ok(plan)) => plan,
        Ok(Err(e)) => {
            tell(
                &control,
                &SupervisorEvent::Failed {
                    message: format!("read the plan: {e}"),
                },
            );
            return 1;
        }
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
    let (Ok((go_r, go_w)), Ok((report_r, report_w))) =
        (nix::unistd::pipe2(OFlag::O_CLOEXEC), UnixStream::pair())
    else {
        return fail("create the setup pipes".into());
    };
    let child = match sys::clone_process(NAMESPACES) {
        Ok(sys::CloneResult::Child) => {
            drop((go_w, report_r));
            drop(control);
            init::run(&plan, go_r, report_w)
        }
        Ok(sys::CloneResult::Parent { child }) => child,
        Err(e) => {
            return fail(format!(
                "cannot create the sandbox's namespaces: {e} (check `hutch doctor`: user \
                 namespaces must be enabled)"
            ));
        }
    };
    drop((go_r, report_w));
    if let Err(e) = idmap::write(child, &plan.id_map) {
        let _ = kill(child, Signal::SIGKILL);
        let _ = waitpid(child, None);
        return fail(format!("cannot write the sandbox's id maps: {e}"));
    }
    if std::fs::File::from(go_w).write_all(b"1").is_err() {
        let _ = waitpid(child, None);
        return fail("the sandbox's pid 1 died before setup".into());
    }

    let mut started = false;
    let mut failed = false;
    let mut final_status = None;
    let mut reports = Receiver::new(report_r);
    loop {
        let report = match reports.recv::<InitReport>() {
            Ok(report) => report,
            Err(e) if e.is_closed() => break,
            Err(e) => {
                tell(
                    &control,
                    &SupervisorEvent::Failed {
                        message: format!("bad report from pid 1: {e}"),
                    },
                );
                break;
            }
        };
        match report {
            InitReport::Running { .. } => {
                started = true;
                let terminal = reports.take_fds(1);
                let fds: Vec<BorrowedFd<'_>> = terminal.iter().map(|fd| fd.as_fd()).collect();
                let event = SupervisorEvent::Started {
                    init_pid: child.as_raw(),
                    app_pid: app_host_pid(child),
                };
                tell_with(&control, &event, &fds);
            }
            InitReport::SetupFailed { message } => {
                failed = true;
                tell(&control, &SupervisorEvent::Failed { message });
            }
            InitReport::Exited { status } => final_status = Some(status),
        }
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
        return fail(format!(
            "the sandbox's pid 1 ended ({status}) before starting the app"
        ));
    }
    if started {
        tell(&control, &SupervisorEvent::Exited { status });
    }
    0
}
