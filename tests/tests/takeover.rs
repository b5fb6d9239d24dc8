//! A helper killed with SIGKILL takes no sandbox with it: the next helper takes every running
//! one over (listed with the same id and pids, metrics, logs, stop), learns the exits that
//! happened while no helper ran, and a `hutch run` waiting in the foreground gets its app's
//! exit status through the new helper. A client that goes away (the window crashing) changes
//! nothing for the sandboxes it started. As the unprivileged user, with real sandboxes.

use std::time::{Duration, Instant};

use hutch_tests::{env_or_skip, ok, stderr, stdout};
use nix::sys::signal::kill;
use nix::unistd::Pid;

fn alive(pid: i64) -> bool {
    kill(Pid::from_raw(pid as i32), None).is_ok()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `hutch ps -a --json`: running and recently exited sandboxes.
fn ps_all(env: &hutch_tests::TestEnv) -> serde_json::Value {
    serde_json::from_str(&ok(&env.hutch(&["ps", "-a", "--json"]))).expect("ps --json is JSON")
}

fn entry(list: &serde_json::Value, id: &str) -> serde_json::Value {
    list.as_array()
        .expect("ps --json is a list")
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("sandbox {id} is not listed: {list}"))
        .clone()
}

/// The tick numbers in a ticker's log, in order.
fn ticks(log: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|l| l.strip_prefix("tick "))
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}

const TICKER: &str = "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.1; done";

#[test]
fn the_next_helper_takes_over_running_sandboxes_and_learns_exits_it_missed() {
    let mut env = env_or_skip!();
    let start = |script: &str| ok(&env.sh(&["--detach"], script)).trim().to_owned();
    let ticker = start(TICKER);
    let sleeper = start("exec sleep 1000");
    let short = start("sleep 2; exit 7");
    let before = env.ps();
    let pid = |id: &str| entry(&before, id)["pid"].as_i64().expect("a pid");
    let (ticker_pid, sleeper_pid, short_pid) = (pid(&ticker), pid(&sleeper), pid(&short));
    wait_until("the ticker has ticked", Duration::from_secs(10), || {
        ticks(&stdout(&env.hutch(&["logs", &ticker]))).len() >= 3
    });
    let seen = *ticks(&stdout(&env.hutch(&["logs", &ticker])))
        .last()
        .unwrap();

    env.kill_helper();
    // Nothing of the sandboxes went with it.
    for pid in [ticker_pid, sleeper_pid] {
        assert!(alive(pid), "app {pid} died with the helper");
    }
    // One app ends while no helper runs; the ticker goes on writing meanwhile.
    wait_until("the short app has exited", Duration::from_secs(10), || {
        !alive(short_pid)
    });
    std::thread::sleep(Duration::from_millis(500));

    env.restart_helper();
    assert!(
        env.helper_log().contains("took over a running sandbox"),
        "{}",
        env.helper_log()
    );
    let after = ps_all(&env);
    for (id, pid) in [(&ticker, ticker_pid), (&sleeper, sleeper_pid)] {
        let listed = entry(&after, id);
        assert_eq!(listed["state"], "running", "{listed}");
        assert_eq!(listed["pid"].as_i64(), Some(pid), "{listed}");
        assert_eq!(
            listed["command"],
            entry(&before, id)["command"],
            "the record of the first helper came back"
        );
    }
    let listed = entry(&after, &short);
    assert_eq!(listed["state"], "exited", "{listed}");
    assert_eq!(listed["exit"], serde_json::json!({"code": 7}), "{listed}");

    // Output written while no helper ran was kept, without a gap, and more keeps coming.
    let first = ticks(&stdout(&env.hutch(&["logs", &ticker])));
    assert!(
        first.first().is_some_and(|t| *t <= seen + 1),
        "output from before the restart is missing: saw tick {seen} before, now {first:?}"
    );
    assert!(
        first.windows(2).all(|w| w[1] == w[0] + 1),
        "ticks were lost: {first:?}"
    );
    wait_until("the ticker ticks on", Duration::from_secs(10), || {
        ticks(&stdout(&env.hutch(&["logs", &ticker])))
            .last()
            .is_some_and(|t| *t > first.last().copied().unwrap_or(0) + 2)
    });

    // Metrics continue (from /proc here, from the cgroup in the VM).
    let stats: serde_json::Value =
        serde_json::from_str(&ok(&env.hutch(&["stats", "--json", &ticker]))).unwrap();
    assert!(stats["pids"].as_u64().unwrap_or(0) >= 1, "{stats}");
    assert!(stats["memory_bytes"].as_u64().unwrap_or(0) > 0, "{stats}");

    // Stop works, and the exit is reported.
    ok(&env.hutch(&["stop", "--grace", "0", &sleeper]));
    assert!(!alive(sleeper_pid));
    let listed = entry(&ps_all(&env), &sleeper);
    assert_eq!(listed["state"], "exited", "{listed}");
    assert!(!listed["exit"].is_null(), "{listed}");
    ok(&env.hutch(&["stop", "--grace", "0", &ticker]));
    assert!(!alive(ticker_pid));

    // The runtime folders of ended sandboxes are gone; nothing is left to take over.
    let sandboxes = env.runtime.join("hutch").join("sandboxes");
    for id in [&ticker, &sleeper, &short] {
        wait_until(
            "the sandbox folder is removed",
            Duration::from_secs(5),
            || !sandboxes.join(id).exists(),
        );
    }
}

#[test]
fn a_foreground_run_gets_its_exit_status_through_the_next_helper() {
    let mut env = env_or_skip!();
    let (mut cli, _out, first) = env.spawn_sh("echo up; sleep 2; exit 5");
    assert_eq!(first, "up\n");
    // The app may print before the helper's answer reaches `hutch run`: give it that moment.
    wait_until("the sandbox is listed", Duration::from_secs(10), || {
        env.ps()[0]["state"] == "running"
    });
    std::thread::sleep(Duration::from_millis(300));
    env.kill_helper();
    // `hutch run` starts a new helper itself, which takes the sandbox over.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = cli.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "hutch run never ended");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(cli.stderr.as_mut().unwrap(), &mut err).unwrap();
    let started_log =
        std::fs::read_to_string(env.runtime.join("hutch").join("helper.log")).unwrap_or_default();
    assert_eq!(
        status.code(),
        Some(5),
        "{err}\nthe helper it started:\n{started_log}"
    );
    assert!(err.contains("lost the helper"), "{err}");
    let new_helper = env.serving_helper_pid().expect("a helper serves again");
    assert!(alive(new_helper as i64));
    let list = ps_all(&env);
    assert_eq!(list[0]["exit"], serde_json::json!({"code": 5}), "{list}");
    env.kill_serving_helper();
}

#[test]
fn a_client_that_goes_away_leaves_its_sandboxes_running() {
    use hutch_client::connection::Client;
    use hutch_core::protocol::{Request, Response, RunRequest};
    let env = env_or_skip!();
    // The window starts apps this way (output to the helper's log) and may crash at any time.
    let mut window = Client::connect(&env.socket, "window").unwrap();
    let request: RunRequest = serde_json::from_value(serde_json::json!({
        "command": ["sh", "-c", TICKER],
        "stdio": hutch_core::protocol::Stdio::Log,
    }))
    .unwrap();
    let id = match window
        .request(&Request::Run(Box::new(request)), &[])
        .unwrap()
    {
        Response::Started { id, .. } => id,
        other => panic!("not started: {other:?}"),
    };
    drop(window);
    std::thread::sleep(Duration::from_millis(700));
    let listed = entry(&env.ps(), &id);
    assert_eq!(listed["state"], "running", "{listed}");
    let pid = listed["pid"].as_i64().unwrap();
    assert!(alive(pid));
    let log = stdout(&env.hutch(&["logs", &id]));
    assert!(ticks(&log).len() >= 3, "{log}");
    let out = env.hutch(&["stop", "--grace", "0", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// CPU time (user + system, clock ticks) a process has used.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn parent_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_supervisor_without_a_helper_waits_quietly_when_the_app_closes_its_output() {
    let mut env = env_or_skip!();
    // The app writes a line once the helper is gone, closes stdout and stderr, and runs on.
    let id = ok(&env.sh(
        &["--detach"],
        "sleep 1; echo after; exec >/dev/null 2>&1; exec sleep 1000",
    ))
    .trim()
    .to_owned();
    let app = entry(&ps_all(&env), &id)["pid"].as_i64().unwrap() as i32;
    let init = hutch_tests::init_pid_of(app).expect("pid 1 of the sandbox");
    let supervisor = parent_of(init);
    env.kill_helper();
    std::thread::sleep(Duration::from_millis(1500));
    let before = cpu_ticks(supervisor);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(supervisor) - before;
    assert!(
        used <= 5,
        "the supervisor used {used} clock ticks in 2 s with no helper and a closed output pipe"
    );
    env.restart_helper();
    let log = stdout(&env.hutch(&["logs", &id]));
    assert_eq!(log, "after\n", "output written while no helper ran is kept");
    ok(&env.hutch(&["stop", "--grace", "0", &id]));
}

#[test]
fn hutch_logs_follow_goes_on_through_the_next_helper() {
    use std::io::BufRead;
    let mut env = env_or_skip!();
    let id = ok(&env.sh(&["--detach"], TICKER)).trim().to_owned();
    let mut follower = env
        .hutch_command(&["logs", "--follow", &id])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(follower.stdout.take().unwrap()).lines();
    let mut next_tick = || -> u64 {
        let line = lines.next().expect("the follower ended").unwrap();
        line.strip_prefix("tick ").unwrap().parse().unwrap()
    };
    for _ in 0..3 {
        next_tick();
    }
    env.kill_helper();
    // `hutch logs -f` starts a new helper itself and reads on from its log.
    let deadline = Instant::now() + Duration::from_secs(30);
    let before = next_tick();
    let mut after = before;
    while after < before + 10 {
        assert!(Instant::now() < deadline, "ticks stopped at {after}");
        after = next_tick();
    }
    ok(&env.hutch(&["stop", "--grace", "0", &id]));
    let _ = follower.kill();
    let _ = follower.wait();
    let mut err = String::new();
    std::io::Read::read_to_string(follower.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("lost the helper"), "{err}");
    env.kill_serving_helper();
}

#[test]
fn a_second_helper_on_another_socket_takes_nothing_from_a_live_one() {
    let env = env_or_skip!();
    let id = ok(&env.sh(&["--detach"], "exec sleep 1000"))
        .trim()
        .to_owned();
    let pid = entry(&ps_all(&env), &id)["pid"].as_i64().unwrap();
    // Another helper of the same user, on a socket of its own (a debug run, say): it looks at
    // the same sandbox folders when it starts.
    let other = env.runtime.join("other.sock");
    let log = std::fs::File::create(env.dir.path().join("other.log")).unwrap();
    let mut second = env
        .helper_command()
        .args(["--foreground", "--socket"])
        .arg(&other)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    assert!(hutch_client::connection::wait_ready(
        &other,
        Duration::from_secs(10)
    ));
    std::thread::sleep(Duration::from_secs(4));
    let other_log = std::fs::read_to_string(env.dir.path().join("other.log")).unwrap();
    let _ = second.kill();
    let _ = second.wait();
    assert!(
        !other_log.contains("took over"),
        "the second helper took a sandbox of the live one:\n{other_log}"
    );
    // The first helper still has it, and its folder.
    let listed = entry(&ps_all(&env), &id);
    assert_eq!(listed["state"], "running", "{listed}\n{other_log}");
    assert!(alive(pid));
    let folder = env.runtime.join("hutch").join("sandboxes").join(&id);
    assert!(
        folder.join("supervisor.sock").exists(),
        "its folder was removed:\n{other_log}"
    );
    ok(&env.hutch(&["stop", "--grace", "0", &id]));
    let listed = entry(&ps_all(&env), &id);
    assert_eq!(listed["state"], "exited", "{listed}");
}
