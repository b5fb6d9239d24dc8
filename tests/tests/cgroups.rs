//! Limits through rootless cgroup v2. In the VM (`scripts/vm-test`, `HUTCH_EXPECT_CGROUPS=1`)
//! each test's helper runs in a delegated cgroup and the limits must bite; on a host without
//! delegation the degraded mode must be reported and limits refused with the reason.

use std::time::{Duration, Instant};

use hutch_tests::{TestEnv, env_or_skip, expect_cgroups, ok, stderr};

fn delegated(env: &TestEnv) -> bool {
    let report: serde_json::Value =
        serde_json::from_str(&hutch_tests::stdout(&env.hutch(&["doctor", "--json"]))).unwrap();
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "cgroups")
        .unwrap()
        .clone();
    let yes = check["status"] == "ok";
    // The handshake tells every client the same.
    let client = hutch_client::connection::Client::connect(&env.socket, "test").unwrap();
    assert_eq!(client.limits, yes, "{}", client.cgroups);
    assert_eq!(
        client.cgroups.starts_with("degraded mode"),
        !yes,
        "{}",
        client.cgroups
    );
    if expect_cgroups() {
        assert!(
            yes,
            "HUTCH_EXPECT_CGROUPS=1 but the helper is not delegated: {check}\n{}",
            env.helper_log()
        );
    }
    yes
}

#[test]
fn bad_limits_are_refused_naming_the_value() {
    let env = env_or_skip!();
    for (flag, value, want) in [
        ("--memory", "12Q", "`12Q` is not a size"),
        ("--memory", "1M", "memory limit 1M is under the minimum"),
        ("--pids", "0", "process limit 0"),
        ("--cpu-weight", "0", "CPU weight 0 is outside 1-10000"),
        ("--cpu", "fast", "`fast` is not a CPU share"),
    ] {
        let out = env.sh(&[flag, value], "true");
        assert!(!out.status.success(), "{flag} {value}");
        assert!(
            stderr(&out).contains(want),
            "{flag} {value}: {}",
            stderr(&out)
        );
    }
    let cores = std::thread::available_parallelism().unwrap().get();
    let too_much = format!("{}%", cores * 100 + 100);
    let out = env.sh(&["--cpu", &too_much], "true");
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains(&format!("CPU cap {too_much} is more than this machine's")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn without_delegation_limits_are_refused_with_the_reason() {
    let env = env_or_skip!();
    if delegated(&env) {
        return; // covered by the tests below, in the VM
    }
    let out = env.sh(&["--memory", "256M"], "true");
    assert_eq!(out.status.code(), Some(125));
    let err = stderr(&out);
    assert!(
        err.contains("limits need cgroup v2 delegation") && err.contains("hutch doctor"),
        "{err}"
    );
    // Without limits, sandboxes still run.
    assert_eq!(ok(&env.sh(&[], "echo fine")), "fine\n");
    let doctor = ok(&env.hutch(&["doctor"]));
    assert!(doctor.contains("degraded mode"), "{doctor}");
}

/// The cgroup folder of the only running sandbox of `env`.
fn sandbox_cgroup(env: &TestEnv) -> std::path::PathBuf {
    let base = env.cgroup().unwrap().join("sandboxes");
    let list: serde_json::Value = env.ps();
    let id = list[0]["id"].as_str().unwrap();
    base.join(id)
}

#[test]
fn an_allocation_past_the_memory_limit_kills_that_sandbox_only() {
    let env = env_or_skip!();
    if !delegated(&env) {
        return;
    }
    // A neighbour that must survive.
    let (mut neighbour, _out, ready) = env.spawn_sh("echo ready; exec sleep 60");
    assert_eq!(ready, "ready\n");
    let out = env.sh(
        &["--memory", "32M"],
        "python3 -c 'x = bytearray(200 << 20); print(\"allocated\")'",
    );
    assert_eq!(
        out.status.code(),
        Some(137),
        "OOM kill is SIGKILL: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("ran out of memory"),
        "the client is told: {}",
        stderr(&out)
    );
    assert!(!hutch_tests::stdout(&out).contains("allocated"));
    assert!(
        neighbour.try_wait().unwrap().is_none(),
        "the neighbour died too"
    );
    let list: serde_json::Value = env.ps();
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "the neighbour still runs"
    );
    let _ = neighbour.kill();
}

#[test]
fn the_app_runs_in_its_own_cgroup_with_its_limits_and_it_is_gone_after_exit() {
    let env = env_or_skip!();
    if !delegated(&env) {
        return;
    }
    let (mut child, _out, ready) = env.spawn_run(
        &[
            "--memory",
            "64M",
            "--pids",
            "32",
            "--cpu",
            "50%",
            "--cpu-weight",
            "50",
        ],
        "echo ready; cat /proc/self/cgroup >&2; exec sleep 60",
    );
    assert_eq!(ready, "ready\n");
    let cg = sandbox_cgroup(&env);
    let read = |f: &str| {
        std::fs::read_to_string(cg.join(f))
            .unwrap()
            .trim()
            .to_owned()
    };
    assert_eq!(read("memory.max"), (64u64 << 20).to_string());
    assert_eq!(read("memory.swap.max"), "0");
    assert_eq!(read("pids.max"), "32");
    assert_eq!(read("cpu.max"), "50000 100000");
    assert_eq!(read("cpu.weight"), "50");
    assert_eq!(read("memory.oom.group"), "1");
    // inspect reports the same limits.
    let a: serde_json::Value =
        serde_json::from_str(&ok(&env.hutch(&["inspect", &only_id(&env), "--json"]))).unwrap();
    let files = a["cgroup"]["files"].as_array().unwrap();
    assert!(
        files
            .iter()
            .any(|f| f[0] == "memory.max" && f[1].as_str() == Some("67108864")),
        "{files:?}"
    );
    let procs = read("cgroup.procs");
    assert!(procs.lines().count() >= 2, "pid 1 and the app: {procs}");
    // Stopped (its `hutch run` then ends with it).
    ok(&env.hutch(&["stop", &only_id(&env)]));
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    while cg.exists() {
        assert!(
            Instant::now() < deadline,
            "{} outlived its sandbox",
            cg.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_fork_bomb_stops_at_the_process_limit() {
    let env = env_or_skip!();
    if !delegated(&env) {
        return;
    }
    // Forks until refused, survives the refusals, says how far it got and stays up.
    let (mut child, _out, first) = env.spawn_run(
        &["--pids", "16"],
        "python3 -u -c 'import os, time\nn = 0\nfor i in range(40):\n    try:\n        if os.fork() == 0:\n            time.sleep(30)\n            os._exit(0)\n        n += 1\n    except OSError:\n        pass\nprint(\"forked\", n)\ntime.sleep(30)'",
    );
    let forked: usize = first
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(99);
    assert!(
        (1..16).contains(&forked),
        "pids.max 16 let {forked} forks through: {first}"
    );
    let cg = sandbox_cgroup(&env);
    let read = |f: &str| std::fs::read_to_string(cg.join(f)).unwrap_or_default();
    let hits = read("pids.events");
    assert!(
        hits.lines().any(|l| l.starts_with("max ") && l != "max 0"),
        "pids.events: {hits}"
    );
    let current: u64 = read("pids.current").trim().parse().unwrap_or(0);
    assert!(current <= 16, "pids.current {current} is over pids.max 16");
    let id = only_id(&env);
    let stats: serde_json::Value =
        serde_json::from_str(&ok(&env.hutch(&["stats", &id, "--json"]))).unwrap();
    assert!(stats["pids_limit_hits"].as_u64().unwrap() > 0, "{stats}");
    ok(&env.hutch(&["stop", "--grace", "0", &id]));
    let _ = child.wait();
}

#[test]
fn a_cpu_cap_throttles_a_busy_loop() {
    let env = env_or_skip!();
    if !delegated(&env) {
        return;
    }
    let (mut child, _out, ready) =
        env.spawn_run(&["--cpu", "20%"], "echo ready; while :; do :; done");
    assert_eq!(ready, "ready\n");
    let cg = sandbox_cgroup(&env);
    let usage = || -> (u64, u64) {
        let stat = std::fs::read_to_string(cg.join("cpu.stat")).unwrap();
        let field = |k: &str| {
            stat.lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        (field("usage_usec"), field("nr_throttled"))
    };
    let (u0, _) = usage();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let (u1, throttled) = usage();
    let share = (u1 - u0) as f64 / t0.elapsed().as_micros() as f64;
    assert!(throttled > 0, "cpu.stat shows no throttling");
    assert!(
        share < 0.35,
        "a 20% cap used {:.0}% of a core",
        share * 100.0
    );
    let list: serde_json::Value = env.ps();
    ok(&env.hutch(&["stop", "--grace", "0", list[0]["id"].as_str().unwrap()]));
    let _ = child.wait();
}

fn only_id(env: &TestEnv) -> String {
    let list: serde_json::Value = env.ps();
    list[0]["id"]
        .as_str()
        .expect("a running sandbox")
        .to_owned()
}

#[test]
fn limits_change_live_and_without_delegation_are_refused() {
    let env = env_or_skip!();
    let (mut child, _out, ready) = env.spawn_sh("echo ready; exec sleep 60");
    assert_eq!(ready, "ready\n");
    let id = only_id(&env);
    let cores = std::thread::available_parallelism().unwrap().get();
    let too_much = format!("{}%", cores * 100 + 100);
    let out = env.hutch(&["limit", &id, "--cpu", &too_much]);
    assert!(
        !out.status.success() && stderr(&out).contains(&too_much),
        "{}",
        stderr(&out)
    );
    let out = env.hutch(&["limit", &id]);
    assert!(
        stderr(&out).contains("give at least one limit"),
        "{}",
        stderr(&out)
    );
    if delegated(&env) {
        ok(&env.hutch(&["limit", &id, "--memory", "128M", "--pids", "50"]));
        let cg = sandbox_cgroup(&env);
        let read = |f: &str| {
            std::fs::read_to_string(cg.join(f))
                .unwrap()
                .trim()
                .to_owned()
        };
        assert_eq!(read("memory.max"), (128u64 << 20).to_string());
        assert_eq!(read("pids.max"), "50");
    } else {
        let out = env.hutch(&["limit", &id, "--memory", "1G"]);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("need cgroup v2 delegation"),
            "{}",
            stderr(&out)
        );
        let out = env.hutch(&["pause", &id]);
        assert!(
            stderr(&out).contains("need cgroup v2 delegation"),
            "{}",
            stderr(&out)
        );
    }
    ok(&env.hutch(&["stop", "--grace", "0", &id]));
    let _ = child.wait();
}

#[test]
fn pause_stops_cpu_use_and_resume_restarts_it() {
    let env = env_or_skip!();
    if !delegated(&env) {
        return;
    }
    let (mut child, _out, ready) = env.spawn_sh("echo ready; while :; do :; done");
    assert_eq!(ready, "ready\n");
    let id = only_id(&env);
    let cg = sandbox_cgroup(&env);
    let usage = || -> u64 {
        let stat = std::fs::read_to_string(cg.join("cpu.stat")).unwrap();
        stat.lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let used_over = |d: Duration| {
        let a = usage();
        std::thread::sleep(d);
        usage() - a
    };
    assert!(
        used_over(Duration::from_millis(500)) > 100_000,
        "the loop should be busy"
    );
    ok(&env.hutch(&["pause", &id]));
    let list: serde_json::Value = env.ps();
    assert_eq!(list[0]["state"], "paused");
    assert!(
        used_over(Duration::from_millis(1000)) < 20_000,
        "a paused sandbox used CPU"
    );
    ok(&env.hutch(&["resume", &id]));
    assert!(
        used_over(Duration::from_millis(500)) > 100_000,
        "resume did not restart it"
    );
    ok(&env.hutch(&["stop", "--grace", "0", &id]));
    let _ = child.wait();
}

#[test]
fn metrics_arrive_with_or_without_delegation() {
    let env = env_or_skip!();
    let delegated = delegated(&env);
    let (mut child, _out, ready) = env.spawn_sh(
        "python3 -u -c 'import time\nx = b\"x\" * (48 << 20)\nprint(\"ready\")\nt = time.time()\nwhile time.time() - t < 1: pass\ntime.sleep(30)'",
    );
    assert_eq!(ready, "ready\n");
    let id = only_id(&env);
    let stats: serde_json::Value =
        serde_json::from_str(&ok(&env.hutch(&["stats", &id, "--json"]))).unwrap();
    assert_eq!(stats["source"], if delegated { "cgroup" } else { "proc" });
    let memory = stats["memory_bytes"].as_u64().unwrap();
    assert!(
        memory >= 40 << 20,
        "memory {memory} after allocating 48 MiB: {stats}"
    );
    assert!(stats["pids"].as_u64().unwrap() >= 2, "{stats}");
    std::thread::sleep(Duration::from_millis(500));
    let later: serde_json::Value =
        serde_json::from_str(&ok(&env.hutch(&["stats", &id, "--json"]))).unwrap();
    assert!(later["cpu_usage_usec"].as_u64().unwrap() >= stats["cpu_usage_usec"].as_u64().unwrap());
    assert!(
        later["cpu_usage_usec"].as_u64().unwrap() > 100_000,
        "a busy second: {later}"
    );
    let table = ok(&env.hutch(&["top", "--interval", "0.2", "--iterations", "2"]));
    assert!(table.contains(&id) && table.contains("MEMORY"), "{table}");
    ok(&env.hutch(&["stop", "--grace", "0", &id]));
    let _ = child.wait();
}

/// Mock: no systemd user manager runs on these machines (PID 1 is not systemd; the VM boots
/// virtme's init), so `tests/fixtures/mock_systemd.py` stands in for its D-Bus API on a private
/// bus and records the helper's request.
#[test]
fn without_delegation_the_helper_asks_systemd_for_a_delegated_scope() {
    if expect_cgroups() {
        return; // the VM's helpers are delegated already and ask nothing
    }
    let Some(bus) = hutch_tests::MockBus::start("mock_systemd.py") else {
        return;
    };
    let env = TestEnv::start_unchecked_with(&[("DBUS_SESSION_BUS_ADDRESS", &bus.address)]);
    let calls = bus.calls();
    let call = calls.first().expect("no call");
    let pid = env.helper_pid();
    assert_eq!(call["name"], format!("hutch-helper-{pid}.scope"));
    assert_eq!(call["properties"]["Delegate"], true);
    assert_eq!(call["properties"]["PIDs"], serde_json::json!([pid]));
    // The stand-in moves nothing, so the helper stays degraded and says why.
    let doctor = ok(&env.hutch(&["doctor"]));
    assert!(doctor.contains("was not moved into it"), "{doctor}");
}

#[test]
fn a_helper_killed_with_sigkill_leaves_cgroups_its_successor_takes_over() {
    let mut env = env_or_skip!();
    if !delegated(&env) {
        return;
    }
    let busy = ok(&env.sh(&["--detach", "--memory", "64M"], "while :; do :; done"))
        .trim()
        .to_owned();
    let idle = ok(&env.sh(&["--detach"], "exec sleep 1000"))
        .trim()
        .to_owned();
    ok(&env.hutch(&["pause", &busy]));
    // systemd restarts the service into its `helper` subgroup (DelegateSubgroup=helper), as
    // the test harness does.
    env.restart_helper();
    let list: serde_json::Value = serde_json::from_str(&ok(&env.hutch(&["ps", "--json"]))).unwrap();
    let state = |id: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("{id} not taken over: {list}\n{}", env.helper_log()))["state"]
            .clone()
    };
    assert_eq!(state(&busy), "paused", "the freezer state came back");
    assert_eq!(state(&idle), "running");
    let stats = |id: &str| -> serde_json::Value {
        serde_json::from_str(&ok(&env.hutch(&["stats", "--json", id]))).unwrap()
    };
    let before = stats(&busy);
    assert_eq!(before["source"], "cgroup", "{before}");
    assert_eq!(before["memory_limit"].as_u64(), Some(64 << 20), "{before}");
    ok(&env.hutch(&["resume", &busy]));
    std::thread::sleep(Duration::from_millis(1000));
    let after = stats(&busy);
    assert!(
        after["cpu_usage_usec"].as_u64().unwrap()
            > before["cpu_usage_usec"].as_u64().unwrap() + 100_000,
        "resumed after the takeover, the loop should use CPU: {before} then {after}"
    );
    ok(&env.hutch(&["limit", &busy, "--memory", "96M"]));
    let cg = env.cgroup().unwrap().join("sandboxes");
    assert_eq!(
        std::fs::read_to_string(cg.join(&busy).join("memory.max"))
            .unwrap()
            .trim(),
        (96u64 << 20).to_string()
    );
    for id in [&busy, &idle] {
        ok(&env.hutch(&["stop", "--grace", "0", id]));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while cg.join(&busy).exists() || cg.join(&idle).exists() {
        assert!(
            Instant::now() < deadline,
            "the sandboxes' cgroups were not removed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The escape probe that raises its own cgroup's limits (`tests/escape/probe.py`): it gets
/// through for a process in a cgroup the user owns, and not from inside a sandbox, whose
/// cgroup the user owns just the same (the helper made it) but cannot reach.
#[test]
fn an_app_cannot_raise_its_own_cgroup_limits() {
    let env = env_or_skip!();
    if !delegated(&env) {
        return;
    }
    let probe = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("escape/probe.py");
    let result = |out: &std::process::Output| -> serde_json::Value {
        let text = hutch_tests::stdout(out);
        serde_json::from_str(text.lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}: {text}\n{}", stderr(out)))
    };
    // Outside: a cgroup of the user's own, beside the helper's.
    let own = env.cgroup().unwrap().with_extension("probe");
    std::fs::create_dir_all(&own).unwrap();
    std::fs::write(own.join("memory.max"), "67108864").unwrap();
    let mut cmd = std::process::Command::new("sh");
    env.apply(&mut cmd);
    cmd.arg("-c")
        .arg("echo $$ > \"$1/cgroup.procs\" && exec \"$2\" cgroup-limit")
        .arg("sh")
        .arg(&own)
        .arg(&probe);
    let outside = result(&hutch_tests::run_with_timeout(cmd, Duration::from_secs(60)));
    assert_eq!(outside["result"], "escaped", "{outside}");
    assert_eq!(
        std::fs::read_to_string(own.join("memory.max"))
            .unwrap()
            .trim(),
        "max"
    );
    let _ = std::fs::remove_dir(&own);
    // Inside, under a memory limit.
    let inside = result(&env.hutch(&[
        "run",
        "--memory",
        "64M",
        probe.to_str().unwrap(),
        "cgroup-limit",
    ]));
    assert_eq!(inside["result"], "blocked", "{inside}");
}
