//! What an app can plant on the host (links swapped under a shared path, links in its kept
//! home, sockets in a shared folder, a socket of the helper's) cannot be turned against the
//! host at the next launch, and nothing the app writes drives the user's terminal. Each test
//! has its positive control: the same thing without the defence gets through, so the test can
//! fail.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hutch_tests::{TestEnv, env_or_skip, ok, stderr, stdout};

/// A folder of its own for a test, beside the helper's folders (not inside them).
fn folder(env: &TestEnv, name: &str) -> PathBuf {
    let dir = env.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

#[test]
fn a_share_swapped_to_hutchs_folder_between_check_and_mount_never_shows_it() {
    let env = env_or_skip!();
    let race = folder(&env, "race");
    let real = race.join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::write(real.join("real-marker"), "").unwrap();
    let sub = race.join("sub");
    let hutch = env.runtime.join("hutch");
    let share = sub.display().to_string();
    let list = format!("ls {share}");

    // Controls: through a link to a plain folder the share shows it; through a link to
    // Hutch's folder it is refused, by the rule it breaks.
    symlink(&real, &sub);
    assert_eq!(ok(&env.sh(&["--share", &share], &list)), "real-marker\n");
    std::fs::remove_file(&sub).unwrap();
    symlink(&hutch, &sub);
    let out = env.sh(&["--share", &share], &list);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Hutch's own files") && stderr(&out).contains("leads to"),
        "{}",
        stderr(&out)
    );

    // An app with the folder shared read-write swaps the link as fast as it can.
    let racer = format!(
        "import os\n\
         targets = [{real:?}, {hutch:?}]\n\
         for i in range(400000):\n\
         \x20   tmp = {race:?} + '/tmp' + str(i % 2)\n\
         \x20   try: os.unlink(tmp)\n\
         \x20   except FileNotFoundError: pass\n\
         \x20   os.symlink(targets[i % 2], tmp)\n\
         \x20   os.rename(tmp, {sub:?})\n",
        real = real.display().to_string(),
        hutch = hutch.display().to_string(),
        race = race.display().to_string(),
        sub = share,
    );
    let rw = format!("{}:rw", race.display());
    let id = ok(&env.hutch(&["run", "-d", "--share", &rw, "--", "python3", "-c", &racer]));
    let id = id.trim();
    let (mut shown, mut refused) = (0, 0);
    for _ in 0..40 {
        let out = env.sh(&["--share", &share], &list);
        let listed = stdout(&out);
        assert!(
            !listed.contains("helper.sock") && !listed.contains("sandboxes"),
            "the app saw Hutch's folder through the swapped share: {listed}"
        );
        if out.status.success() {
            assert_eq!(listed, "real-marker\n");
            shown += 1;
        } else {
            let err = stderr(&out);
            assert!(
                err.contains("Hutch's own files") || err.contains("changed"),
                "{err}"
            );
            refused += 1;
        }
    }
    let _ = env.hutch(&["stop", "--grace", "0", id]);
    eprintln!("{shown} launches showed the real folder, {refused} were refused");
    assert!(
        refused > 0,
        "the racer never had the link on Hutch's folder: the test proves nothing"
    );
}

#[test]
fn links_to_the_host_system_and_hutchs_folders_are_refused_with_the_rule_they_break() {
    let env = env_or_skip!();
    let links = folder(&env, "links");
    for (name, target, rule) in [
        ("procl", PathBuf::from("/proc"), "host's /proc"),
        ("sysl", PathBuf::from("/sys"), "host's /sys"),
        ("devl", PathBuf::from("/dev"), "host's /dev"),
        ("runtime", env.runtime.clone(), "runtime folder"),
        // The parent of Hutch's config folder.
        ("config", env.config.clone(), "Hutch's own files"),
    ] {
        let link = links.join(name);
        symlink(&target, &link);
        let marker = links.join(format!("ran-{name}"));
        let out = env.sh(
            &["--share", &link.display().to_string()],
            &format!("touch {}", marker.display()),
        );
        assert_eq!(out.status.code(), Some(125), "{name}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(rule), "{name}: {err}");
        assert!(
            err.contains(&format!("leads to {}", target.display())),
            "{name}: {err}"
        );
        assert!(!marker.exists(), "{name}: the app ran");
    }
    // Control: a link to an ordinary folder is shared.
    let plain = folder(&env, "plain");
    symlink(&plain, &links.join("plainl"));
    ok(&env.sh(
        &["--share", &links.join("plainl").display().to_string()],
        "true",
    ));
}

#[test]
fn a_client_inside_a_sandbox_is_refused_even_holding_the_helpers_socket() {
    let env = env_or_skip!();
    // The helper's socket, hard-linked into a folder shared on purpose with its sockets.
    let pass = folder(&env, "pass");
    let sock = pass.join("helper.sock");
    std::fs::hard_link(&env.socket, &sock).unwrap();
    let hutch = hutch_tests::bin_dir().join("hutch");
    // Control: outside, the link reaches the helper.
    let mut cmd = env.hutch_command(&["ps"]);
    cmd.env("HUTCH_SOCKET", &sock);
    ok(&hutch_tests::run_with_timeout(cmd, Duration::from_secs(20)));
    let out = env.sh(
        &[
            "--share",
            &format!("{}:ro,sockets", pass.display()),
            "--share",
            &hutch.display().to_string(),
        ],
        &format!(
            "HUTCH_SOCKET={} HUTCH_HELPER=/nonexistent {} ps",
            sock.display(),
            hutch.display()
        ),
    );
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("refuses the client") && err.contains("inside a Hutch sandbox"),
        "{err}"
    );
    assert!(
        env.helper_log().contains("refused a connection"),
        "the refusal is logged: {}",
        env.helper_log()
    );
}

/// A Unix-socket server of the user's on `path`, which records what it is sent.
fn socket_server(path: &Path) -> std::sync::mpsc::Receiver<Vec<u8>> {
    let listener = UnixListener::bind(path).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut got = Vec::new();
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = conn.read_to_end(&mut got);
            if tx.send(got).is_err() {
                return;
            }
        }
    });
    rx
}

const SEND: &str = "import socket, sys\n\
     s = socket.socket(socket.AF_UNIX)\n\
     try:\n\
     \x20   s.connect(sys.argv[1]); s.sendall(b'hello from the app'); print('sent')\n\
     except OSError as e:\n\
     \x20   print('refused:', e.strerror)\n";

#[test]
fn a_socket_server_in_a_read_only_share_hears_nothing_from_the_app() {
    let env = env_or_skip!();
    let shared = folder(&env, "sockets");
    std::fs::create_dir(shared.join("deep")).unwrap();
    let sock = shared.join("deep").join("server.sock");
    let heard = socket_server(&sock);
    let send = |opts: &[&str]| {
        let mut args = vec!["run"];
        args.extend_from_slice(opts);
        let sock = sock.display().to_string();
        args.extend_from_slice(&["--", "python3", "-c", SEND, &sock]);
        env.hutch(&args)
    };
    let ro = format!("{}:ro", shared.display());
    let out = send(&["--share", &ro]);
    // The socket is an empty read-only file inside: connecting is refused.
    assert!(
        ok(&out).starts_with("refused: Permission denied"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("holds 1 Unix socket (deep/server.sock): hidden"),
        "the user is told: {}",
        stderr(&out)
    );
    assert!(heard.recv_timeout(Duration::from_millis(300)).is_err());
    // Control: asked for in so many words, the socket is reachable, and the server hears it.
    let out = send(&["--share", &format!("{ro},sockets")]);
    assert_eq!(ok(&out), "sent\n");
    assert!(
        stderr(&out).contains("shared with its Unix sockets"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        heard.recv_timeout(Duration::from_secs(5)).unwrap(),
        b"hello from the app"
    );

    // A sandbox sharing the folder read-write makes a socket; one launched after it cannot
    // reach it through the same folder.
    let rw = format!("{}:rw", shared.display());
    let listen = format!(
        "import socket, time\n\
         s = socket.socket(socket.AF_UNIX); s.bind({p:?}); s.listen(1)\n\
         print('listening', flush=True); time.sleep(60)\n",
        p = shared.join("app.sock").display().to_string()
    );
    let mut listener = env
        .hutch_command(&["run", "--share", &rw, "--", "python3", "-c", &listen])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(listener.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "listening\n");
    let app_sock = shared.join("app.sock").display().to_string();
    let out = env.hutch(&[
        "run", "--share", &ro, "--", "python3", "-c", SEND, &app_sock,
    ]);
    assert!(
        ok(&out).starts_with("refused: Permission denied"),
        "{}",
        stdout(&out)
    );
    let _ = listener.kill();
    let _ = listener.wait();
}

#[test]
fn tmux_run_shell_through_a_read_only_share_runs_nothing_on_the_host() {
    let env = env_or_skip!();
    if !hutch_tests::have("tmux") {
        hutch_tests::skip_or_fail("tmux is not installed (Debian package tmux)");
        return;
    }
    let shared = folder(&env, "tmux");
    let sock = shared.join("sock");
    let tmux = |args: &[&str]| {
        let mut cmd = std::process::Command::new("tmux");
        cmd.arg("-S").arg(&sock).args(args);
        env.apply(&mut cmd);
        hutch_tests::run_with_timeout(cmd, Duration::from_secs(20))
    };
    ok(&tmux(&["new-session", "-d", "-s", "hp", "sleep 60"]));
    let pwned = env.dir.path().join("PWNED");
    let attack = format!(
        "tmux -S {} run-shell 'touch {}'",
        sock.display(),
        pwned.display()
    );
    let out = env.sh(&["--share", &shared.display().to_string()], &attack);
    assert!(!out.status.success(), "{}", stdout(&out));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !pwned.exists(),
        "the app ran a command on the host through tmux"
    );
    // Control: with the sockets passed on purpose, the same command does run outside.
    let with = format!("{}:ro,sockets", shared.display());
    ok(&env.sh(&["--share", &with], &attack));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pwned.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = tmux(&["kill-server"]);
    assert!(
        pwned.exists(),
        "the control did not reach tmux: the test proves nothing"
    );
}

#[test]
fn links_in_a_kept_home_make_the_next_launch_refuse_and_create_nothing_outside() {
    let env = env_or_skip!();
    env.write_profile("kept", "home = \"persist\"\n");
    let tag = format!("hutch-e2e-kept-{}", std::process::id());
    // The host folders the next launch shares, under the user's home.
    let docs = env.home.join(&tag);
    std::fs::create_dir_all(docs.join("proj")).unwrap();
    std::fs::write(docs.join("evil.toml"), "").unwrap();
    let elsewhere_name = format!("{tag}-elsewhere");
    let elsewhere = env.home.join(&elsewhere_name);
    std::fs::create_dir_all(elsewhere.join("x")).unwrap();
    let profiles = env.config.join("hutch").join("profiles");
    let outside = folder(&env, "outside");
    // The app plants links in its kept home: to the profile folder, and to another folder.
    ok(&env.sh(
        &["--profile", "kept"],
        &format!(
            "ln -s {} ~/{tag} && ln -s {} ~/{elsewhere_name}",
            profiles.display(),
            outside.display()
        ),
    ));
    let out = env.sh(
        &[
            "--profile",
            "kept",
            "--share",
            &format!("~/{tag}/proj"),
            "--share",
            &format!("~/{tag}/evil.toml"),
        ],
        "true",
    );
    let out2 = env.sh(
        &[
            "--profile",
            "kept",
            "--share",
            &format!("~/{elsewhere_name}/x"),
        ],
        "true",
    );
    let listed = ok(&env.hutch(&["profile", "list"]));
    let made_in_profiles: Vec<_> = std::fs::read_dir(&profiles)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let made_outside: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let _ = std::fs::remove_dir_all(&docs);
    let _ = std::fs::remove_dir_all(&elsewhere);
    for out in [&out, &out2] {
        assert_eq!(out.status.code(), Some(125), "{}", stderr(out));
        assert!(
            stderr(out).contains("is a symbolic link where a folder was expected"),
            "{}",
            stderr(out)
        );
    }
    assert_eq!(made_in_profiles, ["kept.toml"], "{listed}");
    assert!(!listed.contains("evil"), "{listed}");
    assert!(made_outside.is_empty(), "{made_outside:?}");
}

/// A terminal's settings and window size.
type TerminalState = (nix::sys::termios::Termios, (u16, u16));

/// Runs `hutch ARGS` with a new pseudo-terminal as its stdin, stdout and stderr; returns what
/// it printed there, and the terminal's state before and after.
fn on_a_terminal(env: &TestEnv, args: &[&str]) -> (String, [TerminalState; 2]) {
    on_a_terminal_for(env, args, Duration::ZERO)
}

/// [`on_a_terminal`], reading what shows on the terminal for `linger` after hutch ended.
fn on_a_terminal_for(
    env: &TestEnv,
    args: &[&str],
    linger: Duration,
) -> (String, [TerminalState; 2]) {
    use std::os::fd::AsFd;
    let pty = nix::pty::openpty(None, None).unwrap();
    let follower = pty.slave;
    hutch_client::sys::set_window_size(follower.as_fd(), 30, 100).unwrap();
    let state = |fd: &std::os::fd::OwnedFd| {
        (
            nix::sys::termios::tcgetattr(fd.as_fd()).unwrap(),
            hutch_client::sys::window_size(fd.as_fd()).unwrap(),
        )
    };
    let before = state(&follower);
    let mut controller = std::fs::File::from(pty.master);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let finished = std::sync::Arc::clone(&done);
    let reader = std::thread::spawn(move || {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let mut fds = [PollFd::new(controller.as_fd(), PollFlags::POLLIN)];
            let ready = poll(&mut fds, PollTimeout::from(100u8)).unwrap_or(0);
            if ready == 0 {
                // Nothing more comes (a suspended terminal holds its output back for good).
                if finished.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                continue;
            }
            // EIO once the last holder of the follower side closes it.
            match controller.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        out
    });
    let mut cmd = env.hutch_command(args);
    cmd.stdin(follower.try_clone().unwrap())
        .stdout(follower.try_clone().unwrap())
        .stderr(follower.try_clone().unwrap());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "hutch did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = state(&follower);
    drop(cmd);
    // What a program writes to the terminal after hutch (a shell's prompt) still shows: a
    // writer blocked on a suspended terminal is given up after a while.
    let mut last = std::fs::File::from(follower.try_clone().unwrap());
    let writer = std::thread::spawn(move || {
        let _ = last.write_all(b"after-hutch\n");
    });
    let deadline = Instant::now() + Duration::from_secs(3);
    while !writer.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(linger);
    drop(follower);
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let printed = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
    (printed, [before, after])
}

#[test]
fn the_callers_terminal_is_as_it_was_after_an_app_that_changed_it() {
    let env = env_or_skip!();
    let (printed, [before, after]) = on_a_terminal(
        &env,
        &[
            "run",
            "--",
            "sh",
            "-c",
            "stty -echo -icanon rows 7 cols 9 && stty -a | head -1 && \
             python3 -c 'import fcntl, os, termios; fcntl.fcntl(0, fcntl.F_SETFL, os.O_NONBLOCK); termios.tcflow(1, termios.TCOOFF)'",
        ],
    );
    // Control: the app did change the terminal it was handed.
    assert!(printed.contains("rows 7; columns 9"), "{printed}");
    assert_eq!(before.1, (30, 100));
    assert_eq!(after.1, before.1, "window size");
    let flags = |t: &nix::sys::termios::Termios| (t.local_flags, t.input_flags, t.output_flags);
    assert_eq!(flags(&after.0), flags(&before.0), "terminal settings");
    // The app suspended the terminal's output (tcflow): it runs again after hutch.
    assert!(printed.contains("after-hutch"), "{printed:?}");
}

#[test]
fn logs_show_an_apps_escape_sequences_escaped_on_a_terminal() {
    let env = env_or_skip!();
    let id = ok(&env.hutch(&[
        "run",
        "-d",
        "--",
        "printf",
        "before\\033[6n\\033]0;title\\007after\\n",
    ]));
    let id = id.trim();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !stdout(&env.hutch(&["logs", id])).contains("after") {
        assert!(Instant::now() < deadline, "no output");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (printed, _) = on_a_terminal(&env, &["logs", id]);
    assert!(
        printed.contains("before\\e[6n\\e]0;title\\x07after"),
        "{printed:?}"
    );
    assert!(!printed.contains('\x1b'), "{printed:?}");
    // Control: asked for raw, the sequences pass (and a pipe gets them as they are).
    let (raw, _) = on_a_terminal(&env, &["logs", "--raw", id]);
    assert!(raw.contains("before\x1b[6n"), "{raw:?}");
    assert!(ok(&env.hutch(&["logs", id])).contains("before\x1b[6n"));
}

#[test]
fn a_desktop_file_with_a_huge_exec_gets_a_clear_error_at_once() {
    let env = env_or_skip!();
    let desktop = env.dir.path().join("big.desktop");
    let mut file = std::fs::File::create(&desktop).unwrap();
    write!(
        file,
        "[Desktop Entry]\nType=Application\nName=Big\nExec=sh -c true {}\n",
        "x".repeat(1_100_000)
    )
    .unwrap();
    drop(file);
    let started = Instant::now();
    let mut cmd = env.hutch_command(&["run", &desktop.display().to_string()]);
    cmd.stdin(std::process::Stdio::null());
    let out = hutch_tests::run_with_timeout(cmd, Duration::from_secs(20));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the request is too large to send"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_socket_moved_about_while_the_next_launch_looks_is_still_hidden() {
    let env = env_or_skip!();
    let shared = folder(&env, "moving");
    std::fs::create_dir(shared.join("sub")).unwrap();
    let _heard = socket_server(&shared.join("sub").join("agent.sock"));
    // A folder the app may pass through but not list: pid 1 still looks into it.
    let locked = shared.join("locked");
    std::fs::create_dir(&locked).unwrap();
    let _heard_locked = socket_server(&locked.join("agent.sock"));
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o311)).unwrap();
    // A sandbox with the folder shared read-write renames the socket's folder back and forth
    // as fast as it can, while the next sandbox is made.
    let swapper = format!(
        "import os, time\n\
         d = {d:?}\n\
         end = time.time() + 30\n\
         while time.time() < end:\n\
         \x20   try:\n\
         \x20       os.rename(d + '/sub', d + '/subX'); os.rename(d + '/subX', d + '/sub')\n\
         \x20   except OSError: pass\n",
        d = shared.display().to_string()
    );
    let rw = format!("{}:rw", shared.display());
    let id = ok(&env.hutch(&["run", "-d", "--share", &rw, "--", "python3", "-c", &swapper]));
    let probe = format!(
        "import socket, time\n\
         d = {d:?}\n\
         end = time.time() + 1\n\
         hits = 0\n\
         while time.time() < end:\n\
         \x20   for p in ('/sub/agent.sock', '/subX/agent.sock', '/locked/agent.sock'):\n\
         \x20       s = socket.socket(socket.AF_UNIX)\n\
         \x20       try:\n\
         \x20           s.connect(d + p); hits += 1\n\
         \x20       except OSError: pass\n\
         \x20       s.close()\n\
         print('connected', hits)\n",
        d = shared.display().to_string()
    );
    for _ in 0..8 {
        let out = env.hutch(&["run", "--share", &rw, "--", "python3", "-c", &probe]);
        assert_eq!(ok(&out), "connected 0\n", "{}", stderr(&out));
    }
    let _ = env.hutch(&["stop", "--grace", "0", id.trim()]);
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // Control: with its sockets, the same probe reaches the user's server.
    let out = env.hutch(&[
        "run",
        "--share",
        &format!("{rw},sockets"),
        "--",
        "python3",
        "-c",
        &probe,
    ]);
    assert_ne!(ok(&out), "connected 0\n");
}

#[test]
fn a_launch_warning_naming_what_an_app_made_is_escaped() {
    let env = env_or_skip!();
    let shared = folder(&env, "named");
    let rw = format!("{}:rw", shared.display());
    // The app names a socket with escape sequences; the next launch reports it.
    let bind = format!(
        "import socket; socket.socket(socket.AF_UNIX).bind({:?} + '/\\x1b]0;PWNED\\x07\\x1b[2J')",
        shared.display().to_string()
    );
    ok(&env.hutch(&["run", "--share", &rw, "--", "python3", "-c", &bind]));
    let out = env.hutch(&["run", "--share", &rw, "--", "true"]);
    let err = stderr(&out);
    assert!(
        err.contains("holds 1 Unix socket (\\e]0;PWNED\\x07\\e[2J)"),
        "{err:?}"
    );
    assert!(!err.contains('\x1b'), "{err:?}");
}

#[test]
fn the_users_look_is_not_a_way_to_their_files() {
    let env = env_or_skip!();
    // A stand-in for the compositor: a display socket to hand the app.
    let wayland = env.runtime.join("wayland-hp");
    let _compositor = UnixListener::bind(&wayland).unwrap();
    let tag = format!("hutch-e2e-look-{}", std::process::id());
    let secret = env.home.join(format!("{tag}-secret"));
    std::fs::write(&secret, "PRIVATE KEY\n").unwrap();
    // A program with the home shared read-write made the GTK settings a link to it.
    let gtk = env.home.join(".config/gtk-3.0");
    std::fs::create_dir_all(&gtk).unwrap();
    let settings = gtk.join("settings.ini");
    let kept = std::fs::read(&settings).ok();
    let _ = std::fs::remove_file(&settings);
    symlink(&secret, &settings);
    let mut cmd = env.hutch_command(&[
        "run",
        "--display",
        "wayland",
        "--",
        "sh",
        "-c",
        "cat ~/.config/gtk-3.0/settings.ini",
    ]);
    cmd.env("WAYLAND_DISPLAY", "wayland-hp")
        .stdin(std::process::Stdio::null());
    let out = hutch_tests::run_with_timeout(cmd, Duration::from_secs(30));
    let _ = std::fs::remove_file(&settings);
    if let Some(kept) = kept {
        std::fs::write(&settings, kept).unwrap();
    }
    let _ = std::fs::remove_file(&secret);
    assert!(!stdout(&out).contains("PRIVATE KEY"), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("settings.ini was not shared with the app's look (it is a link to"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_share_too_deep_to_look_through_is_refused_unless_it_keeps_its_sockets() {
    let env = env_or_skip!();
    let shared = folder(&env, "deep");
    let mut deep = shared.clone();
    for _ in 0..300 {
        deep.push("d");
    }
    std::fs::create_dir_all(&deep).unwrap();
    let out = env.sh(&["--share", &shared.display().to_string()], "true");
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("its folders nest more than 256 deep")
            && stderr(&out).contains("add `,sockets`"),
        "{}",
        stderr(&out)
    );
    // Said in so many words, it is shared as it is.
    ok(&env.sh(
        &["--share", &format!("{}:ro,sockets", shared.display())],
        "true",
    ));
}

#[test]
fn an_app_cannot_hand_the_callers_terminal_to_a_sandbox_that_outlives_it() {
    let env = env_or_skip!();
    // Two sandboxes of one profile meet in its kept home (where an app's own sockets are not
    // hidden): the first keeps whatever descriptors it is sent, and writes to them later.
    env.write_profile("kp", "home = \"persist\"\n");
    let keeper = "import array, socket, os, time\n\
         s = socket.socket(socket.AF_UNIX); s.bind(os.path.expanduser('~/keeper.sock')); s.listen(1)\n\
         print('listening', flush=True)\n\
         c, _ = s.accept()\n\
         msg, anc, _, _ = c.recvmsg(16, socket.CMSG_LEN(3 * 4))\n\
         fds = array.array('i'); fds.frombytes(anc[0][2])\n\
         print('got', len(fds), 'fds:', [os.readlink('/proc/self/fd/%d' % f) for f in fds], flush=True)\n\
         time.sleep(2)\n\
         for f in fds:\n\
         \x20   try: os.write(f, b'INJECTED-AFTER-RUN\\n'); print('wrote to', f, flush=True)\n\
         \x20   except OSError as e: print('cannot write to', f, e.strerror, flush=True)\n";
    let id = ok(&env.hutch(&["run", "-d", "-p", "kp", "--", "python3", "-c", keeper]));
    let id = id.trim().to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !stdout(&env.hutch(&["logs", &id])).contains("listening") {
        assert!(Instant::now() < deadline, "the keeper did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let sender = "import array, socket, os\n\
         s = socket.socket(socket.AF_UNIX); s.connect(os.path.expanduser('~/keeper.sock'))\n\
         s.sendmsg([b'x'], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', [0, 1, 2]))])\n\
         print('sent my terminal')\n";
    // The caller's terminal is watched for a while after the run returned.
    let (printed, _) = on_a_terminal_for(
        &env,
        &["run", "-p", "kp", "--", "python3", "-c", sender],
        Duration::from_secs(4),
    );
    assert!(printed.contains("sent my terminal"), "{printed}");
    // The keeper got descriptors (the attack ran), but they are the sender's own terminal, not
    // the caller's: nothing it writes after the run reaches the caller.
    let log = stdout(&env.hutch(&["logs", &id]));
    let _ = env.hutch(&["stop", "--grace", "0", &id]);
    assert!(log.contains("got 3 fds"), "{log}");
    assert!(!printed.contains("INJECTED"), "{printed}");
    assert!(
        log.contains("/dev/pts/"),
        "the sandbox's own terminal: {log}"
    );
}

#[test]
fn a_named_pipe_and_a_folder_shared_twice_are_hidden_too() {
    let env = env_or_skip!();
    // A program of the user's reads commands from a named pipe in a folder shared read-only
    // (a read-only mount does not stop writes to a pipe).
    let shared = folder(&env, "pipes");
    let ctl = shared.join("ctl");
    nix::unistd::mkfifo(&ctl, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let heard = env.dir.path().join("heard");
    let reader = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "timeout 20 cat {} > {}",
            ctl.display(),
            heard.display()
        ))
        .spawn()
        .unwrap();
    let write = format!("echo pwned > {} && echo wrote", ctl.display());
    let out = env.sh(&["--share", &format!("{}:ro", shared.display())], &write);
    assert!(!stdout(&out).contains("wrote"), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("holds 1 named pipe (ctl): hidden"),
        "{}",
        stderr(&out)
    );
    // Control: with its sockets and pipes kept, the write reaches the program.
    let out = env.sh(
        &["--share", &format!("{}:ro,sockets", shared.display())],
        &write,
    );
    assert_eq!(ok(&out), "wrote\n");
    let mut reader = reader;
    let _ = reader.wait();
    assert_eq!(std::fs::read_to_string(&heard).unwrap(), "pwned\n");

    // One folder shared under two names (a link to it): each mount has its socket hidden.
    let d = folder(&env, "twice");
    let _server = socket_server(&d.join("sock"));
    let link = env.dir.path().join("twice-link");
    symlink(&d, &link);
    let probe = format!(
        "import socket\n\
         for p in ({a:?}, {b:?}):\n\
         \x20   s = socket.socket(socket.AF_UNIX)\n\
         \x20   try: s.connect(p); print(p, 'reached')\n\
         \x20   except OSError as e: print(p, e.strerror)\n",
        a = d.join("sock").display().to_string(),
        b = link.join("sock").display().to_string(),
    );
    let out = env.hutch(&[
        "run",
        "--share",
        &d.display().to_string(),
        "--share",
        &link.display().to_string(),
        "--",
        "python3",
        "-c",
        &probe,
    ]);
    assert!(!ok(&out).contains("reached"), "{}", stdout(&out));
}

#[test]
fn a_folder_given_as_a_stream_is_refused_and_a_file_is_not() {
    let env = env_or_skip!();
    let secret = env.home.join("private");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("secret.txt"), "s3cr3t\n").unwrap();
    // `sh -c '... < ~/private'` opens the folder read-only, which the kernel allows: held open
    // by the app, it is a way into the folder (`cd /proc/self/fd/0`, `openat`).
    let script = "cat /proc/self/fd/0/secret.txt; ls /proc/self/fd/0/";
    let out = env
        .hutch_command(&["run", "--", "sh", "-c", script])
        .stdin(std::fs::File::open(&secret).unwrap())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        err.contains("the app's stdin is a folder") && err.contains("--share"),
        "{err}"
    );
    assert!(!stdout(&out).contains("s3cr3t"), "{}", stdout(&out));
    // The control: a file is a stream, passed as it is.
    let out = env
        .hutch_command(&["run", "--", "cat"])
        .stdin(std::fs::File::open(secret.join("secret.txt")).unwrap())
        .output()
        .unwrap();
    assert_eq!(ok(&out), "s3cr3t\n");
}
