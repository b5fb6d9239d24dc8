//! What a running sandbox is made of, read from the live system (`hutch inspect`).

use serde::{Deserialize, Serialize};

use crate::network::NetworkInfo;

/// How the sandbox's uid/gid maps were written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdMapKind {
    /// `newuidmap`/`newgidmap` with the user's /etc/subuid and /etc/subgid ranges.
    SubordinateRange,
    /// Only the user's own uid and gid (no subordinate range).
    SingleId,
}

/// One namespace of the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    /// `user`, `mnt`, `pid`, `ipc`, `uts`, `net`, `cgroup`.
    pub kind: String,
    pub inode: u64,
    /// False when it is the host's (the helper's) own.
    pub new: bool,
    /// What it means for the app, in plain words.
    pub note: String,
}

/// One mount seen inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub path: String,
    pub fs_type: String,
    /// For a bind of a host folder: the host path (as the kernel names it).
    pub source: String,
    pub read_only: bool,
    /// A host file or folder made visible inside (not a fresh tmpfs, proc or devpts).
    pub from_host: bool,
}

/// The sandbox's cgroup and its limit files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupAnatomy {
    pub path: String,
    /// (file, value) for memory.max, memory.high, memory.swap.max, cpu.max, cpu.weight,
    /// pids.max, io.weight, memory.oom.group and the current usage files.
    pub files: Vec<(String, String)>,
}

/// Process-level confinement of the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Security {
    /// 0 off, 1 strict, 2 filter.
    pub seccomp_mode: u32,
    pub seccomp_filters: u32,
    pub no_new_privs: bool,
    pub cap_effective: String,
    pub cap_permitted: String,
    pub cap_bounding: String,
    pub cap_ambient: String,
    pub landlock: String,
    /// Whether the app may make user namespaces, and why.
    #[serde(default)]
    pub user_namespaces: String,
}

/// Everything `hutch inspect` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anatomy {
    pub id: String,
    /// Host pid of the process described (the app).
    pub pid: u32,
    pub namespaces: Vec<Namespace>,
    pub id_map: IdMapKind,
    /// uid_map and gid_map lines as the kernel shows them: inside, outside, count.
    pub uid_map: Vec<[u64; 3]>,
    pub gid_map: Vec<[u64; 3]>,
    pub mounts: Vec<Mount>,
    pub cgroup: Option<CgroupAnatomy>,
    pub network: NetworkInfo,
    /// Addresses on the sandbox's interfaces (`lo` included).
    pub addresses: Vec<String>,
    /// Routes inside: "default via 10.0.2.2 dev tap0" and the like.
    pub routes: Vec<String>,
    pub security: Security,
}

/// What each namespace means for the app.
pub fn namespace_note(kind: &str, new: bool) -> String {
    if !new {
        return format!("{kind} namespace: shared with the host");
    }
    match kind {
        "user" => "user namespace: its ids (and root) mean nothing on the host",
        "mnt" => "mount namespace: it sees only the files put in its root",
        "pid" => "pid namespace: the app sees only its own processes",
        "ipc" => "ipc namespace: no shared memory or queues with the host",
        "uts" => "uts namespace: its own host name",
        "net" => "network namespace: its own interfaces; the host's are invisible",
        "cgroup" => "cgroup namespace: it sees only its own cgroup",
        other => return format!("{other} namespace: its own"),
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_say_what_each_namespace_means() {
        assert!(namespace_note("pid", true).contains("only its own processes"));
        assert!(namespace_note("net", false).contains("shared with the host"));
    }
}
