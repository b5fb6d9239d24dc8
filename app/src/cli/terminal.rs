//! `hutch run -t`: the caller's terminal in raw mode, relayed to the sandbox's own
//! pseudo-terminal. The app never holds the caller's terminal, so it cannot push input into it.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use hutch_client::connection::Client;
use hutch_core::protocol::{Event, ExitStatus};
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::termios::{self, SetArg, Termios};

/// Restores the terminal's settings when dropped.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    pub fn enter() -> anyhow::Result<Self> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd())?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)?;
        Ok(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// The caller's terminal as it was before an app that holds it (a run without `-t` hands the
/// app the caller's stdin, stdout and stderr) could change it: its settings (echo, line
/// editing) and window size, output not suspended (`tcflow`), and each stdio file's status
/// flags (an app that leaves them non-blocking breaks the shell after it). Put back when
/// dropped. (The line discipline and exclusive mode the seccomp filter keeps the app from
/// changing.)
pub struct Saved {
    terminal: Option<SavedTerminal>,
    flags: [Option<OFlag>; 3],
}

/// The first of stdin, stdout and stderr that is a terminal: which, its settings and size.
type SavedTerminal = (usize, Termios, Option<(u16, u16)>);

/// Calls `f` with stdio fd `n` (0, 1 or 2).
fn with_stdio<R>(n: usize, f: impl FnOnce(BorrowedFd<'_>) -> R) -> R {
    match n {
        0 => f(std::io::stdin().as_fd()),
        1 => f(std::io::stdout().as_fd()),
        _ => f(std::io::stderr().as_fd()),
    }
}

impl Saved {
    /// What the caller's stdio is now.
    pub fn now() -> Self {
        let terminal = (0..3).find_map(|n| {
            with_stdio(n, |fd| {
                let settings = termios::tcgetattr(fd).ok()?;
                Some((n, settings, hutch_client::sys::window_size(fd)))
            })
        });
        let flags = [0, 1, 2].map(|n| {
            with_stdio(n, |fd| fcntl(fd, FcntlArg::F_GETFL).ok()).map(OFlag::from_bits_truncate)
        });
        Self { terminal, flags }
    }
}

impl Drop for Saved {
    fn drop(&mut self) {
        if let Some((n, settings, size)) = &self.terminal {
            with_stdio(*n, |stdin| {
                let _ = termios::tcsetattr(stdin, SetArg::TCSANOW, settings);
                let _ = termios::tcflow(stdin, termios::FlowArg::TCOON);
                if let Some((rows, cols)) = size {
                    let _ = hutch_client::sys::set_window_size(stdin, *rows, *cols);
                }
            });
        }
        for (n, flags) in self.flags.iter().enumerate() {
            if let Some(flags) = flags {
                with_stdio(n, |fd| fcntl(fd, FcntlArg::F_SETFL(*flags)).ok());
            }
        }
    }
}

/// The size of the caller's terminal (the first of stdin, stdout and stderr that is one).
pub fn size() -> Option<(u16, u16)> {
    (0..3).find_map(|n| with_stdio(n, hutch_client::sys::window_size))
}

/// How a relayed terminal ended.
#[derive(Debug)]
pub enum Relayed {
    /// The app exited with this status.
    Exited(ExitStatus),
    /// The helper went away while the app ran: its exit is to be learnt from the next one.
    HelperLost,
}

/// Copies stdin to the sandbox's terminal and its output to stdout (to stderr when stdout is
/// kept: a file or pipe the app writes itself) until the app exits. A kept stdin is the app's
/// own: nothing is copied from it.
pub fn relay(
    client: &mut Client,
    master: OwnedFd,
    id: &str,
    keep: [bool; 3],
) -> anyhow::Result<Relayed> {
    let mut pty = std::fs::File::from(master);
    let mut pty_in = pty.try_clone()?;
    // stdin on its own thread: a blocked read there must not hold up the output.
    let stdin_is_tty = std::io::IsTerminal::is_terminal(&std::io::stdin());
    if !keep[0] {
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut stdin = std::io::stdin().lock();
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        // End of piped input: an end-of-file character for the app's terminal.
                        if !stdin_is_tty {
                            let _ = pty_in.write_all(&[4]);
                        }
                        break;
                    }
                    Ok(n) => {
                        if pty_in.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
    let mut out: Box<dyn Write> = match keep[1] {
        false => Box::new(std::io::stdout()),
        true => Box::new(std::io::stderr()),
    };
    let mut status: Option<ExitStatus> = None;
    let mut drain_until: Option<Instant> = None;
    // The helper went away: its successor is asked for the exit once the app has gone.
    let mut helper_lost = false;
    let mut buf = [0u8; 16 * 1024];
    loop {
        if drain_until.is_some_and(|t| Instant::now() > t) {
            break;
        }
        let (pty_ready, sock_ready) = {
            let mut fds = vec![PollFd::new(pty.as_fd(), PollFlags::POLLIN)];
            // A lost helper's socket would read as ready forever: watch it only while it lives.
            if !helper_lost {
                fds.push(PollFd::new(client.stream().as_fd(), PollFlags::POLLIN));
            }
            let timeout = if status.is_some() { 50u16 } else { 1000 };
            match poll(&mut fds, PollTimeout::from(timeout)) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
            let ready = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
            (
                ready(&fds[0]),
                status.is_none() && fds.get(1).is_some_and(ready),
            )
        };
        if pty_ready {
            match pty.read(&mut buf) {
                Ok(0) | Err(_) => {
                    // EIO: every holder of the terminal's other side is gone.
                    if status.is_some() || helper_lost {
                        break;
                    }
                    drain_until.get_or_insert(Instant::now() + Duration::from_secs(5));
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(n) => {
                    out.write_all(&buf[..n])?;
                    out.flush()?;
                }
            }
        }
        if sock_ready {
            let event = match client.next_event() {
                Ok(event) => event,
                Err(e) if e.is_lost() => {
                    helper_lost = true;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            match event {
                Event::Exited {
                    id: exited,
                    status: s,
                } if exited == id => {
                    status = Some(s);
                    drain_until = Some(Instant::now() + Duration::from_millis(500));
                }
                Event::NetworkDown { message, .. } => {
                    eprint!(
                        "\r\nhutch: the sandbox's network is down: {}\r\n",
                        hutch_core::text::escape_line(&message)
                    );
                }
                Event::OutOfMemory { kills, .. } => {
                    eprint!(
                        "\r\nhutch: the sandbox ran out of memory ({kills} process(es) killed)\r\n"
                    );
                }
                Event::Exited { .. }
                | Event::Samples { .. }
                | Event::ProcessLimit { .. }
                | Event::Sandboxes { .. } => {}
            }
        }
    }
    match status {
        Some(s) => Ok(Relayed::Exited(s)),
        None if helper_lost => Ok(Relayed::HelperLost),
        None => loop {
            if let Event::Exited { id: exited, status } = client.next_event()?
                && exited == id
            {
                break Ok(Relayed::Exited(status));
            }
        },
    }
}
