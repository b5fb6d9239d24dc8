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
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use hutch_core::protocol::ExitStatus;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::{
    ExitRecord, InitCommand, InitReport, NAMESPACES, SandboxRecord, SupervisorCommand,
    SupervisorEvent, files, idmap, init, network,
};
use crate::daemon::logs::LOG_CAPACITY;
use crate::plan::{IdMapPlan, MountOp};
use crate::sys;
use hutch_client::channel::{self, Receiver};

/// The fd on which the daemon passes the control socket.
pub const CONTROL_FD: i32 = 3;

fn tell(control: &UnixStream, event: &SupervisorEvent) {
    tell_with(control, event, &[]);
}

fn tell_with(control: &UnixStream, event: &SupervisorEvent, fds: &[BorrowedFd<'_>]) {
    // The daemon may have crashed; the sandbox keeps running without it.
    let _ = channel::send(control, event, fds);
}

/// The lock on a sandbox folder, held until this process exits.
static FOLDER_LOCK: std::sync::OnceLock<nix::fcntl::Flock<std::fs::File>> =
    std::sync::OnceLock::new();

fn hold_folder_lock(dir: &std::path::Path) {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(files::LOCK));
    if let Ok(file) = file
        && let Ok(lock) = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
    {
        let _ = FOLDER_LOCK.set(lock);
    }
}

/// Whether process `pid` (as this process sees it) is in this process's pid namespace.
fn same_pid_namespace(pid: i32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let ns = |p: &str| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
    let ours = ns("/proc/self/ns/pid");
    ours.is_some() && ours == ns(&format!("/proc/{pid}/ns/pid"))
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
    commands: &Receiver,
) -> Result<Prepared, String> {
    let (go, go_child) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    let (report_r, report_w) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    let child = match sys::clone_process(NAMESPACES) {
        Ok(sys::CloneResult::Child) => {
            drop((go, report_r));
            // pid 1 (and the app's process it forks) must not hold the daemon's control
            // socket (the daemon learns of the supervisor's death by its end of file), neither
            // the supervisor's copy for reading. `init::run` never returns, so the borrowed
            // streams are never used or closed again.
            let _ = nix::unistd::close(control.as_raw_fd());
            let _ = nix::unistd::close(commands.stream().as_raw_fd());
            init::run(go_child, report_w)
        }
        Ok(sys::CloneResult::Parent { child }) => {
            // Held for the supervisor's whole life (not inherited by pid 1, cloned above): a
            // daemon finding it locked knows a live supervisor owns the folder.
            if let Some(dir) = root.parent() {
                hold_folder_lock(dir);
            }
            child
        }
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

/// Binds [`files::SOCKET`] in the sandbox folder `dir`, without listening.
fn bind_socket(dir: &Path) -> Option<(OwnedFd, SocketFile)> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, bind, socket};
    let path = dir.join(files::SOCKET);
    let _ = std::fs::remove_file(&path);
    let socket = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .ok()?;
    bind(socket.as_raw_fd(), &UnixAddr::new(&path).ok()?).ok()?;
    Some((socket, SocketFile(path)))
}

/// The takeover socket's file: removed when this is dropped, on whichever path the supervisor
/// ends.
#[derive(Debug)]
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
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
    let prepared = match prepare(id_map, root, base_mounts, cgroup, &control, &commands) {
        Ok(p) => p,
        Err(message) => return fail(message),
    };
    // The file is made now, while nothing waits: at the launch it only starts listening.
    let dir = network::state_dir(&prepared.root);
    let (socket, socket_file) = bind_socket(&dir).unzip();
    tell(&control, &SupervisorEvent::Ready);

    let (plan, record, log, caller) = match commands.recv::<SupervisorCommand>() {
        Ok(SupervisorCommand::Launch {
            plan,
            record,
            log,
            caller,
        }) => (plan, record, log, caller),
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
    let mut stdio = commands.take_fds(5);
    // Last the caller's pidfd, before it the output pipe, each when the launch says so.
    let mut extra = |wanted: bool, what: &str| -> Result<Option<OwnedFd>, String> {
        match (wanted, stdio.len()) {
            (false, _) => Ok(None),
            (true, 0) => Err(format!("a launch with {what} came without its fd")),
            (true, _) => Ok(stdio.pop()),
        }
    };
    let (caller, log) = match extra(caller, "a caller to follow")
        .and_then(|c| Ok((c, extra(log, "an output pipe")?)))
    {
        Ok(fds) => fds,
        Err(message) => {
            kill_and_reap(prepared.child);
            return fail(message);
        }
    };
    drop(commands);
    // The network comes up before the app starts.
    let stack = match network::start(&plan.network, prepared.child, &dir) {
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
    let relay = Relay {
        control: Some(control),
        socket,
        socket_file,
        listener: None,
        dir,
        record: *record,
        init: prepared.child,
        app_pid: None,
        network_down: None,
        log,
        lost_output: 0,
        caller,
        kill_at: None,
    };
    relay.supervise(prepared.reports, stack)
}

/// The supervisor's side of a running sandbox: pid 1's reports go to whichever daemon listens
/// now. The daemon that started the sandbox may die (a crash, `kill -9`); the next one
/// connects to [`files::SOCKET`] and takes over, and until then the supervisor keeps what a
/// daemon would want: the app's output (in [`files::OUTPUT`]) and its exit (in
/// [`files::EXIT`]).
struct Relay {
    control: Option<UnixStream>,
    /// Bound, not listening yet: a daemon's connection is refused until the app runs.
    socket: Option<OwnedFd>,
    socket_file: Option<SocketFile>,
    listener: Option<UnixListener>,
    /// The sandbox's runtime folder.
    dir: PathBuf,
    record: SandboxRecord,
    init: Pid,
    app_pid: Option<i32>,
    network_down: Option<String>,
    /// The read end of the app's output pipe ([`Stdio::Log`](hutch_core::protocol::Stdio::Log)).
    log: Option<OwnedFd>,
    /// Output dropped because [`files::OUTPUT`] was full.
    lost_output: u64,
    /// A pidfd of the client the sandbox is bound to (a foreground `hutch run`), until it ends.
    caller: Option<OwnedFd>,
    /// When the sandbox is killed: set when its caller ended and it was asked to stop.
    kill_at: Option<std::time::Instant>,
}

/// How long an app whose caller ended has between SIGTERM and SIGKILL.
const CALLER_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

impl Relay {
    fn tell(&mut self, event: &SupervisorEvent) {
        self.tell_with(event, &[]);
    }

    /// Tells the daemon, if one listens; a failed send means it is gone.
    fn tell_with(&mut self, event: &SupervisorEvent, fds: &[BorrowedFd<'_>]) {
        if let Some(control) = &self.control
            && channel::send(control, event, fds).is_err()
        {
            self.control = None;
        }
    }

    /// Listens for the next daemon (once the app runs), on the socket bound while the sandbox
    /// was prepared.
    fn listen(&mut self) {
        if let Some(socket) = self.socket.take()
            && nix::sys::socket::listen(
                &socket,
                nix::sys::socket::Backlog::new(8).unwrap_or(nix::sys::socket::Backlog::MAXCONN),
            )
            .is_ok()
        {
            self.listener = Some(UnixListener::from(socket));
        }
    }

    fn remove_socket(&mut self) {
        self.listener = None;
        self.socket = None;
        self.socket_file = None;
    }

    /// Hands the sandbox to a daemon that connected.
    fn take_over(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        // Our own user only (the folder is 0700 as well), and not from inside a sandbox (its
        // processes run as the same user, in a pid namespace of their own).
        let ours =
            nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
                .is_ok_and(|c| {
                    c.uid() == nix::unistd::getuid().as_raw() && same_pid_namespace(c.pid())
                });
        if !ours {
            return;
        }
        // A daemon is connected and alive: the newcomer is not the one to take over (a second
        // helper on another socket, say). Its closed end would read as readable.
        if let Some(control) = &self.control {
            let mut fds = [PollFd::new(control.as_fd(), PollFlags::POLLIN)];
            if matches!(poll(&mut fds, PollTimeout::ZERO), Ok(0)) {
                return;
            }
            self.control = None;
        }
        let Ok(pidfd) = sys::pidfd_open(self.init) else {
            return;
        };
        let event = SupervisorEvent::Adopted {
            record: Box::new(self.record.clone()),
            init_pid: self.init.as_raw(),
            app_pid: self.app_pid,
            network_down: self.network_down.clone(),
            log: self.log.is_some(),
            lost_output: self.lost_output,
        };
        let mut fds = vec![pidfd.as_fd()];
        fds.extend(self.log.as_ref().map(|fd| fd.as_fd()));
        if channel::send(&stream, &event, &fds).is_ok() {
            self.control = Some(stream);
            self.lost_output = 0;
        }
    }

    /// Moves output waiting in the pipe into [`files::OUTPUT`] (no daemon reads it now), so
    /// the app never blocks on a full pipe. `wait` says whether to wait for some.
    fn save_output(&mut self, wait: bool) {
        let Some(log) = &self.log else { return };
        let path = self.dir.join(files::OUTPUT);
        // A file that cannot be opened keeps nothing: the bytes are read (the app must not
        // block on a full pipe) and counted as lost.
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .ok();
        let mut kept = match &file {
            Some(f) => f.metadata().map(|m| m.len()).unwrap_or(0),
            None => LOG_CAPACITY as u64,
        };
        let mut chunk = [0u8; 16 * 1024];
        let mut first = wait;
        loop {
            // One read per readiness: the fd is blocking (its open file is shared with the
            // daemons, whose readers must block), and poll says a read will not.
            if !first {
                let mut fds = [PollFd::new(log.as_fd(), PollFlags::POLLIN)];
                if !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0) {
                    return;
                }
            }
            first = false;
            let n = match nix::unistd::read(log, &mut chunk) {
                Ok(0) => {
                    // Every writer has closed it: nothing more will come (and a closed pipe
                    // would wake every poll from now on).
                    self.log = None;
                    return;
                }
                Err(_) => return,
                Ok(n) => n,
            };
            let room = (LOG_CAPACITY as u64).saturating_sub(kept) as usize;
            let mut keep = n.min(room);
            if keep > 0 {
                match file
                    .as_mut()
                    .map(|f| std::io::Write::write_all(f, &chunk[..keep]))
                {
                    Some(Ok(())) => kept += keep as u64,
                    _ => keep = 0,
                }
            }
            self.lost_output += (n - keep) as u64;
        }
    }

    /// Leaves the exit (with the record) for a daemon that starts later.
    fn record_exit(&self, status: ExitStatus) {
        let exit = ExitRecord {
            record: self.record.clone(),
            status,
            lost_output: self.lost_output,
        };
        let Ok(text) = serde_json::to_vec(&exit) else {
            return;
        };
        let tmp = self.dir.join("exit.json.new");
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, self.dir.join(files::EXIT));
        }
    }

    /// Waits until pid 1 has something to say. Meanwhile: tells the daemon when the network
    /// stack dies, notices the daemon going away, hands the sandbox to a new one, and keeps
    /// the output no daemon drains.
    fn wait_for_report(
        &mut self,
        reports: &Receiver,
        stack: &mut Option<network::Stack>,
    ) -> std::io::Result<()> {
        loop {
            let (report, stack_died, daemon_gone, new_daemon, output, caller_gone) = {
                let optional = [
                    stack.as_ref().map(|s| s.pidfd.as_fd()),
                    self.listener.as_ref().map(|l| l.as_fd()),
                    self.control.as_ref().map(|c| c.as_fd()),
                    match self.control {
                        None => self.log.as_ref().map(|fd| fd.as_fd()),
                        Some(_) => None,
                    },
                    self.caller.as_ref().map(|fd| fd.as_fd()),
                ];
                let mut fds = vec![PollFd::new(reports.stream().as_fd(), PollFlags::POLLIN)];
                let mut at = [None; 5];
                for (slot, fd) in at.iter_mut().zip(optional) {
                    if let Some(fd) = fd {
                        fds.push(PollFd::new(fd, PollFlags::POLLIN));
                        *slot = Some(fds.len() - 1);
                    }
                }
                let [stack_at, listener_at, control_at, output_at, caller_at] = at;
                // Woken in time to kill a sandbox whose caller ended, if it has not stopped.
                let timeout = match self.kill_at {
                    Some(at) => PollTimeout::try_from(
                        at.saturating_duration_since(std::time::Instant::now()),
                    )
                    .unwrap_or(PollTimeout::MAX),
                    None => PollTimeout::NONE,
                };
                match poll(&mut fds, timeout) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(e.into()),
                    Ok(_) => {}
                }
                let ready = |at: Option<usize>| {
                    at.is_some_and(|i| fds[i].revents().is_some_and(|r| !r.is_empty()))
                };
                (
                    ready(Some(0)),
                    ready(stack_at),
                    ready(control_at),
                    ready(listener_at),
                    ready(output_at),
                    ready(caller_at),
                )
            };
            if caller_gone {
                // The foreground `hutch run` this sandbox belongs to is gone (killed, crashed):
                // the app goes with it, as a terminal's job does.
                self.caller = None;
                let _ = kill(self.init, Signal::SIGTERM);
                self.kill_at = Some(std::time::Instant::now() + CALLER_GRACE);
            }
            if self
                .kill_at
                .is_some_and(|at| std::time::Instant::now() >= at)
            {
                self.kill_at = None;
                let _ = kill(self.init, Signal::SIGKILL);
            }
            if stack_died && let Some(mut live) = stack.take() {
                let message = live.death_message();
                self.network_down = Some(message.clone());
                self.tell(&SupervisorEvent::NetworkDown { message });
            }
            if daemon_gone {
                // The daemon never writes after the launch: readable means closed.
                self.control = None;
            }
            if new_daemon {
                self.take_over();
            }
            if output && self.control.is_none() {
                self.save_output(true);
            }
            if report {
                return Ok(());
            }
        }
    }

    /// Relays pid 1's reports until it exits.
    fn supervise(mut self, mut reports: Receiver, mut stack: Option<network::Stack>) -> i32 {
        let child = self.init;
        let mut started = false;
        let mut failed = false;
        let mut final_status = None;
        loop {
            if !reports.has_buffered()
                && let Err(e) = self.wait_for_report(&reports, &mut stack)
            {
                let message = format!("cannot wait for pid 1: {e}");
                self.tell(&SupervisorEvent::Failed { message });
                break;
            }
            let report = match reports.recv::<InitReport>() {
                Ok(report) => report,
                Err(e) if e.is_closed() => break,
                Err(e) => {
                    let message = format!("bad report from pid 1: {e}");
                    self.tell(&SupervisorEvent::Failed { message });
                    break;
                }
            };
            match report {
                InitReport::Prepared => {}
                InitReport::Confined { .. } => {}
                InitReport::Running {
                    landlock, notes, ..
                } => {
                    started = true;
                    self.app_pid = app_host_pid(child);
                    self.record.landlock = landlock.clone();
                    let terminal = reports.take_fds(1);
                    let fds: Vec<BorrowedFd<'_>> = terminal.iter().map(|fd| fd.as_fd()).collect();
                    let event = SupervisorEvent::Started {
                        init_pid: child.as_raw(),
                        app_pid: self.app_pid,
                        notes,
                        landlock,
                    };
                    self.tell_with(&event, &fds);
                    // From now on a daemon started after a crash of this one can take over.
                    self.listen();
                }
                InitReport::SetupFailed { message } => {
                    failed = true;
                    self.tell(&SupervisorEvent::Failed { message });
                }
                InitReport::Exited { status } => {
                    // Tell at once: tearing down the namespaces after pid 1 exits takes a few
                    // milliseconds nobody needs to wait for.
                    final_status = Some(status);
                    self.tell(&SupervisorEvent::Exited { status });
                    // Kept for a daemon that starts before this process ends (after telling:
                    // the socket a newcomer would ask stays until the end).
                    self.record_exit(status);
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
            self.tell(&SupervisorEvent::Failed { message });
            self.remove_socket();
            return 1;
        }
        if started && final_status.is_none() {
            // pid 1 died without reporting (killed): its wait status is the sandbox's.
            self.tell(&SupervisorEvent::Exited { status });
        }
        if started {
            if self.control.is_none() {
                self.save_output(false);
            }
            self.record_exit(status);
        }
        // Only now, with the exit written down, does the socket go: a daemon that connected
        // meanwhile is refused and finds the exit in its stead.
        self.remove_socket();
        0
    }
}
