//! The sandbox's user-mode network stack: slirp4netns or pasta, started by the supervisor
//! (outside the sandbox's namespaces) on pid 1's network namespace before the app starts, and
//! ended with the sandbox whatever way it ends (an exit fd, SIGTERM, and PDEATHSIG should the
//! supervisor die).

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hutch_core::network::PortForward;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::unistd::Pid;

use super::SetupError;
use crate::plan::{
    BackendKind, DNS_ADDR, GATEWAY_ADDR, GATEWAY_ADDR6, NET_MTU, NetworkPlan, SANDBOX_ADDR,
    SANDBOX_ADDR6,
};
use crate::sys;

/// How long a stack may take to come up.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running network stack.
#[derive(Debug)]
pub struct Stack {
    pub kind: BackendKind,
    child: Child,
    /// pidfd of the stack, to notice its death.
    pub pidfd: OwnedFd,
    /// slirp4netns exits when this closes.
    exit_fd: Option<OwnedFd>,
}

fn what(kind: BackendKind) -> String {
    format!("start {}", kind.name())
}

/// The arguments for slirp4netns.
pub fn slirp4netns_args(
    init: Pid,
    allow_host_loopback: bool,
    confine: bool,
    ready_fd: i32,
    exit_fd: i32,
    api_socket: Option<&Path>,
) -> Vec<String> {
    let mut args = vec![
        "--configure".to_owned(),
        format!("--mtu={NET_MTU}"),
        "--enable-seccomp".to_owned(),
        format!("--ready-fd={ready_fd}"),
        format!("--exit-fd={exit_fd}"),
    ];
    if let Some(api) = api_socket {
        args.push(format!("--api-socket={}", api.display()));
    }
    if !allow_host_loopback {
        args.push("--disable-host-loopback".into());
    }
    if confine {
        args.push("--enable-sandbox".into());
    }
    args.extend([init.to_string(), "tap0".to_owned()]);
    args
}

/// The arguments for pasta, set up to look like slirp4netns from inside.
pub fn pasta_args(
    init: Pid,
    allow_host_loopback: bool,
    publish: &[PortForward],
    pid_file: &Path,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "--config-net",
        "--address",
        SANDBOX_ADDR,
        "--netmask",
        "24",
        "--gateway",
        GATEWAY_ADDR,
        // IPv6 gets a neutral address too (pasta copies the host's otherwise).
        "--address",
        SANDBOX_ADDR6,
        "--gateway",
        GATEWAY_ADDR6,
        "--dns-forward",
        DNS_ADDR,
        "--ns-ifname",
        "tap0",
        "--foreground",
        "--quiet",
        // No automatic forwarding, in either direction: the host's loopback services stay out
        // of reach, and only published ports come in.
        "--udp-ports",
        "none",
        "--tcp-ns",
        "none",
        "--udp-ns",
        "none",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    args.push(format!("--mtu={NET_MTU}"));
    if !allow_host_loopback {
        // Otherwise the gateway address leads to the host's loopback.
        args.push("--no-map-gw".into());
    }
    if publish.is_empty() {
        args.extend(["--tcp-ports".into(), "none".into()]);
    }
    for p in publish {
        args.push("--tcp-ports".into());
        args.push(format!(
            "{}/{}:{}",
            p.host_addr, p.host_port, p.sandbox_port
        ));
    }
    args.extend([
        "--pid".into(),
        pid_file.display().to_string(),
        "--userns".into(),
        format!("/proc/{init}/ns/user"),
        "--netns".into(),
        format!("/proc/{init}/ns/net"),
    ]);
    args
}

fn spawn(program: &Path, args: &[String], keep: Vec<i32>) -> Result<Child, std::io::Error> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    sys::keep_fds_and_die_with_parent(&mut cmd, keep);
    cmd.spawn()
}

/// What the stack said on its way out.
fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut text);
    }
    text.trim().to_owned()
}

fn died(kind: BackendKind, child: &mut Child) -> SetupError {
    let _ = child.kill();
    let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
    SetupError::new(
        what(kind),
        format!("it exited ({status}): {}", stderr_of(child)),
    )
}

/// Starts the stack for pid 1's network namespace and waits until it is up.
pub fn start(plan: &NetworkPlan, init: Pid, dir: &Path) -> Result<Option<Stack>, SetupError> {
    let NetworkPlan::User {
        backend,
        program,
        allow_host_loopback,
        publish,
        confine_backend,
    } = plan
    else {
        return Ok(None);
    };
    let kind = *backend;
    let (mut child, exit_fd) = match kind {
        BackendKind::Slirp4netns => {
            let (ready_r, ready_w) =
                nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| SetupError::new(what(kind), e))?;
            let (exit_r, exit_w) =
                nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| SetupError::new(what(kind), e))?;
            // The API socket is only needed to publish ports. slirp4netns's own sandbox
            // (`--enable-sandbox`) switches to the sandbox's uid 0, which cannot create it in
            // the user's private runtime folder: publishing ports through slirp4netns goes
            // without that extra confinement (pasta has no such limit).
            let api = (!publish.is_empty()).then(|| dir.join("slirp4netns.sock"));
            let args = slirp4netns_args(
                init,
                *allow_host_loopback,
                *confine_backend && api.is_none(),
                ready_w.as_raw_fd(),
                exit_r.as_raw_fd(),
                api.as_deref(),
            );
            let keep = vec![ready_w.as_raw_fd(), exit_r.as_raw_fd()];
            let mut child =
                spawn(program, &args, keep).map_err(|e| SetupError::new(what(kind), e))?;
            drop((ready_w, exit_r));
            let mut fds = [PollFd::new(ready_r.as_fd(), PollFlags::POLLIN)];
            let ready = matches!(poll(&mut fds, PollTimeout::from(10_000u16)), Ok(n) if n > 0)
                && std::fs::File::from(ready_r)
                    .read(&mut [0u8; 1])
                    .is_ok_and(|n| n == 1);
            if !ready {
                return Err(died(kind, &mut child));
            }
            for (forward, api) in publish.iter().zip(std::iter::repeat(api.as_deref())) {
                let Some(api) = api else { break };
                if let Err(e) = add_hostfwd(api, forward) {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(e);
                }
            }
            (child, Some(exit_w))
        }
        BackendKind::Pasta => {
            let pid_file = dir.join("pasta.pid");
            let args = pasta_args(init, *allow_host_loopback, publish, &pid_file);
            let mut child =
                spawn(program, &args, Vec::new()).map_err(|e| SetupError::new(what(kind), e))?;
            // pasta writes its pid file once the namespace side is configured.
            let deadline = Instant::now() + READY_TIMEOUT;
            loop {
                if pid_file.exists() {
                    break;
                }
                if child.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
                    return Err(died(kind, &mut child));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            (child, None)
        }
    };
    let pidfd = match sys::pidfd_open(Pid::from_raw(child.id() as i32)) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(SetupError::new(what(kind), e));
        }
    };
    Ok(Some(Stack {
        kind,
        child,
        pidfd,
        exit_fd,
    }))
}

/// Asks slirp4netns (through its API socket) to forward a host port into the sandbox.
fn add_hostfwd(api: &Path, forward: &PortForward) -> Result<(), SetupError> {
    let what = format!("publish {forward}");
    let request = serde_json::json!({
        "execute": "add_hostfwd",
        "arguments": {
            "proto": "tcp",
            "host_addr": forward.host_addr.to_string(),
            "host_port": forward.host_port,
            "guest_addr": SANDBOX_ADDR,
            "guest_port": forward.sandbox_port,
        }
    });
    let mut stream = UnixStream::connect(api).map_err(|e| SetupError::new(what.clone(), e))?;
    stream
        .write_all(request.to_string().as_bytes())
        .and_then(|()| stream.shutdown(std::net::Shutdown::Write))
        .map_err(|e| SetupError::new(what.clone(), e))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| SetupError::new(what.clone(), e))?;
    let value: serde_json::Value = serde_json::from_str(&answer)
        .map_err(|e| SetupError::new(what.clone(), format!("bad answer {answer:?}: {e}")))?;
    if let Some(err) = value.get("error") {
        let desc = err
            .get("desc")
            .and_then(|d| d.as_str())
            .unwrap_or("unknown error");
        return Err(SetupError::new(what, desc));
    }
    Ok(())
}

impl Stack {
    /// The stack has died: why, in its own words.
    pub fn death_message(&mut self) -> String {
        let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
        let said = stderr_of(&mut self.child);
        if said.is_empty() {
            format!("{} exited ({status})", self.kind.name())
        } else {
            format!("{} exited ({status}): {said}", self.kind.name())
        }
    }

    /// Ends the stack with the sandbox.
    pub fn stop(mut self) {
        drop(self.exit_fd.take());
        let _ = nix::sys::signal::kill(
            Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the supervisor keeps a sandbox's stack files: beside its root.
pub fn state_dir(root: &Path) -> PathBuf {
    root.parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| root.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slirp4netns_is_confined_and_host_loopback_closed_by_default() {
        let api = Some(Path::new("/r/s.sock"));
        let args = slirp4netns_args(Pid::from_raw(42), false, true, 5, 6, api);
        for want in [
            "--configure",
            "--mtu=65520",
            "--disable-host-loopback",
            "--enable-sandbox",
            "--enable-seccomp",
            "--ready-fd=5",
            "--exit-fd=6",
            "--api-socket=/r/s.sock",
        ] {
            assert!(
                args.iter().any(|a| a == want),
                "{want} missing from {args:?}"
            );
        }
        assert_eq!(&args[args.len() - 2..], ["42", "tap0"]);
        let open = slirp4netns_args(Pid::from_raw(42), true, false, 5, 6, None);
        assert!(
            !open
                .iter()
                .any(|a| a == "--disable-host-loopback" || a == "--enable-sandbox")
        );
        assert!(!open.iter().any(|a| a.starts_with("--api-socket")));
    }

    #[test]
    fn pasta_forwards_nothing_but_published_ports() {
        let args = pasta_args(Pid::from_raw(7), false, &[], Path::new("/r/pasta.pid"));
        let joined = args.join(" ");
        for want in [
            "--tcp-ports none",
            "--udp-ports none",
            "--tcp-ns none",
            "--udp-ns none",
            "--no-map-gw",
            "--gateway 10.0.2.2",
            "--address fd00::100",
            "--gateway fd00::2",
            "--dns-forward 10.0.2.3",
            "--netns /proc/7/ns/net",
            "--userns /proc/7/ns/user",
        ] {
            assert!(joined.contains(want), "{want} missing from {joined}");
        }
        let publish = [PortForward::parse("8080:80").unwrap()];
        let joined = pasta_args(Pid::from_raw(7), true, &publish, Path::new("/p")).join(" ");
        assert!(joined.contains("--tcp-ports 127.0.0.1/8080:80"), "{joined}");
        assert!(!joined.contains("--tcp-ports none") && !joined.contains("--no-map-gw"));
    }
}
