//! What an app inside a sandbox can and cannot see or do. Each test runs a real sandbox as the
//! unprivileged user running the tests.

use std::path::Path;

use hutch_tests::{env_or_skip, ok, stderr, stdout};

#[test]
fn exit_status_comes_back() {
    let env = env_or_skip!();
    assert_eq!(env.sh(&[], "exit 42").status.code(), Some(42));
    assert_eq!(env.sh(&[], "true").status.code(), Some(0));
    // Killed by a signal: 128 + 9, as a shell reports it.
    assert_eq!(env.sh(&[], "kill -9 $$").status.code(), Some(137));
}

#[test]
fn stdout_and_stderr_are_the_callers() {
    let env = env_or_skip!();
    let out = env.sh(&[], "echo to-out; echo to-err >&2");
    assert_eq!(ok(&out), "to-out\n");
    assert_eq!(stderr(&out), "to-err\n");
}

#[test]
fn user_keeps_its_uid_and_other_uids_come_from_the_range() {
    let env = env_or_skip!();
    let uid = nix::unistd::getuid().as_raw();
    let out = ok(&env.sh(&[], "id -u; cat /proc/self/uid_map"));
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some(uid.to_string().as_str()));
    let maps: Vec<Vec<u64>> = lines
        .map(|l| l.split_whitespace().map(|n| n.parse().unwrap()).collect())
        .collect();
    assert!(maps.contains(&vec![uid as u64, uid as u64, 1]), "{maps:?}");
    let start = hutch_tests::subuid_start().expect("subuid range") as u64;
    assert!(
        maps.iter().any(|m| m[0] == 0 && m[1] == start),
        "inside uid 0 should map to the first subordinate uid {start}: {maps:?}"
    );
}

#[test]
fn proc_shows_only_the_sandboxes_processes() {
    let env = env_or_skip!();
    let out = ok(&env.sh(&[], "ls /proc"));
    let pids: Vec<u32> = out.lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert!(pids.contains(&1), "the sandbox has its own pid 1: {pids:?}");
    assert!(pids.len() <= 4, "only pid 1, the shell and ls: {pids:?}");
    assert!(
        !pids.contains(&std::process::id()),
        "the test process is visible"
    );
    // And ps agrees: the host's processes are not there.
    let ps = ok(&env.sh(&[], "ps -e -o comm="));
    assert!(
        !ps.contains("hutch-helper") && !ps.contains("cargo"),
        "{ps}"
    );
}

#[test]
fn a_file_planted_in_the_host_home_is_unreadable() {
    let env = env_or_skip!();
    let secret = env
        .home
        .join(format!(".hutch-e2e-secret-{}", std::process::id()));
    std::fs::write(&secret, "top secret\n").unwrap();
    let out = env.sh(&[], &format!("cat {}", secret.display()));
    std::fs::remove_file(&secret).unwrap();
    assert!(!out.status.success());
    assert!(!stdout(&out).contains("top secret"));
    assert!(stderr(&out).contains("No such file"), "{}", stderr(&out));
}

#[test]
fn system_folders_are_read_only() {
    let env = env_or_skip!();
    for path in ["/usr/hutch-x", "/etc/hutch-x", "/hutch-x"] {
        let out = env.sh(&[], &format!("touch {path}"));
        assert!(!out.status.success(), "{path} was writable");
        assert!(
            stderr(&out).contains("Read-only file system"),
            "{path}: {}",
            stderr(&out)
        );
    }
    // /tmp and the home are writable.
    ok(&env.sh(&[], "touch /tmp/x ~/x"));
}

#[test]
fn shared_folders_are_visible_and_ro_means_read_only() {
    let env = env_or_skip!();
    let shared = tempfile::Builder::new()
        .prefix("hutch-share-")
        .tempdir()
        .unwrap();
    let dir = shared.path().display().to_string();
    std::fs::write(shared.path().join("in.txt"), "from host\n").unwrap();

    let ro = format!("{dir}:ro");
    assert_eq!(
        ok(&env.sh(&["--share", &ro], &format!("cat {dir}/in.txt"))),
        "from host\n"
    );
    let out = env.sh(&["--share", &ro], &format!("echo x > {dir}/out.txt"));
    assert!(
        !out.status.success() && stderr(&out).contains("Read-only"),
        "{}",
        stderr(&out)
    );
    assert!(!shared.path().join("out.txt").exists());

    let rw = format!("{dir}:rw");
    ok(&env.sh(&["--share", &rw], &format!("echo written > {dir}/out.txt")));
    assert_eq!(
        std::fs::read_to_string(shared.path().join("out.txt")).unwrap(),
        "written\n"
    );
    // Without --share the folder does not exist inside.
    assert!(!env.sh(&[], &format!("ls {dir}")).status.success());
}

#[test]
fn a_file_shared_alone_hides_its_siblings() {
    let env = env_or_skip!();
    let shared = tempfile::Builder::new()
        .prefix("hutch-share-")
        .tempdir()
        .unwrap();
    let file = shared.path().join("doc.txt");
    std::fs::write(&file, "the doc\n").unwrap();
    std::fs::write(shared.path().join("sibling.txt"), "private\n").unwrap();
    let share = file.display().to_string();
    let out = env.sh(
        &["--share", &share],
        &format!("cat {share}; ls {}", shared.path().display()),
    );
    assert_eq!(ok(&out), "the doc\ndoc.txt\n");
}

#[test]
fn throwaway_home_is_empty_next_time_and_a_kept_one_keeps_its_file() {
    let env = env_or_skip!();
    ok(&env.sh(&[], "echo 1 > ~/marker"));
    assert_eq!(ok(&env.sh(&[], "ls -A ~ | wc -l")).trim(), "0");

    ok(&env.sh(&["--home", "persist"], "echo kept > ~/marker"));
    assert_eq!(
        ok(&env.sh(&["--home", "persist"], "cat ~/marker")),
        "kept\n"
    );
    let on_host = env.data.join("hutch/homes/default/marker");
    assert_eq!(std::fs::read_to_string(&on_host).unwrap(), "kept\n");
    // The kept home is the app's own, not the user's real home.
    assert!(!env.home.join("marker").exists() || env.home.join("marker") != on_host);
}

#[test]
fn hostname_is_the_sandboxes() {
    let env = env_or_skip!();
    assert_eq!(ok(&env.sh(&[], "hostname")), "hutch-default\n");
    env.write_profile("named", "hostname = \"box7\"\n");
    assert_eq!(ok(&env.sh(&["--profile", "named"], "hostname")), "box7\n");
    let host = nix::unistd::gethostname().unwrap();
    assert_ne!(host.to_string_lossy(), "box7");
}

#[test]
fn the_host_name_and_boot_id_are_not_the_sandboxes_to_learn() {
    let env = env_or_skip!();
    let host_boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let host_name = nix::unistd::gethostname().unwrap();
    let host_name = host_name.to_string_lossy();
    let out = ok(&env.sh(
        &[],
        "cat /proc/sys/kernel/random/boot_id; cat /proc/sys/kernel/random/boot_id; \
         cat /proc/sys/kernel/hostname; uname -n; cat /etc/hostname; \
         (echo x > /proc/sys/kernel/random/boot_id) 2>/dev/null && echo WROTE; true",
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert_ne!(lines[0], host_boot.trim(), "the host's boot id leaked");
    assert_eq!(lines[0], lines[1], "one boot id per sandbox");
    assert_eq!(lines[0].len(), 36, "{}", lines[0]);
    for name in &lines[2..] {
        assert_ne!(*name, host_name, "the host name leaked: {out}");
    }
    // Another sandbox has another boot id.
    let other = ok(&env.sh(&[], "cat /proc/sys/kernel/random/boot_id"));
    assert_ne!(other.trim(), lines[0]);
}

/// Seconds in the first field of a `/proc/uptime` text.
fn uptime(text: &str) -> f64 {
    text.split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an uptime: {text:?}"))
}

#[test]
fn the_hosts_boot_time_uptime_and_kernel_command_line_are_not_shown() {
    let env = env_or_skip!();
    let host_uptime = uptime(&std::fs::read_to_string("/proc/uptime").unwrap());
    let host_cmdline = std::fs::read_to_string("/proc/cmdline").unwrap();
    let btime = |stat: &str| -> u64 {
        stat.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no btime in {stat}"))
    };
    let host_btime = btime(&std::fs::read_to_string("/proc/stat").unwrap());
    let out = ok(&env.sh(
        &[],
        "cat /proc/uptime; echo ---; cat /proc/stat; echo ---; cat /proc/cmdline",
    ));
    let parts: Vec<&str> = out.split("---\n").collect();
    let [inside_uptime, inside_stat, inside_cmdline] = parts[..] else {
        panic!("{out}")
    };
    // The sandbox's boot clock starts when it is made (a prepared one may wait a little).
    let inside_uptime = uptime(inside_uptime);
    assert!(inside_uptime < 120.0, "inside uptime {inside_uptime}");
    if host_uptime > inside_uptime + 5.0 {
        assert!(
            btime(inside_stat) > host_btime + 3,
            "the host's boot time {host_btime} shows inside: {}",
            btime(inside_stat)
        );
    } else {
        eprintln!("the host booted {host_uptime} s ago: its boot time cannot be told apart");
    }
    assert_eq!(inside_cmdline, "\n", "the kernel's command line inside");
    assert_ne!(host_cmdline, "\n");
    // The user's keyrings and the kernel's timers are shown empty, as container runtimes do;
    // outside, the user sees them.
    let outside_keys = std::fs::read_to_string("/proc/keys").unwrap_or_default();
    let outside_timers = std::fs::read_to_string("/proc/timer_list").unwrap_or_default();
    let inside = ok(&env.sh(
        &[],
        "wc -c < /proc/keys; wc -c < /proc/timer_list; ls /proc/acpi 2>/dev/null | wc -l",
    ));
    assert_eq!(inside, "0\n0\n0\n", "{inside}");
    if outside_keys.is_empty() && outside_timers.is_empty() {
        eprintln!("this kernel shows the user no keys and no timers: nothing to compare");
    }
}

/// The host's first global IPv4 address, if it has one.
fn host_address() -> Option<String> {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = text
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)?;
    Some(field.split('/').next()?.to_owned())
}

#[test]
fn nothing_beyond_loopback_is_reachable() {
    let env = env_or_skip!();
    // A server on the host: on all addresses, so both its loopback and its LAN address answer.
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let probe = |addr: &str| {
        format!(
            "python3 -c 'import socket,sys\ns=socket.socket()\ns.settimeout(3)\ntry:\n s.connect((\"{addr}\",{port})); print(\"connected\")\nexcept OSError as e: print(\"failed\", e.errno)'"
        )
    };
    // Outside the sandbox the probe gets through, so it can fail inside.
    let outside = std::process::Command::new("sh")
        .arg("-c")
        .arg(probe("127.0.0.1"))
        .output()
        .unwrap();
    assert_eq!(stdout(&outside).trim(), "connected");

    let inside = ok(&env.sh(&[], &probe("127.0.0.1")));
    assert!(
        inside.starts_with("failed"),
        "host loopback reached: {inside}"
    );
    if let Some(addr) = host_address() {
        let inside = ok(&env.sh(&[], &probe(&addr)));
        assert!(
            inside.starts_with("failed"),
            "host address {addr} reached: {inside}"
        );
    }
    let ifaces = ok(&env.sh(&[], "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"));
    assert_eq!(ifaces, "lo\n");
    // Its own loopback is up: a server inside answers a client inside.
    let local = "python3 -c 'import socket\ns=socket.socket(); s.bind((\"127.0.0.1\",0)); s.listen()\nc=socket.create_connection(s.getsockname()); print(\"local ok\")'";
    assert_eq!(ok(&env.sh(&[], local)), "local ok\n");
}

#[test]
fn tiocsti_fails_even_on_the_apps_own_terminal() {
    let env = env_or_skip!();
    let script = "python3 -c 'import fcntl,termios,os\nprint(os.isatty(0))\nfor req in (termios.TIOCSTI, termios.TIOCSTI | (1 << 32)):\n try:\n  fcntl.ioctl(0, req, b\"x\"); print(\"injected\")\n except OSError as e: print(\"denied\", e.errno)'";
    let out = ok(&env.hutch(&["run", "-t", "--", "sh", "-c", script]));
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines, ["True", "denied 1", "denied 1"], "{out}");
}

#[test]
fn no_capabilities_and_setuid_binaries_gain_nothing() {
    let env = env_or_skip!();
    let status = ok(&env.sh(
        &[],
        "grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status",
    ));
    for line in status.lines() {
        let (key, value) = line.split_once(':').unwrap();
        let value = value.trim();
        match key {
            "NoNewPrivs" => assert_eq!(value, "1"),
            "Seccomp" => assert_eq!(value, "2", "a filter is installed"),
            _ => assert_eq!(value, "0000000000000000", "{key} is not empty"),
        }
    }
    // mount is setuid root on the host; inside it gains nothing.
    let setuid = std::fs::metadata("/usr/bin/mount")
        .is_ok_and(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o4000 != 0);
    if setuid {
        let out = env.sh(&[], "mount -t tmpfs none /tmp && echo mounted; id -u");
        assert!(!stdout(&out).contains("mounted"), "{}", stdout(&out));
    }
    // Nor can the app make itself a new user namespace to regain capabilities.
    let out = env.sh(&[], "unshare -U -r true && echo unshared");
    assert!(!stdout(&out).contains("unshared"));
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn only_stdio_fds_are_open_in_the_app() {
    let env = env_or_skip!();
    // ls holds one fd of its own, for the folder it lists.
    let out = ok(&env.sh(
        &[],
        "ls -l /proc/self/fd | tail -n +2 | awk '{print $9, $11}'",
    ));
    let fds: Vec<(&str, &str)> = out
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, target)| !target.starts_with("/proc/"))
        .collect();
    let numbers: Vec<&str> = fds.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, ["0", "1", "2"], "{out}");
}

#[test]
fn environment_is_an_allowlist() {
    let env = env_or_skip!();
    let mut cmd = env.hutch_command(&["run", "--", "env"]);
    cmd.env("AWS_SECRET_ACCESS_KEY", "s3cr3t")
        .env("TERM", "xterm-test");
    cmd.stdin(std::process::Stdio::null());
    let out = ok(&hutch_tests::run_with_timeout(
        cmd,
        std::time::Duration::from_secs(30),
    ));
    assert!(
        !out.contains("s3cr3t") && !out.contains("XDG_RUNTIME_DIR"),
        "{out}"
    );
    assert!(out.contains("TERM=xterm-test"), "{out}");
    assert!(
        out.contains(&format!("HOME={}", env.home.display())),
        "{out}"
    );
}

#[test]
fn the_helper_socket_and_hutch_folders_are_invisible() {
    let env = env_or_skip!();
    let socket = env.socket.display().to_string();
    let out = env.sh(&[], &format!("ls {socket}"));
    assert!(!out.status.success());
    // Sharing a folder that holds Hutch's own files is refused before anything starts.
    let data = env.data.display().to_string();
    let out = env.sh(&["--share", &data], "true");
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("Hutch's own files"),
        "{}",
        stderr(&out)
    );
    assert!(Path::new(&socket).exists());
}

#[test]
fn inspect_reports_what_the_sandbox_is_made_of() {
    let env = env_or_skip!();
    let shared = tempfile::Builder::new()
        .prefix("hutch-share-")
        .tempdir()
        .unwrap();
    let dir = shared.path().display().to_string();
    let ro = format!("{dir}:ro");
    let (mut child, _out, ready) = env.spawn_run(
        &["--share", &ro, "--net", "none"],
        "echo ready; exec sleep 30",
    );
    assert_eq!(ready, "ready\n");
    let id = env.ps()[0]["id"].as_str().unwrap().to_owned();
    let a: serde_json::Value =
        serde_json::from_str(&ok(&env.hutch(&["inspect", &id, "--json"]))).unwrap();
    // Every namespace is new: none is the test process's own.
    let namespaces = a["namespaces"].as_array().unwrap();
    assert_eq!(namespaces.len(), 7);
    for ns in namespaces {
        let kind = ns["kind"].as_str().unwrap();
        let ours = std::fs::read_link(format!("/proc/self/ns/{kind}")).unwrap();
        assert!(ns["new"].as_bool().unwrap(), "{ns}");
        assert!(
            !ours.to_string_lossy().contains(&ns["inode"].to_string()),
            "{kind} is ours"
        );
    }
    // The shared folder, read-only, from the host; nothing else from the host is writable.
    let mounts = a["mounts"].as_array().unwrap();
    let share = mounts
        .iter()
        .find(|m| m["path"] == dir.as_str())
        .expect("the share is mounted");
    assert_eq!(
        (share["read_only"].as_bool(), share["from_host"].as_bool()),
        (Some(true), Some(true))
    );
    for m in mounts {
        if m["from_host"] == true && !m["path"].as_str().unwrap().starts_with("/dev/") {
            assert_eq!(m["read_only"], true, "{m}");
        }
    }
    // No network but loopback.
    assert_eq!(a["network"]["mode"], "none");
    assert!(
        a["routes"].as_array().unwrap().is_empty(),
        "{}",
        a["routes"]
    );
    let addresses: Vec<&str> = a["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        addresses.iter().all(|ip| ip.starts_with("127.")),
        "{addresses:?}"
    );
    // Confinement.
    assert_eq!(a["security"]["seccomp_mode"], 2);
    assert_eq!(a["security"]["no_new_privs"], true);
    assert_eq!(a["security"]["cap_effective"], "0000000000000000");
    // The own uid maps to itself.
    let uid = nix::unistd::getuid().as_raw() as u64;
    assert!(
        a["uid_map"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l[0] == uid && l[1] == uid && l[2] == 1)
    );
    let text = ok(&env.hutch(&["inspect", &id]));
    assert!(
        text.contains("pid namespace: the app sees only its own processes"),
        "{text}"
    );
    assert!(text.contains("host files, read-only"), "{text}");
    ok(&env.hutch(&["stop", "--grace", "0", &id]));
    let _ = child.wait();
}

/// Whether this kernel runs Landlock, asked of the kernel itself (securityfs, where the
/// active modules are listed, is not mounted on every machine).
fn kernel_has_landlock() -> bool {
    hutch_helper::sys::landlock_abi().is_ok()
}

#[test]
fn landlock_fences_what_the_mounts_alone_would_allow() {
    let env = env_or_skip!();
    if !kernel_has_landlock() {
        hutch_tests::skip_or_fail("this kernel does not run Landlock (landlock_create_ruleset)");
        return;
    }
    // /dev and /run are writable tmpfs mounts (they hold the device nodes and the runtime
    // folder), yet only the granted places inside them can be written: that is Landlock.
    let out = ok(&env.sh(
        &[],
        "grep -E ' /(dev|run) ' /proc/self/mountinfo | cut -d' ' -f5,6; \
         for f in /dev/planted /run/planted /tmp/fine /dev/shm/fine; do \
           if ( : > $f ) 2>/dev/null; then echo \"$f written\"; else echo \"$f refused\"; fi; \
         done; echo x > /dev/null && echo 'null works'; \
         echo 0 > /proc/self/oom_score_adj && echo 'proc writes work'",
    ));
    assert!(out.contains("/dev rw,"), "{out}");
    assert!(out.contains("/run rw,"), "{out}");
    for line in [
        "/dev/planted refused",
        "/run/planted refused",
        "/tmp/fine written",
        "/dev/shm/fine written",
        "null works",
        "proc writes work",
    ] {
        assert!(out.contains(line), "{line:?} missing from:\n{out}");
    }
    // The refusal is Landlock's EACCES, not a read-only mount's EROFS.
    let err = stderr(&env.sh(&[], "touch /dev/planted"));
    assert!(err.contains("Permission denied"), "{err}");
    let id = ok(&env.sh(&["--detach"], "exec sleep 60"))
        .trim()
        .to_owned();
    let anatomy: serde_json::Value =
        serde_json::from_str(&ok(&env.hutch(&["inspect", &id, "--json"]))).unwrap();
    let landlock = anatomy["security"]["landlock"].as_str().unwrap_or_default();
    assert!(landlock.starts_with("enforced: "), "{anatomy}");
    ok(&env.hutch(&["stop", "--grace", "0", &id]));
    // From ABI 6 on, signals stop at the sandbox's Landlock domain too: the app cannot
    // signal its pid 1, which is outside it.
    let abi: u32 = landlock
        .split("ABI ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if abi >= 6 {
        let err = stderr(&env.sh(&[], "kill -0 1"));
        assert!(err.contains("not permitted"), "{err}");
    }
}

#[test]
fn a_share_mounted_over_a_base_tmpfs_is_as_usable_as_its_access_says() {
    // /var/tmp is a tmpfs of every sandbox, and Landlock's rule for it is made before the
    // launch. A share of the host's /var/tmp mounted over it hides that rule's mount: the
    // rule must be made again on the share, with the share's rights (a rule left on the
    // hidden tmpfs once made the share unreadable and unwritable).
    let env = env_or_skip!();
    let name = format!("hutch-share-over-tmpfs-{}", std::process::id());
    let host = Path::new("/var/tmp").join(&name);
    std::fs::write(&host, "from the host\n").unwrap();
    let script = format!(
        "cat /var/tmp/{name} && echo inside > /var/tmp/{name}.new && echo written; \
         ls /var/tmp >/dev/null && echo listed"
    );
    let out = ok(&env.sh(&["--share", "/var/tmp:rw"], &script));
    let written = std::fs::read_to_string(host.with_file_name(format!("{name}.new")));
    let _ = std::fs::remove_file(&host);
    let _ = std::fs::remove_file(host.with_file_name(format!("{name}.new")));
    assert_eq!(out, "from the host\nwritten\nlisted\n");
    assert_eq!(written.unwrap(), "inside\n");
    // Read-only: readable, not writable.
    std::fs::write(&host, "from the host\n").unwrap();
    let out = env.sh(
        &["--share", "/var/tmp:ro"],
        &format!("cat /var/tmp/{name}; echo no > /var/tmp/{name}.new"),
    );
    let _ = std::fs::remove_file(&host);
    assert_eq!(stdout(&out), "from the host\n");
    assert!(!out.status.success());
    assert!(!host.with_file_name(format!("{name}.new")).exists());
}

#[test]
fn an_app_holds_no_more_than_its_share_of_the_users_inotify_instances() {
    let env = env_or_skip!();
    // The app takes every inotify instance it can, and holds them.
    let (mut child, _out, first) = env.spawn_sh(
        "python3 -c '
import ctypes, time
n = 0
while ctypes.CDLL(None).inotify_init1(0) >= 0: n += 1
print(n, flush=True); time.sleep(30)'",
    );
    let users: u64 = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_instances")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        first.trim(),
        (users / 4).max(8).to_string(),
        "the sandbox's share: a quarter of the user's {users}"
    );
    // The user's own programs (and the next launch) still get theirs.
    let host = nix::sys::inotify::Inotify::init(nix::sys::inotify::InitFlags::empty());
    let _ = child.kill();
    let _ = child.wait();
    assert!(host.is_ok(), "{host:?}");
}

#[test]
fn an_app_forks_no_more_than_its_share_of_processes() {
    let env = env_or_skip!();
    // Where no cgroup bounds it (this host's degraded mode), the app's task limit does: a
    // quarter of the machine's pids, not the user's whole allowance.
    let pid_max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let outside: u64 = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NPROC)
        .unwrap()
        .1;
    let inside: u64 = ok(&env.sh(
        &[],
        "python3 -c 'import resource; print(resource.getrlimit(resource.RLIMIT_NPROC)[1])'",
    ))
    .trim()
    .parse()
    .unwrap();
    let share = hutch_helper::sandbox::exec::task_share(None, pid_max);
    assert_eq!(inside, share.min(outside), "outside {outside}");
    // The limit holds for the app (it has no capability to pass it): forks stop there.
    let out = ok(&env.sh(
        &[],
        "python3 -c '
import os, resource, time
resource.setrlimit(resource.RLIMIT_NPROC, (30, 30))
n = 0
try:
    while n < 1000:
        if os.fork() == 0:
            time.sleep(3); os._exit(0)
        n += 1
except OSError as e:
    print(n, e.strerror)'",
    ));
    let forked: u64 = out.split_whitespace().next().unwrap().parse().unwrap();
    assert!(forked < 30, "{out}");
    assert!(out.contains("Resource temporarily unavailable"), "{out}");
}
