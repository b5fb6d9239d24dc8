//! Builds the sandbox's root from the plan's mount list, then pivots into it.
//!
//! Runs in the sandbox's pid 1, inside its new user and mount namespaces, after the id maps are
//! written. The root is a tmpfs mounted on the plan's host folder; it is visible only in the
//! sandbox's mount namespace, and sealed read-only after the pivot.

use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open, openat};
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, fchmod, fstat, mkdirat};
use nix::unistd::symlinkat;

use super::mounts::{Mounts, attach};
use super::{SetupError, sockets};
use crate::plan::host;
use crate::plan::source::FileId;
use crate::plan::{Access, MountOp};

#[cfg(test)]
mod tests;

/// Host paths under /proc that stay read-only inside (kernel knobs), as bubblewrap does.
const PROC_READ_ONLY: &[&str] = &["sys", "sysrq-trigger", "irq", "bus"];

fn inside(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

fn mount_err(what: String) -> impl FnOnce(nix::errno::Errno) -> SetupError {
    move |e| SetupError::new(what, e)
}

fn do_mount(
    m: &impl Mounts,
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), SetupError> {
    // The message is made only when the mount failed: this runs for every mount of a launch.
    m.mount(source, target, fstype, flags, data).map_err(|e| {
        let what = format!(
            "mount {} on {} ({}{flags:?})",
            source
                .map(|s| s.display().to_string())
                .unwrap_or_else(|| "-".into()),
            target.display(),
            fstype.map(|t| format!("{t}, ")).unwrap_or_default(),
        );
        SetupError::new(what, e)
    })
}

/// The sandbox's root folder, open: every mount target is found from it, one part at a
/// time, never through a link.
struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// What a mount target must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// A folder, made (with this mode) when missing.
    Dir(u32),
    /// A file, made empty when missing; anything but a folder or link is kept (a device, a
    /// socket to bind over).
    File,
}

fn kind_name(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFLNK => "a symbolic link",
        libc::S_IFDIR => "a folder",
        libc::S_IFREG => "a file",
        libc::S_IFSOCK => "a socket",
        _ => "a special file",
    }
}

impl Root {
    fn open(path: &Path) -> Result<Self, SetupError> {
        let fd = open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| SetupError::new(format!("open the root {}", path.display()), e))?;
        Ok(Self {
            fd,
            path: path.to_owned(),
        })
    }

    /// Opens (`O_PATH`) the part `name` of the folder `dir`, without following it; `None` when
    /// it does not exist.
    fn step(dir: &OwnedFd, name: &std::ffi::OsStr) -> nix::Result<Option<(OwnedFd, u32)>> {
        match openat(
            dir,
            name,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => {
                let mode = fstat(&fd)?.st_mode;
                Ok(Some((fd, mode)))
            }
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The mount target `path` (as seen inside), opened `O_PATH` and made when missing: every
    /// part of it is looked up in the folder before it without following links, so a link
    /// anywhere on the way (one an app planted in a kept home or a shared folder) refuses the
    /// launch instead of leading the mount, or the folder made for it, out of the sandbox.
    fn target(&self, path: &Path, want: Want) -> Result<OwnedFd, SetupError> {
        let shown = || path.display().to_string();
        let fail = |e: Errno| SetupError::new(format!("make the mount point {}", shown()), e);
        let parts: Vec<&std::ffi::OsStr> = path
            .components()
            .map(|c| match c {
                Component::Normal(n) => Ok(n),
                Component::RootDir => Ok(std::ffi::OsStr::new("")),
                _ => Err(SetupError::new(
                    format!("make the mount point {}", shown()),
                    "the path is not plain (it has `.` or `..`)",
                )),
            })
            .filter(|p| !matches!(p, Ok(n) if n.is_empty()))
            .collect::<Result<_, _>>()?;
        let Some((last, folders)) = parts.split_last() else {
            return self
                .fd
                .try_clone()
                .map_err(|e| fail(Errno::from_raw(e.raw_os_error().unwrap_or(0))));
        };
        let mut dir = self
            .fd
            .try_clone()
            .map_err(|e| fail(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
        let mut walked = PathBuf::from("/");
        let refuse_kind = |at: &Path, mode: u32, wanted: &str| {
            SetupError::new(
                format!("make the mount point {}", shown()),
                format!(
                    "{} is {} where {wanted} was expected: a link or file planted there (by an \
                     app, in a kept home or a shared folder) could lead the mount out of the \
                     sandbox, so the launch is refused",
                    at.display(),
                    kind_name(mode)
                ),
            )
        };
        for name in folders {
            walked.push(name);
            let found = match Self::step(&dir, name).map_err(fail)? {
                Some(found) => found,
                None => {
                    match mkdirat(&dir, *name, Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(fail(e)),
                    }
                    Self::step(&dir, name)
                        .map_err(fail)?
                        .ok_or_else(|| fail(Errno::ENOENT))?
                }
            };
            if found.1 & libc::S_IFMT != libc::S_IFDIR {
                return Err(refuse_kind(&walked, found.1, "a folder"));
            }
            dir = found.0;
        }
        walked.push(last);
        let found = match Self::step(&dir, last).map_err(fail)? {
            Some(found) => found,
            None => {
                match want {
                    Want::Dir(mode) => match mkdirat(&dir, *last, Mode::from_bits_truncate(mode)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(fail(e)),
                    },
                    Want::File => match openat(
                        &dir,
                        *last,
                        OFlag::O_CREAT
                            | OFlag::O_EXCL
                            | OFlag::O_WRONLY
                            | OFlag::O_NOFOLLOW
                            | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(0o644),
                    ) {
                        Ok(_) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(fail(e)),
                    },
                }
                Self::step(&dir, last)
                    .map_err(fail)?
                    .ok_or_else(|| fail(Errno::ENOENT))?
            }
        };
        let kind = found.1 & libc::S_IFMT;
        match want {
            Want::Dir(_) if kind != libc::S_IFDIR => Err(refuse_kind(&walked, found.1, "a folder")),
            Want::File if kind == libc::S_IFDIR || kind == libc::S_IFLNK => {
                Err(refuse_kind(&walked, found.1, "a file"))
            }
            _ => Ok(found.0),
        }
    }

    /// What is at `path` inside now, opened `O_PATH`, with its mode; `None` when it is
    /// missing or a link is on the way (nothing is made, nothing followed).
    fn find(&self, path: &Path) -> nix::Result<Option<(OwnedFd, u32)>> {
        let mut cur = (
            self.fd.try_clone().map_err(|_| Errno::EBADF)?,
            libc::S_IFDIR,
        );
        for part in path.components() {
            let Component::Normal(name) = part else {
                continue;
            };
            if cur.1 & libc::S_IFMT != libc::S_IFDIR {
                return Ok(None);
            }
            match Self::step(&cur.0, name)? {
                Some(next) => cur = next,
                None => return Ok(None),
            }
        }
        Ok(Some(cur))
    }

    /// The parent folder of `path` (made when missing) and `path`'s last part.
    fn parent_of<'a>(&self, path: &'a Path) -> Result<(OwnedFd, &'a std::ffi::OsStr), SetupError> {
        let name = path.file_name().ok_or_else(|| {
            SetupError::new(
                format!("make {}", path.display()),
                "the path has no last part",
            )
        })?;
        let parent = self.target(path.parent().unwrap_or(Path::new("/")), Want::Dir(0o755))?;
        Ok((parent, name))
    }

    /// The host path of an open target, for the mount calls that take a path.
    fn host_path(fd: &OwnedFd) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
    }
}

/// Opens the host file `source` for a bind, without following any link in its path, and
/// checks it is still the file the plan checked (`id`; a folder of Hutch's own when `None`).
fn open_source(source: &Path, id: Option<FileId>, dir: bool) -> Result<OwnedFd, SetupError> {
    let what = || format!("open the bind source {}", source.display());
    let fd = host::open_no_links(source).map_err(|e| match e {
        Errno::ELOOP | Errno::EXDEV => SetupError::new(
            what(),
            "a symbolic link is on its way now: it changed since it was checked, and the \
             launch is refused",
        ),
        e => SetupError::new(what(), e),
    })?;
    let st = fstat(&fd).map_err(|e| SetupError::new(what(), e))?;
    // Where it really is (also for kernels without openat2, where only the last part was
    // opened without following a link).
    let now = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|e| SetupError::io(what(), e))?;
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    let same = match id {
        Some(id) => id.dev == st.st_dev && id.ino == st.st_ino,
        None => true,
    };
    if now != source || !same || is_dir != dir {
        return Err(SetupError::new(
            what(),
            format!(
                "it is not what was checked when the launch was planned (now {} at {}): it was \
                 replaced or moved since, and the launch is refused",
                kind_name(st.st_mode),
                now.display()
            ),
        ));
    }
    Ok(fd)
}

/// Binds the host file or folder `source` (checked, see [`open_source`]) on `path` inside: a
/// copy of its mount tree is made from the descriptor, made read-only (when asked), `nosuid`
/// and (but for devices) `nodev` throughout, then attached on a target found without following
/// links.
fn bind(
    m: &impl Mounts,
    root: &Root,
    source: &Path,
    path: &Path,
    access: Access,
    dir: bool,
    id: Option<FileId>,
) -> Result<(), SetupError> {
    let what = || format!("bind {} on {}", source.display(), path.display());
    let src = open_source(source, id, dir)?;
    let target = root.target(path, if dir { Want::Dir(0o755) } else { Want::File })?;
    attach(
        m,
        src.as_fd(),
        target.as_fd(),
        access,
        path.starts_with("/dev"),
    )
    .map_err(|e| SetupError::io(what(), e))
}

/// A random version 4 UUID, as the kernel formats boot ids.
fn random_uuid() -> Result<String, SetupError> {
    let mut bytes = [0u8; 16];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(|e| SetupError::io("read /dev/urandom".into(), e))?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // a version 4 UUID
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}\n",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// Files of the sandbox's /proc that identify the host or show what is not the sandbox's, and
/// what the sandbox reads instead: the boot id (`/proc/sys/kernel/random/boot_id`, a random
/// one per sandbox), the kernel's command line (root device, boot image, options), and, empty,
/// what container runtimes mask too: the user's keyrings (`keys`), kernel memory (`kcore`) and
/// the kernel's timers and scheduler state. The boot time and uptime come from the sandbox's
/// time namespace instead (see `init`).
fn masked_proc_files() -> Result<Vec<(&'static str, String)>, SetupError> {
    let mut files = vec![
        ("sys/kernel/random/boot_id", random_uuid()?),
        ("cmdline", "\n".to_owned()),
    ];
    for empty in [
        "keys",
        "kcore",
        "timer_list",
        "sched_debug",
        "latency_stats",
    ] {
        files.push((empty, String::new()));
    }
    Ok(files)
}

/// Folders of /proc about the host's hardware, shown empty (as container runtimes do).
const MASKED_PROC_DIRS: &[&str] = &["acpi", "scsi", "asound"];

/// Binds a generated read-only file over each of [`masked_proc_files`] in the sandbox's /proc,
/// and an empty read-only tmpfs over each of [`MASKED_PROC_DIRS`].
fn mask_proc(m: &impl Mounts, proc_dir: &Path) -> Result<(), SetupError> {
    for rel in MASKED_PROC_DIRS {
        let dir = proc_dir.join(rel);
        if fs::symlink_metadata(&dir).is_ok_and(|meta| meta.is_dir()) {
            do_mount(
                m,
                Some(Path::new("tmpfs")),
                &dir,
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("size=0,mode=555"),
            )?;
        }
    }
    for (rel, contents) in masked_proc_files()? {
        let knob = proc_dir.join(rel);
        if fs::symlink_metadata(&knob).is_err() {
            continue;
        }
        // The source lives in the sandbox's root tmpfs only until it is mounted.
        let source = proc_dir.parent().unwrap_or(proc_dir).join(".hutch-masked");
        fs::write(&source, contents)
            .map_err(|e| SetupError::io(format!("write {}", source.display()), e))?;
        do_mount(m, Some(&source), &knob, None, MsFlags::MS_BIND, None)?;
        let flags =
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | m.kept_flags(&knob);
        do_mount(m, None, &knob, None, flags, None)?;
        fs::remove_file(&source)
            .map_err(|e| SetupError::io(format!("remove {}", source.display()), e))?;
    }
    Ok(())
}

/// Mounts a fresh file system on the target `path` inside (found without following links).
fn mount_fs(
    m: &impl Mounts,
    root: &Root,
    path: &Path,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<PathBuf, SetupError> {
    let target = root.target(path, Want::Dir(0o755))?;
    do_mount(
        m,
        Some(Path::new(fstype)),
        &Root::host_path(&target),
        Some(fstype),
        flags,
        data,
    )
    .map_err(|e| SetupError::new(format!("mount {fstype} on {}", path.display()), e.reason))?;
    Ok(inside(&root.path, path))
}

fn apply(m: &impl Mounts, root: &Root, op: &MountOp) -> Result<(), SetupError> {
    match op {
        MountOp::Dir { path, mode } => {
            root.target(path, Want::Dir(*mode))?;
            // mkdir's mode passes the umask: set it as asked, on the folder just checked.
            let (parent, name) = root.parent_of(path)?;
            let dir = openat(
                &parent,
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| SetupError::new(format!("open {}", path.display()), e))?;
            fchmod(&dir, Mode::from_bits_truncate(*mode))
                .map_err(|e| SetupError::new(format!("chmod {mode:o} {}", path.display()), e))
        }
        MountOp::Symlink { target, path } => {
            let (parent, name) = root.parent_of(path)?;
            symlinkat(target.as_path(), &parent, name).map_err(|e| {
                SetupError::new(
                    format!("symlink {} -> {}", path.display(), target.display()),
                    e,
                )
            })
        }
        MountOp::Tmpfs { path, mode } => {
            let data = format!("mode={mode:o}");
            mount_fs(
                m,
                root,
                path,
                "tmpfs",
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some(&data),
            )
            .map(drop)
        }
        MountOp::Bind {
            source,
            path,
            access,
            dir,
            id,
            ..
        } => bind(m, root, source, path, *access, *dir, *id),
        MountOp::File { path, contents } => {
            let (parent, name) = root.parent_of(path)?;
            let file = openat(
                &parent,
                name,
                OFlag::O_CREAT
                    | OFlag::O_TRUNC
                    | OFlag::O_WRONLY
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            )
            .map_err(|e| SetupError::new(format!("write {}", path.display()), e))?;
            let mut file = fs::File::from(file);
            std::io::Write::write_all(&mut file, contents.as_bytes())
                .map_err(|e| SetupError::io(format!("write {}", path.display()), e))?;
            fchmod(&file, Mode::from_bits_truncate(0o644))
                .map_err(|e| SetupError::new(format!("chmod 644 {}", path.display()), e))
        }
        MountOp::Proc { path } => {
            let target = mount_fs(
                m,
                root,
                path,
                "proc",
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None,
            )?;
            for sub in PROC_READ_ONLY {
                let knob = target.join(sub);
                if fs::symlink_metadata(&knob).is_ok() {
                    do_mount(
                        m,
                        Some(&knob),
                        &knob,
                        None,
                        MsFlags::MS_BIND | MsFlags::MS_REC,
                        None,
                    )?;
                    let flags = MsFlags::MS_REMOUNT
                        | MsFlags::MS_BIND
                        | MsFlags::MS_RDONLY
                        | m.kept_flags(&knob);
                    do_mount(m, None, &knob, None, flags, None)?;
                }
            }
            mask_proc(m, &target)
        }
        MountOp::Devpts { path } => mount_fs(
            m,
            root,
            path,
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=620"),
        )
        .map(drop),
    }
}

/// The empty file sockets are hidden under, on the root's tmpfs (removed by [`remove_empty`]
/// once every mount is made: an unlinked file cannot be bound).
const EMPTY: &str = ".hutch-hidden-socket";

fn empty_file(root: &Root) -> Result<OwnedFd, SetupError> {
    let name = EMPTY;
    let what = || format!("make {}", inside(&root.path, Path::new(name)).display());
    let file = openat(
        &root.fd,
        name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o444),
    )
    .map_err(|e| SetupError::new(what(), e))?;
    drop(file);
    let fd = openat(
        &root.fd,
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SetupError::new(what(), e))?;
    Ok(fd)
}

/// Removes the file [`empty_file`] made (the mounts of it stay).
fn remove_empty(root: &Root) -> Result<(), SetupError> {
    nix::unistd::unlinkat(&root.fd, EMPTY, nix::unistd::UnlinkatFlags::NoRemoveDir)
        .map_err(|e| SetupError::new(format!("remove {EMPTY} from the root"), e))
}

/// Step 1, ahead of the plan: a tmpfs on `root` and the host-only base of the root.
pub fn prepare(m: &impl Mounts, root: &Path, base: &[MountOp]) -> Result<(), SetupError> {
    // Our mounts must not propagate back to the host; host unmounts may still reach us.
    do_mount(
        m,
        None,
        Path::new("/"),
        None,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None,
    )?;
    do_mount(
        m,
        Some(Path::new("tmpfs")),
        root,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )?;
    let opened = Root::open(root)?;
    for op in base {
        apply(m, &opened, op)?;
    }
    Ok(())
}

/// Hides the sockets of every bind that asks for it (shared folders), once every mount is
/// made; returns what the launch is told.
fn hide_sockets(
    m: &impl Mounts,
    root: &Root,
    mounts: &[MountOp],
) -> Result<Vec<String>, SetupError> {
    let shares: Vec<&Path> = mounts
        .iter()
        .filter_map(|op| match op {
            MountOp::Bind {
                path,
                hide_sockets: true,
                ..
            } => Some(path.as_path()),
            _ => None,
        })
        .collect();
    if shares.is_empty() {
        return Ok(Vec::new());
    }
    let empty = empty_file(root)?;
    let notes = (|| {
        let mut hider = sockets::Hider::new(m, &empty)?;
        for at in shares {
            let what = || format!("open the share {} to look for sockets", at.display());
            let Some((top, _)) = root.find(at).map_err(|e| SetupError::new(what(), e))? else {
                return Err(SetupError::new(what(), "it is not there"));
            };
            let dir = openat(
                &top,
                ".",
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| SetupError::new(what(), e))?;
            hider.share(at, dir)?;
        }
        hider.settle()?;
        Ok(hider.notes())
    })();
    drop(empty);
    remove_empty(root)?;
    notes
}

/// Step 2: the plan's own `mounts` on top of the root `root`, then pivot into the root and
/// seal it read-only. Returns what the launch is told (the sockets hidden).
pub fn finish_and_enter(
    m: &impl Mounts,
    root: &Path,
    mounts: &[MountOp],
) -> Result<Vec<String>, SetupError> {
    let opened = Root::open(root)?;
    for op in mounts {
        apply(m, &opened, op)?;
    }
    let notes = hide_sockets(m, &opened, mounts)?;
    drop(opened);
    m.chdir(root)
        .map_err(|e| SetupError::io(format!("chdir {}", root.display()), e))?;
    // pivot_root(".", "."): the old root ends up stacked under the new one; detach it.
    m.pivot_root(Path::new("."), Path::new("."))
        .map_err(mount_err("pivot_root(., .)".into()))?;
    m.umount2(Path::new("."), MntFlags::MNT_DETACH)
        .map_err(mount_err("detach the old root".into()))?;
    m.chdir(Path::new("/"))
        .map_err(|e| SetupError::io("chdir /".into(), e))?;
    do_mount(
        m,
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REMOUNT
            | MsFlags::MS_BIND
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV,
        None,
    )?;
    Ok(notes)
}
