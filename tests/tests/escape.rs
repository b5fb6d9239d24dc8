//! The escape suite: `tests/escape/probe.py` tries one way out per probe. Each probe runs
//! outside a sandbox first, where it must get through (so its "blocked" inside can be
//! believed), then inside one, where it must not. Where a permission opens the way on
//! purpose (host loopback, nested user namespaces), the probe also runs with it and must get
//! through again. As the unprivileged user; the cgroup probe runs in the VM (`cgroups.rs`).
//!
//! The table of results is printed (`--nocapture`) and kept in SECURITY.md.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hutch_tests::{TestEnv, env_or_skip, ok, stdout};

fn probe_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("escape/probe.py")
}

/// The probe's JSON line from a command's output.
fn parse(out: &std::process::Output, what: &str) -> serde_json::Value {
    let text = stdout(out);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| {
            panic!(
                "{what}: no probe result (status {:?})\nstdout: {text}\nstderr: {}",
                out.status,
                hutch_tests::stderr(out)
            )
        });
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{what}: {e}: {line}"))
}

/// Runs the probe directly, as the user.
fn outside(env: &TestEnv, args: &[&str]) -> serde_json::Value {
    outside_via(env, &[], args)
}

/// Runs the probe directly behind `wrapper` (a command that execs the rest).
fn outside_via(env: &TestEnv, wrapper: &[&str], args: &[&str]) -> serde_json::Value {
    let script = probe_script();
    let mut argv: Vec<&str> = wrapper.to_vec();
    argv.push(script.to_str().unwrap());
    argv.extend_from_slice(args);
    let mut cmd = Command::new(argv[0]);
    env.apply(&mut cmd);
    cmd.args(&argv[1..]).stdin(Stdio::null());
    parse(
        &hutch_tests::run_with_timeout(cmd, Duration::from_secs(60)),
        &format!("outside {args:?}"),
    )
}

/// Runs the probe in a sandbox (`hutch run OPTS PROBE ARGS`: the script is shared alone).
fn inside(env: &TestEnv, opts: &[&str], args: &[&str]) -> serde_json::Value {
    let script = probe_script();
    let mut argv = vec!["run"];
    argv.extend_from_slice(opts);
    argv.push(script.to_str().unwrap());
    argv.extend_from_slice(args);
    parse(&env.hutch(&argv), &format!("inside {opts:?} {args:?}"))
}

/// One row of the results table.
struct Row {
    probe: String,
    outside: serde_json::Value,
    inside: serde_json::Value,
    note: String,
}

#[derive(Default)]
struct Results {
    rows: Vec<Row>,
    failures: Vec<String>,
}

impl Results {
    /// Records a probe that must get through outside and be blocked inside.
    fn check(&mut self, probe: &str, outside: serde_json::Value, inside: serde_json::Value) {
        self.check_with(probe, outside, inside, "escaped", "blocked", "");
    }

    fn check_with(
        &mut self,
        probe: &str,
        outside: serde_json::Value,
        inside: serde_json::Value,
        want_outside: &str,
        want_inside: &str,
        note: &str,
    ) {
        if outside["result"] != want_outside {
            self.failures.push(format!(
                "{probe}: outside the sandbox it should be {want_outside}, so that the probe \
                 is shown to work: {outside}"
            ));
        }
        if inside["result"] != want_inside {
            self.failures.push(format!(
                "{probe}: inside it should be {want_inside}: {inside}"
            ));
        }
        self.rows.push(Row {
            probe: probe.to_owned(),
            outside,
            inside,
            note: note.to_owned(),
        });
    }

    fn fail(&mut self, message: String) {
        self.failures.push(message);
    }

    fn finish(self) {
        let detail = |v: &serde_json::Value| match &v["detail"] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        println!("| probe | outside | inside | inside, in detail |");
        println!("|---|---|---|---|");
        for row in &self.rows {
            let note = if row.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", row.note)
            };
            println!(
                "| {} | {} | {}{note} | {} |",
                row.probe,
                row.outside["result"].as_str().unwrap_or("?"),
                row.inside["result"].as_str().unwrap_or("?"),
                detail(&row.inside).replace('|', "\\|")
            );
        }
        assert!(
            self.failures.is_empty(),
            "escape probes:\n{}",
            self.failures.join("\n")
        );
    }
}

/// A host process with a command line no sandbox process has.
fn marked_sleeper() -> (std::process::Child, String) {
    let seconds = format!("300.{}", std::process::id());
    let child = Command::new("sleep")
        .arg(&seconds)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    (child, format!("sleep {seconds}"))
}

/// Host pids whose command line contains `marker`.
fn processes_marked(marker: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
        .collect()
}

/// A TCP service on the host's loopback that greets every connection.
fn host_service() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.write_all(b"hutch-host-service\n");
        }
    });
    port
}

#[test]
fn escape_probes_get_through_outside_and_not_inside() {
    let env = env_or_skip!();
    let mut results = Results::default();

    // Seeing and signalling host processes.
    let (mut sleeper, marker) = marked_sleeper();
    let pid = sleeper.id().to_string();
    let args = ["host-process", &pid, &marker];
    results.check(
        "host-process",
        outside(&env, &args),
        inside(&env, &[], &args),
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();

    for probe in [
        "ptrace",
        "i386-syscall",
        "tiocsti",
        "capabilities",
        "keyring",
        "perf",
        "userns",
    ] {
        results.check(probe, outside(&env, &[probe]), inside(&env, &[], &[probe]));
    }
    // Nested user namespaces are the profile's to allow: with the permission the probe gets
    // through inside too.
    env.write_profile("nested", "allow_user_namespaces = true\n");
    results.check_with(
        "userns (profile allows it)",
        outside(&env, &["userns"]),
        inside(&env, &["--profile", "nested"], &["userns"]),
        "escaped",
        "escaped",
        "allowed on purpose",
    );

    // A file planted in the host home.
    let secret = env
        .home
        .join(format!("hutch-probe-secret-{}", std::process::id()));
    std::fs::write(&secret, "host secret\n").unwrap();
    let path = secret.to_str().unwrap();
    results.check(
        "read host home",
        outside(&env, &["read-file", path]),
        inside(&env, &[], &["read-file", path]),
    );
    let _ = std::fs::remove_file(&secret);

    // Writing host folders: one the user owns (gets through outside) and the system ones.
    let victim = env.dir.path().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    let victim = victim.to_str().unwrap().to_owned();
    let targets = [
        "write-dirs",
        &victim,
        "/usr",
        "/usr/lib",
        "/etc",
        "/var",
        "/opt",
    ];
    let out = outside(&env, &targets);
    let before = std::fs::read_dir(&victim).unwrap().count();
    let ins = inside(&env, &[], &targets);
    if std::fs::read_dir(&victim).unwrap().count() != before {
        results.fail(format!(
            "write-dirs: a file appeared in {victim} on the host"
        ));
    }
    results.check("write host folders", out, ins);

    // Inherited file descriptors: fd 7 open on a host file in the caller.
    let script = probe_script();
    let probe = script.to_str().unwrap();
    let out = outside_via(
        &env,
        &["sh", "-c", "exec 7</etc/hostname; exec \"$@\"", "sh"],
        &["fds"],
    );
    let hutch = hutch_tests::bin_dir().join("hutch");
    let mut cmd = Command::new("sh");
    env.apply(&mut cmd);
    cmd.args(["-c", "exec 7</etc/hostname; exec \"$@\"", "sh"])
        .arg(&hutch)
        .args(["run", probe, "fds"])
        .stdin(Stdio::null());
    let ins = parse(
        &hutch_tests::run_with_timeout(cmd, Duration::from_secs(60)),
        "inside fds",
    );
    results.check("inherited fds", out, ins);

    // Device nodes beyond the minimal set.
    results.check(
        "device nodes",
        outside(&env, &["devices"]),
        inside(&env, &[], &["devices"]),
    );

    // The helper's socket, and an abstract Unix socket of the host's network namespace.
    let socket = env.socket.to_str().unwrap();
    results.check(
        "helper socket",
        outside(&env, &["connect-unix", socket]),
        inside(&env, &[], &["connect-unix", socket]),
    );
    let name = format!("hutch-probe-{}", std::process::id());
    let addr =
        <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
            &name,
        )
        .unwrap();
    let abstract_listener = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    results.check(
        "host abstract socket",
        outside(&env, &["connect-abstract", &name]),
        inside(&env, &[], &["connect-abstract", &name]),
    );
    drop(abstract_listener);

    // A service on the host's loopback: no network, user-mode networks, and with the
    // permission (which must open it, or the probe proves nothing through the stack).
    let port = host_service().to_string();
    let args = ["host-loopback", port.as_str()];
    results.check(
        "host loopback (no network)",
        outside(&env, &args),
        inside(&env, &[], &args),
    );
    let mut backends = vec!["slirp4netns"];
    if hutch_tests::have("pasta") {
        backends.push("pasta");
    }
    for backend in backends {
        results.check(
            &format!("host loopback ({backend})"),
            outside(&env, &args),
            inside(&env, &["--net", "user", "--net-backend", backend], &args),
        );
        results.check_with(
            &format!("host loopback ({backend}, allowed)"),
            outside(&env, &args),
            inside(
                &env,
                &[
                    "--net",
                    "user",
                    "--net-backend",
                    backend,
                    "--allow-host-loopback",
                ],
                &args,
            ),
            "escaped",
            "escaped",
            "allowed on purpose",
        );
    }

    // The host name: outside in a throwaway uts namespace of its own (an unprivileged user
    // cannot set the host's), which shows the probe sees success; the host's stays as it was.
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    results.check(
        "set host name",
        outside_via(
            &env,
            &["unshare", "--user", "--map-root-user", "--uts"],
            &["hostname"],
        ),
        inside(&env, &[], &["hostname"]),
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host_name
    );
    // The clock: only CAP_SYS_TIME in the host's user namespace sets it, which no
    // unprivileged user has; the probe cannot be shown to get through without root.
    results.check_with(
        "set the clock",
        outside(&env, &["clock"]),
        inside(&env, &[], &["clock"]),
        "blocked",
        "blocked",
        "needs root outside too",
    );

    // What identifies the host: the host name, boot id and machine id must differ inside.
    let out = outside(&env, &["kernel-info"]);
    let ins = inside(&env, &[], &["kernel-info"]);
    let same: Vec<&str> = ["hostname", "boot_id", "machine_id"]
        .into_iter()
        .filter(|k| ins["detail"][k] == out["detail"][k])
        .collect();
    let verdict = |escaped: bool| serde_json::json!({"result": if escaped {"escaped"} else {"blocked"}, "detail": ins["detail"].clone()});
    let outside_verdict = serde_json::json!({"result": "escaped", "detail": out["detail"].clone()});
    results.check_with(
        "host identity (host name, boot id, machine id)",
        outside_verdict,
        verdict(!same.is_empty()),
        "escaped",
        "blocked",
        "",
    );
    if ins["detail"]["kallsyms"] == "addresses" || ins["detail"]["kernel_log"] == "readable" {
        results.fail(format!("kernel addresses or log readable inside: {ins}"));
    }

    // Surviving a stop: a process in a session of its own that ignores SIGTERM and SIGHUP.
    let marker = format!("hutch-probe-linger-{}", std::process::id());
    let mut cmd = Command::new(&script);
    env.apply(&mut cmd);
    let mut direct = cmd
        .args(["survive", &marker])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(direct.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(direct.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = direct.wait();
    std::thread::sleep(Duration::from_millis(200));
    let left_outside = processes_marked(&marker);
    for pid in &left_outside {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let id = ok(&env.hutch(&["run", "--detach", probe, "survive", &marker]))
        .trim()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !stdout(&env.hutch(&["logs", &id])).contains("\"started\"") {
        assert!(Instant::now() < deadline, "the survive probe never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !processes_marked(&marker).is_empty(),
        "the lingering process runs before the stop"
    );
    ok(&env.hutch(&["stop", &id]));
    std::thread::sleep(Duration::from_millis(200));
    let left_inside = processes_marked(&marker);
    let as_result = |left: &[i32]| serde_json::json!({"result": if left.is_empty() {"blocked"} else {"escaped"}, "detail": format!("processes left after the stop: {left:?}")});
    results.check(
        "survive a stop",
        as_result(&left_outside),
        as_result(&left_inside),
    );

    results.finish();
}
