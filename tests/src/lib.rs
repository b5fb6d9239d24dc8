//! Harness for Hutch's end-to-end tests.
//!
//! Every test gets its own helper daemon, runtime folder, profiles and data folder, and drives
//! the real `hutch` and `hutch-helper` binaries. Sandbox tests need an unprivileged user with a
//! subordinate uid range, newuidmap, and unprivileged user namespaces. When something is missing
//! a test is skipped with the reason printed, unless `HUTCH_MUST_WORK=1` (set by CI), where it
//! fails instead: a sandbox test that silently passes on a machine that cannot run it proves
//! nothing.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Folder holding the built `hutch` and `hutch-helper` (next to the test executable's `deps/`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_owned();
    for bin in ["hutch", "hutch-helper"] {
        assert!(
            dir.join(bin).is_file(),
            "{} is missing: build the binaries first (`cargo build --workspace`)",
            dir.join(bin).display()
        );
    }
    dir
}

/// Whether failures to run must fail the test rather than skip it.
pub fn must_work() -> bool {
    std::env::var("HUTCH_MUST_WORK").is_ok_and(|v| v == "1")
}

/// Skips (prints why) or, under `HUTCH_MUST_WORK=1`, fails.
pub fn skip_or_fail(reason: &str) {
    if must_work() {
        panic!("HUTCH_MUST_WORK=1 but this test cannot run here: {reason}");
    }
    eprintln!("skipped: {reason}");
}

/// Why sandboxes cannot run here, if they cannot.
pub fn cannot_run() -> Option<String> {
    if nix::unistd::geteuid().is_root() {
        return Some(
            "sandbox tests run as an unprivileged user, never as root (root hides bugs): use \
             scripts/test, which runs them as a test user"
                .into(),
        );
    }
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // Not needed by the tests themselves (each makes its own), only a hint of a session.
    }
    let probe = Command::new(bin_dir().join("hutch-helper"))
        .arg("probe-userns")
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            return Some(format!(
                "unprivileged user namespaces do not work: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Err(e) => return Some(format!("cannot run hutch-helper: {e}")),
    }
    for tool in ["/usr/bin/newuidmap", "/usr/bin/newgidmap"] {
        if !Path::new(tool).exists() {
            return Some(format!("{tool} is missing (install the uidmap package)"));
        }
    }
    if subuid_start().is_none() {
        return Some("this user has no range in /etc/subuid".into());
    }
    None
}

/// The start of this user's first subordinate uid range.
pub fn subuid_start() -> Option<u32> {
    let uid = nix::unistd::getuid();
    let name = nix::unistd::User::from_uid(uid).ok().flatten()?.name;
    let text = std::fs::read_to_string("/etc/subuid").ok()?;
    hutch_helper::plan::host::parse_subid(&text, &name, uid.as_raw())
        .first()
        .map(|r| r.start)
}

/// One helper daemon with private folders, and the means to drive it.
#[derive(Debug)]
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub runtime: PathBuf,
    pub config: PathBuf,
    pub data: PathBuf,
    pub socket: PathBuf,
    pub home: PathBuf,
    helper: Option<Child>,
    /// Extra environment for the helper and the CLI (set before the helper starts).
    pub extra_env: Vec<(String, String)>,
}

impl TestEnv {
    /// Starts a helper; `None` when sandboxes cannot run here (after [`skip_or_fail`]).
    pub fn start() -> Option<Self> {
        if let Some(reason) = cannot_run() {
            skip_or_fail(&reason);
            return None;
        }
        Some(Self::start_unchecked())
    }

    /// Starts a helper without checking sandbox support (for tests of the daemon alone).
    pub fn start_unchecked() -> Self {
        Self::start_unchecked_with(&[])
    }

    /// Like [`TestEnv::start_unchecked`], with extra environment variables.
    pub fn start_unchecked_with(extra: &[(&str, &str)]) -> Self {
        let mut env = Self::new_folders();
        env.extra_env = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.helper = Some(env.spawn_helper());
        assert!(
            env.wait_ready(Duration::from_secs(10)),
            "helper did not start: {}",
            env.helper_log()
        );
        env
    }

    fn new_folders() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("hutch-e2e-")
            .tempdir()
            .expect("tempdir");
        let runtime = dir.path().join("run");
        let config = dir.path().join("config");
        let data = dir.path().join("data");
        for d in [&runtime, &config, &data] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let socket = runtime.join("hutch").join("helper.sock");
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .expect("HOME is set");
        Self {
            dir,
            runtime,
            config,
            data,
            socket,
            home,
            helper: None,
            extra_env: Vec::new(),
        }
    }

    /// The environment every command of this test runs with.
    pub fn apply(&self, cmd: &mut Command) {
        cmd.env_clear()
            .env("HOME", &self.home)
            .env("PATH", "/usr/bin:/bin")
            .env("XDG_RUNTIME_DIR", &self.runtime)
            .env("XDG_CONFIG_HOME", &self.config)
            .env("XDG_DATA_HOME", &self.data)
            .env("HUTCH_LOG", "debug")
            .env("LANG", "C.UTF-8");
        if let Ok(user) = std::env::var("USER") {
            cmd.env("USER", user);
        }
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
    }

    fn spawn_helper(&self) -> Child {
        let log = std::fs::File::create(self.dir.path().join("helper.log")).expect("log");
        let helper = bin_dir().join("hutch-helper");
        let mut cmd = match self.cgroup() {
            // In the VM: start the helper in a delegated cgroup of its own, as systemd starts
            // a service with Delegate=yes; a restarted one in its `helper` leaf, as systemd
            // does with DelegateSubgroup=helper (the delegated root has controllers enabled
            // for its children now, so it may hold no process).
            Some(cg) => {
                std::fs::create_dir_all(&cg).expect("create the helper's cgroup");
                let leaf = cg.join("helper");
                let cg = if leaf.exists() { leaf } else { cg };
                let mut cmd = Command::new("sh");
                cmd.arg("-c")
                    .arg("echo $$ > \"$1/cgroup.procs\" && exec \"$2\" --foreground")
                    .arg("sh")
                    .arg(&cg)
                    .arg(&helper);
                cmd
            }
            None => {
                let mut cmd = Command::new(&helper);
                cmd.arg("--foreground");
                cmd
            }
        };
        self.apply(&mut cmd);
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log);
        cmd.spawn().expect("start hutch-helper")
    }

    /// The delegated cgroup this test's helper runs in, when the tests run in the VM
    /// (`HUTCH_TEST_CGROUP_ROOT` names a cgroup delegated to the test user).
    pub fn cgroup(&self) -> Option<PathBuf> {
        let root = std::env::var_os("HUTCH_TEST_CGROUP_ROOT")?;
        let name = self.dir.path().file_name()?.to_string_lossy().into_owned();
        Some(PathBuf::from(root).join(name))
    }

    /// A second helper on the same socket (to test the single-instance rule).
    pub fn helper_command(&self) -> Command {
        let mut cmd = Command::new(bin_dir().join("hutch-helper"));
        self.apply(&mut cmd);
        cmd
    }

    pub fn wait_ready(&self, timeout: Duration) -> bool {
        hutch_client::connection::wait_ready(&self.socket, timeout)
    }

    /// What the helper logged so far.
    pub fn helper_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("helper.log")).unwrap_or_default()
    }

    pub fn helper_pid(&self) -> u32 {
        self.helper.as_ref().expect("helper").id()
    }

    /// Kills the helper with SIGKILL (its socket file stays behind) and waits for it.
    pub fn kill_helper(&mut self) {
        if let Some(mut child) = self.helper.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a fresh helper on the same folders.
    pub fn restart_helper(&mut self) {
        self.kill_helper();
        self.helper = Some(self.spawn_helper());
        assert!(
            self.wait_ready(Duration::from_secs(10)),
            "helper did not restart: {}",
            self.helper_log()
        );
    }

    /// The pid of whichever helper serves this test's socket now (also one a CLI started),
    /// from its single-instance lock file.
    pub fn serving_helper_pid(&self) -> Option<i32> {
        let lock = hutch_client::paths::lock_path(&self.socket);
        std::fs::read_to_string(lock).ok()?.trim().parse().ok()
    }

    /// Kills (SIGKILL) whichever helper serves this test's socket, and waits until it is gone.
    pub fn kill_serving_helper(&mut self) {
        self.kill_helper();
        if let Some(pid) = self.serving_helper_pid() {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while nix::sys::signal::kill(pid, None).is_ok() && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Whether the helper process is still running.
    pub fn helper_alive(&mut self) -> bool {
        self.helper
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// `hutch ARGS` with stdin from /dev/null.
    pub fn hutch(&self, args: &[&str]) -> Output {
        let mut cmd = self.hutch_command(args);
        cmd.stdin(Stdio::null());
        run_with_timeout(cmd, Duration::from_secs(60))
    }

    pub fn hutch_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin_dir().join("hutch"));
        self.apply(&mut cmd);
        cmd.args(args);
        cmd
    }

    /// `hutch run [OPTS] -- sh -c SCRIPT`.
    pub fn sh(&self, opts: &[&str], script: &str) -> Output {
        let mut args = vec!["run"];
        args.extend_from_slice(opts);
        args.extend_from_slice(&["--", "sh", "-c", script]);
        self.hutch(&args)
    }

    /// Starts `hutch run -- sh -c SCRIPT` in the background and waits until the script prints
    /// its first line (so it is running, traps set).
    pub fn spawn_sh(
        &self,
        script: &str,
    ) -> (Child, std::io::BufReader<std::process::ChildStdout>, String) {
        self.spawn_run(&[], script)
    }

    /// Like [`TestEnv::spawn_sh`], with options for `hutch run`.
    pub fn spawn_run(
        &self,
        opts: &[&str],
        script: &str,
    ) -> (Child, std::io::BufReader<std::process::ChildStdout>, String) {
        let mut args = vec!["run"];
        args.extend_from_slice(opts);
        args.extend_from_slice(&["--", "sh", "-c", script]);
        let mut child = self
            .hutch_command(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hutch run");
        let mut reader = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        std::io::BufRead::read_line(&mut reader, &mut first).expect("read first line");
        (child, reader, first)
    }

    /// `hutch ps --json`, parsed.
    pub fn ps(&self) -> serde_json::Value {
        serde_json::from_str(&ok(&self.hutch(&["ps", "--json"]))).expect("ps --json is JSON")
    }

    /// Writes `profiles/NAME.toml`.
    pub fn write_profile(&self, name: &str, text: &str) -> PathBuf {
        let dir = self.config.join("hutch").join("profiles");
        std::fs::create_dir_all(&dir).expect("mkdir profiles");
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).expect("write profile");
        path
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Some(mut child) = self.helper.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The helper's cgroup tree, once its sandboxes are gone.
        if let Some(cg) = self.cgroup() {
            for _ in 0..100 {
                for sub in ["sandboxes", "helper"] {
                    if let Ok(dir) = std::fs::read_dir(cg.join(sub)) {
                        for entry in dir.flatten() {
                            let _ = std::fs::remove_dir(entry.path());
                        }
                    }
                    let _ = std::fs::remove_dir(cg.join(sub));
                }
                if std::fs::remove_dir(&cg).is_ok() || !cg.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Whether these tests run where cgroup limits must work (the VM: `HUTCH_EXPECT_CGROUPS=1`).
pub fn expect_cgroups() -> bool {
    std::env::var("HUTCH_EXPECT_CGROUPS").is_ok_and(|v| v == "1")
}

/// Runs `cmd` to completion, killing it after `timeout` (a hung sandbox must not hang CI).
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn");
    let pid = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&done);
    std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if flag.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    });
    let out = child.wait_with_output().expect("wait");
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    out
}

/// Text of a command's stdout.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Text of a command's stderr.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts success and returns stdout.
#[track_caller]
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

/// Starts the test's environment, or returns from the test when it cannot run.
#[macro_export]
macro_rules! env_or_skip {
    () => {
        match $crate::TestEnv::start() {
            Some(env) => env,
            None => return,
        }
    };
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// The host pid of a sandbox's pid 1, from the app's host pid (its parent).
pub fn init_pid_of(app_pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{app_pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Pids of running network stacks (slirp4netns or pasta) that serve the sandbox whose pid 1
/// has host pid `init`.
pub fn stack_pids(init: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let program = args
            .first()
            .map(|a| a.rsplit('/').next().unwrap_or(a).to_owned());
        let is_stack = matches!(program.as_deref(), Some("slirp4netns" | "pasta"));
        let serves = args
            .iter()
            .any(|a| a == &init.to_string() || a == &format!("/proc/{init}/ns/net"));
        if is_stack && serves {
            out.push(pid);
        }
    }
    out
}

/// A private D-Bus session bus (`dbus-daemon`) with a mock service from `tests/fixtures`, for
/// tests of what Hutch says over D-Bus: no systemd user manager or desktop session runs on the
/// test machines. Both processes end with it.
#[derive(Debug)]
pub struct MockBus {
    /// `DBUS_SESSION_BUS_ADDRESS` of the bus.
    pub address: String,
    /// Where the mock writes the calls it gets (JSON lines).
    pub record: PathBuf,
    daemon: Child,
    mock: Child,
    _dir: tempfile::TempDir,
}

impl MockBus {
    /// Starts the bus and `fixtures/FIXTURE` on it; `None` (after `skip_or_fail`) when
    /// dbus-daemon or python3 is missing.
    pub fn start(fixture: &str) -> Option<Self> {
        for tool in ["/usr/bin/dbus-daemon", "/usr/bin/python3"] {
            if !Path::new(tool).exists() {
                skip_or_fail(&format!("{tool} is missing"));
                return None;
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let bus = dir.path().join("bus");
        let config = dir.path().join("session.conf");
        std::fs::write(
            &config,
            format!(
                "<busconfig><type>session</type><listen>unix:path={}</listen>\
                 <policy context=\"default\"><allow send_destination=\"*\" eavesdrop=\"true\"/>\
                 <allow eavesdrop=\"true\"/><allow own=\"*\"/></policy></busconfig>",
                bus.display()
            ),
        )
        .expect("write the bus config");
        let daemon = Command::new("/usr/bin/dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .arg("--nofork")
            .spawn()
            .expect("start dbus-daemon");
        let address = format!("unix:path={}", bus.display());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !bus.exists() {
            assert!(Instant::now() < deadline, "dbus-daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let record = dir.path().join("calls.json");
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(fixture);
        let mut mock = Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(&record)
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the mock service");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(mock.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("read the mock's first line");
        assert_eq!(line, "ready\n", "{fixture} did not start");
        Some(Self {
            address,
            record,
            daemon,
            mock,
            _dir: dir,
        })
    }

    /// The calls recorded so far.
    pub fn calls(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }
}

impl Drop for MockBus {
    fn drop(&mut self) {
        for child in [&mut self.mock, &mut self.daemon] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether `program` is on PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// An X server of the test's own (Xvfb) on a free display number; it ends with this value.
#[derive(Debug)]
pub struct Xvfb {
    /// `:N`.
    pub display: String,
    child: Child,
}

impl Xvfb {
    /// Starts Xvfb; `None` (after `skip_or_fail`) when Xvfb or xdotool is missing.
    pub fn start() -> Option<Self> {
        if !(have("Xvfb") && have("xdotool")) {
            skip_or_fail("Xvfb and xdotool are needed (Debian packages xvfb, xdotool)");
            return None;
        }
        for n in 90..130 {
            let socket = format!("/tmp/.X11-unix/X{n}");
            let lock = format!("/tmp/.X{n}-lock");
            // A lock whose server is gone (killed, say) is stale: its files go, the display
            // is free again. A live server's display is skipped.
            let holder: Option<i32> = std::fs::read_to_string(&lock)
                .ok()
                .and_then(|t| t.trim().parse().ok());
            match holder {
                Some(pid) if Path::new(&format!("/proc/{pid}")).exists() => continue,
                Some(_) => {
                    let _ = std::fs::remove_file(&lock);
                    let _ = std::fs::remove_file(&socket);
                }
                None => {}
            }
            if Path::new(&socket).exists() || Path::new(&lock).exists() {
                continue;
            }
            let display = format!(":{n}");
            let Ok(child) = Command::new("Xvfb")
                .args([&display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            else {
                continue;
            };
            let x = Self { display, child };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() {
                    return Some(x);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("could not start Xvfb on any display from :90 to :129");
    }

    /// Waits up to `timeout` for a window whose name matches `pattern` (xdotool search).
    pub fn window(&self, pattern: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let found = Command::new("xdotool")
                .args(["search", "--name", pattern])
                .env("DISPLAY", &self.display)
                .output()
                .is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
            if found {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
