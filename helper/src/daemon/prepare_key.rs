//! What a prepared sandbox was made for ([`PrepareKey`]), and the last key kept while nothing
//! it depends on changes ([`KeyCache`]).

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Mutex;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::plan::host::{self, HostFacts, Stamp};
use crate::plan::{self, IdMapPlan, MountOp};

/// What a prepared sandbox was made for: a launch can use it only if its plan agrees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepareKey {
    pub id_map: IdMapPlan,
    pub base_mounts: Vec<MountOp>,
    /// Device and inode of each bound host path: a bind pins the inode it was made on, so a
    /// file replaced since (as /etc/resolv.conf is on a network change) makes the prepared
    /// root stale.
    pub sources: Vec<(u64, u64)>,
}

impl PrepareKey {
    /// The key for this user on this host, now.
    pub fn current(host: &HostFacts) -> Self {
        let base_mounts = plan::base_mounts(host, &host::RealFs);
        Self {
            id_map: plan::id_map_plan(host).0,
            sources: source_identities(&base_mounts),
            base_mounts,
        }
    }
}

/// (device, inode) of every bind source, following symlinks as a bind does; (0, 0) if gone.
fn source_identities(mounts: &[MountOp]) -> Vec<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    mounts
        .iter()
        .filter_map(|op| match op {
            MountOp::Bind { source, .. } => Some(
                std::fs::metadata(source)
                    .map(|m| (m.dev(), m.ino()))
                    .unwrap_or((0, 0)),
            ),
            _ => None,
        })
        .collect()
}

/// The folders whose entries the base mounts are made of: adding, removing, renaming or
/// replacing an entry changes the folder's modification time.
const WATCHED: [&str; 3] = ["/", "/etc", "/dev"];

/// The last [`PrepareKey`], kept while the host facts are the same, no entry of `/`, `/etc`,
/// `/dev` or of a folder holding a bind source (an `/etc` symlink's target, such as
/// `/run/systemd/resolve/stub-resolv.conf`) was added, removed, renamed or replaced (their
/// stamps), and nothing was mounted or unmounted (`/proc/self/mounts` then polls with an
/// event: a mount changes the inode a path shows without touching any folder's time). A launch
/// then costs a `stat` per watched folder (five or so) and a `poll` instead of listing and
/// `stat`ing every base mount (~0.1 ms). Keys made from folders changed
/// in the last seconds are not kept (see [`host::settled`]).
#[derive(Debug)]
pub struct KeyCache {
    watched: Vec<PathBuf>,
    mounts: Option<std::fs::File>,
    compute: fn(&HostFacts) -> PrepareKey,
    last: Mutex<Option<Kept>>,
}

/// A key with what it was made from.
#[derive(Debug)]
struct Kept {
    /// The folders watched for it: [`KeyCache`]'s own and those of its bind sources.
    folders: Vec<PathBuf>,
    stamps: Vec<Stamp>,
    facts: HostFacts,
    key: PrepareKey,
}

impl Default for KeyCache {
    fn default() -> Self {
        Self::watching(
            WATCHED.iter().map(PathBuf::from).collect(),
            PrepareKey::current,
        )
    }
}

impl KeyCache {
    /// A cache over other folders and another way to compute the key (for tests).
    fn watching(watched: Vec<PathBuf>, compute: fn(&HostFacts) -> PrepareKey) -> Self {
        Self {
            watched,
            // Without it no change of mounts could be seen: then nothing is kept.
            mounts: std::fs::File::open("/proc/self/mounts").ok(),
            compute,
            last: Mutex::new(None),
        }
    }

    /// The key for these host facts, now.
    pub fn get(&self, host: &HostFacts) -> PrepareKey {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        // Polled under the lock: an event is reported once, to whoever polls first.
        let remounted = self.mounts_changed();
        if let Some(kept) = &*last
            && !remounted
            && kept.facts == *host
            && host::stamps(&kept.folders) == kept.stamps
        {
            return kept.key.clone();
        }
        let key = (self.compute)(host);
        let mut folders = self.watched.clone();
        for op in &key.base_mounts {
            if let MountOp::Bind { source, .. } = op
                && let Some(parent) = source.parent()
                && !folders.iter().any(|f| f == parent)
            {
                folders.push(parent.to_path_buf());
            }
        }
        // Stamped after the key was made: times two seconds old say nothing changed while it
        // was made either.
        let stamps = host::stamps(&folders);
        let keep = self.mounts.is_some() && host::settled(&stamps);
        *last = keep.then(|| Kept {
            folders,
            stamps,
            facts: host.clone(),
            key: key.clone(),
        });
        key
    }

    /// Whether anything was mounted or unmounted since the last poll.
    fn mounts_changed(&self) -> bool {
        let Some(mounts) = &self.mounts else {
            return true;
        };
        let mut fds = [PollFd::new(mounts.as_fd(), PollFlags::POLLPRI)];
        !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(0))
    }

    /// Whether [`KeyCache::get`] would compute the key again for `host`.
    #[cfg(test)]
    fn would_compute(&self, host: &HostFacts) -> bool {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        !matches!(&*last, Some(kept) if kept.facts == *host && host::stamps(&kept.folders) == kept.stamps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Access;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_replaced_bind_source_changes_the_key() {
        let dir = std::env::temp_dir().join(format!("hutch-key-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("resolv.conf");
        std::fs::write(&file, "nameserver 10.0.0.1\n").unwrap();
        let mounts = vec![MountOp::Bind {
            source: file.clone(),
            path: "/etc/resolv.conf".into(),
            access: Access::ReadOnly,
            dir: false,
            id: None,
            sockets: false,
            hide_sockets: false,
        }];
        let before = source_identities(&mounts);
        // Written in place: the same inode, which a bind shows as it changes.
        std::fs::write(&file, "nameserver 10.0.0.2\n").unwrap();
        assert_eq!(source_identities(&mounts), before);
        // Replaced by a rename, as resolvers do: a new inode, the prepared bind is stale.
        let tmp = dir.join("resolv.conf.new");
        std::fs::write(&tmp, "nameserver 10.0.0.3\n").unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        assert_ne!(source_identities(&mounts), before);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    static COMPUTED: AtomicUsize = AtomicUsize::new(0);

    fn counted(host: &HostFacts) -> PrepareKey {
        COMPUTED.fetch_add(1, Ordering::SeqCst);
        PrepareKey {
            id_map: plan::id_map_plan(host).0,
            base_mounts: Vec::new(),
            sources: Vec::new(),
        }
    }

    #[test]
    fn the_key_is_computed_again_when_the_facts_or_a_watched_folder_change() {
        let dir = std::env::temp_dir().join(format!("hutch-keycache-{}", std::process::id()));
        let etc = dir.join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        let cache = KeyCache::watching(vec![etc.clone()], counted);
        let settle = || {
            let long_ago = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
            std::fs::File::open(&etc)
                .unwrap()
                .set_modified(long_ago)
                .unwrap();
        };
        let host = host::gather(Vec::new(), dir.join("homes"));
        settle();
        assert!(cache.would_compute(&host), "nothing computed yet");
        let first = cache.get(&host);
        let computed = COMPUTED.load(Ordering::SeqCst);
        assert!(!cache.would_compute(&host));
        assert_eq!(cache.get(&host), first);
        assert_eq!(COMPUTED.load(Ordering::SeqCst), computed, "kept");
        // Other facts (another home, say): computed again.
        let mut moved = host.clone();
        moved.home = dir.join("elsewhere");
        assert!(cache.would_compute(&moved));
        // A file replaced in a watched folder by a rename (as resolvers replace resolv.conf).
        cache.get(&host);
        std::fs::write(etc.join("resolv.conf.new"), "nameserver 10.0.0.3\n").unwrap();
        std::fs::rename(etc.join("resolv.conf.new"), etc.join("resolv.conf")).unwrap();
        assert!(cache.would_compute(&host), "an entry replaced");
        cache.get(&host);
        assert!(
            cache.would_compute(&host),
            "a key made from a folder changed just now is not kept"
        );
        settle();
        cache.get(&host);
        assert!(!cache.would_compute(&host));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Where [`binding`]'s bind source lives (set by its test).
    static SOURCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

    fn binding(host: &HostFacts) -> PrepareKey {
        let mut key = counted(host);
        key.base_mounts.push(MountOp::Bind {
            source: SOURCE.get().unwrap().clone(),
            path: "/etc/resolv.conf".into(),
            access: Access::ReadOnly,
            dir: false,
            id: None,
            sockets: false,
            hide_sockets: false,
        });
        key
    }

    #[test]
    fn a_bind_source_replaced_in_its_own_folder_is_seen() {
        // /etc/resolv.conf as a symlink to systemd-resolved's file: the bind's source lives in
        // /run/systemd/resolve, which a rename there changes and /etc does not see.
        let dir = std::env::temp_dir().join(format!("hutch-keysource-{}", std::process::id()));
        let (etc, resolve) = (dir.join("etc"), dir.join("resolve"));
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::create_dir_all(&resolve).unwrap();
        let source = resolve.join("stub-resolv.conf");
        std::fs::write(&source, "nameserver 127.0.0.53\n").unwrap();
        SOURCE.set(source.clone()).unwrap();
        let cache = KeyCache::watching(vec![etc.clone()], binding);
        let long_ago = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        for folder in [&etc, &resolve] {
            std::fs::File::open(folder)
                .unwrap()
                .set_modified(long_ago)
                .unwrap();
        }
        let host = host::gather(Vec::new(), dir.join("homes"));
        cache.get(&host);
        assert!(!cache.would_compute(&host), "kept");
        std::fs::write(resolve.join("new"), "nameserver 10.0.0.1\n").unwrap();
        std::fs::rename(resolve.join("new"), &source).unwrap();
        assert!(cache.would_compute(&host), "the source was replaced");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_mount_is_seen_once() {
        // A shell in a mount namespace of its own mounts a tmpfs when told; its mount table
        // is watched the way the cache watches the helper's.
        use std::io::Write;
        let mut shell = std::process::Command::new("unshare")
            .args([
                "--user",
                "--map-root-user",
                "--mount",
                "--propagation",
                "private",
            ])
            .args([
                "sh",
                "-c",
                "read x && mount -t tmpfs hutch-test /mnt && sleep 10",
            ])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("run unshare (util-linux) to make a mount namespace");
        // Its mount table differs from ours once unshare has exec'd the shell.
        let ours = std::fs::read_link("/proc/self/ns/mnt").unwrap();
        let ns = format!("/proc/{}/ns/mnt", shell.id());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::read_link(&ns).ok().is_none_or(|n| n == ours) {
            // No user namespaces here (Hutch cannot run either): say so, and fail where
            // everything must work.
            if shell.try_wait().ok().flatten().is_some() {
                let why = "unshare could not make a user and mount namespace";
                assert!(std::env::var_os("HUTCH_MUST_WORK").is_none(), "{why}");
                eprintln!("skipped: {why}");
                return;
            }
            assert!(std::time::Instant::now() < deadline, "no mount namespace");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let mut cache = KeyCache::watching(Vec::new(), counted);
        cache.mounts = Some(std::fs::File::open(format!("/proc/{}/mounts", shell.id())).unwrap());
        assert!(!cache.mounts_changed(), "nothing mounted yet");
        shell.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !cache.mounts_changed() {
            assert!(
                std::time::Instant::now() < deadline,
                "the mount was not seen"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!cache.mounts_changed(), "seen once");
        let _ = shell.kill();
        let _ = shell.wait();
    }
}
