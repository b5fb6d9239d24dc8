//! `hutch run`: start a sandbox attached to this terminal and exit with the app's status.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use anyhow::bail;
use hutch_client::connection::Client;
use hutch_core::protocol::{Event, Request, Response, RunRequest, Stdio};
use nix::sys::signal::{SigSet, Signal};

use crate::launchable::{Dropped, Kind};
use hutch_core::protocol::ShareSpec;

use super::{HUTCH_ERROR, RunArgs, terminal};

/// Signals the CLI passes on to the sandboxed app instead of dying of them.
pub const FORWARDED: &[Signal] = &[
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    // Block the forwarded signals before any thread exists, so every thread inherits the mask
    // and a signal thread can take them with sigwait.
    let mut signals = SigSet::empty();
    for &sig in FORWARDED {
        signals.add(sig);
    }
    signals.add(Signal::SIGWINCH);
    signals.thread_block()?;
    // Taken from the start: before the sandbox runs, a signal ends this command (a helper that
    // does not answer must not make it deaf to Ctrl-C); after, it goes to the app.
    let target = Arc::new(Target::default());
    forward_signals(signals, Arc::clone(&target));

    // The app never holds the caller's terminal (it could change it, or hand it to another
    // sandbox that keeps it after this command ends): a stream that is a terminal becomes the
    // sandbox's own terminal, relayed here; pipes and files are passed as they are. `-t`
    // gives the app a terminal for all three.
    let terminals = [
        std::io::stdin().is_terminal(),
        std::io::stdout().is_terminal(),
        std::io::stderr().is_terminal(),
    ];
    let stdio = if args.detach {
        Stdio::Log
    } else if args.tty || terminals.iter().any(|t| *t) {
        let (rows, cols) = terminal::size().unwrap_or((24, 80));
        let keep = match args.tty {
            true => [false; 3],
            false => terminals.map(|t| !t),
        };
        Stdio::Tty { rows, cols, keep }
    } else {
        Stdio::Inherit
    };
    let (command, shares, cwd) = launcher(args.command, args.share)?;
    let request = RunRequest {
        profile: args.profile,
        command,
        shares,
        home: args.home,
        env: std::env::vars().collect::<BTreeMap<_, _>>(),
        cwd: cwd.or_else(|| {
            std::env::current_dir()
                .ok()
                .map(|p| p.display().to_string())
        }),
        stdio,
        net: args.net,
        net_backend: args.net_backend,
        allow_host_loopback: args.allow_host_loopback,
        publish: args.publish,
        limits: args.limits.limits(),
        display: args.display,
        audio: args.audio,
        gpu: args.gpu,
        // In the foreground, the app lives no longer than this command, however it ends.
        bound_to_caller: !args.detach,
    };
    // An app given the caller's terminal may change it: whatever it changed there is put back
    // once it exited (or we did).
    let saved = (!args.detach).then(terminal::Saved::now);
    // The run request follows the hello without waiting for its answer: one round trip less.
    let mut client = Client::open_or_start("hutch-cli")?;
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let all = [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()];
    let fds: Vec<_> = match stdio {
        Stdio::Log => Vec::new(),
        Stdio::Tty { keep, .. } => all
            .into_iter()
            .zip(keep)
            .filter_map(|(fd, keep)| keep.then_some(fd))
            .collect(),
        _ => all.to_vec(),
    };
    let id = match client.request(&Request::Run(Box::new(request)), &fds)? {
        Response::Started { id, warnings, .. } => {
            for w in warnings {
                // A warning names what an app left in a share (a socket's name): escaped.
                eprintln!("hutch: warning: {}", hutch_core::text::escape_line(&w));
            }
            id
        }
        Response::Error { message, .. } => {
            eprintln!("hutch: {}", hutch_core::text::escape_line(&message));
            return Ok(ExitCode::from(HUTCH_ERROR));
        }
        other => bail!("unexpected answer from the helper: {other:?}"),
    };
    if args.detach {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }

    let tty = if let Stdio::Tty { .. } = stdio {
        match client.take_fds(1).pop() {
            Some(fd) => Some(fd),
            None => bail!("the helper sent no terminal for sandbox {id}"),
        }
    } else {
        None
    };
    if let Some(fd) = tty.as_ref() {
        let _ = target.tty.set(fd.try_clone()?);
    }
    let _ = target.id.set(id.clone());

    let status = match tty {
        Some(master) => {
            let raw = std::io::stdin()
                .is_terminal()
                .then(terminal::RawMode::enter)
                .transpose()?;
            let keep = match stdio {
                Stdio::Tty { keep, .. } => keep,
                _ => [false; 3],
            };
            let relayed = terminal::relay(&mut client, master, &id, keep)?;
            drop(raw);
            let status = match relayed {
                terminal::Relayed::Exited(status) => status,
                terminal::Relayed::HelperLost => exit_through_new_helper(&id)?,
            };
            drop(saved);
            status
        }
        None => {
            let status = wait_exit(&mut client, &id)?;
            drop(saved);
            status
        }
    };
    Ok(ExitCode::from(status.shell_code().clamp(0, 255) as u8))
}

/// `hutch run FILE.desktop [FILES...]`, `hutch run ./App.AppImage`, `hutch run ./script.sh`,
/// `hutch run ./program`: a launchable file named by path becomes its command line, with the
/// file (and the files given to a `.desktop` entry) shared read-only. A plain command name is
/// left alone: it is looked up in the sandbox's PATH.
fn launcher(
    command: Vec<String>,
    mut shares: Vec<ShareSpec>,
) -> anyhow::Result<(Vec<String>, Vec<ShareSpec>, Option<String>)> {
    let Some(first) = command.first() else {
        return Ok((command, shares, None));
    };
    let named_by_path = first.contains('/')
        || first.ends_with(".desktop")
        || first.to_ascii_lowercase().ends_with(".appimage");
    let path = std::path::Path::new(first);
    if !named_by_path || !path.is_file() {
        return Ok((command, shares, None));
    }
    let path = std::fs::canonicalize(path)?;
    let rest = &command[1..];
    let launch = match crate::launchable::classify(&path)? {
        Dropped::Launch(launch) => launch,
        Dropped::Data(_) => {
            bail!(
                "{} is neither a program, a script, a .desktop file nor an AppImage",
                path.display()
            )
        }
    };
    let mut add_share = |spec: ShareSpec| {
        if !shares.iter().any(|s| s.path == spec.path) {
            shares.push(spec);
        }
    };
    for spec in launch.shares.clone() {
        add_share(spec);
    }
    let argv = match &launch.kind {
        Kind::Desktop { .. } => {
            let entry = hutch_core::desktop::DesktopEntry::parse(
                &std::fs::read_to_string(&path)?,
                &path.display().to_string(),
            )?;
            let mut files = Vec::new();
            for f in rest {
                let abs = std::fs::canonicalize(f)
                    .map_err(|e| anyhow::anyhow!("{f}: cannot open it: {e}"))?;
                add_share(ShareSpec::new(
                    abs.display().to_string(),
                    hutch_core::profile::ShareMode::ReadOnly,
                ));
                files.push(abs.display().to_string());
            }
            if !rest.is_empty() && !entry.takes_files() {
                bail!(
                    "{}: its Exec (line {}) takes no files, but files were given",
                    path.display(),
                    entry.exec_line
                );
            }
            let mut lines = entry.command_lines(&files);
            if lines.len() > 1 {
                bail!(
                    "{}: its Exec (line {}) opens one file at a time (%f or %u): give one file",
                    path.display(),
                    entry.exec_line
                );
            }
            lines.swap_remove(0)
        }
        _ => launch.command.iter().chain(rest).cloned().collect(),
    };
    Ok((argv, shares, launch.cwd))
}

fn wait_exit(client: &mut Client, id: &str) -> anyhow::Result<hutch_core::protocol::ExitStatus> {
    loop {
        let event = match client.next_event() {
            Ok(event) => event,
            Err(e) if e.is_lost() => return exit_through_new_helper(id),
            Err(e) => return Err(e.into()),
        };
        match event {
            Event::Exited { id: exited, status } if exited == id => return Ok(status),
            Event::NetworkDown { id, message } => {
                eprintln!(
                    "hutch: the network of sandbox {id} is down: {}",
                    hutch_core::text::escape_line(&message)
                );
            }
            Event::OutOfMemory { id, kills } => {
                eprintln!(
                    "hutch: sandbox {id} ran out of memory: its memory limit was reached and the \
                     kernel killed it ({kills} process(es))"
                );
            }
            Event::Exited { .. }
            | Event::Samples { .. }
            | Event::ProcessLimit { .. }
            | Event::Sandboxes { .. } => continue,
        }
    }
}

/// The helper went away while the app runs (it crashed, or was killed). The sandbox runs on:
/// the next helper (started here if none answers) takes it over, and the exit is learnt from
/// its table of sandboxes.
fn exit_through_new_helper(id: &str) -> anyhow::Result<hutch_core::protocol::ExitStatus> {
    use hutch_client::connection::ClientError;
    eprintln!("hutch: lost the helper; waiting for sandbox {id} through a new one");
    // A helper that is itself going away (stopping, crashing again) closes the connection:
    // try again for a while.
    let mut tries = 0;
    loop {
        tries += 1;
        let retry = |e: ClientError| -> anyhow::Result<()> {
            if e.is_lost() && tries < 20 {
                std::thread::sleep(std::time::Duration::from_millis(250));
                Ok(())
            } else {
                Err(e.into())
            }
        };
        let mut client = match Client::connect_or_start("hutch-cli-run") {
            Ok(client) => client,
            Err(e) => {
                retry(e)?;
                continue;
            }
        };
        match client.request(&Request::Subscribe { interval_ms: None }, &[]) {
            Ok(Response::Done { .. }) => {}
            Ok(Response::Error { message, .. }) => bail!("{message}"),
            Ok(other) => bail!("unexpected answer from the helper: {other:?}"),
            Err(e) => {
                retry(e)?;
                continue;
            }
        }
        loop {
            match client.next_event() {
                Ok(Event::Sandboxes { sandboxes }) => {
                    let Some(sandbox) = sandboxes.iter().find(|s| s.id == id) else {
                        bail!(
                            "the new helper does not know sandbox {id}: its exit status is lost \
                             (`hutch ps -a` lists what it knows)"
                        );
                    };
                    if let Some(status) = sandbox.exit {
                        return Ok(status);
                    }
                }
                Ok(Event::Exited { id: exited, status }) if exited == id => return Ok(status),
                Ok(_) => {}
                Err(e) => {
                    retry(e)?;
                    break;
                }
            }
        }
    }
}

/// How long a signal that arrives during the launch waits for the sandbox to be known.
const START_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The value of `cell` once it is set, waiting at most `limit`.
fn wait_for<T>(cell: &OnceLock<T>, limit: std::time::Duration) -> Option<&T> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(value) = cell.get() {
            return Some(value);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Where the signals this command takes go: nowhere yet, then the started sandbox.
#[derive(Debug, Default)]
struct Target {
    id: OnceLock<String>,
    /// The sandbox's terminal (`-t`), whose size follows ours.
    tty: OnceLock<std::os::fd::OwnedFd>,
}

/// A thread that takes the blocked signals: window changes resize the sandbox's terminal, the
/// others go to the app through the helper, or end this command while no app runs yet.
fn forward_signals(signals: SigSet, target: Arc<Target>) {
    std::thread::spawn(move || {
        loop {
            let Ok(sig) = signals.wait() else { continue };
            if sig == Signal::SIGWINCH {
                if let (Some(tty), Some((rows, cols))) = (target.tty.get(), terminal::size()) {
                    let _ = hutch_client::sys::set_window_size(tty.as_fd(), rows, cols);
                }
                continue;
            }
            // The app may run a moment before its id reaches us: a signal then still goes to
            // it. A helper that does not answer at all does not keep us from ending.
            let Some(id) = wait_for(&target.id, START_WAIT) else {
                eprintln!("hutch: {sig} before the sandbox started; giving up");
                std::process::exit(128 + sig as i32);
            };
            let sent = Client::connect_or_start("hutch-cli-signal").and_then(|mut c| {
                c.request(
                    &Request::Signal {
                        id: id.clone(),
                        signal: sig as i32,
                    },
                    &[],
                )
            });
            if let Err(e) = sent {
                eprintln!("hutch: cannot pass {sig} to sandbox {id}: {e}");
            }
        }
    });
}
