//! The helper daemon as a network service: hostile frames, other users, one instance.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use hutch_client::connection::Client;
use hutch_core::protocol::{ErrorCode, PROTOCOL_VERSION, Request, Response, ServerMessage};
use hutch_tests::{TestEnv, ok, stderr};

fn raw(env: &TestEnv) -> UnixStream {
    let s = UnixStream::connect(&env.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn hello() -> Vec<u8> {
    hutch_core::frame::encode(&Request::Hello {
        protocol: PROTOCOL_VERSION,
        client: "t".into(),
    })
    .unwrap()
}

/// Reads what the helper sends until it closes: the decoded messages.
fn read_until_closed(mut s: UnixStream) -> Vec<ServerMessage> {
    let mut bytes = Vec::new();
    let _ = s.read_to_end(&mut bytes);
    let mut buf = hutch_core::frame::FrameBuffer::new();
    buf.push(&bytes);
    let mut out = Vec::new();
    while let Ok(Some(body)) = buf.next_frame() {
        out.push(hutch_core::frame::decode(&body).unwrap());
    }
    out
}

fn error_code(msgs: &[ServerMessage]) -> Option<ErrorCode> {
    msgs.iter().find_map(|m| match m {
        ServerMessage::Response(Response::Error { code, .. }) => Some(*code),
        _ => None,
    })
}

#[test]
fn malformed_frames_get_an_error_and_the_helper_keeps_serving() {
    let mut env = TestEnv::start_unchecked();
    // A well-behaved client stays connected throughout.
    let mut good = Client::connect(&env.socket, "good").unwrap();
    let cases: Vec<(&str, Vec<u8>, bool, Option<ErrorCode>)> = vec![
        (
            "oversized length",
            u32::MAX.to_be_bytes().to_vec(),
            false,
            Some(ErrorCode::BadFrame),
        ),
        (
            "invalid utf-8",
            frame(&[0xff, 0xfe, 0xfd]),
            false,
            Some(ErrorCode::BadFrame),
        ),
        (
            "not json",
            frame(b"hello there"),
            false,
            Some(ErrorCode::BadFrame),
        ),
        (
            "wrong types",
            frame(br#"{"type":"hello","protocol":"one","client":1}"#),
            false,
            Some(ErrorCode::BadFrame),
        ),
        (
            "unknown request first",
            frame(br#"{"type":"format_disk"}"#),
            false,
            Some(ErrorCode::BadFrame),
        ),
        (
            "request before hello",
            frame(br#"{"type":"list"}"#),
            false,
            Some(ErrorCode::Handshake),
        ),
        (
            "wrong version",
            frame(br#"{"type":"hello","protocol":999,"client":"x"}"#),
            false,
            Some(ErrorCode::UnsupportedVersion),
        ),
        (
            "unknown request after hello",
            frame(br#"{"type":"format_disk"}"#),
            true,
            Some(ErrorCode::BadFrame),
        ),
        (
            "empty frame after hello",
            0u32.to_be_bytes().to_vec(),
            true,
            Some(ErrorCode::BadFrame),
        ),
        ("truncated frame", vec![0, 0, 0, 50, b'{'], true, None),
    ];
    for (name, bytes, after_hello, expected) in cases {
        let mut s = raw(&env);
        if after_hello {
            s.write_all(&hello()).unwrap();
        }
        s.write_all(&bytes).unwrap();
        if expected.is_none() {
            // Half a frame, then the client goes away.
            s.shutdown(std::net::Shutdown::Write).unwrap();
        }
        let msgs = read_until_closed(s);
        assert_eq!(error_code(&msgs), expected, "{name}: {msgs:?}");
        assert!(
            env.helper_alive(),
            "helper died on {name}: {}",
            env.helper_log()
        );
        // Everyone else is still served.
        assert!(
            matches!(
                good.request(&Request::List, &[]).unwrap(),
                Response::Sandboxes { .. }
            ),
            "{name}"
        );
    }
    assert!(
        env.helper_log().contains("bad frame"),
        "bad frames are logged"
    );
}

#[test]
fn a_client_that_stalls_mid_frame_does_not_block_others() {
    let env = TestEnv::start_unchecked();
    let mut stalled = raw(&env);
    stalled.write_all(&[0, 0, 0, 100, b'{']).unwrap();
    let mut many: Vec<Client> = (0..20)
        .map(|i| Client::connect(&env.socket, &format!("c{i}")).unwrap())
        .collect();
    for c in &mut many {
        assert!(matches!(
            c.request(&Request::List, &[]).unwrap(),
            Response::Sandboxes { .. }
        ));
    }
    drop(stalled);
}

#[test]
fn a_half_frame_that_stalls_is_cut_off_after_the_frame_timeout() {
    let env = TestEnv::start_unchecked_with(&[("HUTCH_FRAME_TIMEOUT_MS", "300")]);
    // Before the handshake and after it.
    let mut before = raw(&env);
    before.write_all(&[0, 0, 0, 100, b'{']).unwrap();
    let mut after = raw(&env);
    after.write_all(&hello()).unwrap();
    after.write_all(&[0, 0, 0, 100, b'{', b'"']).unwrap();
    let started = std::time::Instant::now();
    for (name, s) in [("before hello", before), ("after hello", after)] {
        let msgs = read_until_closed(s);
        let err = msgs.iter().find_map(|m| match m {
            ServerMessage::Response(Response::Error { code, message }) => {
                Some((*code, message.clone()))
            }
            _ => None,
        });
        let (code, message) = err.unwrap_or_else(|| panic!("{name}: no error in {msgs:?}"));
        assert_eq!(code, ErrorCode::BadFrame, "{name}");
        assert!(
            message.contains("then nothing for too long"),
            "{name}: {message}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    // An idle client (nothing sent after hello) is not cut off: it may be waiting for events.
    let mut idle = Client::connect(&env.socket, "idle").unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert!(matches!(
        idle.request(&Request::List, &[]).unwrap(),
        Response::Sandboxes { .. }
    ));
}

#[test]
fn connections_beyond_the_maximum_are_refused_and_served_again_once_some_close() {
    let env = TestEnv::start_unchecked_with(&[("HUTCH_MAX_CONNECTIONS", "4")]);
    // A connection is counted until its thread has seen it close: retry for a moment (the
    // harness's own readiness check may still hold a slot).
    let eventually = |name: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match Client::connect(&env.socket, name) {
                Ok(c) => return c,
                Err(e) => {
                    assert!(std::time::Instant::now() < deadline, "{e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    };
    let mut held: Vec<Client> = (0..4).map(|i| eventually(&format!("c{i}"))).collect();
    // All four slots are ours now: the fifth is refused, with the reason.
    let err = Client::connect(&env.socket, "one too many")
        .unwrap_err()
        .to_string();
    assert!(err.contains("at most 4 connections"), "{err}");
    drop(held.pop());
    let mut again = eventually("again");
    assert!(matches!(
        again.request(&Request::List, &[]).unwrap(),
        Response::Sandboxes { .. }
    ));
    for c in &mut held {
        assert!(matches!(
            c.request(&Request::List, &[]).unwrap(),
            Response::Sandboxes { .. }
        ));
    }
}

#[test]
fn a_bad_bound_in_the_environment_is_named() {
    let env = TestEnv::start_unchecked();
    let out = hutch_tests::run_with_timeout(
        {
            let mut cmd = env.helper_command();
            cmd.arg("--foreground")
                .arg("--socket")
                .arg(env.runtime.join("other.sock"))
                .env("HUTCH_MAX_SANDBOXES", "lots");
            cmd
        },
        Duration::from_secs(10),
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("HUTCH_MAX_SANDBOXES=\"lots\" is not a positive whole number"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn another_uid_is_refused_and_logged() {
    let env = TestEnv::start_unchecked();
    if hutch_tests::cannot_run().is_some()
        || std::process::Command::new("unshare")
            .arg("--help")
            .output()
            .is_err()
    {
        hutch_tests::skip_or_fail("needs a subordinate uid range and util-linux unshare");
        return;
    }
    // Let another uid reach the socket file at all: open the folders up. SO_PEERCRED must
    // still keep it out.
    use std::os::unix::fs::PermissionsExt;
    for p in [
        env.dir.path().to_owned(),
        env.runtime.clone(),
        env.runtime.join("hutch"),
    ] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&env.socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    // `unshare --map-auto --setuid 0` runs the client as the first uid of our subordinate range.
    let mut cmd = std::process::Command::new("unshare");
    cmd.args([
        "--user",
        "--map-auto",
        "--setuid",
        "0",
        "--setgid",
        "0",
        "--",
    ])
    .arg(hutch_tests::bin_dir().join("hutch"))
    .arg("ps");
    env.apply(&mut cmd);
    cmd.env("HUTCH_SOCKET", &env.socket);
    let out = hutch_tests::run_with_timeout(cmd, Duration::from_secs(30));
    assert!(!out.status.success());
    let err = stderr(&out);
    let sub = hutch_tests::subuid_start().unwrap();
    assert!(err.contains(&format!("you are uid {sub}")), "{err}");
    assert!(err.contains("the helper refused"), "{err}");
    let log = env.helper_log();
    assert!(
        log.contains("refused a connection from another user") && log.contains(&sub.to_string()),
        "{log}"
    );
}

#[test]
fn one_helper_per_socket_and_a_stale_socket_is_replaced() {
    let mut env = TestEnv::start_unchecked();
    let second = env.helper_command().arg("--foreground").output().unwrap();
    assert_eq!(second.status.code(), Some(3));
    let err = stderr(&second);
    assert!(
        err.contains("already serving") && err.contains(&env.helper_pid().to_string()),
        "{err}"
    );
    // The detached starter says the same.
    let starter = env.helper_command().output().unwrap();
    assert_eq!(starter.status.code(), Some(3), "{}", stderr(&starter));

    env.kill_helper();
    assert!(env.socket.exists(), "SIGKILL leaves the socket file behind");
    env.restart_helper();
    assert!(env.helper_log().contains("replacing a stale socket"));
    let mut client = Client::connect(&env.socket, "after").unwrap();
    assert!(matches!(
        client.request(&Request::List, &[]).unwrap(),
        Response::Sandboxes { .. }
    ));
}

#[test]
fn runtime_folder_is_private() {
    let env = TestEnv::start_unchecked();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(env.runtime.join("hutch"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);
    let mode = std::fs::metadata(&env.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn a_failing_newuidmap_is_reported_with_its_stderr() {
    // Real newuidmap, asked to map a process that does not exist: it must fail, and Hutch must
    // pass on what it said.
    if !std::path::Path::new("/usr/bin/newuidmap").exists() {
        hutch_tests::skip_or_fail("newuidmap is not installed");
        return;
    }
    use hutch_helper::plan::{IdMapPlan, idmap::MapLine};
    let uid = nix::unistd::getuid().as_raw();
    let plan = IdMapPlan {
        kind: hutch_core::protocol::IdMapKind::SubordinateRange,
        uid_lines: vec![MapLine {
            inside: uid,
            outside: uid,
            count: 1,
        }],
        gid_lines: vec![MapLine {
            inside: uid,
            outside: uid,
            count: 1,
        }],
        newuidmap: Some("/usr/bin/newuidmap".into()),
        newgidmap: Some("/usr/bin/newgidmap".into()),
    };
    let err = hutch_helper::sandbox::idmap::write(nix::unistd::Pid::from_raw(999_999_999), &plan)
        .unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("/usr/bin/newuidmap 999999999"), "{text}");
    assert!(
        text.contains("failed") && text.contains("newuidmap:"),
        "stderr is passed on: {text}"
    );
}

#[test]
fn sigterm_shuts_the_helper_down_cleanly_and_leaves_sandboxes_running() {
    let mut env = match TestEnv::start() {
        Some(env) => env,
        None => return,
    };
    // Detached: a `hutch run` in the foreground would start a new helper once this one goes.
    ok(&env.sh(&["--detach"], "exec sleep 1000"));
    let list: serde_json::Value = env.ps();
    let pid = list[0]["pid"].as_i64().expect("the sandbox is listed") as i32;

    let helper = nix::unistd::Pid::from_raw(env.helper_pid() as i32);
    nix::sys::signal::kill(helper, nix::sys::signal::Signal::SIGTERM).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while env.helper_alive() {
        assert!(
            std::time::Instant::now() < deadline,
            "helper ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!env.socket.exists(), "the socket is removed on shutdown");
    assert!(env.helper_log().contains("shutting down"));
    // The sandboxed app is still there.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "sleep");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

#[test]
fn the_helper_accepts_a_socket_passed_by_systemd() {
    let tool = std::path::Path::new("/usr/bin/systemd-socket-activate");
    if !tool.exists() {
        hutch_tests::skip_or_fail("systemd-socket-activate is not installed (package systemd)");
        return;
    }
    let mut env = TestEnv::start_unchecked();
    env.kill_helper();
    std::fs::remove_file(&env.socket).unwrap();
    let log = std::fs::File::create(env.dir.path().join("activated.log")).unwrap();
    let mut cmd = std::process::Command::new(tool);
    env.apply(&mut cmd);
    // systemd-socket-activate passes on only the variables named with -E.
    for var in [
        "HOME",
        "PATH",
        "XDG_RUNTIME_DIR",
        "XDG_CONFIG_HOME",
        "XDG_DATA_HOME",
        "HUTCH_LOG",
    ] {
        cmd.arg("-E").arg(var);
    }
    cmd.arg("-l")
        .arg(&env.socket)
        .arg(hutch_tests::bin_dir().join("hutch-helper"))
        .arg("--foreground")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let mut activator = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !env.socket.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "systemd-socket-activate did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The first connection starts the helper on the passed socket.
    let out = env.hutch(&["ps", "--json"]);
    let text = std::fs::read_to_string(env.dir.path().join("activated.log")).unwrap_or_default();
    let _ = activator.kill();
    let _ = activator.wait();
    assert!(out.status.success(), "{}\n{text}", stderr(&out));
    assert!(
        text.contains("using the socket passed by systemd"),
        "{text}"
    );
}

/// The parent pid of `pid`, from /proc.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": the command may hold spaces and parentheses.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The app's process of the sandbox the helper keeps prepared: the great-grandchild of the
/// helper (helper → supervisor → pid 1 → app), found once it has readied itself (it is under
/// seccomp then, the last thing it does before it waits).
fn waiting_app(helper: i32) -> i32 {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let found = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .find(|&pid| {
                let up = |p: Option<i32>| p.and_then(parent_of);
                up(up(up(Some(pid)))) == Some(helper)
                    && std::fs::read_to_string(format!("/proc/{pid}/status"))
                        .is_ok_and(|s| s.contains("Seccomp:\t2"))
            });
        if let Some(pid) = found {
            return pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the helper prepared no sandbox"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_prepared_apps_process_waits_confined_and_its_death_fails_only_that_launch() {
    let env = hutch_tests::env_or_skip!();
    let app = waiting_app(env.helper_pid() as i32);
    // Before any plan arrived it holds no capability, cannot gain one, and is filtered.
    let status = std::fs::read_to_string(format!("/proc/{app}/status")).unwrap();
    for line in [
        "CapPrm:\t0000000000000000",
        "CapEff:\t0000000000000000",
        "CapBnd:\t0000000000000000",
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
    ] {
        assert!(status.contains(line), "{line} in\n{status}");
    }
    // Its pid 1, whose fds it was forked with (it is non-dumpable itself, so its own are not
    // for us to list), holds none of the sockets its supervisor talks to the daemon on.
    let sockets = |pid: i32| -> Vec<String> {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .map(|l| l.display().to_string())
            .filter(|l| l.starts_with("socket:"))
            .collect()
    };
    let init = parent_of(app).unwrap();
    let supervisor = parent_of(init).unwrap();
    let shared: Vec<String> = sockets(init)
        .into_iter()
        .filter(|s| sockets(supervisor).contains(s))
        .collect();
    assert!(shared.is_empty(), "pid 1 holds its supervisor's {shared:?}");
    // Killed while it waits: the launch that would have used it fails and says why... The
    // helper may have put a new sandbox in its place meanwhile (the host changed under the
    // prepared one: a file it binds was replaced on a busy machine), and the launch then
    // rightly succeeds: the kill is tried again on the new one, a few times.
    let mut app = app;
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(app),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let out = env.hutch(&["run", "--", "true"]);
        if out.status.code() == Some(0) {
            outcomes.push("a new sandbox served the launch".to_owned());
            app = waiting_app(env.helper_pid() as i32);
            continue;
        }
        assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("the app's process was killed by SIGKILL before the launch"),
            "{}",
            stderr(&out)
        );
        outcomes.push("refused".to_owned());
        break;
    }
    assert_eq!(
        outcomes.last().map(String::as_str),
        Some("refused"),
        "the killed process never served a launch: {outcomes:?}"
    );
    // ...and the next one gets a sandbox of its own.
    assert_eq!(
        ok(&env.hutch(&["run", "--", "sh", "-c", "echo fine"])),
        "fine\n"
    );
}

#[test]
fn launches_at_once_each_get_a_whole_sandbox() {
    // Most of them find no prepared sandbox and are launched into one made on the spot, the
    // moment it is ready: its app's process must have finished getting ready by then (it
    // once looked its Landlock paths up under a root the launch had already pivoted away,
    // and the app could not exec its shell).
    let env = hutch_tests::env_or_skip!();
    let runs: Vec<_> = (0..8)
        .map(|_| {
            let mut cmd = env.hutch_command(&["run", "--", "sh", "-c", "exit 3"]);
            cmd.stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    for run in runs {
        let out = run.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    }
}
