//! Who is on the other end of a connection. The helper serves its own user, and only from
//! outside its sandboxes: an app runs as the user's uid, so the uid alone cannot tell it from
//! the user, and a socket that leaks into a sandbox anyway must be useless there.
//!
//! A client is let in when it shares the helper's user and pid namespaces (a terminal, the
//! window). A client in namespaces of its own is refused, unless it is the Flatpak of the
//! window (its root holds `/.flatpak-info`) and no Hutch sandbox is among its ancestors: every
//! process in a sandbox descends from its supervisor (an orphan is adopted by the sandbox's
//! own pid 1), so nothing in a sandbox passes as a Flatpak.

use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The user and pid namespaces of process `pid` (as `/proc` shows them: device and inode of
/// each).
fn namespaces(pid: &str) -> std::io::Result<[(u64, u64); 2]> {
    let ns = |kind: &str| {
        std::fs::metadata(format!("/proc/{pid}/ns/{kind}")).map(|m| (m.dev(), m.ino()))
    };
    Ok([ns("user")?, ns("pid")?])
}

/// The parent of process `pid` (`None` at the top, or when it is gone).
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces and parentheses: fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(1)?.parse().ok()
}

/// Whether one of `pid`'s ancestors (or `pid` itself) is one of `supervisors`; `None` when the
/// chain could not be followed to the top (a process on it ended meanwhile).
fn descends_from(pid: i32, supervisors: &[i32]) -> Option<bool> {
    let mut cur = pid;
    // A chain longer than this is no process tree of this machine.
    for _ in 0..4096 {
        if supervisors.contains(&cur) {
            return Some(true);
        }
        match parent_of(cur)? {
            // The top: pid 1's parent is 0.
            0 => return Some(false),
            parent if parent != cur => cur = parent,
            _ => return None,
        }
    }
    None
}

/// Why the client `pid` may not use this helper, if it may not. `supervisors` are the pids of
/// every sandbox's supervisor (the prepared one too).
pub fn refusal(pid: i32, supervisors: &[i32]) -> Option<String> {
    if pid <= 0 {
        return Some("its process could not be identified".into());
    }
    let own = match namespaces("self") {
        Ok(ns) => ns,
        Err(e) => return Some(format!("the helper cannot read its own namespaces: {e}")),
    };
    let theirs = match namespaces(&pid.to_string()) {
        Ok(ns) => ns,
        Err(e) => return Some(format!("its namespaces cannot be read ({e})")),
    };
    if theirs == own {
        return None;
    }
    match descends_from(pid, supervisors) {
        Some(true) => return Some("it runs inside a Hutch sandbox".into()),
        // Fail closed: a client whose ancestry cannot be told is not let in.
        None => return Some("its process tree could not be followed".into()),
        Some(false) => {}
    }
    if Path::new(&format!("/proc/{pid}/root/.flatpak-info")).exists() {
        return None;
    }
    Some(
        "it runs in another user or pid namespace than the helper (a container or another \
         sandbox); run hutch where the helper runs"
            .into(),
    )
}

/// A pidfd of the client on `stream` (`SO_PEERPIDFD`, else `pidfd_open` of its credentials'
/// pid), so a sandbox bound to it learns when it ends.
pub fn caller_pidfd(stream: BorrowedFd<'_>) -> std::io::Result<std::os::fd::OwnedFd> {
    if let Some(fd) = crate::sys::peer_pidfd(stream)? {
        return Ok(fd);
    }
    let cred = nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(std::io::Error::from)?;
    crate::sys::pidfd_open(nix::unistd::Pid::from_raw(cred.pid()))
}

/// Why a client is not let in.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// What [`refusal`] found.
    #[error("{0}")]
    Refused(String),
    #[error("it went away while it was checked")]
    Gone,
}

/// Checks the client on `stream` whose credentials say `pid`. With a pidfd of the peer
/// (`SO_PEERPIDFD`, Linux 6.5) the answer is about that very process: its pid cannot have been
/// reused while the pidfd shows it alive after the check.
pub fn check(stream: BorrowedFd<'_>, pid: i32, supervisors: &[i32]) -> Result<(), PeerError> {
    let pidfd = crate::sys::peer_pidfd(stream.as_fd()).ok().flatten();
    if let Some(why) = refusal(pid, supervisors) {
        return Err(PeerError::Refused(why));
    }
    if let Some(pidfd) = pidfd
        && crate::sys::pidfd_send_signal(pidfd.as_fd(), 0).is_err()
    {
        return Err(PeerError::Gone);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_let_in_and_a_descendant_of_a_supervisor_is_not() {
        let me = std::process::id() as i32;
        assert_eq!(refusal(me, &[]), None);
        let parent = parent_of(me).expect("a parent");
        assert_eq!(descends_from(me, &[parent]), Some(true));
        assert_eq!(descends_from(me, &[i32::MAX]), Some(false));
        // A process that is not there: its tree cannot be told, so it is not let in.
        assert_eq!(descends_from(i32::MAX - 1, &[]), None);
        assert!(refusal(0, &[]).is_some());
    }

    #[test]
    fn a_process_in_other_namespaces_is_refused() {
        // `unshare -Urp --fork` puts a shell in a user and pid namespace of its own.
        let child = std::process::Command::new("unshare")
            .args(["-U", "-r", "-p", "--fork", "sleep", "5"])
            .spawn();
        let Ok(mut child) = child else {
            eprintln!("skipped: unshare is not installed");
            return;
        };
        // The sleep is unshare's child; wait for it to be there and in its namespaces.
        let unshare = child.id() as i32;
        let mut sleeper = None;
        for _ in 0..100 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            let children =
                std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
                    .unwrap_or_default();
            if let Some(pid) = children.split_whitespace().next() {
                sleeper = pid.parse::<i32>().ok();
                break;
            }
        }
        let outcome = sleeper.map(|pid| (refusal(pid, &[]), refusal(pid, &[unshare])));
        let _ = child.kill();
        let _ = child.wait();
        let Some((alone, under_supervisor)) = outcome else {
            if hutch_must_work() {
                panic!("unshare -Urp could not make namespaces here");
            }
            eprintln!("skipped: unshare -Urp could not make namespaces here");
            return;
        };
        let alone = alone.expect("refused");
        assert!(alone.contains("another user or pid namespace"), "{alone}");
        assert_eq!(
            under_supervisor.as_deref(),
            Some("it runs inside a Hutch sandbox")
        );
    }

    fn hutch_must_work() -> bool {
        std::env::var("HUTCH_MUST_WORK").is_ok_and(|v| v == "1")
    }
}
