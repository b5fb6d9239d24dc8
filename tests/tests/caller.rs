//! A foreground `hutch run` and its sandbox live and die together: when the command ends,
//! however it ends (SIGKILL included), its app is stopped within a second, whether or not a
//! helper runs at that moment. `--detach` and the window's sandboxes outlive their client.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hutch_tests::{TestEnv, env_or_skip, ok};

/// An app that says it got SIGTERM (in `dir/got-term`), or ignores it when `stubborn`.
fn app(dir: &Path, stubborn: bool) -> String {
    let on_term = if stubborn {
        format!("echo ignored > {}/got-term", dir.display())
    } else {
        format!("echo term > {}/got-term; exit 0", dir.display())
    };
    format!("trap '{on_term}' TERM; echo ready; while :; do sleep 0.05; done")
}

fn shared(env: &TestEnv, name: &str) -> (PathBuf, String) {
    let dir = env.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let spec = format!("{}:rw", dir.display());
    (dir, spec)
}

/// The host pid of the app of the only live sandbox, once it is listed running (the app may
/// print its first line a moment before the helper hears it started).
fn app_pid(env: &TestEnv) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ps = env.ps();
        let live: Vec<&serde_json::Value> = ps.as_array().unwrap().iter().collect();
        assert_eq!(live.len(), 1, "{ps}");
        if live[0]["state"] == "running" {
            return live[0]["pid"].as_i64().unwrap() as i32;
        }
        assert!(Instant::now() < deadline, "never running: {ps}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Waits up to `limit` for `pid` to be gone; how long it took.
fn gone_within(pid: i32, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if !alive(pid) {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn kill9(child: &mut std::process::Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = child.wait();
}

#[test]
fn a_foreground_run_killed_with_sigkill_takes_its_app_along() {
    let env = env_or_skip!();
    let (dir, spec) = shared(&env, "killed");
    let (mut child, _out, first) = env.spawn_run(&["--share", &spec], &app(&dir, false));
    assert_eq!(first, "ready\n");
    let pid = app_pid(&env);
    let killed = Instant::now();
    kill9(&mut child);
    let took = gone_within(pid, Duration::from_secs(5)).expect("the app outlived its caller");
    assert!(
        killed.elapsed() < Duration::from_millis(1500),
        "took {took:?}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("got-term")).unwrap(),
        "term\n",
        "it was asked to stop first (SIGTERM)"
    );
}

#[test]
fn an_app_that_ignores_sigterm_is_killed_a_second_after_its_caller() {
    let env = env_or_skip!();
    let (dir, spec) = shared(&env, "stubborn");
    let (mut child, _out, _) = env.spawn_run(&["--share", &spec], &app(&dir, true));
    let pid = app_pid(&env);
    kill9(&mut child);
    let took = gone_within(pid, Duration::from_secs(5)).expect("never killed");
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_millis(2500),
        "SIGKILL after the grace period, took {took:?}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("got-term")).unwrap(),
        "ignored\n"
    );
}

#[test]
fn the_app_goes_with_its_caller_even_while_no_helper_runs() {
    let mut env = env_or_skip!();
    let (dir, spec) = shared(&env, "orphan");
    let (mut child, _out, _) = env.spawn_run(&["--share", &spec], &app(&dir, false));
    let pid = app_pid(&env);
    env.kill_serving_helper();
    assert!(alive(pid), "the sandbox outlives its helper");
    kill9(&mut child);
    let took = gone_within(pid, Duration::from_secs(5)).expect("the app outlived its caller");
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert!(dir.join("got-term").exists());
}

#[test]
fn a_detached_sandbox_outlives_the_command_that_started_it() {
    let env = env_or_skip!();
    let (dir, spec) = shared(&env, "detached");
    let id = ok(&env.hutch(&[
        "run",
        "-d",
        "--share",
        &spec,
        "--",
        "sh",
        "-c",
        &app(&dir, false),
    ]));
    // The command has exited; its sandbox runs on.
    std::thread::sleep(Duration::from_millis(1500));
    let pid = app_pid(&env);
    assert!(alive(pid));
    assert!(!dir.join("got-term").exists());
    ok(&env.hutch(&["stop", "--grace", "5", id.trim()]));
    assert!(gone_within(pid, Duration::from_secs(5)).is_some());
}
