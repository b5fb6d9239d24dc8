//! Desktop apps in sandboxes, for real: an X11 program under Xvfb with and without the display
//! permission, `.desktop` launchers with field codes, AppImage and display errors, templates,
//! and resetting a kept home.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use hutch_tests::{TestEnv, Xvfb, env_or_skip, have, ok, skip_or_fail, stderr, stdout};

fn with_display(env: &TestEnv, x: &Xvfb, args: &[&str]) -> std::process::Output {
    let mut cmd = env.hutch_command(args);
    cmd.env("DISPLAY", &x.display)
        .stdin(std::process::Stdio::null());
    hutch_tests::run_with_timeout(cmd, Duration::from_secs(60))
}

#[test]
fn with_the_display_permission_an_x11_app_shows_a_window_and_still_sees_no_host_file() {
    let env = env_or_skip!();
    let Some(x) = Xvfb::start() else { return };
    if !have("xeyes") {
        skip_or_fail("xeyes is needed (Debian package x11-apps)");
        return;
    }
    let secret = env.home.join("planted-secret.txt");
    std::fs::write(&secret, "top secret\n").unwrap();
    let id = ok(&with_display(
        &env,
        &x,
        &[
            "run",
            "--detach",
            "--display",
            "x11",
            "--",
            "sh",
            "-c",
            &format!(
                "cat {} && echo LEAKED; echo display=$DISPLAY; exec xeyes -name sandboxed-eyes",
                secret.display()
            ),
        ],
    ))
    .trim()
    .to_owned();
    // xdotool, outside, finds the sandboxed app's window on the X server.
    assert!(
        x.window("^sandboxed-eyes$", Duration::from_secs(30)),
        "no window from the sandboxed app; its output: {}",
        stdout(&env.hutch(&["logs", &id]))
    );
    let log = ok(&env.hutch(&["logs", &id]));
    assert!(log.contains(&format!("display={}", x.display)), "{log}");
    assert!(
        !log.contains("LEAKED") && !log.contains("top secret"),
        "{log}"
    );
    assert!(log.contains("No such file"), "{log}");
    ok(&env.hutch(&["stop", "--grace", "0", &id]));
}

#[test]
fn without_the_permission_the_display_cannot_be_reached_even_when_named() {
    let env = env_or_skip!();
    let Some(x) = Xvfb::start() else { return };
    if !have("xdpyinfo") {
        skip_or_fail("xdpyinfo is needed (Debian package x11-utils)");
        return;
    }
    // The app names the display itself: neither the socket file nor the abstract socket
    // (another network namespace) is there.
    let script = format!("DISPLAY={} xdpyinfo", x.display);
    let out = with_display(&env, &x, &["run", "--", "sh", "-c", &script]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("unable to open display"),
        "{}",
        stderr(&out)
    );
    // Outside the sandbox the same command works: the probe can fail.
    let outside = std::process::Command::new("xdpyinfo")
        .env("DISPLAY", &x.display)
        .output()
        .unwrap();
    assert!(outside.status.success());
    // With the permission, inside, it works.
    let out = with_display(&env, &x, &["run", "--display", "x11", "--", "xdpyinfo"]);
    assert!(ok(&out).contains("name of display"));
    assert!(
        stderr(&out).contains("every keystroke"),
        "X11 is flagged: {}",
        stderr(&out)
    );
}

#[test]
fn a_display_that_does_not_exist_is_reported_before_the_app_starts() {
    let env = env_or_skip!();
    let mut cmd = env.hutch_command(&["run", "--display", "x11", "--", "sh", "-c", "echo started"]);
    cmd.env("DISPLAY", ":231")
        .stdin(std::process::Stdio::null());
    let out = hutch_tests::run_with_timeout(cmd, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(125));
    assert!(!stdout(&out).contains("started"));
    assert!(
        stderr(&out).contains("DISPLAY=:231 but /tmp/.X11-unix/X231 does not exist"),
        "{}",
        stderr(&out)
    );
    let mut cmd = env.hutch_command(&["run", "--display", "wayland", "--", "true"]);
    cmd.stdin(std::process::Stdio::null());
    let out = hutch_tests::run_with_timeout(cmd, Duration::from_secs(60));
    assert!(
        stderr(&out).contains("WAYLAND_DISPLAY is not set"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_desktop_file_with_field_codes_runs_the_right_command_line() {
    let env = env_or_skip!();
    let dir = tempfile::Builder::new()
        .prefix("hutch-desktop-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let entry = dir.path().join("org.example.Lister.desktop");
    std::fs::write(
        &entry,
        "[Desktop Entry]\nType=Application\nName=File Lister\nIcon=lister\n\
         Exec=ls -1 --quoting-style=literal %F\nTerminal=false\n",
    )
    .unwrap();
    let a = dir.path().join("first file.txt");
    let b = dir.path().join("second.txt");
    let hidden = dir.path().join("not-given.txt");
    for f in [&a, &b, &hidden] {
        std::fs::write(f, "x").unwrap();
    }
    let out = ok(&env.hutch(&[
        "run",
        entry.to_str().unwrap(),
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]));
    // Both files, each its own argument (the space kept), shared alone: ls sees them.
    assert_eq!(out, format!("{}\n{}\n", a.display(), b.display()));
    let out = env.hutch(&["run", "--", "ls", hidden.to_str().unwrap()]);
    assert!(!out.status.success(), "a file not given is not shared");

    // %c and %k, and a single-file entry given two files.
    std::fs::write(
        &entry,
        "[Desktop Entry]\nType=Application\nName=Echo\nExec=echo %c %k %f\n",
    )
    .unwrap();
    let out = ok(&env.hutch(&["run", entry.to_str().unwrap(), a.to_str().unwrap()]));
    assert_eq!(out, format!("Echo {} {}\n", entry.display(), a.display()));
    let out = env.hutch(&[
        "run",
        entry.to_str().unwrap(),
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("one file at a time"),
        "{}",
        stderr(&out)
    );

    // A broken entry names its line.
    std::fs::write(
        &entry,
        "[Desktop Entry]\nType=Application\nName=X\nExec=ls \"open\n",
    )
    .unwrap();
    let out = env.hutch(&["run", entry.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("line 4: Exec has a quote that is never closed"),
        "{}",
        stderr(&out)
    );
    std::fs::write(&entry, "[Desktop Entry]\nType=Application\nName=X\n").unwrap();
    let out = env.hutch(&["run", entry.to_str().unwrap()]);
    assert!(
        stderr(&out).contains("line 1: [Desktop Entry] has no Exec key"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn programs_and_scripts_named_by_path_run_with_only_themselves_shared() {
    let env = env_or_skip!();
    let dir = tempfile::Builder::new()
        .prefix("hutch-launch-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = dir.path().join("hello.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"hello from $0 with $*\"; ls \"$(dirname \"$0\")\"\n",
    )
    .unwrap();
    // Not executable: run by its interpreter all the same.
    let out = ok(&env.hutch(&["run", script.to_str().unwrap(), "a", "b"]));
    assert_eq!(
        out,
        format!("hello from {} with a b\nhello.sh\n", script.display()),
        "the script alone is shared, not its folder's other files"
    );
    std::fs::write(dir.path().join("sibling"), "x").unwrap();
    let out = ok(&env.hutch(&["run", script.to_str().unwrap()]));
    assert!(!out.contains("sibling"), "{out}");

    // A corrupt AppImage and a non-executable one get clear errors.
    let mut fake = std::fs::read("/bin/true").unwrap();
    fake[8..11].copy_from_slice(b"AI\x02");
    let app = dir.path().join("Broken.AppImage");
    std::fs::write(&app, &fake).unwrap();
    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = env.hutch(&["run", app.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("this AppImage is damaged"),
        "{}",
        stderr(&out)
    );
    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = env.hutch(&["run", app.to_str().unwrap()]);
    assert!(
        stderr(&out).contains("not marked executable"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn templates_make_profiles_and_reset_home_empties_a_kept_home() {
    let env = env_or_skip!();
    let listed = ok(&env.hutch(&["profile", "templates"]));
    for t in ["untrusted-cli", "graphical-app", "offline-graphical-app"] {
        assert!(listed.contains(t), "{listed}");
    }
    ok(&env.hutch(&["profile", "new", "notes", "--template", "untrusted-cli"]));
    let again = env.hutch(&["profile", "new", "notes"]);
    assert_eq!(
        again.status.code(),
        Some(125),
        "an existing profile is not overwritten"
    );
    assert!(ok(&env.hutch(&["profile", "list"])).contains("notes"));
    // Kept home: a file survives a run, then reset-home empties it (after asking).
    ok(&env.sh(
        &["--profile", "notes", "--home", "persist"],
        "echo kept > ~/marker",
    ));
    assert_eq!(
        ok(&env.sh(&["--profile", "notes", "--home", "persist"], "cat ~/marker")),
        "kept\n"
    );
    let refused = env.hutch(&["reset-home", "notes"]);
    assert_eq!(refused.status.code(), Some(125));
    assert!(
        stderr(&refused).contains("add --yes"),
        "{}",
        stderr(&refused)
    );
    assert!(ok(&env.hutch(&["reset-home", "notes", "--yes"])).contains("emptied"));
    let out = env.sh(&["--profile", "notes", "--home", "persist"], "cat ~/marker");
    assert!(!out.status.success());
    assert!(ok(&env.hutch(&["reset-home", "never-ran"])).contains("nothing to reset"));
}

/// A headless Wayland compositor (weston) on the test's runtime folder; ends with the value.
struct Weston(std::process::Child);

impl Drop for Weston {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn with_the_wayland_permission_the_app_gets_the_socket_and_without_it_none() {
    let env = env_or_skip!();
    if !(have("weston") && have("wayland-info")) {
        skip_or_fail("weston and wayland-info are needed (Debian packages weston, wayland-utils)");
        return;
    }
    let name = "wayland-hutch-test";
    let _weston = Weston(
        std::process::Command::new("weston")
            .args([
                "--backend=headless-backend.so",
                "--no-config",
                &format!("--socket={name}"),
            ])
            .env("XDG_RUNTIME_DIR", &env.runtime)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let socket = env.runtime.join(name);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(std::time::Instant::now() < deadline, "weston did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let run = |args: &[&str]| {
        let mut cmd = env.hutch_command(args);
        cmd.env("WAYLAND_DISPLAY", name)
            .stdin(std::process::Stdio::null());
        hutch_tests::run_with_timeout(cmd, Duration::from_secs(60))
    };
    let out = run(&[
        "run",
        "--display",
        "wayland",
        "--",
        "sh",
        "-c",
        "echo runtime=$XDG_RUNTIME_DIR display=$WAYLAND_DISPLAY; ls -A $XDG_RUNTIME_DIR; wayland-info",
    ]);
    let text = ok(&out);
    let uid = nix::unistd::getuid();
    assert!(
        text.contains(&format!("runtime=/run/user/{uid} display={name}")),
        "{text}"
    );
    // The private runtime folder holds the display socket and nothing else of the host's.
    let listing: Vec<&str> = text
        .lines()
        .skip(1)
        .take_while(|l| !l.contains("interface"))
        .collect();
    assert_eq!(listing, [name], "{text}");
    assert!(text.contains("wl_compositor"), "{text}");
    assert!(
        !stderr(&out).contains("every keystroke"),
        "Wayland is not flagged unsafe"
    );
    // Without the permission, naming the socket by its host path finds nothing.
    let script = format!("WAYLAND_DISPLAY={} wayland-info", socket.display());
    let out = run(&["run", "--", "sh", "-c", &script]);
    assert!(!out.status.success(), "{}", stdout(&out));
}

#[test]
fn each_profile_has_its_own_machine_id_and_gtk_settings_stay_in_its_kept_home() {
    let env = env_or_skip!();
    env.write_profile("editor", "home = \"persist\"\n");
    env.write_profile("viewer", "");
    let read = |profile: &str| {
        let out = ok(&env.sh(
            &["--profile", profile],
            "cat /etc/machine-id /var/lib/dbus/machine-id",
        ));
        let lines: Vec<String> = out.lines().map(str::to_owned).collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert_eq!(lines[0], lines[1], "D-Bus's old place says the same");
        assert!(
            lines[0].len() == 32 && lines[0].bytes().all(|b| b.is_ascii_hexdigit()),
            "{out}"
        );
        lines[0].clone()
    };
    let editor = read("editor");
    assert_eq!(read("editor"), editor, "a profile keeps its machine id");
    let viewer = read("viewer");
    assert_ne!(viewer, editor, "two profiles never share one");
    if let Ok(host) = std::fs::read_to_string("/etc/machine-id") {
        assert_ne!(host.trim(), editor, "never the host's");
        assert_ne!(host.trim(), viewer, "never the host's");
    }

    // A GTK app's setting (GSettings) is written in the app's own home and is there again at
    // its next run: mousepad's schema, through the same library mousepad uses.
    if !std::path::Path::new("/usr/share/glib-2.0/schemas/org.xfce.mousepad.gschema.xml").exists()
        || !have("gsettings")
    {
        skip_or_fail("mousepad's schema and gsettings are needed (mousepad, libglib2.0-bin)");
        return;
    }
    let key = "org.xfce.mousepad.preferences.view show-line-numbers";
    ok(&env.sh(
        &["--profile", "editor"],
        &format!("gsettings set {key} true"),
    ));
    assert_eq!(
        ok(&env.sh(&["--profile", "editor"], &format!("gsettings get {key}"))),
        "true\n",
        "kept in the app's home"
    );
    let keyfile = ok(&env.sh(
        &["--profile", "editor"],
        "cat ~/.config/glib-2.0/settings/keyfile",
    ));
    assert!(keyfile.contains("show-line-numbers=true"), "{keyfile}");
    assert_eq!(
        ok(&env.sh(&["--profile", "viewer"], &format!("gsettings get {key}"))),
        "false\n",
        "another profile (a home thrown away) has the default"
    );
}
