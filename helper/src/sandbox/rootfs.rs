//! Builds the sandbox's root from the plan's mount list, then pivots into it.
//!
//! Runs in the sandbox's pid 1, inside its new user and mount namespaces, after the id maps are
//! written. The root is a tmpfs mounted on the plan's host folder; it is visible only in the
//! sandbox's mount namespace, and sealed read-only after the pivot.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::statvfs::{FsFlags, statvfs};

use super::SetupError;
use crate::plan::{Access, MountOp, SandboxPlan};

/// Host paths under /proc that stay read-only inside (kernel knobs), as bubblewrap does.
const PROC_READ_ONLY: &[&str] = &["sys", "sysrq-trigger", "irq", "bus"];

fn inside(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

fn mount_err(what: String) -> impl FnOnce(nix::errno::Errno) -> SetupError {
    move |e| SetupError::new(what, e)
}

fn do_mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), SetupError> {
    mount(source, target, fstype, flags, data).map_err(mount_err(format!(
        "mount {} on {} ({}{flags:?})",
        source
            .map(|s| s.display().to_string())
            .unwrap_or_else(|| "-".into()),
        target.display(),
        fstype.map(|t| format!("{t}, ")).unwrap_or_default(),
    )))
}

fn mkdir_p(path: &Path) -> Result<(), SetupError> {
    fs::create_dir_all(path)
        .map_err(|e| SetupError::io(format!("create folder {}", path.display()), e))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), SetupError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| SetupError::io(format!("chmod {mode:o} {}", path.display()), e))
}

/// Mount flags of `path` that a bind remount must keep (the kernel refuses to drop locked ones).
fn kept_flags(path: &Path) -> MsFlags {
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

fn bind(
    root: &Path,
    source: &Path,
    path: &Path,
    access: Access,
    dir: bool,
) -> Result<(), SetupError> {
    let target = inside(root, path);
    if dir {
        mkdir_p(&target)?;
    } else {
        if let Some(parent) = target.parent() {
            mkdir_p(parent)?;
        }
        if fs::symlink_metadata(&target).is_err() {
            fs::File::create(&target).map_err(|e| {
                SetupError::io(format!("create mount point {}", target.display()), e)
            })?;
        }
    }
    do_mount(
        Some(source),
        &target,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    let is_device = path.starts_with("/dev");
    let mut flags =
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | kept_flags(&target) | MsFlags::MS_NOSUID;
    if !is_device {
        flags |= MsFlags::MS_NODEV;
    }
    if access == Access::ReadOnly {
        flags |= MsFlags::MS_RDONLY;
    }
    do_mount(None, &target, None, flags, None)
}

/// The host's boot id (`/proc/sys/kernel/random/boot_id`) identifies the machine's current
/// boot to anything that reads it: the sandbox's /proc shows a random one of its own instead,
/// read-only, the same for all its processes.
fn mask_boot_id(proc_dir: &Path) -> Result<(), SetupError> {
    let knob = proc_dir.join("sys/kernel/random/boot_id");
    if fs::symlink_metadata(&knob).is_err() {
        return Ok(());
    }
    let mut bytes = [0u8; 16];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(|e| SetupError::io("read /dev/urandom".into(), e))?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // a version 4 UUID
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let uuid = format!(
        "{}-{}-{}-{}-{}\n",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    );
    // The source lives in the sandbox's root tmpfs only until it is mounted.
    let source = proc_dir.parent().unwrap_or(proc_dir).join(".hutch-boot-id");
    fs::write(&source, uuid)
        .map_err(|e| SetupError::io(format!("write {}", source.display()), e))?;
    do_mount(Some(&source), &knob, None, MsFlags::MS_BIND, None)?;
    let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | kept_flags(&knob);
    do_mount(None, &knob, None, flags, None)?;
    fs::remove_file(&source).map_err(|e| SetupError::io(format!("remove {}", source.display()), e))
}

fn apply(root: &Path, op: &MountOp) -> Result<(), SetupError> {
    match op {
        MountOp::Dir { path, mode } => {
            let target = inside(root, path);
            mkdir_p(&target)?;
            set_mode(&target, *mode)
        }
        MountOp::Symlink { target, path } => {
            let link = inside(root, path);
            if let Some(parent) = link.parent() {
                mkdir_p(parent)?;
            }
            std::os::unix::fs::symlink(target, &link).map_err(|e| {
                SetupError::io(
                    format!("symlink {} -> {}", link.display(), target.display()),
                    e,
                )
            })
        }
        MountOp::Tmpfs { path, mode } => {
            let target = inside(root, path);
            mkdir_p(&target)?;
            let data = format!("mode={mode:o}");
            do_mount(
                Some(Path::new("tmpfs")),
                &target,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some(&data),
            )
        }
        MountOp::Bind {
            source,
            path,
            access,
            dir,
        } => bind(root, source, path, *access, *dir),
        MountOp::File { path, contents } => {
            let target = inside(root, path);
            if let Some(parent) = target.parent() {
                mkdir_p(parent)?;
            }
            fs::write(&target, contents)
                .map_err(|e| SetupError::io(format!("write {}", target.display()), e))?;
            set_mode(&target, 0o644)
        }
        MountOp::Proc { path } => {
            let target = inside(root, path);
            mkdir_p(&target)?;
            do_mount(
                Some(Path::new("proc")),
                &target,
                Some("proc"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None,
            )?;
            for sub in PROC_READ_ONLY {
                let knob = target.join(sub);
                if fs::symlink_metadata(&knob).is_ok() {
                    do_mount(
                        Some(&knob),
                        &knob,
                        None,
                        MsFlags::MS_BIND | MsFlags::MS_REC,
                        None,
                    )?;
                    let flags = MsFlags::MS_REMOUNT
                        | MsFlags::MS_BIND
                        | MsFlags::MS_RDONLY
                        | kept_flags(&knob);
                    do_mount(None, &knob, None, flags, None)?;
                }
            }
            mask_boot_id(&target)
        }
        MountOp::Devpts { path } => {
            let target = inside(root, path);
            mkdir_p(&target)?;
            do_mount(
                Some(Path::new("devpts")),
                &target,
                Some("devpts"),
                MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
                Some("newinstance,ptmxmode=0666,mode=620"),
            )
        }
    }
}

/// Step 1, ahead of the plan: a tmpfs on `root` and the host-only base of the root.
pub fn prepare(root: &Path, base: &[MountOp]) -> Result<(), SetupError> {
    // Our mounts must not propagate back to the host; host unmounts may still reach us.
    do_mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None,
    )?;
    do_mount(
        Some(Path::new("tmpfs")),
        root,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )?;
    for op in base {
        apply(root, op)?;
    }
    Ok(())
}

/// Step 2: the plan's own mounts on top, then pivot into the root and seal it read-only.
pub fn finish_and_enter(plan: &SandboxPlan) -> Result<(), SetupError> {
    let root = &plan.root;
    for op in &plan.mounts {
        apply(root, op)?;
    }
    std::env::set_current_dir(root)
        .map_err(|e| SetupError::io(format!("chdir {}", root.display()), e))?;
    // pivot_root(".", "."): the old root ends up stacked under the new one; detach it.
    nix::unistd::pivot_root(".", ".").map_err(mount_err("pivot_root(., .)".into()))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(mount_err("detach the old root".into()))?;
    std::env::set_current_dir("/").map_err(|e| SetupError::io("chdir /".into(), e))?;
    do_mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REMOUNT
            | MsFlags::MS_BIND
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV,
        None,
    )
}
