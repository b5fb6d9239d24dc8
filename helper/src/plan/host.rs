//! Facts about the host the plan is built from, gathered once per launch.
//!
//! Everything the plan builder needs to know about the machine comes through [`HostFacts`] and
//! the [`HostFs`] trait, so plans are unit tested against a made-up host.

use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Group, Uid, User};

/// A range from /etc/subuid or /etc/subgid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubRange {
    pub start: u32,
    pub count: u32,
}

/// The user and the tools the plan depends on.
#[derive(Debug, Clone)]
pub struct HostFacts {
    pub uid: u32,
    pub gid: u32,
    pub user: String,
    pub group: String,
    pub home: PathBuf,
    pub shell: String,
    pub subuids: Vec<SubRange>,
    pub subgids: Vec<SubRange>,
    pub newuidmap: Option<PathBuf>,
    pub newgidmap: Option<PathBuf>,
    pub slirp4netns: Option<PathBuf>,
    pub pasta: Option<PathBuf>,
    /// CPU cores this process may use.
    pub cores: u32,
    /// Folders the sandbox must never see (Hutch's own config, state and socket).
    pub private_dirs: Vec<PathBuf>,
    /// Where per-app persistent homes live.
    pub homes_dir: PathBuf,
}

/// What kind of thing is at a host path (without following a final symlink).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    File,
    Dir,
    Symlink(PathBuf),
    /// A device node, socket or fifo.
    Other,
}

/// Read-only questions about the host file system.
pub trait HostFs {
    /// What is at `path`, not following a final symlink.
    fn entry(&self, path: &Path) -> Option<Entry>;
    /// What `path` resolves to, following symlinks.
    fn resolved(&self, path: &Path) -> Option<Entry>;
    /// The canonical form of `path`, when it exists.
    fn canonical(&self, path: &Path) -> Option<PathBuf>;
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

fn entry_of(meta: &std::fs::Metadata, path: &Path) -> Entry {
    let ft = meta.file_type();
    if ft.is_symlink() {
        Entry::Symlink(std::fs::read_link(path).unwrap_or_default())
    } else if ft.is_dir() {
        Entry::Dir
    } else if ft.is_file() {
        Entry::File
    } else {
        Entry::Other
    }
}

impl HostFs for RealFs {
    fn entry(&self, path: &Path) -> Option<Entry> {
        std::fs::symlink_metadata(path)
            .ok()
            .map(|m| entry_of(&m, path))
    }
    fn resolved(&self, path: &Path) -> Option<Entry> {
        std::fs::metadata(path).ok().map(|m| entry_of(&m, path))
    }
    fn canonical(&self, path: &Path) -> Option<PathBuf> {
        std::fs::canonicalize(path).ok()
    }
}

/// Parses /etc/subuid or /etc/subgid text: `name-or-id:start:count` lines.
pub fn parse_subid(text: &str, user: &str, id: u32) -> Vec<SubRange> {
    let id = id.to_string();
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.starts_with('#') {
                return None;
            }
            let mut parts = line.split(':');
            let (owner, start, count) = (parts.next()?, parts.next()?, parts.next()?);
            if owner != user && owner != id {
                return None;
            }
            let range = SubRange {
                start: start.trim().parse().ok()?,
                count: count.trim().parse().ok()?,
            };
            (range.count > 0).then_some(range)
        })
        .collect()
}

/// Finds an executable named `name` in the usual system folders.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

/// Gathers the facts of the current user on this host.
pub fn gather(private_dirs: Vec<PathBuf>, homes_dir: PathBuf) -> HostFacts {
    let uid = Uid::current();
    let gid = Gid::current();
    let pw = User::from_uid(uid).ok().flatten();
    let user = pw
        .as_ref()
        .map(|u| u.name.clone())
        .unwrap_or_else(|| uid.to_string());
    let group = Group::from_gid(gid)
        .ok()
        .flatten()
        .map(|g| g.name)
        .unwrap_or_else(|| user.clone());
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|h| h.is_absolute())
        .or_else(|| pw.as_ref().map(|u| u.dir.clone()))
        .unwrap_or_else(|| PathBuf::from("/home").join(&user));
    let shell = pw
        .as_ref()
        .map(|u| u.shell.display().to_string())
        .filter(|s| s.starts_with("/usr/") || s.starts_with("/bin/"))
        .unwrap_or_else(|| "/bin/sh".into());
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    HostFacts {
        uid: uid.as_raw(),
        gid: gid.as_raw(),
        subuids: parse_subid(&read("/etc/subuid"), &user, uid.as_raw()),
        subgids: parse_subid(&read("/etc/subgid"), &user, uid.as_raw()),
        newuidmap: find_tool("newuidmap"),
        newgidmap: find_tool("newgidmap"),
        slirp4netns: find_tool("slirp4netns"),
        pasta: find_tool("pasta"),
        cores: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1),
        user,
        group,
        home,
        shell,
        private_dirs,
        homes_dir,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subid_lines_match_by_name_or_id() {
        let text = "# comment\nalice:100000:65536\nbob:165536:65536\n1000:300000:10\nbad:line\n";
        assert_eq!(
            parse_subid(text, "alice", 1000),
            [
                SubRange {
                    start: 100000,
                    count: 65536
                },
                SubRange {
                    start: 300000,
                    count: 10
                }
            ]
        );
        assert!(parse_subid(text, "carol", 1001).is_empty());
        assert!(parse_subid("alice:1:0\n", "alice", 5).is_empty());
    }
}
