//! What the window needs from the helper, against a real helper and real sandboxes: the
//! output log of apps started without a terminal (`run --detach`, `hutch logs`), the process
//! list of a sandbox, and a subscription that hears of every sandbox starting and exiting.

use std::time::{Duration, Instant};

use hutch_client::connection::Client;
use hutch_core::protocol::{Event, ExitStatus, Request, Response, SandboxState};
use hutch_tests::{env_or_skip, ok, stderr};

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn detached_output_is_kept_after_the_exit_and_followed_live() {
    let env = env_or_skip!();
    let id = ok(&env.sh(
        &["--detach"],
        "echo out-line; echo err-line >&2; sleep 0.3; echo late; exit 3",
    ))
    .trim()
    .to_owned();
    assert!(
        id.len() >= 8 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "run --detach prints the id: {id:?}"
    );
    // --follow prints everything, waits for the exit, then stops.
    let followed = ok(&env.hutch(&["logs", "--follow", &id[..5]]));
    assert_eq!(followed, "out-line\nerr-line\nlate\n");
    let ps_all = || -> serde_json::Value {
        serde_json::from_str(&ok(&env.hutch(&["ps", "--all", "--json"]))).unwrap()
    };
    wait_for("the exit", Duration::from_secs(10), || {
        ps_all()
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == id.as_str() && s["state"] == "exited")
    });
    let ps = ps_all();
    let entry = ps
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id.as_str())
        .unwrap();
    assert_eq!(entry["exit"]["code"], 3, "{entry}");
    // Still readable after the exit.
    assert_eq!(ok(&env.hutch(&["logs", &id])), "out-line\nerr-line\nlate\n");
}

#[test]
fn a_flood_of_output_keeps_the_newest_part_and_says_so() {
    let env = env_or_skip!();
    // 400 KiB of numbered lines: more than the 256 KiB kept.
    let id = ok(&env.sh(
        &["--detach"],
        "i=0; while [ $i -lt 40000 ]; do printf 'line %05d\\n' $i; i=$((i+1)); done",
    ))
    .trim()
    .to_owned();
    ok(&env.hutch(&["logs", "--follow", &id]));
    let out = env.hutch(&["logs", &id]);
    let text = ok(&out);
    assert!(
        text.ends_with("line 39999\n"),
        "{}",
        &text[text.len() - 40..]
    );
    assert!(!text.contains("line 00000"));
    assert!(text.len() <= 256 * 1024);
    assert!(
        stderr(&out).contains("bytes of output were dropped"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn logs_of_a_sandbox_without_a_log_or_unknown_are_refused_clearly() {
    let env = env_or_skip!();
    let out = env.hutch(&["logs", "feedbeef"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("no sandbox with id feedbeef"),
        "{}",
        stderr(&out)
    );
    let (mut child, _stdout, first) = env.spawn_sh("echo up; sleep 30");
    assert_eq!(first, "up\n");
    let id = env.ps()[0]["id"].as_str().unwrap().to_owned();
    let out = env.hutch(&["logs", &id]);
    assert!(stderr(&out).contains("keeps no log"), "{}", stderr(&out));
    ok(&env.hutch(&["stop", "--grace", "0", &id]));
    let _ = child.wait();
}

#[test]
fn the_process_list_shows_the_tree_with_pids_inside() {
    let env = env_or_skip!();
    let id = ok(&env.sh(&["--detach"], "sleep 60 & sleep 61 & echo ready; wait"))
        .trim()
        .to_owned();
    let mut client = Client::connect(&env.socket, "test").unwrap();
    let mut processes = Vec::new();
    wait_for("two sleeps", Duration::from_secs(10), || {
        match client
            .request(&Request::Processes { id: id.clone() }, &[])
            .unwrap()
        {
            Response::Processes { processes: p, .. } => processes = p,
            other => panic!("{other:?}"),
        }
        processes.iter().filter(|p| p.name == "sleep").count() == 2
    });
    // pid 1 first (the sandbox's reaper), then the shell it started, then the sleeps.
    assert_eq!(processes[0].ns_pid, 1, "{processes:?}");
    let shell = processes
        .iter()
        .find(|p| p.name == "sh")
        .expect("the shell");
    assert_eq!(shell.ppid, processes[0].pid);
    for sleep in processes.iter().filter(|p| p.name == "sleep") {
        assert_eq!(sleep.ppid, shell.pid);
        assert!(sleep.ns_pid < 10 && sleep.ns_pid != sleep.pid, "{sleep:?}");
        assert!(sleep.cmdline[1] == "60" || sleep.cmdline[1] == "61");
    }
    ok(&env.hutch(&["stop", "--grace", "0", &id]));
    match client
        .request(&Request::Processes { id: id.clone() }, &[])
        .unwrap()
    {
        Response::Error { message, .. } => assert!(message.contains("exited"), "{message}"),
        other => panic!("processes of an exited sandbox: {other:?}"),
    }
}

#[test]
fn subscribers_hear_of_every_start_and_exit() {
    let env = env_or_skip!();
    let mut sub = Client::connect(&env.socket, "test-subscriber").unwrap();
    assert!(matches!(
        sub.request(
            &Request::Subscribe {
                interval_ms: Some(5000)
            },
            &[]
        )
        .unwrap(),
        Response::Done { .. }
    ));
    let mut tables = Vec::new();
    let mut next_table = |sub: &mut Client| loop {
        if let Event::Sandboxes { sandboxes } = sub.next_event().unwrap() {
            tables.push(sandboxes.clone());
            return sandboxes;
        }
    };
    assert!(next_table(&mut sub).is_empty(), "the table comes at once");
    // Started by another client (the CLI), not by this connection.
    let started = Instant::now();
    let id = ok(&env.sh(&["--detach"], "sleep 0.5; exit 4"))
        .trim()
        .to_owned();
    let mut saw_running = false;
    loop {
        let table = next_table(&mut sub);
        let Some(s) = table.iter().find(|s| s.id == id) else {
            continue;
        };
        saw_running |= s.state == SandboxState::Running;
        if s.state == SandboxState::Exited {
            assert_eq!(s.exit, Some(ExitStatus::Code(4)));
            break;
        }
    }
    assert!(saw_running, "a table with the sandbox running: {tables:?}");
    // Tables come on change, not at the 5 s sampling pace.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn the_helper_runs_at_most_its_maximum_of_sandboxes() {
    // Skips (or fails, in CI) where sandboxes cannot run at all.
    drop(env_or_skip!());
    let env = hutch_tests::TestEnv::start_unchecked_with(&[("HUTCH_MAX_SANDBOXES", "2")]);
    let a = ok(&env.sh(&["--detach"], "sleep 60")).trim().to_owned();
    let b = ok(&env.sh(&["--detach"], "sleep 60")).trim().to_owned();
    let third = env.sh(&["--detach"], "sleep 60");
    assert_eq!(third.status.code(), Some(125));
    assert!(
        stderr(&third).contains("2 sandboxes are running, the most this helper runs at once"),
        "{}",
        stderr(&third)
    );
    ok(&env.hutch(&["stop", "--grace", "0", &a]));
    let c = ok(&env.sh(&["--detach"], "sleep 60")).trim().to_owned();
    for id in [b, c] {
        ok(&env.hutch(&["stop", "--grace", "0", &id]));
    }
}
