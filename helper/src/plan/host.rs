//! Facts about the host the plan is built from: gathered when the daemon first needs them,
//! and again whenever what they were read from changes ([`FactsCache`]).
//!
//! Everything the plan builder needs to know about the machine comes through [`HostFacts`] and
//! the [`HostFs`] trait, so plans are unit tested against a made-up host.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::unistd::{Gid, Group, Uid, User};
use serde::{Deserialize, Serialize};

/// A range from /etc/subuid or /etc/subgid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubRange {
    pub start: u32,
    pub count: u32,
}

/// The user and the tools the plan depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// The user's runtime folder (`XDG_RUNTIME_DIR`, its real path): the session's sockets
    /// live there.
    pub session_runtime: Option<PathBuf>,
    /// The real path of `home` (rules on real paths compare with it).
    pub real_home: PathBuf,
}

#[cfg(test)]
impl HostFacts {
    /// A made-up user with a subordinate range and every tool, for unit tests.
    pub(crate) fn alice() -> Self {
        Self {
            uid: 1000,
            gid: 1000,
            user: "alice".into(),
            group: "alice".into(),
            home: "/home/alice".into(),
            shell: "/bin/bash".into(),
            subuids: vec![SubRange {
                start: 100000,
                count: 65536,
            }],
            subgids: vec![SubRange {
                start: 100000,
                count: 65536,
            }],
            newuidmap: Some("/usr/bin/newuidmap".into()),
            newgidmap: Some("/usr/bin/newgidmap".into()),
            slirp4netns: Some("/usr/bin/slirp4netns".into()),
            pasta: Some("/usr/bin/pasta".into()),
            cores: 2,
            private_dirs: vec![
                "/home/alice/.config/hutch".into(),
                "/run/user/1000/hutch".into(),
            ],
            homes_dir: "/home/alice/.local/share/hutch/homes".into(),
            session_runtime: Some("/run/user/1000".into()),
            real_home: "/home/alice".into(),
        }
    }
}

/// The identity of a host file: its device and inode. Two paths with the same identity name
/// the same file (a hard link of a file, or the same folder).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// What a host path was found to be when it was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Its real path: absolute, with no link, `.` or `..` left in it.
    pub path: PathBuf,
    pub id: FileId,
    /// [`Entry::File`], [`Entry::Dir`] or [`Entry::Other`] (never a link).
    pub kind: Entry,
}

/// Why a host path could not be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unchecked {
    #[error("it does not exist")]
    Missing,
    /// What the path led to changed while it was looked at (a link or folder swapped).
    #[error("it changed while it was checked (a link or folder was swapped at {})", .0.display())]
    Changed(PathBuf),
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
    /// Looks at `path` once: follows its links as they are now to its real path, opens that
    /// without following any link, and tells what was opened (see [`super::source`]).
    fn check(&self, path: &Path) -> Result<Checked, Unchecked>;
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
    fn check(&self, path: &Path) -> Result<Checked, Unchecked> {
        use std::os::fd::AsRawFd;
        let real = std::fs::canonicalize(path).map_err(|_| Unchecked::Missing)?;
        let fd = open_no_links(&real).map_err(|e| match e {
            // A link appeared on the way since it was resolved.
            nix::errno::Errno::ELOOP | nix::errno::Errno::EXDEV => Unchecked::Changed(real.clone()),
            _ => Unchecked::Missing,
        })?;
        let st = nix::sys::stat::fstat(&fd).map_err(|_| Unchecked::Missing)?;
        // Where the opened file is now: a folder renamed on the way shows here.
        let now = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map_err(|_| Unchecked::Changed(real.clone()))?;
        if now != real {
            return Err(Unchecked::Changed(real));
        }
        Ok(Checked {
            path: real,
            id: FileId {
                dev: st.st_dev,
                ino: st.st_ino,
            },
            kind: kind_of_mode(st.st_mode),
        })
    }
}

/// Opens `path` as a path-only descriptor without following any link in it: `openat2` with
/// `RESOLVE_NO_SYMLINKS`, or, on kernels older than 5.6, `O_NOFOLLOW` for the last part (the
/// callers then compare where the descriptor really is).
pub fn open_no_links(path: &Path) -> nix::Result<std::os::fd::OwnedFd> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let how = OpenHow::new()
        .flags(flags)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    match openat2(nix::fcntl::AT_FDCWD, path, how) {
        Err(nix::errno::Errno::ENOSYS) => {
            nix::fcntl::open(path, flags, nix::sys::stat::Mode::empty())
        }
        other => other,
    }
}

/// The kind of file a `st_mode` describes.
pub fn kind_of_mode(mode: u32) -> Entry {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => Entry::Dir,
        libc::S_IFREG => Entry::File,
        _ => Entry::Other,
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

/// The folders [`find_tool`] looks in.
const TOOL_DIRS: [&str; 5] = ["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"];

/// Finds an executable named `name` in the usual system folders.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    TOOL_DIRS
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

/// CPU cores this process may use now (its affinity and its cgroup's quota).
pub fn cores() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
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
    let session_runtime = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .map(|p| real_path(&p));
    // The rules compare real paths (see `source::forbidden`).
    let private_dirs = private_dirs.iter().map(|p| real_path(p)).collect();
    let real_home = real_path(&home);
    HostFacts {
        uid: uid.as_raw(),
        gid: gid.as_raw(),
        subuids: parse_subid(&read("/etc/subuid"), &user, uid.as_raw()),
        subgids: parse_subid(&read("/etc/subgid"), &user, uid.as_raw()),
        newuidmap: find_tool("newuidmap"),
        newgidmap: find_tool("newgidmap"),
        slirp4netns: find_tool("slirp4netns"),
        pasta: find_tool("pasta"),
        cores: cores(),
        user,
        group,
        home,
        shell,
        private_dirs,
        homes_dir,
        session_runtime,
        real_home,
    }
}

/// The real path of `path`: its deepest existing folder resolved, the rest appended (a folder
/// Hutch has not made yet still compares right).
pub fn real_path(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut cur = path.to_path_buf();
    loop {
        if let Ok(real) = std::fs::canonicalize(&cur) {
            return rest.iter().rev().fold(real, |acc, part| acc.join(part));
        }
        match (cur.file_name().map(ToOwned::to_owned), cur.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                cur = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// What [`gather`] reads: the account databases, the subordinate id files and the folders the
/// tools are found in (a folder's modification time changes when a tool is installed).
const SOURCES: [&str; 10] = [
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/subuid",
    "/etc/subgid",
    TOOL_DIRS[0],
    TOOL_DIRS[1],
    TOOL_DIRS[2],
    TOOL_DIRS[3],
    TOOL_DIRS[4],
];

/// Identity and version of a file or folder: (device, inode, size, modification time in ns).
pub type Stamp = Option<(u64, u64, u64, i128)>;

pub fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path).ok().map(|m| {
        let mtime = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
        (m.dev(), m.ino(), m.size(), mtime)
    })
}

/// The stamps of `paths`, in order.
pub fn stamps(paths: &[PathBuf]) -> Vec<Stamp> {
    paths.iter().map(|p| stamp(p)).collect()
}

/// How old a modification time must be to be trusted: file systems stamp with a coarse clock,
/// so a file changed twice within one tick keeps its time. Facts read from a file changed less
/// than this ago are not kept (as git treats "racily clean" index entries).
const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether every stamped modification time is older than [`SETTLE`].
pub fn settled(stamps: &[Stamp]) -> bool {
    let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) else {
        return false;
    };
    let limit = now.saturating_sub(SETTLE).as_nanos() as i128;
    stamps
        .iter()
        .flatten()
        .all(|&(_, _, _, mtime)| mtime < limit)
}

/// The host facts of the last [`gather`], kept with the stamps of what they were read from.
/// A launch checks ten `stat`s instead of reading and parsing the account and subordinate id
/// files and searching for four tools (about 0.15 ms of each launch on a small VM). Account
/// data that comes from a network directory (NSS other than files) is re-read only when one of
/// these files changes; a user's own name, home and shell do not change while they are logged in.
/// The number of cores is not covered (CPU hotplug, a changed quota): a launch with a CPU limit
/// reads it again ([`cores`]).
#[derive(Debug)]
pub struct FactsCache {
    private_dirs: Vec<PathBuf>,
    homes_dir: PathBuf,
    sources: Vec<PathBuf>,
    last: Mutex<Option<(Vec<Stamp>, HostFacts)>>,
}

impl FactsCache {
    pub fn new(private_dirs: Vec<PathBuf>, homes_dir: PathBuf) -> Self {
        Self::watching(
            private_dirs,
            homes_dir,
            SOURCES.iter().map(PathBuf::from).collect(),
        )
    }

    /// A cache that gathers again when one of `sources` changes (tests watch their own files).
    fn watching(private_dirs: Vec<PathBuf>, homes_dir: PathBuf, sources: Vec<PathBuf>) -> Self {
        Self {
            private_dirs,
            homes_dir,
            sources,
            last: Mutex::new(None),
        }
    }

    /// The facts as they are now.
    pub fn get(&self) -> HostFacts {
        let stamps = stamps(&self.sources);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match &*last {
            Some((seen, facts)) if *seen == stamps => facts.clone(),
            _ => {
                let facts = gather(self.private_dirs.clone(), self.homes_dir.clone());
                *last = settled(&stamps).then(|| (stamps, facts.clone()));
                facts
            }
        }
    }

    /// Whether the next [`FactsCache::get`] gathers again.
    #[cfg(test)]
    fn is_stale(&self) -> bool {
        let stamps = stamps(&self.sources);
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        !matches!(&*last, Some((seen, _)) if *seen == stamps)
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

    #[test]
    fn cached_facts_are_gathered_again_when_a_source_changes() {
        let dir = std::env::temp_dir().join(format!("hutch-facts-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        let subuid = dir.join("subuid");
        std::fs::write(&subuid, "alice:100000:65536\n").unwrap();
        let sources = [subuid.clone(), dir.join("bin"), dir.join("not-there")];
        let cache = FactsCache::watching(
            vec![dir.join("private")],
            dir.join("homes"),
            sources.to_vec(),
        );
        // Gets the facts with every source dated long ago (stamps are trusted once a few
        // seconds old), then checks they are kept.
        let settle = || {
            let long_ago = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
            for path in sources.iter().filter(|p| p.exists()) {
                std::fs::File::open(path)
                    .unwrap()
                    .set_modified(long_ago)
                    .unwrap();
            }
            let facts = cache.get();
            assert!(!cache.is_stale(), "nothing changed since");
            facts
        };
        assert!(cache.is_stale(), "nothing gathered yet");
        let facts = settle();
        assert_eq!(facts.homes_dir, dir.join("homes"));
        assert_eq!(facts.private_dirs, [dir.join("private")]);
        // Edited in place (same inode), replaced by a rename (new inode), a tool installed in
        // a folder, a missing file appearing: each means gathering again.
        std::fs::write(&subuid, "alice:100000:65536\nbob:165536:65536\n").unwrap();
        assert!(cache.is_stale(), "an edited file");
        settle();
        let tmp = dir.join("subuid.new");
        std::fs::write(&tmp, "alice:200000:65536\nbob:165536:65536\n").unwrap();
        std::fs::rename(&tmp, &subuid).unwrap();
        assert!(cache.is_stale(), "a replaced file");
        settle();
        std::fs::write(dir.join("bin").join("slirp4netns"), "").unwrap();
        assert!(cache.is_stale(), "a tool installed");
        settle();
        std::fs::write(dir.join("not-there"), "").unwrap();
        assert!(cache.is_stale(), "a file that appeared");
        cache.get();
        assert!(
            cache.is_stale(),
            "facts read from a file changed just now are not kept"
        );
        settle();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
