//! Real desktop apps in Hutch, as a user runs them: browsers keep their own sandboxes (their
//! renderers in user namespaces of their own) without `--no-sandbox`, and `inspect` says what
//! was allowed. Run as the unprivileged test user; the browsers are Debian's packages.

use std::time::{Duration, Instant};

use hutch_tests::{TestEnv, env_or_skip, have, ok, skip_or_fail, stderr};

fn need(program: &str, package: &str) -> bool {
    if have(program) {
        return true;
    }
    skip_or_fail(&format!("{program} is needed (Debian package {package})"));
    false
}

/// A process seen from the host: its pid, its user namespace and its arguments.
#[derive(Debug)]
struct Process {
    pid: i32,
    user_ns: String,
    args: String,
}

/// `root` and every process below it, from the host's /proc.
fn tree(root: i32) -> Vec<Process> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: the name may hold spaces and parentheses.
        let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok())
        else {
            continue;
        };
        all.push((pid, ppid));
    }
    let mut found = vec![root];
    let mut grew = true;
    while grew {
        grew = false;
        for (pid, ppid) in &all {
            if found.contains(ppid) && !found.contains(pid) {
                found.push(*pid);
                grew = true;
            }
        }
    }
    found
        .into_iter()
        .filter_map(|pid| {
            Some(Process {
                pid,
                user_ns: std::fs::read_link(format!("/proc/{pid}/ns/user"))
                    .ok()?
                    .display()
                    .to_string(),
                args: String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).ok()?)
                    .replace('\0', " "),
            })
        })
        .collect()
}

/// The host pid of sandbox `id`'s app.
fn app_pid(env: &TestEnv, id: &str) -> i32 {
    let list = env.ps();
    list.as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .and_then(|s| s["pid"].as_i64())
        .unwrap_or_else(|| panic!("{id} is not listed: {list}")) as i32
}

#[test]
fn chromium_starts_through_its_launcher_with_its_own_sandbox() {
    let env = env_or_skip!();
    if !need("chromium", "chromium") {
        return;
    }
    let out = env.hutch(&[
        "run",
        "--detach",
        "--",
        "chromium",
        "--headless=new",
        "--remote-debugging-port=0",
        "about:blank",
    ]);
    let id = ok(&out).trim().to_owned();
    assert!(
        stderr(&out).contains("Chromium keeps its own sandbox"),
        "{}",
        stderr(&out)
    );
    let app = app_pid(&env, &id);
    let app_ns = std::fs::read_link(format!("/proc/{app}/ns/user"))
        .unwrap()
        .display()
        .to_string();
    // Its renderers start in namespaces of their own (Chromium's sandbox), not in the app's.
    let deadline = Instant::now() + Duration::from_secs(90);
    let processes = loop {
        let processes = tree(app);
        if processes
            .iter()
            .any(|p| p.args.contains("--type=renderer") && p.user_ns != app_ns)
        {
            break processes;
        }
        assert!(
            Instant::now() < deadline,
            "no renderer in a user namespace of its own: {processes:#?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    for p in &processes {
        assert!(!p.args.contains("--no-sandbox"), "{p:?}");
    }
    assert!(
        processes
            .iter()
            .any(|p| p.pid != app && p.args.contains("--type=zygote")),
        "{processes:#?}"
    );
    let anatomy = ok(&env.hutch(&["inspect", &id]));
    assert!(
        anatomy.contains("user namespaces: allowed: Chromium's own sandbox"),
        "{anatomy}"
    );
    ok(&env.hutch(&["stop", &id]));

    // The control: refused user namespaces, Chromium finds no usable sandbox.
    env.write_profile("no-own-sandbox", "allow_user_namespaces = false\n");
    let out = env.hutch(&[
        "run",
        "--profile",
        "no-own-sandbox",
        "--",
        "chromium",
        "--headless=new",
        "--dump-dom",
        "about:blank",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("No usable sandbox"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn firefox_starts_without_losing_its_content_sandbox() {
    let env = env_or_skip!();
    if !need("firefox-esr", "firefox-esr") {
        return;
    }
    let shot = ["--headless", "--screenshot", "/tmp/shot.png", "about:blank"];
    let mut args = vec!["run", "--", "firefox-esr"];
    args.extend(shot);
    let out = env.hutch(&args);
    ok(&out);
    let err = stderr(&out);
    assert!(err.contains("Firefox keeps its own sandbox"), "{err}");
    assert!(!err.contains("CanCreateUserNamespace"), "{err}");

    env.write_profile("no-own-sandbox", "allow_user_namespaces = false\n");
    let mut args = vec!["run", "--profile", "no-own-sandbox", "--", "firefox-esr"];
    args.extend(shot);
    let err = stderr(&env.hutch(&args));
    assert!(
        err.contains("CanCreateUserNamespace() clone() failure: EPERM"),
        "the control loses the sandbox: {err}"
    );
}

#[test]
fn inspect_says_whether_user_namespaces_are_allowed_and_why() {
    let env = env_or_skip!();
    env.write_profile("own-sandbox", "allow_user_namespaces = true\n");
    let allowed = ok(&env.sh(&["--detach", "--profile", "own-sandbox"], "exec sleep 600"))
        .trim()
        .to_owned();
    let refused = ok(&env.sh(&["--detach"], "exec sleep 600"))
        .trim()
        .to_owned();
    let anatomy = ok(&env.hutch(&["inspect", &allowed]));
    assert!(
        anatomy.contains("user namespaces: allowed: the profile allows them"),
        "{anatomy}"
    );
    let anatomy = ok(&env.hutch(&["inspect", &refused]));
    assert!(
        anatomy.contains("user namespaces: refused (seccomp)"),
        "{anatomy}"
    );
    // And it is so: the one makes a user namespace, the other cannot.
    let try_it = "unshare -U true && echo made";
    assert_eq!(ok(&env.sh(&["--profile", "own-sandbox"], try_it)), "made\n");
    assert!(!env.sh(&[], try_it).status.success());
    ok(&env.hutch(&["stop", &allowed]));
    ok(&env.hutch(&["stop", &refused]));
}
