//! `hutch-helper`: the daemon, and (hidden) the per-sandbox supervisor process.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hutch_client::{Client, paths};
use hutch_helper::{daemon, doctor, sandbox, sys};

/// Exit code when another helper already serves the socket.
const ALREADY_RUNNING: u8 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "hutch-helper",
    version,
    about = "Hutch's per-user sandbox daemon"
)]
struct Cli {
    /// Stay in the foreground and log to stderr (for systemd and debugging).
    #[arg(long)]
    foreground: bool,
    /// Listen here instead of $XDG_RUNTIME_DIR/hutch/helper.sock (also $HUTCH_SOCKET).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Internal>,
}

#[derive(Subcommand, Debug)]
enum Internal {
    /// Set up and supervise one sandbox (started by the daemon; control socket on fd 3).
    #[command(hide = true)]
    Supervise,
    /// Exit 0 when unprivileged user namespaces work.
    #[command(hide = true)]
    ProbeUserns,
}

fn main() -> ExitCode {
    // Whoever started us (a CLI forwarding signals, say) may have blocked some: start clean,
    // so neither the daemon's threads nor the sandboxes it spawns inherit that mask.
    let _ = nix::sys::signal::SigSet::empty().thread_set_mask();
    let cli = Cli::parse();
    match cli.command {
        Some(Internal::Supervise) => {
            let control = match sys::take_inherited_fd(sandbox::supervisor::CONTROL_FD) {
                Ok(fd) => fd,
                Err(e) => {
                    eprintln!(
                        "hutch-helper supervise: {e} (this command is started by the helper)"
                    );
                    return ExitCode::FAILURE;
                }
            };
            return ExitCode::from(sandbox::supervisor::run(control).clamp(0, 255) as u8);
        }
        Some(Internal::ProbeUserns) => {
            return match doctor::probe_userns() {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            };
        }
        None => {}
    }
    let result = if cli.foreground {
        run_foreground(cli.socket)
    } else {
        start_detached(cli.socket)
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hutch-helper: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn socket_path(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    Ok(match flag {
        Some(path) => path,
        None => paths::socket_path()?,
    })
}

fn run_foreground(socket: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    // Before any thread exists (the D-Bus client starts some while setting up cgroups).
    daemon::block_shutdown_signals().context("block shutdown signals")?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HUTCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let socket = socket_path(socket)?;
    match daemon::bind(socket) {
        Ok(listening) => {
            daemon::serve(listening);
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ daemon::DaemonError::AlreadyRunning { .. }) => {
            eprintln!("hutch-helper: {e}");
            Ok(ExitCode::from(ALREADY_RUNNING))
        }
        Err(e) => Err(e.into()),
    }
}

/// Starts `hutch-helper --foreground` in its own session, logging to helper.log, and returns
/// once it answers on the socket.
fn start_detached(socket: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let socket = socket_path(socket)?;
    if let Ok(running) = Client::connect(&socket, "hutch-helper-start") {
        eprintln!(
            "hutch-helper: another hutch-helper (pid {}) is already serving {}",
            running.helper_pid,
            socket.display()
        );
        return Ok(ExitCode::from(ALREADY_RUNNING));
    }
    let runtime = paths::runtime_dir()?;
    std::fs::create_dir_all(&runtime).with_context(|| format!("create {}", runtime.display()))?;
    let log_path = paths::log_path(&socket);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("open log {}", log_path.display()))?;
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let exe = std::env::current_exe().context("find own executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("--foreground")
        .arg("--socket")
        .arg(&socket)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    sys::new_session(&mut cmd);
    let mut child = cmd.spawn().context("start hutch-helper --foreground")?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait()? {
            // Show what it said on its way out.
            let mut text = String::new();
            if let Ok(mut f) = std::fs::File::open(&log_path) {
                use std::io::Seek;
                let _ = f.seek(std::io::SeekFrom::Start(log_start));
                let _ = f.read_to_string(&mut text);
            }
            eprint!("{text}");
            return Ok(match status.code() {
                Some(3) => ExitCode::from(ALREADY_RUNNING),
                _ => ExitCode::FAILURE,
            });
        }
        // Ready when the helper that answers is ours (not one that started meanwhile).
        if Client::connect(&socket, "hutch-helper-start").is_ok_and(|c| c.helper_pid == child.id())
        {
            println!(
                "hutch-helper running (pid {}) on {}",
                child.id(),
                socket.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            anyhow::bail!(
                "hutch-helper did not answer on {} within 10 s (see {})",
                socket.display(),
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
