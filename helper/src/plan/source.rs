//! Bind sources, checked once: what a host path really is, and whether a sandbox may have it.
//!
//! A path the user names can run through links an app planted (in a shared folder, a kept
//! home, the user's own home seen through a read-write share), and those links can change
//! between any two looks. So a path is looked at once ([`HostFs::check`]): resolved to its real
//! path (no link left in it), opened there without following any link, and described by what
//! was opened: its real path, its kind, its identity (device and inode). Every rule below runs
//! on that real path, and the plan records the identity; pid 1 later opens the real path again
//! without following any link and binds that descriptor only if it is still the same file.
//! What was checked is what is bound.
//!
//! [`HostFs::check`]: super::host::HostFs::check

use std::path::{Path, PathBuf};

use super::host::HostFacts;
pub use super::host::{Checked, FileId, Unchecked};

/// Folders of the host system a sandbox never gets, whatever the path that leads there: their
/// contents are the host itself (its processes, devices, kernel knobs).
const HOST_SYSTEM: &[&str] = &["/proc", "/sys", "/dev"];

/// Folders that are the host system as a whole, refused as they are (what is inside them may
/// be shared: a program under /usr, a folder under /etc).
const HOST_SYSTEM_WHOLE: &[&str] = &["/", "/run", "/etc", "/usr", "/boot", "/var", "/home"];

/// Why a sandbox may never have the host file or folder at `real` (a real path), if it may
/// not: it is (or holds) the host system, Hutch's own files, or the user's runtime folder.
pub fn forbidden(real: &Path, host: &HostFacts) -> Option<String> {
    for system in HOST_SYSTEM {
        if real.starts_with(system) {
            return Some(format!(
                "it is the host's {system}, which shows the host itself (its processes, \
                 devices or kernel settings)"
            ));
        }
    }
    if HOST_SYSTEM_WHOLE.iter().any(|w| real == Path::new(w)) {
        return Some(format!(
            "{} is the host system as a whole (it holds /proc, /dev, other users' files or \
             Hutch's own)",
            real.display()
        ));
    }
    if let Some(runtime) = &host.session_runtime
        && runtime.starts_with(real)
    {
        return Some(format!(
            "it holds your runtime folder {} (the session's sockets: its bus, sound, display, \
             keyring and Hutch's helper)",
            runtime.display()
        ));
    }
    for private in &host.private_dirs {
        if real.starts_with(private) || private.starts_with(real) {
            return Some(format!(
                "it would show the app Hutch's own files in {} (the helper's socket, \
                 profiles or kept homes)",
                private.display()
            ));
        }
    }
    None
}

/// Folders known to hold the user's sockets (agents, terminal multiplexers, the session bus,
/// display servers): a share at, in or around one is refused unless the share says `sockets`.
/// Sockets that appear in them later could not be hidden.
pub fn socket_folders(host: &HostFacts) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = [
        "/tmp/.X11-unix",
        "/tmp/.ICE-unix",
        "/tmp/.XIM-unix",
        "/tmp/.font-unix",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    out.push(PathBuf::from(format!("/tmp/tmux-{}", host.uid)));
    out.push(PathBuf::from(format!("/run/screen/S-{}", host.user)));
    out.push(host.real_home.join(".ssh"));
    out.push(host.real_home.join(".gnupg"));
    if let Some(runtime) = &host.session_runtime {
        out.push(runtime.clone());
    }
    out
}

/// The known socket folder the share at `real` is, is in or holds, if any; `/tmp` counts as
/// one (it holds other programs' sockets: ssh-agent's, tmux's, the display's).
pub fn socket_folder(real: &Path, host: &HostFacts) -> Option<PathBuf> {
    if real == Path::new("/tmp") {
        return Some(real.to_owned());
    }
    socket_folders(host)
        .into_iter()
        .find(|known| real.starts_with(known) || known.starts_with(real))
}

/// Whether a share at `real` holds or is the X11 sockets' folder (any X11 client can read
/// every keystroke of the session).
pub fn holds_x11_sockets(real: &Path) -> bool {
    let x11 = Path::new("/tmp/.X11-unix");
    real.starts_with(x11) || x11.starts_with(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostFacts {
        HostFacts::alice()
    }

    #[test]
    fn the_host_system_hutchs_folders_and_the_runtime_folder_are_never_shared() {
        let host = host();
        for (path, rule) in [
            ("/proc", "/proc"),
            ("/proc/1/root", "/proc"),
            ("/sys/class/net", "/sys"),
            ("/dev", "/dev"),
            ("/dev/shm", "/dev"),
            ("/", "host system as a whole"),
            ("/run", "host system as a whole"),
            ("/home", "host system as a whole"),
            ("/home/alice", "Hutch's own files"),
            ("/home/alice/.config", "Hutch's own files"),
            ("/home/alice/.config/hutch/profiles", "Hutch's own files"),
            ("/run/user/1000/hutch", "Hutch's own files"),
            ("/run/user", "runtime folder"),
            ("/run/user/1000", "runtime folder"),
        ] {
            let why = forbidden(Path::new(path), &host)
                .unwrap_or_else(|| panic!("{path} should be refused"));
            assert!(why.contains(rule), "{path}: {why}");
        }
        for path in [
            "/home/alice/Documents",
            "/srv/data",
            "/usr/share/doc",
            "/etc/ssl",
            "/tmp/work",
            "/run/user/1000/doc",
        ] {
            assert_eq!(forbidden(Path::new(path), &host), None, "{path}");
        }
    }

    #[test]
    fn socket_folders_are_known_at_in_and_around_them() {
        let host = host();
        for (path, folder) in [
            ("/tmp", "/tmp"),
            ("/tmp/.X11-unix", "/tmp/.X11-unix"),
            ("/tmp/tmux-1000", "/tmp/tmux-1000"),
            ("/home/alice/.ssh", "/home/alice/.ssh"),
            ("/home/alice/.gnupg/private-keys-v1.d", "/home/alice/.gnupg"),
            ("/run/user/1000/pulse", "/run/user/1000"),
        ] {
            assert_eq!(
                socket_folder(Path::new(path), &host),
                Some(PathBuf::from(folder)),
                "{path}"
            );
        }
        for path in ["/tmp/work", "/home/alice/Documents", "/tmp/tmux-1001"] {
            assert_eq!(socket_folder(Path::new(path), &host), None, "{path}");
        }
        assert!(holds_x11_sockets(Path::new("/tmp/.X11-unix")));
        assert!(!holds_x11_sockets(Path::new("/tmp/work")));
    }
}
