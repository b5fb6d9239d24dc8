#!/usr/bin/python3
"""Escape probes: each tries one way out of a sandbox and says whether it got through.

    probe.py NAME [ARGS...]

prints one JSON line {"probe": NAME, "result": "escaped" | "blocked", "detail": ...} and
exits 0 (2 for a usage error). The same probe is run outside a sandbox (where it must get
through, so a "blocked" inside means something) and inside one, by tests/tests/escape.rs.
Self-contained: the Python standard library only (ctypes for the system calls it lacks).
"""

import ctypes
import errno
import fcntl
import json
import os
import signal
import socket
import struct
import sys
import termios
import time

LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.syscall.restype = ctypes.c_long

# x86_64 system call numbers.
SYS_PTRACE = 101
SYS_UNSHARE = 272
SYS_PERF_EVENT_OPEN = 298
SYS_KEYCTL = 250
SYS_ADD_KEY = 248
SYS_SYSLOG = 103


def report(name, escaped, detail):
    print(json.dumps({"probe": name, "result": "escaped" if escaped else "blocked", "detail": detail}))
    sys.stdout.flush()


def err(e):
    return f"{errno.errorcode.get(e, e)} ({os.strerror(e)})"


def syscall(*args):
    """(result, errno) of a raw system call."""
    ctypes.set_errno(0)
    res = LIBC.syscall(*[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    return res, ctypes.get_errno()


def host_process(pid, marker):
    """Sees a host process: its /proc entry shows the command line the test gave it."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError as e:
        return False, f"/proc/{pid}: {err(e.errno)}"
    if marker in cmdline:
        try:
            os.kill(int(pid), 0)
            signalled = "and may signal it"
        except OSError as e:
            signalled = f"signal: {err(e.errno)}"
        return True, f"sees pid {pid}: {cmdline.strip()} ({signalled})"
    return False, f"pid {pid} is another process here: {cmdline.strip()}"


def ptrace():
    """Attaches to a process with ptrace (its own child: host processes are not even named)."""
    child = os.fork()
    if child == 0:
        time.sleep(5)
        os._exit(0)
    PTRACE_SEIZE = 0x4206
    res, e = syscall(SYS_PTRACE, PTRACE_SEIZE, child, 0, 0)
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    return res == 0, "PTRACE_SEIZE of a child: " + ("attached" if res == 0 else err(e))


def i386_syscall():
    """Makes a system call through the 32-bit ABI (int 0x80) from this 64-bit process, the
    way past a filter written for x86_64 calls only: getpid, compared with the real pid."""
    import mmap

    child = os.fork()
    if child == 0:
        code = bytes([0xB8, 20, 0, 0, 0, 0xCD, 0x80, 0xC3])  # mov eax, 20; int 0x80; ret
        page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        page.write(code)
        call = ctypes.CFUNCTYPE(ctypes.c_long)(ctypes.addressof(ctypes.c_char.from_buffer(page)))
        os._exit(0 if call() == os.getpid() else 1)
    _, status = os.waitpid(child, 0)
    if os.WIFSIGNALED(status):
        return False, f"int 0x80: the process was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    code = os.WEXITSTATUS(status)
    return code == 0, "int 0x80 getpid: " + ("answered with the pid" if code == 0 else "wrong answer")


def read_file(path):
    try:
        with open(path, "rb") as f:
            data = f.read(64)
        return True, f"read {path}: {data[:32]!r}"
    except OSError as e:
        return False, f"{path}: {err(e.errno)}"


def try_writes(paths, text, verb):
    """Writes `text` to each path; (any landed, what happened to each)."""
    done, failed = [], []
    for path in paths:
        try:
            with open(path, "w") as f:
                f.write(text)
            done.append(f"{verb} {path}")
        except OSError as e:
            failed.append(f"{path}: {err(e.errno)}")
    return bool(done), "; ".join(done + failed)


def write_dirs(*dirs):
    """Creates a file in each folder; escaped if any write lands."""
    paths = [os.path.join(d, f"hutch-probe-{os.getpid()}") for d in dirs]
    return try_writes(paths, "written by an escape probe\n", "wrote")


def tiocsti():
    """Pushes a character into the input of its controlling terminal (TIOCSTI)."""
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)  # no line editing: an injected character is readable at once
    name = os.ttyname(slave)
    child = os.fork()
    if child == 0:
        os.close(master)
        os.setsid()
        fd = os.open(name, os.O_RDWR)  # the session's controlling terminal now
        try:
            fcntl.ioctl(fd, termios.TIOCSTI, b"Z")
            os._exit(0)
        except OSError as e:
            os.write(2, f"{e.errno}\n".encode())
            os._exit(e.errno or 1)
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        return False, f"TIOCSTI on its own terminal: {err(code)}"
    os.set_blocking(slave, False)
    try:
        got = os.read(slave, 16)
    except OSError:
        got = b""
    return b"Z" in got, f"TIOCSTI on its own terminal: injected, read back {got!r}"


def capabilities():
    """Holds capabilities, or could gain them: a non-empty bounding set without no_new_privs
    lets a setuid or file-capability program raise them."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    cap = {k: int(fields.get(k, "0"), 16) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
    nnp = fields.get("NoNewPrivs", "0") == "1"
    held = cap["CapEff"] or cap["CapPrm"] or cap["CapAmb"]
    gainable = cap["CapBnd"] != 0 and not nnp
    detail = " ".join(f"{k}={v:x}" for k, v in cap.items()) + f" NoNewPrivs={int(nnp)}"
    return bool(held or gainable), detail


def userns():
    """Makes a new user namespace (in a child, so this process is unchanged)."""
    CLONE_NEWUSER = 0x10000000
    child = os.fork()
    if child == 0:
        res, e = syscall(SYS_UNSHARE, CLONE_NEWUSER)
        os._exit(0 if res == 0 else (e or 1))
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    return code == 0, "unshare(CLONE_NEWUSER): " + ("made one" if code == 0 else err(code))


def keyring():
    """Reaches the user's keyring (shared by all the user's processes) and adds a key to it."""
    KEYCTL_GET_KEYRING_ID = 0
    KEY_SPEC_USER_KEYRING = -4
    res, e = syscall(SYS_KEYCTL, KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 0)
    if res < 0:
        return False, f"keyctl(GET_KEYRING_ID, user keyring): {err(e)}"
    key, e = syscall(SYS_ADD_KEY, b"user", b"hutch-probe", b"secret", 6, KEY_SPEC_USER_KEYRING)
    return True, f"user keyring {res}; add_key: " + (f"key {key}" if key >= 0 else err(e))


def perf():
    """Opens a performance counter on itself (user-space CPU clock)."""
    attr = bytearray(128)
    struct.pack_into("IIQ", attr, 0, 1, len(attr), 0)  # PERF_TYPE_SOFTWARE, size, CPU_CLOCK
    struct.pack_into("Q", attr, 40, (1 << 5) | (1 << 6))  # exclude_kernel, exclude_hv
    buf = ctypes.create_string_buffer(bytes(attr), len(attr))
    fd, e = syscall(SYS_PERF_EVENT_OPEN, buf, 0, -1, -1, 0)
    if fd >= 0:
        os.close(fd)
        return True, "perf_event_open: counter opened"
    return False, f"perf_event_open: {err(e)}"


def kernel_info():
    """What could identify the host or its kernel's memory. The test compares the values
    with the host's."""
    values = {"hostname": socket.gethostname()}
    for key, path in (("boot_id", "/proc/sys/kernel/random/boot_id"), ("machine_id", "/etc/machine-id")):
        try:
            with open(path) as f:
                values[key] = f.read().strip()
        except OSError as e:
            values[key] = f"unreadable: {err(e.errno)}"
    try:
        with open("/proc/kallsyms") as f:
            addrs = [line.split()[0] for _, line in zip(range(200), f)]
        values["kallsyms"] = "addresses" if any(int(a, 16) for a in addrs) else "zeroed"
    except OSError as e:
        values["kallsyms"] = f"unreadable: {err(e.errno)}"
    SYSLOG_ACTION_SIZE_BUFFER = 10
    res, e = syscall(SYS_SYSLOG, SYSLOG_ACTION_SIZE_BUFFER, 0, 0)
    values["kernel_log"] = "readable" if res >= 0 else err(e)
    return None, values


# Device nodes a sandbox has: everything else is beyond its minimal set.
MINIMAL_DEVICES = {"null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm",
                   "fd", "stdin", "stdout", "stderr", "core", "mqueue"}
PROBED_DEVICES = ["/dev/fuse", "/dev/net/tun", "/dev/kvm", "/dev/kmsg", "/dev/mem", "/dev/sda",
                  "/dev/vda", "/dev/nvme0n1", "/dev/input/event0", "/dev/snd/controlC0",
                  "/dev/dri/card0", "/dev/tty0", "/dev/console"]


def devices():
    opened, present = [], []
    for path in PROBED_DEVICES:
        if not os.path.exists(path):
            continue
        present.append(path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
            os.close(fd)
            opened.append(path)
        except OSError:
            pass
    extra = sorted(set(os.listdir("/dev")) - MINIMAL_DEVICES)
    detail = f"opened {opened or 'none'}; present {present or 'none'}; other /dev entries {extra}"
    return bool(opened), detail


def fds():
    """File descriptors beyond stdin, stdout and stderr, inherited from whoever started it."""
    listing = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
    extra = []
    for name in os.listdir(listing):
        fd = int(name)
        if fd > 2 and fd != listing:
            try:
                extra.append(f"{fd} -> {os.readlink(f'/proc/self/fd/{fd}')}")
            except OSError:
                pass
    os.close(listing)
    return bool(extra), f"open: {extra or 'only 0, 1, 2'}"


def connect_unix(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True, f"connected to {path}"
    except OSError as e:
        return False, f"{path}: {err(e.errno)}"
    finally:
        s.close()


def connect_abstract(name):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect("\0" + name)
        return True, f"connected to abstract socket @{name}"
    except OSError as e:
        return False, f"@{name}: {err(e.errno)}"
    finally:
        s.close()


def gateway():
    try:
        with open("/proc/net/route") as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[1] == "00000000":
                    return socket.inet_ntoa(struct.pack("<I", int(parts[2], 16)))
    except OSError:
        pass
    return None


def host_loopback(port):
    """Reaches a service listening on the host's loopback: at 127.0.0.1, or at the
    user-mode network's gateway (which slirp4netns and pasta can map to the host)."""
    tried = []
    for host in ["127.0.0.1", gateway(), "10.0.2.2"]:
        if host is None or host in [t[0] for t in tried]:
            continue
        try:
            with socket.create_connection((host, int(port)), timeout=3) as s:
                s.settimeout(3)
                banner = s.recv(64)
            if b"hutch-host-service" in banner:
                return True, f"reached the host service at {host}:{port}"
            tried.append((host, f"answered {banner!r}, not the host service"))
        except OSError as e:
            tried.append((host, err(e.errno) if e.errno else str(e)))
    return False, "; ".join(f"{h}:{port}: {why}" for h, why in tried)


def cgroup_limit():
    """Raises its own cgroup's memory and process limits."""
    with open("/proc/self/cgroup") as f:
        rel = next((l[3:].strip() for l in f if l.startswith("0::")), None)
    mount = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] == "cgroup2":
                mount = fields[4]
                break
    if rel is None or mount is None:
        return False, f"no cgroup v2 file system to write (cgroup {rel!r}, mount {mount!r})"
    folder = os.path.join(mount, rel.lstrip("/"))
    paths = [os.path.join(folder, name) for name in ("memory.max", "pids.max")]
    return try_writes(paths, "max", "raised to max:")


def hostname():
    try:
        socket.sethostname("hutch-probe")
        return True, f"host name set, now {socket.gethostname()}"
    except OSError as e:
        return False, f"sethostname: {err(e.errno)}"


def clock():
    try:
        time.clock_settime(time.CLOCK_REALTIME, time.clock_gettime(time.CLOCK_REALTIME))
        return True, "clock_settime(CLOCK_REALTIME) succeeded"
    except OSError as e:
        return False, f"clock_settime(CLOCK_REALTIME): {err(e.errno)}"


def survive(marker):
    """Leaves a process behind that ignores hang-ups and terminations, in a session of its
    own, then waits to be stopped. The test looks for the marker among the host's processes
    once the sandbox is stopped."""
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                signal.signal(sig, signal.SIG_IGN)
            os.execv("/bin/sh", ["/bin/sh", "-c", "trap '' TERM HUP INT; while :; do sleep 1; done", marker])
        os._exit(0)
    os.wait()
    print(json.dumps({"probe": "survive", "result": "started", "detail": f"left a process marked {marker}"}))
    sys.stdout.flush()
    while True:
        time.sleep(1)


PROBES = {
    "host-process": host_process,
    "ptrace": ptrace,
    "i386-syscall": i386_syscall,
    "read-file": read_file,
    "write-dirs": write_dirs,
    "tiocsti": tiocsti,
    "capabilities": capabilities,
    "userns": userns,
    "keyring": keyring,
    "perf": perf,
    "kernel-info": kernel_info,
    "devices": devices,
    "fds": fds,
    "connect-unix": connect_unix,
    "connect-abstract": connect_abstract,
    "host-loopback": host_loopback,
    "cgroup-limit": cgroup_limit,
    "hostname": hostname,
    "clock": clock,
    "survive": survive,
}


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in PROBES:
        print(f"usage: probe.py {{{'|'.join(PROBES)}}} [ARGS...]", file=sys.stderr)
        return 2
    name = sys.argv[1]
    try:
        escaped, detail = PROBES[name](*sys.argv[2:])
    except TypeError as e:
        print(f"probe.py {name}: {e}", file=sys.stderr)
        return 2
    if escaped is None:
        print(json.dumps({"probe": name, "result": "values", "detail": detail}))
    else:
        report(name, escaped, detail)
    return 0


if __name__ == "__main__":
    sys.exit(main())
