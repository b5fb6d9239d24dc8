#!/usr/bin/env python3
"""Raw start-up time of a user-mode network stack, without Hutch: the time from starting
slirp4netns (or pasta) on a fresh network namespace until it reports the network up.

    bench/raw_stack.py slirp4netns|pasta RUNS

Prints the mean in milliseconds. The namespace is made (unshare -U -r -n) before the clock
starts, as Hutch's prepared sandboxes have theirs before a launch.
"""
import os
import subprocess
import sys
import tempfile
import time


def ns_ready(pid):
    own = os.readlink("/proc/self/ns/net")
    while True:
        try:
            if os.readlink(f"/proc/{pid}/ns/net") != own:
                return
        except FileNotFoundError:
            pass
        time.sleep(0.0005)


def once(backend):
    ns = subprocess.Popen(["unshare", "-U", "-r", "-n", "sleep", "30"])
    ns_ready(ns.pid)
    try:
        if backend == "slirp4netns":
            r, w = os.pipe()
            er, ew = os.pipe()
            start = time.perf_counter()
            stack = subprocess.Popen(
                ["slirp4netns", "--configure", "--mtu=65520", "--disable-host-loopback",
                 "--enable-seccomp", f"--ready-fd={w}", f"--exit-fd={er}", str(ns.pid), "tap0"],
                pass_fds=(w, er), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            os.close(w)
            os.close(er)
            os.read(r, 1)
            elapsed = time.perf_counter() - start
            os.close(ew)
            stack.wait()
            os.close(r)
        else:
            d = tempfile.mkdtemp()
            pid_file = os.path.join(d, "pasta.pid")
            start = time.perf_counter()
            stack = subprocess.Popen(
                ["pasta", "--config-net", "-a", "10.0.2.100", "-n", "24", "-g", "10.0.2.2",
                 "-t", "none", "-u", "none", "-T", "none", "-U", "none", "-f", "-q",
                 "-P", pid_file, str(ns.pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while not os.path.exists(pid_file):
                time.sleep(0.0002)
            elapsed = time.perf_counter() - start
            stack.terminate()
            stack.wait()
            os.unlink(pid_file)
            os.rmdir(d)
        return elapsed
    finally:
        ns.kill()
        ns.wait()


def main():
    backend, runs = sys.argv[1], int(sys.argv[2])
    once(backend)  # warm-up
    times = [once(backend) for _ in range(runs)]
    print(f"{sum(times) / len(times) * 1000:.2f}")


if __name__ == "__main__":
    main()
