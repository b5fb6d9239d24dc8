//! Landlock, a second fence on file access: the app may touch only the places its root was
//! built from, each as the mount allows, however its mounts came to be. Derived from the
//! sandbox's mount list, so nothing mounted is left out and nothing else is let in.
//!
//! Structural folders (`/`, `/dev`, `/run`, `/var`, `/run/user`) hold other mounts and get no
//! rule of their own beyond listing: the app cannot create files in `/dev` or `/run` even
//! though those are writable tmpfs mounts, only in the folders granted inside them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Access, MountOp};

/// What a rule grants beneath its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsAccess {
    /// List folders (and nothing else).
    List,
    /// Read, list and execute.
    Read,
    /// Everything: read, write, create, remove, execute, device ioctls.
    ReadWrite,
    /// A device node or the terminal folder: read, write, ioctls.
    Device,
    /// The sandbox's /proc: read and write its files (the kernel checks the rest).
    Proc,
}

/// One Landlock rule: `access` beneath `path` (inside the sandbox).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsRule {
    pub path: PathBuf,
    pub access: FsAccess,
    /// Whether Unix sockets beneath may be connected to (where the kernel's Landlock controls
    /// that, ABI 9): the sandbox's own folders, desktop sockets, shares that say `sockets`.
    /// Rights add up down the tree, so a share inside the home gets what the home allows.
    #[serde(default)]
    pub sockets: bool,
}

/// Folders that only hold other mounts.
const STRUCTURAL: &[&str] = &["/", "/dev", "/run", "/var", "/run/user"];

/// The rules for a root built from `mounts` (in order; a later rule for the same path wins).
pub fn rules<'a>(mounts: impl IntoIterator<Item = &'a MountOp>) -> Vec<FsRule> {
    let mut out = vec![FsRule {
        path: "/".into(),
        access: FsAccess::List,
        sockets: false,
    }];
    let structural = |p: &Path| STRUCTURAL.iter().any(|s| Path::new(s) == p);
    for op in mounts {
        let (path, access, sockets) = match op {
            MountOp::Bind { path, access, .. } if path.starts_with("/dev") => (
                path,
                match access {
                    Access::ReadOnly => FsAccess::Read,
                    Access::ReadWrite => FsAccess::Device,
                },
                false,
            ),
            MountOp::Bind {
                path,
                access,
                sockets,
                ..
            } => (
                path,
                match access {
                    Access::ReadOnly => FsAccess::Read,
                    Access::ReadWrite => FsAccess::ReadWrite,
                },
                *sockets,
            ),
            // The sandbox's own folders: sockets there are its own.
            MountOp::Tmpfs { path, .. } if !structural(path) => (path, FsAccess::ReadWrite, true),
            MountOp::Dir { path, .. } if path == Path::new("/etc") => (path, FsAccess::Read, false),
            MountOp::Dir { path, .. } if !structural(path) => (path, FsAccess::ReadWrite, true),
            MountOp::Proc { path } => (path, FsAccess::Proc, false),
            MountOp::Devpts { path } => (path, FsAccess::Device, false),
            // Generated files sit in /etc; symlinks reach their targets' rules; a hidden
            // socket is an empty file in a share that has its rule.
            _ => continue,
        };
        out.retain(|r| r.path != *path);
        out.push(FsRule {
            path: path.clone(),
            access,
            sockets,
        });
    }
    // Landlock grants a rule's rights to everything beneath it, and rights only add up down
    // the tree: a rule beneath one that grants as much already is redundant (each costs a
    // path lookup when applied). Mounts still make what is beneath read-only where they are.
    let covered = |rule: &FsRule, out: &[FsRule]| {
        out.iter().any(|other| {
            other.path != rule.path
                && rule.path.starts_with(&other.path)
                && other.access.includes(rule.access)
                && (other.sockets || !rule.sockets)
        })
    };
    let kept: Vec<FsRule> = out.iter().filter(|r| !covered(r, &out)).cloned().collect();
    kept
}

impl FsAccess {
    /// Whether this grants at least what `other` does.
    fn includes(self, other: Self) -> bool {
        use FsAccess::*;
        match (self, other) {
            (a, b) if a == b => true,
            (ReadWrite, _) => true,
            (_, List) => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(path: &str, access: Access) -> MountOp {
        MountOp::Bind {
            source: path.into(),
            path: path.into(),
            access,
            dir: true,
            id: None,
            sockets: false,
            hide_sockets: false,
        }
    }

    #[test]
    fn each_mount_gets_what_it_allows_and_structural_folders_nothing() {
        let mounts = vec![
            bind("/usr", Access::ReadOnly),
            MountOp::Dir {
                path: "/etc".into(),
                mode: 0o755,
            },
            MountOp::Proc {
                path: "/proc".into(),
            },
            MountOp::Tmpfs {
                path: "/dev".into(),
                mode: 0o755,
            },
            bind("/dev/null", Access::ReadWrite),
            MountOp::Devpts {
                path: "/dev/pts".into(),
            },
            MountOp::Tmpfs {
                path: "/tmp".into(),
                mode: 0o1777,
            },
            MountOp::Tmpfs {
                path: "/run".into(),
                mode: 0o755,
            },
            MountOp::Dir {
                path: "/run/user".into(),
                mode: 0o755,
            },
            MountOp::Dir {
                path: "/run/user/1000".into(),
                mode: 0o700,
            },
            MountOp::Tmpfs {
                path: "/home/u".into(),
                mode: 0o700,
            },
            bind("/home/u/Documents", Access::ReadOnly),
            bind("/home/u/Downloads", Access::ReadWrite),
            bind("/etc/ssl", Access::ReadOnly),
            MountOp::File {
                path: "/etc/hostname".into(),
                contents: "x\n".into(),
            },
        ];
        let got: Vec<(String, FsAccess)> = rules(&mounts)
            .into_iter()
            .map(|r| (r.path.display().to_string(), r.access))
            .collect();
        let want = [
            ("/", FsAccess::List),
            ("/usr", FsAccess::Read),
            ("/etc", FsAccess::Read),
            ("/proc", FsAccess::Proc),
            ("/dev/null", FsAccess::Device),
            ("/dev/pts", FsAccess::Device),
            ("/tmp", FsAccess::ReadWrite),
            ("/run/user/1000", FsAccess::ReadWrite),
            // The shares in the home are beneath its rule, which grants as much already (the
            // read-only one stays read-only by its mount).
            ("/home/u", FsAccess::ReadWrite),
        ];
        assert_eq!(
            got,
            want.iter()
                .map(|(p, a)| (p.to_string(), *a))
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn sockets_may_be_reached_in_own_folders_and_in_shares_that_say_so() {
    let share = |path: &str, access, sockets| MountOp::Bind {
        source: path.into(),
        path: path.into(),
        access,
        dir: true,
        id: None,
        sockets,
        hide_sockets: false,
    };
    let mounts = vec![
        share("/usr", Access::ReadOnly, false),
        MountOp::Tmpfs {
            path: "/tmp".into(),
            mode: 0o1777,
        },
        share("/srv/data", Access::ReadWrite, false),
        share("/srv/agent", Access::ReadOnly, true),
        MountOp::Tmpfs {
            path: "/home/u".into(),
            mode: 0o700,
        },
        share("/home/u/agent", Access::ReadOnly, true),
        share("/home/u/Documents", Access::ReadWrite, false),
    ];
    let got: Vec<(String, bool)> = rules(&mounts)
        .into_iter()
        .map(|r| (r.path.display().to_string(), r.sockets))
        .collect();
    assert_eq!(
        got,
        [
            ("/", false),
            ("/usr", false),
            ("/tmp", true),
            ("/srv/data", false),
            ("/srv/agent", true),
            // Beneath the home, which allows sockets already (its own), a share gets what
            // the home allows: rights only add up down the tree.
            ("/home/u", true),
        ]
        .map(|(p, s)| (p.to_owned(), s))
    );
}
