//! The one module of the workspace allowed to use `unsafe`: thin wrappers over the few system
//! calls that `nix` does not wrap safely. Each function puts the call and its arguments into
//! the error it returns; each `unsafe` block says why it is sound.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sched::CloneFlags;
use nix::unistd::Pid;

/// The error of the system call that just failed, saying which call it was.
fn failed(call: impl std::fmt::Display) -> io::Error {
    let err = io::Error::last_os_error();
    io::Error::new(err.kind(), format!("{call} failed: {err}"))
}

/// The value a system call returned, or, when it is negative (the call failed), the error
/// [`failed`] makes of `errno` and the call `call` names (asked only then).
fn check<T, D>(ret: T, call: impl FnOnce() -> D) -> io::Result<T>
where
    T: Copy + PartialOrd + Default,
    D: std::fmt::Display,
{
    if ret < T::default() {
        Err(failed(call()))
    } else {
        Ok(ret)
    }
}

/// Which side of a fork-like clone we are on.
#[derive(Debug)]
pub enum CloneResult {
    Parent { child: Pid },
    Child,
}

/// `clone(flags | SIGCHLD)` without a new stack: fork semantics, plus new namespaces.
///
/// Only for single-threaded processes (the sandbox supervisor and the sandbox's pid 1): the
/// child gets a copy of the address space with one thread, so it may allocate and take locks
/// only because no other thread could have held them.
pub fn clone_process(flags: CloneFlags) -> io::Result<CloneResult> {
    let raw_flags = flags.bits() as libc::c_ulong | libc::SIGCHLD as libc::c_ulong;
    // SAFETY: with a null stack pointer the raw clone syscall behaves like fork(2): the child
    // continues on a copy of the caller's stack. The callers are single-threaded processes
    // (documented above), so no lock or allocator state can be held by a vanished thread. The
    // remaining arguments (parent/child tid pointers, tls) are null and unused with these flags.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            raw_flags,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    match check(ret, || format!("clone({flags:?})"))? {
        0 => Ok(CloneResult::Child),
        pid => Ok(CloneResult::Parent {
            child: Pid::from_raw(pid as libc::pid_t),
        }),
    }
}

/// Marks every fd from `first` upwards close-on-exec (`close_range` with `CLOSE_RANGE_CLOEXEC`).
pub fn cloexec_from(first: RawFd) -> io::Result<()> {
    // SAFETY: close_range only changes fd flags in this process; it reads no memory of ours.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        )
    };
    check(ret, || format!("close_range({first}, ~0, CLOEXEC)")).map(drop)
}

/// Brings the loopback interface of the current network namespace up.
pub fn loopback_up() -> io::Result<()> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| io::Error::other(format!("socket(AF_INET) failed: {e}")))?;
    // SAFETY: ifreq is a plain C struct for which all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the NUL-terminated name and writes the flags into `req`, a
    // valid, exclusively borrowed ifreq that lives across the call.
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) };
    check(ret, || "ioctl(SIOCGIFFLAGS, lo)")?;
    // SAFETY: after SIOCGIFFLAGS the flags member of the union is the initialised one.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: as above; SIOCSIFFLAGS only reads `req`.
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) };
    check(ret, || "ioctl(SIOCSIFFLAGS, lo up)").map(drop)
}

/// Makes the terminal on `fd` the controlling terminal of this (session leader) process.
pub fn set_controlling_tty(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal) and touches no memory.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0 as libc::c_int) };
    check(ret, || "ioctl(TIOCSCTTY)").map(drop)
}

/// Arranges for `fd` to be open as `target` in the child that `cmd` starts (not close-on-exec).
pub fn pass_fd_as(cmd: &mut Command, fd: OwnedFd, target: RawFd) {
    // SAFETY: the closure runs in the forked child before exec and calls only async-signal-safe
    // functions (dup2, fcntl). It owns `fd`, which stays open in the parent until `cmd` drops.
    unsafe {
        cmd.pre_exec(move || {
            let raw = fd.as_raw_fd();
            if raw == target {
                if libc::fcntl(raw, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(raw, target) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Starts the child of `cmd` in a new session (detached from our terminal).
pub fn new_session(cmd: &mut Command) {
    // SAFETY: setsid is async-signal-safe and the closure captures nothing.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Opens a pidfd for `pid` (`pidfd_open`), so later signals cannot hit a recycled pid.
pub fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0 as libc::c_uint) };
    let ret = check(ret, || format!("pidfd_open({pid})"))?;
    // SAFETY: the syscall returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

/// Sends `signal` to the process behind `pidfd`.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    // SAFETY: pidfd_send_signal reads no memory when `info` is null.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null_mut::<libc::siginfo_t>(),
            0 as libc::c_uint,
        )
    };
    check(ret, || format!("pidfd_send_signal({signal})")).map(drop)
}

/// Takes ownership of an fd this process inherited at a known number.
pub fn take_inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD only reads the fd's flags; it fails with EBADF when `fd` is not open.
    let ret = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    check(ret, || {
        format!("fcntl({fd}, F_GETFD): fd {fd} is not open; it")
    })?;
    // SAFETY: the fd is open (checked above) and was placed for us by our parent (pass_fd_as);
    // nothing else in this process refers to it, so we may own and close it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // Do not leak it into the sandbox.
    nix::fcntl::fcntl(
        &owned,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(io::Error::from)?;
    Ok(owned)
}

/// Resets every signal to its default action and unblocks all signals, so a program we exec
/// starts as if from a clean shell (Rust ignores SIGPIPE; an ignored signal survives exec).
pub fn reset_signals() -> io::Result<()> {
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL registers no Rust code as a handler, so no handler can
        // run with broken invariants. Numbers the kernel reserves fail with EINVAL, ignored.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    nix::sys::signal::SigSet::empty()
        .thread_set_mask()
        .map_err(|e| io::Error::other(format!("sigprocmask: {e}")))
}

/// In the child that `cmd` starts: keep `fds` open across exec (at their numbers) and die with
/// SIGKILL when the parent does.
pub fn keep_fds_and_die_with_parent(cmd: &mut Command, fds: Vec<RawFd>) {
    // SAFETY: the closure runs in the forked child before exec and calls only async-signal-safe
    // functions (fcntl, prctl, getppid); it allocates nothing (the Vec was built before fork).
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &fds {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Removes an environment variable. Only for a process that has a single thread (Rust 2024
/// makes `remove_var` unsafe because another thread could be reading the environment).
pub fn remove_env_single_threaded(var: &str) {
    // SAFETY: called by the daemon in `daemon::bind`, before it starts any thread (the accept
    // loop, client and prewarm threads all start later), so nothing reads the environment
    // concurrently.
    unsafe { std::env::remove_var(var) }
}

/// `open_tree(fd, "", OPEN_TREE_CLONE | AT_RECURSIVE | AT_EMPTY_PATH | OPEN_TREE_CLOEXEC)`: a
/// detached copy of the mount tree at `fd` (the file or folder it names, with every mount
/// beneath it), to be set up and attached with [`mount_setattr`] and [`move_mount`]. Nothing
/// is looked up by name: the copy is of what `fd` already names.
pub fn clone_tree(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let flags = libc::OPEN_TREE_CLONE
        | libc::OPEN_TREE_CLOEXEC
        | libc::AT_RECURSIVE as libc::c_uint
        | libc::AT_EMPTY_PATH as libc::c_uint;
    // SAFETY: the path is a valid NUL-terminated empty string that outlives the call; the
    // kernel reads it and writes no memory of ours.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags as libc::c_ulong,
        )
    };
    let ret = check(ret, || "open_tree(OPEN_TREE_CLONE)")?;
    // SAFETY: open_tree returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

/// `mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, {attr_set: set})`: adds the
/// `MOUNT_ATTR_*` flags `set` to every mount of the tree at `tree` (clears none).
pub fn mount_set_flags(tree: BorrowedFd<'_>, set: u64) -> io::Result<()> {
    let attr = libc::mount_attr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the path is a valid empty C string and `attr` a valid mount_attr whose size is
    // passed; both outlive the call, which only reads them.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    check(ret, || format!("mount_setattr({set:#x})")).map(drop)
}

/// `move_mount(tree, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)`:
/// attaches the detached tree at `tree` on the file or folder `target` names (no lookup by
/// name on either side).
pub fn attach_tree(tree: BorrowedFd<'_>, target: BorrowedFd<'_>) -> io::Result<()> {
    let flags = libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH;
    // SAFETY: both paths are valid empty C strings that outlive the call; the kernel only
    // reads them.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            flags as libc::c_uint,
        )
    };
    check(ret, || "move_mount").map(drop)
}

/// A pidfd of the process on the other end of the Unix socket `sock` (`SO_PEERPIDFD`, Linux
/// 6.5); `None` on older kernels.
pub fn peer_pidfd(sock: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    /// `SO_PEERPIDFD` from `asm-generic/socket.h`.
    const SO_PEERPIDFD: libc::c_int = 77;
    let mut fd: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `fd`, an int that lives across the
    // call, and updates `len`.
    let ret = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_PEERPIDFD,
            (&mut fd as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    // Kernels before 6.5 do not know the option.
    if ret < 0
        && matches!(
            io::Error::last_os_error().raw_os_error(),
            Some(libc::ENOPROTOOPT | libc::EINVAL)
        )
    {
        return Ok(None);
    }
    check(ret, || "getsockopt(SO_PEERPIDFD)")?;
    // SAFETY: the kernel returned a new pidfd that nothing else owns.
    Ok((fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// The Landlock ABI version the running kernel offers (`landlock_create_ruleset` with
/// `LANDLOCK_CREATE_RULESET_VERSION`): asked of the kernel itself, which answers whether or
/// not securityfs is mounted. `ENOSYS`: not built in; `EOPNOTSUPP`: disabled at boot.
pub fn landlock_abi() -> io::Result<i32> {
    /// `LANDLOCK_CREATE_RULESET_VERSION` from `linux/landlock.h`.
    const VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute pointer and size 0 the kernel reads no memory of ours and
    // only returns the ABI version.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            VERSION,
        )
    };
    check(ret, || "landlock_create_ruleset(VERSION)").map(|v| v as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_call_is_named_with_its_error() {
        let err = take_inherited_fd(-1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "fcntl(-1, F_GETFD): fd -1 is not open; it failed: Bad file descriptor (os error 9)"
        );
        assert_eq!(err.kind(), io::Error::from_raw_os_error(libc::EBADF).kind());
    }

    #[test]
    fn a_call_that_did_not_fail_gives_its_value() {
        assert_eq!(check(7 as libc::c_long, || "never asked").unwrap(), 7);
        assert_eq!(check(0 as libc::c_int, || "never asked").unwrap(), 0);
    }
}
