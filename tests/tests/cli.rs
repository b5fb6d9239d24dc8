//! The `hutch` command line against a real helper: lifecycle commands and bad input.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use hutch_tests::{env_or_skip, ok, stderr, stdout};

#[test]
fn unknown_command_exits_127_and_says_so() {
    let env = env_or_skip!();
    let out = env.hutch(&["run", "--", "no-such-program-hutch"]);
    assert_eq!(out.status.code(), Some(127));
    assert_eq!(
        stderr(&out).trim(),
        "command not found in sandbox: no-such-program-hutch"
    );
}

#[test]
fn unknown_profile_names_the_profile_folder() {
    let env = env_or_skip!();
    let out = env.hutch(&["run", "--profile", "nosuch", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    let err = stderr(&out);
    let folder = env.config.join("hutch/profiles");
    assert!(err.contains("no profile named `nosuch`"), "{err}");
    assert!(err.contains(&folder.display().to_string()), "{err}");
}

#[test]
fn malformed_profile_names_file_line_and_key() {
    let env = env_or_skip!();
    let file = env.write_profile(
        "broken",
        "home = \"tmp\"\n\n[[share]]\npath = \"relative\"\n",
    );
    let out = env.hutch(&["run", "--profile", "broken", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}, line 3, key `share.path`", file.display())),
        "{err}"
    );
    env.write_profile("typo", "hostnme = \"x\"\n");
    let err = stderr(&env.hutch(&["run", "--profile", "typo", "--", "true"]));
    assert!(err.contains("line 1, key `hostnme`"), "{err}");
}

#[test]
fn a_missing_shared_path_is_refused_and_nothing_starts() {
    let env = env_or_skip!();
    let marker = env.dir.path().join("ran");
    let script = format!("touch {}", marker.display());
    let out = env.hutch(&[
        "run",
        "--share",
        "/nonexistent/hutch:rw",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("shared path /nonexistent/hutch does not exist"),
        "{}",
        stderr(&out)
    );
    assert!(!marker.exists());
    let ps = ok(&env.hutch(&["ps", "--all", "--json"]));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&ps).unwrap(),
        serde_json::json!([])
    );
    // A malformed --share is caught by the CLI itself.
    let out = env.hutch(&["run", "--share", "/tmp:rx", "--", "true"]);
    assert!(
        !out.status.success() && stderr(&out).contains("unknown mode `rx`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn no_command_and_no_profile_command_is_explained() {
    let env = env_or_skip!();
    let out = env.hutch(&["run"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("no command given"),
        "{}",
        stderr(&out)
    );
    env.write_profile(
        "withcmd",
        "command = [\"sh\", \"-c\", \"echo from-profile\"]\n",
    );
    assert_eq!(
        ok(&env.hutch(&["run", "--profile", "withcmd"])),
        "from-profile\n"
    );
}

fn wait_listed(env: &hutch_tests::TestEnv, what: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list: serde_json::Value = env.ps();
        if let Some(found) = list.as_array().unwrap().iter().find(|s| {
            s["state"] == "running"
                && s["command"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|a| a.as_str().unwrap().contains(what))
        }) {
            return found.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{what} never showed up running in ps"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ps_lists_and_stop_ends_a_sandbox() {
    let env = env_or_skip!();
    let mut run = env.hutch_command(&["run", "--", "sleep", "1000"]);
    let mut child = run
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let listed = wait_listed(&env, "1000");
    assert_eq!(listed["state"], "running");
    assert_eq!(listed["profile"], "default");
    let pid = listed["pid"].as_u64().unwrap();
    // The pid is the app's host pid.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "sleep");
    let table = ok(&env.hutch(&["ps"]));
    assert!(
        table.starts_with("ID") && table.contains("sleep 1000"),
        "{table}"
    );

    let id = listed["id"].as_str().unwrap();
    let started = Instant::now();
    let out = ok(&env.hutch(&["stop", &id[..4]]));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "SIGTERM should be enough for sleep"
    );
    assert_eq!(out.trim(), format!("stopped {id} (killed by signal 15)"));
    assert_eq!(child.wait().unwrap().code(), Some(143));
    let list: serde_json::Value = env.ps();
    assert_eq!(list, serde_json::json!([]));
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    let all = ok(&env.hutch(&["ps", "--all"]));
    assert!(all.contains("exited (killed by signal 15)"), "{all}");
    // Stopping it again is a clear error.
    let again = env.hutch(&["stop", id]);
    assert!(
        !again.status.success() && stderr(&again).contains("already exited"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn stop_kills_an_app_that_ignores_sigterm_after_the_grace_period() {
    let env = env_or_skip!();
    // The first line comes once the shell has set its trap.
    let (mut child, _out, ready) =
        env.spawn_sh("trap '' TERM; echo ready; while :; do sleep 0.1; done");
    assert_eq!(ready, "ready\n");
    let id = wait_listed(&env, "trap")["id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let out = ok(&env.hutch(&["stop", "--grace", "0.5", &id]));
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(out.contains("killed by signal 9"), "{out}");
    assert_eq!(child.wait().unwrap().code(), Some(137));
}

#[test]
fn ctrl_c_on_the_cli_reaches_the_app() {
    let env = env_or_skip!();
    let (mut child, mut reader, ready) =
        env.spawn_sh("trap 'echo got-int; exit 9' INT; echo ready; while :; do sleep 0.1; done");
    assert_eq!(ready, "ready\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    assert_eq!(rest, "got-int\n");
    assert_eq!(status.code(), Some(9));
}

#[test]
fn a_shell_with_its_own_terminal_works() {
    let env = env_or_skip!();
    let mut cmd = env.hutch_command(&["run", "-t", "--", "sh"]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        b"tty; echo $((6*7)); exit 5\n",
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(5), "{text}");
    assert!(
        text.contains("/dev/pts/0"),
        "the terminal is the sandbox's own: {text}"
    );
    assert!(text.contains("42"), "{text}");
}

#[test]
fn doctor_reports_every_check_with_a_fix() {
    let env = env_or_skip!();
    let out = env.hutch(&["doctor", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let checks = report["checks"].as_array().unwrap();
    let ids: Vec<&str> = checks.iter().map(|c| c["id"].as_str().unwrap()).collect();
    for id in [
        "user_namespaces",
        "subordinate_ids",
        "uidmap",
        "cgroups",
        "network",
        "landlock",
        "display",
        "runtime_dir",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    for check in checks {
        let status = check["status"].as_str().unwrap();
        assert!(["ok", "warn", "fail"].contains(&status));
        if status != "ok" {
            assert!(check["fix"].is_string(), "{check} has no fix");
        }
    }
    // Sandboxes run here (env_or_skip said so), so the namespace checks pass.
    let ok_ids: Vec<&str> = checks
        .iter()
        .filter(|c| c["status"] == "ok")
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert!(
        ok_ids.contains(&"user_namespaces") && ok_ids.contains(&"subordinate_ids"),
        "{ok_ids:?}"
    );
    let text = ok(&env.hutch(&["doctor"]));
    assert!(
        text.contains("[ ok ] Unprivileged user namespaces"),
        "{text}"
    );
    // Landlock is asked of the kernel (securityfs may not be mounted) and networking is
    // tried (the tun device opened): each says what the machine really does.
    let status = |id: &str| -> String {
        let out = env.hutch(&["doctor", "--json"]);
        let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        let check = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap();
        format!("{} {} | {}", check["status"], check["detail"], check["fix"])
    };
    let landlock = status("landlock");
    match hutch_helper::sys::landlock_abi() {
        Ok(abi) => assert!(
            landlock.starts_with(&format!("\"ok\" \"ABI {abi}")),
            "{landlock}"
        ),
        Err(_) => assert!(landlock.starts_with("\"warn\""), "{landlock}"),
    }
    let tun_opens = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .is_ok();
    let network = status("network");
    assert_eq!(network.starts_with("\"ok\""), tun_opens, "{network}");
    // A real fault, made on purpose: the helper's folder opened to others.
    let dir = env.runtime.join("hutch");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let broken = status("runtime_dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert!(
        broken.starts_with("\"fail\"") && broken.contains(&format!("chmod 700 {}", dir.display())),
        "{broken}"
    );
}

#[test]
fn the_cli_starts_a_helper_when_none_answers() {
    let mut env = env_or_skip!();
    env.kill_helper();
    let out = env.sh(&[], "echo started");
    assert_eq!(ok(&out), "started\n");
    // The helper it started is detached and stays to serve the next command.
    ok(&env.hutch(&["ps"]));
    let lock = std::fs::read_to_string(env.runtime.join("hutch/helper.sock.lock")).unwrap();
    let pid: i32 = lock.trim().parse().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
}
