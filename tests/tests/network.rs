//! User-mode networking: slirp4netns and pasta, host loopback closed by default, published
//! ports, DNS, and the network process's life bound to the sandbox's.
//!
//! Traffic stays on this machine: the tests only reach the host's loopback and ports they
//! publish themselves, never an outside address.

use std::io::{BufRead, Read, Write};
use std::time::{Duration, Instant};

use hutch_tests::{TestEnv, env_or_skip, free_port, init_pid_of, ok, stack_pids, stderr, stdout};

const BACKENDS: &[&str] = &["slirp4netns", "pasta"];

/// The backends installed here; under HUTCH_MUST_WORK both must be.
fn backends() -> Vec<&'static str> {
    BACKENDS
        .iter()
        .copied()
        .filter(|b| {
            let found = ["/usr/bin", "/bin"]
                .iter()
                .any(|d| std::path::Path::new(d).join(b).exists());
            if !found {
                hutch_tests::skip_or_fail(&format!("{b} is not installed"));
            }
            found
        })
        .collect()
}

/// A Python probe that connects to ADDR:PORT, sends a line, prints what comes back or why not.
fn connect_probe(addr: &str, port: u16) -> String {
    format!(
        "python3 -c 'import socket\ns=socket.socket()\ns.settimeout(5)\ntry:\n s.connect((\"{addr}\",{port})); s.sendall(b\"ping\\n\"); print(\"reply\", s.recv(100).decode().strip())\nexcept OSError as e: print(\"failed\", e.errno)'"
    )
}

/// A host server on loopback answering "pong" to each connection, for `count` connections.
fn loopback_server(count: usize) -> (u16, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        listener.set_nonblocking(false).unwrap();
        for mut s in listener.incoming().take(count).flatten() {
            let mut line = [0u8; 5];
            let _ = s.read(&mut line);
            let _ = s.write_all(b"pong\n");
        }
    });
    (port, handle)
}

#[test]
fn the_user_network_is_configured_like_slirp4netns_for_both_backends() {
    let env = env_or_skip!();
    for backend in backends() {
        let out = ok(&env.sh(
            &["--net", "user", "--net-backend", backend],
            "cat /etc/resolv.conf; ip -4 -o addr show tap0 | awk '{print $4}'; ip route | head -1",
        ));
        assert_eq!(
            out, "nameserver 10.0.2.3\n10.0.2.100/24\ndefault via 10.0.2.2 dev tap0 \n",
            "{backend}"
        );
    }
    // IPv6 (pasta gives it) shows none of the host's own addresses either: slirp4netns's
    // layout, fd00::100 behind fd00::2.
    if backends().contains(&"pasta") {
        let inside = ok(&env.sh(
            &["--net", "user", "--net-backend", "pasta"],
            "ip -6 -o addr show scope global | awk '{print $4}'; ip -6 route show default",
        ));
        assert!(
            inside.starts_with("fd00::100/64\ndefault via fd00::2 dev tap0"),
            "{inside}"
        );
        let host = std::process::Command::new("ip")
            .args(["-6", "-o", "addr", "show", "scope", "global"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for addr in host
            .split_whitespace()
            .filter(|w| w.contains(':') && w.contains('/'))
        {
            if addr != "fd00::100/64" {
                assert!(!inside.contains(addr), "the host's {addr} inside: {inside}");
            }
        }
    }
    // And with no network, no interface but loopback and no resolver.
    let out = ok(&env.sh(
        &[],
        "cat /etc/resolv.conf; ls /sys/class/net 2>/dev/null | wc -l",
    ));
    assert!(out.starts_with("# this sandbox has no network"), "{out}");
}

#[test]
fn host_loopback_is_closed_by_default_and_opened_on_request() {
    let env = env_or_skip!();
    for backend in backends() {
        let (port, server) = loopback_server(1);
        let base = ["--net", "user", "--net-backend", backend];
        // The probe gets through outside the sandbox, so it can fail inside.
        let outside = std::process::Command::new("sh")
            .arg("-c")
            .arg(connect_probe("127.0.0.1", port))
            .output()
            .unwrap();
        assert_eq!(stdout(&outside).trim(), "reply pong", "{backend}");

        // Inside, the sandbox's own loopback is not the host's (pasta would forward host
        // ports to it by default: Hutch turns that off).
        let inside = ok(&env.sh(&base, &connect_probe("127.0.0.1", port)));
        assert!(inside.starts_with("failed"), "{backend}: {inside}");
        if backend == "slirp4netns" {
            // slirp4netns answers for 10.0.2.2 itself, so this stays on the machine.
            let inside = ok(&env.sh(&base, &connect_probe("10.0.2.2", port)));
            assert!(inside.starts_with("failed"), "{backend}: {inside}");
        }
        let mut allowed = base.to_vec();
        allowed.push("--allow-host-loopback");
        let (port2, server2) = loopback_server(1);
        let inside = ok(&env.sh(&allowed, &connect_probe("10.0.2.2", port2)));
        assert_eq!(inside.trim(), "reply pong", "{backend}");
        server2.join().unwrap();
        drop(server);
    }
}

#[test]
fn a_server_inside_answers_on_a_published_port_and_traffic_is_counted() {
    let env = env_or_skip!();
    for backend in backends() {
        let host_port = free_port();
        let publish = format!("{host_port}:8000");
        let server = "python3 -u -c 'import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind((\"0.0.0.0\",8000)); s.listen()\nprint(\"ready\")\nc,_=s.accept(); c.recv(10); c.sendall(b\"hello from the sandbox\\n\"); c.close()\nimport time; time.sleep(30)'";
        let (mut child, _out, ready) = env.spawn_run(
            &[
                "--net",
                "user",
                "--net-backend",
                backend,
                "--publish",
                &publish,
            ],
            server,
        );
        assert_eq!(ready, "ready\n", "{backend}");
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", host_port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(b"hi\n").unwrap();
        let mut reply = String::new();
        std::io::BufReader::new(&stream)
            .read_line(&mut reply)
            .unwrap();
        assert_eq!(reply, "hello from the sandbox\n", "{backend}");

        let list: serde_json::Value = env.ps();
        let me = list
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["network"]["backend"] == backend)
            .unwrap();
        assert_eq!(me["network"]["publish"][0]["host_port"], host_port);
        let id = me["id"].as_str().unwrap().to_owned();
        let stats: serde_json::Value =
            serde_json::from_str(&ok(&env.hutch(&["stats", &id, "--json"]))).unwrap();
        // slirp4netns delivers forwarded connections on tap0; pasta splices a connection from
        // the host's loopback straight to the sandbox's loopback. Either way it is counted.
        let received = stats["net"]["rx_bytes"].as_u64().unwrap()
            + stats["loopback"]["rx_bytes"].as_u64().unwrap();
        assert!(received >= 3, "{backend}: {stats}");
        if backend == "slirp4netns" {
            assert!(stats["net"]["tx_packets"].as_u64().unwrap() > 0, "{stats}");
        }
        ok(&env.hutch(&["stop", "--grace", "1", &id]));
        let _ = child.wait();
    }
}

fn app_pid(env: &TestEnv, backend: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list: serde_json::Value = env.ps();
        if let Some(s) = list
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["network"]["backend"] == backend && s["state"] == "running")
        {
            return s["pid"].as_i64().unwrap() as i32;
        }
        assert!(Instant::now() < deadline, "no running {backend} sandbox");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_gone(pids: &[i32]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids
        .iter()
        .any(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
    {
        assert!(
            Instant::now() < deadline,
            "network process {pids:?} outlived its sandbox"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_network_process_ends_with_the_sandbox() {
    let env = env_or_skip!();
    for backend in backends() {
        // Exiting by itself.
        let (mut child, _out, ready) = env.spawn_run(
            &["--net", "user", "--net-backend", backend],
            "echo ready; sleep 1",
        );
        assert_eq!(ready, "ready\n");
        let init = init_pid_of(app_pid(&env, backend)).unwrap();
        let stacks = stack_pids(init);
        assert_eq!(
            stacks.len(),
            1,
            "{backend}: one network process per sandbox"
        );
        let _ = child.wait();
        wait_gone(&stacks);

        // Stopped.
        let (mut child, _out, _) = env.spawn_run(
            &["--net", "user", "--net-backend", backend],
            "echo ready; exec sleep 100",
        );
        let app = app_pid(&env, backend);
        let stacks = stack_pids(init_pid_of(app).unwrap());
        assert_eq!(stacks.len(), 1);
        let list: serde_json::Value = env.ps();
        let id = list[0]["id"].as_str().unwrap().to_owned();
        ok(&env.hutch(&["stop", &id]));
        let _ = child.wait();
        wait_gone(&stacks);
    }
}

#[test]
fn killing_the_network_process_reports_network_down() {
    let mut env = env_or_skip!();
    for backend in backends() {
        let (mut child, _out, ready) = env.spawn_run(
            &["--net", "user", "--net-backend", backend],
            "echo ready; exec sleep 100",
        );
        assert_eq!(ready, "ready\n");
        let app = app_pid(&env, backend);
        let stacks = stack_pids(init_pid_of(app).unwrap());
        assert_eq!(stacks.len(), 1);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(stacks[0]),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let id = loop {
            let list: serde_json::Value = env.ps();
            let me = &list.as_array().unwrap()[0];
            if me["network"]["up"] == false {
                break me["id"].as_str().unwrap().to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "{backend}: network never reported down"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(ok(&env.hutch(&["ps"])).contains(&format!("{backend} (down)")));
        assert!(env.helper_alive());
        // The app itself still runs; stop it.
        assert!(std::path::Path::new(&format!("/proc/{app}")).exists());
        ok(&env.hutch(&["stop", &id]));
        let out = child.wait_with_output_after_stop();
        assert!(
            out.contains("network of sandbox") && out.contains("is down"),
            "{backend}: {out}"
        );
    }
}

trait StderrAfterStop {
    fn wait_with_output_after_stop(&mut self) -> String;
}

impl StderrAfterStop for std::process::Child {
    fn wait_with_output_after_stop(&mut self) -> String {
        let _ = self.wait();
        let mut err = String::new();
        if let Some(mut e) = self.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        err
    }
}

#[test]
fn bad_network_input_is_refused_before_anything_starts() {
    let env = env_or_skip!();
    for backend in backends() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let marker = env.dir.path().join(format!("ran-{backend}"));
        let publish = format!("{port}:80");
        let out = env.sh(
            &[
                "--net",
                "user",
                "--net-backend",
                backend,
                "--publish",
                &publish,
            ],
            &format!("touch {}", marker.display()),
        );
        assert_eq!(out.status.code(), Some(125), "{backend}");
        assert!(
            stderr(&out).contains(&format!(
                "published port 127.0.0.1:{port} is already in use"
            )),
            "{}",
            stderr(&out)
        );
        assert!(!marker.exists());
    }
    // One host port published twice is refused, not collapsed into one.
    let out = env.sh(
        &[
            "--net",
            "user",
            "--publish",
            "18080:80",
            "--publish",
            "18080:81",
        ],
        "true",
    );
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("publishes host port 127.0.0.1:18080:80 and then 127.0.0.1:18080:81"),
        "{}",
        stderr(&out)
    );
    let out = env.sh(&["--net", "user", "--publish", "8080:70000"], "true");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("sandbox port 70000 is outside 1-65535"),
        "{}",
        stderr(&out)
    );
    let out = env.sh(&["--publish", "8080:80"], "true");
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("needs a user network"),
        "{}",
        stderr(&out)
    );
    env.write_profile("badport", "network = \"user\"\npublish = [\"0:80\"]\n");
    let out = env.sh(&["--profile", "badport"], "true");
    assert!(
        stderr(&out).contains("line 2, key `publish`") && stderr(&out).contains("host port 0"),
        "{}",
        stderr(&out)
    );
}
