//! The mount calls the sandbox's root is built with, behind one narrow trait: [`Host`] makes
//! them (through `nix` and `crate::sys`), and, in unit tests, [`Recorder`] writes each down
//! with its arguments instead, so that the flags every [`MountOp`](crate::plan::MountOp) gets
//! are pinned without privileges.
//!
//! Only the calls that mount, unmount, pivot or change folder are here. Finding and making
//! the mount points (from the root's descriptor, one part at a time, never through a link) and
//! checking bind sources stay in `rootfs` and run for real in either case: tests run them in
//! a temporary folder.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};

use crate::plan::Access;

/// The mount calls `rootfs` makes.
pub(crate) trait Mounts {
    /// `mount(2)`.
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()>;

    /// `umount2(2)`.
    fn umount2(&self, target: &Path, flags: MntFlags) -> nix::Result<()>;

    /// `pivot_root(2)`.
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()>;

    /// Changes the working folder (of the whole process).
    fn chdir(&self, path: &Path) -> io::Result<()>;

    /// A detached copy of the mount tree at `source`, every mount beneath it included
    /// ([`crate::sys::clone_tree`]).
    fn clone_tree(&self, source: BorrowedFd<'_>) -> io::Result<OwnedFd>;

    /// Adds the `MOUNT_ATTR_*` flags `set` to every mount of `tree`
    /// ([`crate::sys::mount_set_flags`]).
    fn mount_set_flags(&self, tree: BorrowedFd<'_>, set: u64) -> io::Result<()>;

    /// Attaches the detached `tree` on `target` ([`crate::sys::attach_tree`]).
    fn attach_tree(&self, tree: BorrowedFd<'_>, target: BorrowedFd<'_>) -> io::Result<()>;

    /// Mount flags of `path` that a bind remount must keep (the kernel refuses to drop locked
    /// ones).
    fn kept_flags(&self, path: &Path) -> MsFlags;
}

/// Attaches a copy of the mount tree at `src` on `target`, with its flags set first.
pub(crate) fn attach(
    m: &impl Mounts,
    src: BorrowedFd<'_>,
    target: BorrowedFd<'_>,
    access: Access,
    device: bool,
) -> io::Result<()> {
    let tree = m.clone_tree(src)?;
    let mut flags = libc::MOUNT_ATTR_NOSUID;
    if !device {
        flags |= libc::MOUNT_ATTR_NODEV;
    }
    if access == Access::ReadOnly {
        flags |= libc::MOUNT_ATTR_RDONLY;
    }
    m.mount_set_flags(tree.as_fd(), flags)?;
    m.attach_tree(tree.as_fd(), target)
}

/// The real calls.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Host;

impl Mounts for Host {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> nix::Result<()> {
        nix::mount::umount2(target, flags)
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()> {
        nix::unistd::pivot_root(new_root, put_old)
    }

    fn chdir(&self, path: &Path) -> io::Result<()> {
        std::env::set_current_dir(path)
    }

    fn clone_tree(&self, source: BorrowedFd<'_>) -> io::Result<OwnedFd> {
        crate::sys::clone_tree(source)
    }

    fn mount_set_flags(&self, tree: BorrowedFd<'_>, set: u64) -> io::Result<()> {
        crate::sys::mount_set_flags(tree, set)
    }

    fn attach_tree(&self, tree: BorrowedFd<'_>, target: BorrowedFd<'_>) -> io::Result<()> {
        crate::sys::attach_tree(tree, target)
    }

    fn kept_flags(&self, path: &Path) -> MsFlags {
        use nix::sys::statvfs::{FsFlags, statvfs};
        let Ok(st) = statvfs(path) else {
            return MsFlags::empty();
        };
        let f = st.flags();
        let mut out = MsFlags::empty();
        for (fs_flag, ms_flag) in [
            (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if f.contains(fs_flag) {
                out |= ms_flag;
            }
        }
        out
    }
}

#[cfg(test)]
pub(crate) use record::{Call, Recorder};

#[cfg(test)]
mod record {
    use std::cell::RefCell;
    use std::os::fd::AsRawFd;
    use std::path::PathBuf;

    use nix::errno::Errno;

    use super::*;

    /// One call a [`Recorder`] was asked to make. Paths under the recorder's root are shown
    /// as seen inside (`/proc`), a descriptor or `/proc/self/fd/N` as the path it names.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) enum Call {
        Mount {
            source: Option<PathBuf>,
            target: PathBuf,
            fstype: Option<String>,
            flags: MsFlags,
            data: Option<String>,
        },
        Umount2 {
            target: PathBuf,
            flags: MntFlags,
        },
        PivotRoot {
            new_root: PathBuf,
            put_old: PathBuf,
        },
        Chdir(PathBuf),
        CloneTree(PathBuf),
        /// `mount_set_flags` on a tree cloned from the path shown.
        SetFlags {
            tree: PathBuf,
            set: u64,
        },
        /// `attach_tree` of a tree cloned from `tree` on `target`.
        AttachTree {
            tree: PathBuf,
            target: PathBuf,
        },
    }

    /// Writes every call down and makes none; a call `fails` picks fails with `EPERM`.
    pub(crate) struct Recorder {
        root: PathBuf,
        /// What [`Mounts::kept_flags`] answers: the flags a mount is locked with.
        pub kept: MsFlags,
        pub fails: fn(&Call) -> bool,
        calls: RefCell<Vec<Call>>,
    }

    impl Recorder {
        /// A recorder for a sandbox whose root is the host folder `root`.
        pub fn new(root: &Path) -> Self {
            Self {
                root: root.canonicalize().expect("the root exists"),
                kept: MsFlags::empty(),
                fails: |_| false,
                calls: RefCell::new(Vec::new()),
            }
        }

        pub fn calls(&self) -> Vec<Call> {
            self.calls.borrow().clone()
        }

        /// `path` as seen inside, when it is under the root.
        fn shown(&self, path: &Path) -> PathBuf {
            let path = if path.starts_with("/proc/self/fd") {
                std::fs::read_link(path).expect("an open descriptor")
            } else {
                path.to_owned()
            };
            match path.strip_prefix(&self.root) {
                Ok(rel) => Path::new("/").join(rel),
                Err(_) => path,
            }
        }

        fn fd(&self, fd: BorrowedFd<'_>) -> PathBuf {
            self.shown(Path::new(&format!("/proc/self/fd/{}", fd.as_raw_fd())))
        }

        fn record(&self, call: Call) -> Result<(), Errno> {
            let fails = (self.fails)(&call);
            self.calls.borrow_mut().push(call);
            if fails { Err(Errno::EPERM) } else { Ok(()) }
        }
    }

    impl Mounts for Recorder {
        fn mount(
            &self,
            source: Option<&Path>,
            target: &Path,
            fstype: Option<&str>,
            flags: MsFlags,
            data: Option<&str>,
        ) -> nix::Result<()> {
            self.record(Call::Mount {
                source: source.map(|s| self.shown(s)),
                target: self.shown(target),
                fstype: fstype.map(str::to_owned),
                flags,
                data: data.map(str::to_owned),
            })
        }

        fn umount2(&self, target: &Path, flags: MntFlags) -> nix::Result<()> {
            self.record(Call::Umount2 {
                target: target.to_owned(),
                flags,
            })
        }

        fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()> {
            self.record(Call::PivotRoot {
                new_root: new_root.to_owned(),
                put_old: put_old.to_owned(),
            })
        }

        fn chdir(&self, path: &Path) -> io::Result<()> {
            Ok(self.record(Call::Chdir(self.shown(path)))?)
        }

        fn clone_tree(&self, source: BorrowedFd<'_>) -> io::Result<OwnedFd> {
            self.record(Call::CloneTree(self.fd(source)))?;
            // The "tree" names what it was cloned from.
            source.try_clone_to_owned()
        }

        fn mount_set_flags(&self, tree: BorrowedFd<'_>, set: u64) -> io::Result<()> {
            Ok(self.record(Call::SetFlags {
                tree: self.fd(tree),
                set,
            })?)
        }

        fn attach_tree(&self, tree: BorrowedFd<'_>, target: BorrowedFd<'_>) -> io::Result<()> {
            Ok(self.record(Call::AttachTree {
                tree: self.fd(tree),
                target: self.fd(target),
            })?)
        }

        fn kept_flags(&self, _path: &Path) -> MsFlags {
            self.kept
        }
    }
}
