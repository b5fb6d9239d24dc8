//! The sandbox's pid 1: builds the root, starts the app, forwards signals, reaps orphans and
//! reports the app's exit. When it exits, the kernel kills whatever is left in the sandbox.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;

use hutch_core::protocol::ExitStatus;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::{InitReport, SETUP_FAILED_CODE, SetupError, exec, rootfs, seccomp};
use crate::plan::SandboxPlan;
use crate::sys;

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

fn send(report: &mut std::fs::File, msg: &InitReport) {
    let mut line = serde_json::to_vec(msg).unwrap_or_default();
    line.push(b'\n');
    // A vanished supervisor means pid 1 dies next (PDEATHSIG); nothing to do here.
    let _ = report.write_all(&line);
}

fn setup(plan: &SandboxPlan) -> Result<(), SetupError> {
    rootfs::build_and_enter(plan)?;
    nix::unistd::sethostname(&plan.hostname)
        .map_err(|e| SetupError::new(format!("set host name {:?}", plan.hostname), e))?;
    sys::loopback_up().map_err(|e| SetupError::new("bring up loopback", e))?;
    // Non-dumpable: the app (same uid) cannot open /proc/1/exe or ptrace us (CVE-2019-5736).
    nix::sys::prctl::set_dumpable(false).map_err(|e| SetupError::new("set non-dumpable", e))?;
    Ok(())
}

/// Runs as pid 1 of the new pid namespace; never returns.
pub fn run(plan: &SandboxPlan, go: OwnedFd, report: OwnedFd) -> ! {
    let mut report = std::fs::File::from(report);
    // Die with the supervisor, whatever way it dies.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    let mut byte = [0u8; 1];
    match std::fs::File::from(go).read(&mut byte) {
        Ok(1) => {}
        // The supervisor gave up (the id maps could not be written).
        _ => std::process::exit(SETUP_FAILED_CODE),
    }
    let fail = |report: &mut std::fs::File, e: SetupError| -> ! {
        send(report, &InitReport::SetupFailed { message: e.to_string() });
        std::process::exit(SETUP_FAILED_CODE)
    };
    if let Err(e) = setup(plan) {
        fail(&mut report, e);
    }
    let programs = match seccomp::build(seccomp::Policy {
        allow_user_namespaces: plan.allow_user_namespaces,
    }) {
        Ok(p) => p,
        Err(e) => fail(&mut report, SetupError::new("build seccomp filter", e)),
    };

    // Block the signals we handle before forking, so none is lost in between.
    let mut handled = SigSet::empty();
    handled.add(Signal::SIGCHLD);
    for &sig in FORWARDED {
        handled.add(sig);
    }
    let mut old_mask = SigSet::empty();
    if let Err(e) = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&handled), Some(&mut old_mask)) {
        fail(&mut report, SetupError::new("block signals", e));
    }
    let (exec_r, exec_w) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => fail(&mut report, SetupError::new("create exec pipe", e)),
    };
    let app = match sys::clone_process(nix::sched::CloneFlags::empty()) {
        Ok(sys::CloneResult::Child) => {
            drop(exec_r);
            exec::run_app(plan, exec_w, &programs, &old_mask)
        }
        Ok(sys::CloneResult::Parent { child }) => child,
        Err(e) => fail(&mut report, SetupError::new("fork the app", e)),
    };
    drop(exec_w);
    // The exec pipe closes on a successful exec; before that, the app may report a failure.
    let mut msg = String::new();
    let _ = std::fs::File::from(exec_r).read_to_string(&mut msg);
    if let Some(line) = msg.lines().next() {
        let _ = waitpid(app, None);
        let report_msg = serde_json::from_str(line).unwrap_or(InitReport::SetupFailed {
            message: format!("the app failed before exec: {line}"),
        });
        send(&mut report, &report_msg);
        std::process::exit(SETUP_FAILED_CODE);
    }
    send(&mut report, &InitReport::Running { app_pid: app.as_raw() });

    // pid 1 keeps no privilege it does not need either.
    let _ = nix::sys::prctl::set_no_new_privs();
    let _ = exec::drop_all_capabilities();

    let status = reap_until(app, &handled);
    send(&mut report, &InitReport::Exited { status });
    std::process::exit(status.shell_code())
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
