#!/usr/bin/python3
"""Calls every system call Hutch's seccomp filter denies, once each, with arguments that are
invalid or harmless (as Flatpak's tests/try-syscall.c does), and prints one JSON object:
{name: [number, errno name, or "ok" when the call succeeded]}.

Outside a sandbox, an unprivileged user (or root of a throwaway user namespace) reaches the
kernel, which answers with its own error (EFAULT, EINVAL, EBADF...) or succeeds. Inside, the
filter answers first: EPERM, or ENOSYS where libc must fall back (clone3, the new mount API).
x86_64 numbers; run by tests/tests/syscalls.rs.
"""
import ctypes
import errno
import json
import os
import platform
import sys

if platform.machine() != "x86_64":
    print(json.dumps({"error": "x86_64 only"}))
    sys.exit(0)

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

CLONE_NEWUSER = 0x10000000
CLONE_FS = 0x00000200
BAD = 1  # a pointer no process may pass: the kernel answers EFAULT where it reads it

# name: (number, arguments)
CALLS = {
    "syslog": (103, [100, 0, 0]),  # an action that does not exist
    "uselib": (134, [0]),
    "acct": (163, [0]),
    "quotactl": (179, [0xFFFFFFFF, 0, 0, 0]),
    "add_key": (248, [0, 0, 0, 0, 0]),
    "request_key": (249, [0, 0, 0, 0]),
    "keyctl": (250, [0xFFFF]),
    "move_pages": (279, [0, 0, 0, 0, 0, 0]),  # no pages: nothing moves
    "mbind": (237, [0, 0, 0, 0, 0, 0]),
    "get_mempolicy": (239, [0, 0, 0, 0, 0]),
    "set_mempolicy": (238, [0, 0, 0]),  # MPOL_DEFAULT: what every process has
    "migrate_pages": (256, [0, 0, 0, 0]),
    "unshare": (272, [0xFFFFFFFF]),
    "setns": (308, [-1, 0]),
    "mount": (165, [0, 0, 0, 0, 0]),
    "umount2": (166, [0, 0]),
    "pivot_root": (155, [0, 0]),
    "chroot": (161, [0]),
    "modify_ldt": (154, [99, 0, 0]),  # no such function
    "personality": (135, [0xFF]),  # not PER_LINUX: a bad persona
    "perf_event_open": (298, [0, 0, -1, -1, 0]),
    "clone3": (435, [0, 0]),
    "clone(CLONE_NEWUSER)": (56, [CLONE_NEWUSER | CLONE_FS, 0, 0, 0, 0]),  # an invalid pair
    "fsopen": (430, [0, 0]),
    "fsconfig": (431, [-1, 0, 0, 0, 0]),
    "fsmount": (432, [-1, 0, 0]),
    "fspick": (433, [-1, 0, 0]),
    "open_tree": (428, [-1, 0, 0]),
    "move_mount": (429, [-1, 0, -1, 0, 0]),
    "mount_setattr": (442, [-1, 0, 0, 0, 0]),
    "open_tree_attr": (467, [-1, 0, 0, 0, 0]),
    # Terminal ioctls, on no terminal at all (-1): the filter looks at the request alone.
    "ioctl(TIOCSTI)": (16, [-1, 0x5412, 0]),
    "ioctl(TIOCLINUX)": (16, [-1, 0x541C, 0]),
    "ioctl(TIOCSETD)": (16, [-1, 0x5423, 0]),
    "ioctl(TIOCEXCL)": (16, [-1, 0x540C, 0]),
    "io_uring_setup": (425, [0, 0]),
    "io_uring_enter": (426, [-1, 0, 0, 0, 0, 0]),
    "io_uring_register": (427, [-1, 0, 0, 0]),
    "bpf": (321, [0xFFFF, 0, 0]),
    "userfaultfd": (323, [1 | 0x4000]),  # user-mode only, plus a flag that does not exist
    "kexec_load": (246, [0, 0, 0, 0]),
    "kexec_file_load": (320, [-1, -1, 0, 0, 0]),
    "init_module": (175, [0, 0, 0]),
    "finit_module": (313, [-1, 0, 0]),
    "delete_module": (176, [0, 0]),
    "reboot": (169, [0, 0, 0, 0]),  # no magic numbers: nothing reboots
    "swapon": (167, [0, 0]),
    "swapoff": (168, [0]),
    "open_by_handle_at": (304, [-1, 0, 0]),
    "name_to_handle_at": (303, [-1, 0, 0, 0, 0]),
    "iopl": (172, [4]),  # above the highest level
    "ioperm": (173, [0, 0xFFFFFFFF, 1]),  # a range past the bitmap
    "fanotify_init": (300, [0x200, 0]),  # FAN_REPORT_FID: what a user may ask for
    "ptrace": (101, [0xFFFF, 0, 0, 0]),
    "process_vm_readv": (310, [0, 0, 0, 0, 0, 0]),
    "pidfd_getfd": (438, [-1, -1, 0]),
    "process_vm_writev": (311, [0, 0, 0, 0, 0, 0]),
    "clock_settime": (227, [0, BAD]),
    "settimeofday": (164, [BAD, 0]),
    "adjtimex": (159, [BAD]),
    "clock_adjtime": (305, [0, BAD]),
    "vhangup": (153, []),
    "lookup_dcookie": (212, [0, 0, 0]),
}


def call(nr, args):
    ctypes.set_errno(0)
    ret = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    if ret < 0:
        return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
    return "ok"


results = {}
for name, (nr, args) in CALLS.items():
    results[name] = [nr, call(nr, args)]
    if name == "personality" and results[name][1] == "ok":
        libc.syscall(ctypes.c_long(135), ctypes.c_long(0))  # back to PER_LINUX
print(json.dumps(results, sort_keys=True))
sys.stdout.flush()
os._exit(0)
