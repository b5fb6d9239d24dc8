//! The real window with the real helper, under Xvfb: a sandboxed busy loop started from the
//! command line appears in the window's list, its CPU graph moves, its exit shows, and the
//! window reconnects by itself when the helper restarts.
//!
//! The window reports what it shows through `HUTCH_GUI_REPORT` (a JSON file it rewrites as
//! it draws); xdotool proves a real X11 window exists. Mock: no desktop session runs here, so
//! `tests/fixtures/mock_notifications.py` stands in for the notification service on a private
//! bus and records the desktop notifications the window sends.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hutch_tests::{MockBus, Xvfb, bin_dir, env_or_skip, ok};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn report(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

#[test]
fn a_sandboxed_process_appears_in_the_window_and_its_cpu_graph_moves() {
    let mut env = env_or_skip!();
    let Some(x) = Xvfb::start() else {
        return;
    };
    let display = x.display.clone();
    let Some(bus) = MockBus::start("mock_notifications.py") else {
        return;
    };
    let report_file = env.runtime.join("window-report.json");
    let mut cmd = Command::new(bin_dir().join("hutch"));
    env.apply(&mut cmd);
    cmd.env("DISPLAY", &display)
        .env("HUTCH_GUI_REPORT", &report_file)
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .env_remove("WAYLAND_DISPLAY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let _window = Killed(cmd.spawn().expect("start the window"));

    // A real X11 window called Hutch.
    assert!(
        x.window("^Hutch$", Duration::from_secs(60)),
        "no Hutch window appeared"
    );

    let id = ok(&env.sh(&["--detach"], "while :; do :; done"))
        .trim()
        .to_owned();
    let row = |r: &serde_json::Value| {
        r["sandboxes"]
            .as_array()
            .and_then(|rows| rows.iter().find(|s| s["id"] == id.as_str()).cloned())
    };
    // It appears, and its CPU graph gains points, near one core busy.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut first_points = None;
    let last = loop {
        if let Some(r) = report(&report_file)
            && let Some(s) = row(&r)
        {
            let points = s["cpu_points"].as_u64().unwrap_or(0);
            match first_points {
                None if points > 0 => first_points = Some(points),
                Some(first) if points >= first + 3 => break s,
                _ => {}
            }
        }
        assert!(
            Instant::now() < deadline,
            "the sandbox did not show up with a moving CPU graph: {:?}",
            report(&report_file)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(last["state"], "running", "{last}");
    let cpu = last["cpu_last"].as_f64().unwrap();
    assert!(cpu > 50.0, "a busy loop shows as busy: {cpu}% ({last})");
    ok(&env.hutch(&["stop", "--grace", "0", &id]));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if report(&report_file)
            .and_then(|r| row(&r))
            .is_some_and(|s| s["state"] == "exited")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the window did not see the exit");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The exit was also a desktop notification.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let calls = bus.calls();
        if let Some(call) = calls.iter().find(|c| c["summary"] == "sh exited") {
            assert_eq!(call["app"], "Hutch");
            assert!(
                call["body"].as_str().unwrap().contains("killed by signal"),
                "{call}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no desktop notification of the exit: {calls:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A new helper: the window finds it by itself.
    let old = env.helper_pid();
    env.restart_helper();
    let new = env.helper_pid();
    assert_ne!(old, new);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !report(&report_file).is_some_and(|r| r["helper_pid"] == new) {
        assert!(
            Instant::now() < deadline,
            "the window did not reconnect to helper {new}: {:?}",
            report(&report_file)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
