//! The mount calls each [`MountOp`] makes, and their flags, recorded instead of made: the
//! mount points and bind sources are found and checked for real, in a temporary folder.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;

use super::*;
use crate::sandbox::mounts::{Call, Recorder};

/// A temporary folder with `root` (the sandbox's root) and `host` (bind sources) in it.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let top = std::env::temp_dir().join(format!("hutch-rootfs-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&top);
        fs::create_dir_all(top.join("root")).unwrap();
        fs::create_dir_all(top.join("host")).unwrap();
        Self(top.canonicalize().unwrap())
    }

    fn root(&self) -> PathBuf {
        self.0.join("root")
    }

    /// `rel` under the root's host folder.
    fn at(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    fn host(&self, rel: &str) -> PathBuf {
        self.0.join("host").join(rel)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn apply_one(rec: &Recorder, root: &Path, op: &MountOp) -> Result<(), SetupError> {
    apply(rec, &Root::open(root)?, op)
}

fn mount(
    source: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Call {
    Call::Mount {
        source: source.map(PathBuf::from),
        target: target.into(),
        fstype: fstype.map(str::to_owned),
        flags,
        data: data.map(str::to_owned),
    }
}

/// The three calls of a bind of the host path `source` on `path` inside, with the
/// `MOUNT_ATTR_*` flags `set`.
fn bind_calls(source: &Path, path: &str, set: u64) -> Vec<Call> {
    vec![
        Call::CloneTree(source.to_owned()),
        Call::SetFlags {
            tree: source.to_owned(),
            set,
        },
        Call::AttachTree {
            tree: source.to_owned(),
            target: path.into(),
        },
    ]
}

fn id_of(path: &Path) -> FileId {
    let meta = fs::metadata(path).unwrap();
    FileId {
        dev: meta.dev(),
        ino: meta.ino(),
    }
}

fn bind_op(source: &Path, path: &str, access: Access, dir: bool) -> MountOp {
    MountOp::Bind {
        source: source.to_owned(),
        path: path.into(),
        access,
        dir,
        id: Some(id_of(source)),
        sockets: false,
        hide_sockets: false,
    }
}

const NOSUID: u64 = libc::MOUNT_ATTR_NOSUID;
const NODEV: u64 = libc::MOUNT_ATTR_NODEV;
const RDONLY: u64 = libc::MOUNT_ATTR_RDONLY;

#[test]
fn the_root_is_a_tmpfs_whose_mounts_do_not_reach_the_host() {
    let s = Scratch::new("prepare");
    let rec = Recorder::new(&s.root());
    prepare(&rec, &s.root(), &[]).unwrap();
    assert_eq!(
        rec.calls(),
        [
            // The host's own `/`, recursively a slave.
            mount(None, "/", None, MsFlags::MS_SLAVE | MsFlags::MS_REC, None),
            // The root (shown as `/`, where it is inside).
            mount(
                Some("tmpfs"),
                "/",
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some("mode=0755")
            ),
        ]
    );
}

#[test]
fn the_base_is_built_on_the_root() {
    let s = Scratch::new("prepare-base");
    let rec = Recorder::new(&s.root());
    let base = [MountOp::Tmpfs {
        path: "/tmp".into(),
        mode: 0o1777,
    }];
    prepare(&rec, &s.root(), &base).unwrap();
    assert_eq!(rec.calls().len(), 3);
    assert!(s.at("tmp").is_dir());
}

#[test]
fn a_tmpfs_is_nosuid_and_nodev_with_its_mode() {
    let s = Scratch::new("tmpfs");
    let rec = Recorder::new(&s.root());
    let op = MountOp::Tmpfs {
        path: "/run/user/1000".into(),
        mode: 0o700,
    };
    apply_one(&rec, &s.root(), &op).unwrap();
    assert_eq!(
        rec.calls(),
        [mount(
            Some("tmpfs"),
            "/run/user/1000",
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=700")
        )]
    );
    assert!(s.at("run/user/1000").is_dir());
}

#[test]
fn devpts_is_a_new_instance_nosuid_and_noexec() {
    let s = Scratch::new("devpts");
    let rec = Recorder::new(&s.root());
    let op = MountOp::Devpts {
        path: "/dev/pts".into(),
    };
    apply_one(&rec, &s.root(), &op).unwrap();
    assert_eq!(
        rec.calls(),
        [mount(
            Some("devpts"),
            "/dev/pts",
            Some("devpts"),
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=620")
        )]
    );
}

#[test]
fn proc_is_nosuid_nodev_noexec_its_knobs_read_only_and_host_files_masked() {
    let s = Scratch::new("proc");
    // What the sandbox's /proc would show (the recorder mounts nothing).
    fs::create_dir_all(s.at("proc/sys/kernel/random")).unwrap();
    fs::write(s.at("proc/sys/kernel/random/boot_id"), "host\n").unwrap();
    fs::create_dir_all(s.at("proc/acpi")).unwrap();
    fs::write(s.at("proc/cmdline"), "root=/dev/sda1\n").unwrap();
    let mut rec = Recorder::new(&s.root());
    // Flags the host's mounts are locked with: every read-only remount keeps them.
    let locked = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    rec.kept = locked;
    let op = MountOp::Proc {
        path: "/proc".into(),
    };
    apply_one(&rec, &s.root(), &op).unwrap();
    let read_only = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | locked;
    let masked = |knob: &str| {
        [
            mount(Some("/.hutch-masked"), knob, None, MsFlags::MS_BIND, None),
            mount(None, knob, None, read_only, None),
        ]
    };
    let mut want = vec![
        mount(
            Some("proc"),
            "/proc",
            Some("proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None,
        ),
        mount(
            Some("/proc/sys"),
            "/proc/sys",
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        ),
        mount(None, "/proc/sys", None, read_only, None),
        mount(
            Some("tmpfs"),
            "/proc/acpi",
            Some("tmpfs"),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("size=0,mode=555"),
        ),
    ];
    want.extend(masked("/proc/sys/kernel/random/boot_id"));
    want.extend(masked("/proc/cmdline"));
    assert_eq!(rec.calls(), want);
    // The masks' source is gone from the root.
    assert!(!s.at(".hutch-masked").exists());
}

#[test]
fn a_read_only_bind_is_read_only_nosuid_and_nodev() {
    let s = Scratch::new("bind-ro");
    let source = s.host("data");
    fs::create_dir(&source).unwrap();
    let rec = Recorder::new(&s.root());
    let op = bind_op(&source, "/srv/data", Access::ReadOnly, true);
    apply_one(&rec, &s.root(), &op).unwrap();
    assert_eq!(
        rec.calls(),
        bind_calls(&source, "/srv/data", RDONLY | NOSUID | NODEV)
    );
}

#[test]
fn a_read_write_bind_is_nosuid_and_nodev() {
    let s = Scratch::new("bind-rw");
    let source = s.host("notes.txt");
    fs::write(&source, "").unwrap();
    let rec = Recorder::new(&s.root());
    let op = bind_op(&source, "/home/alice/notes.txt", Access::ReadWrite, false);
    apply_one(&rec, &s.root(), &op).unwrap();
    assert_eq!(
        rec.calls(),
        bind_calls(&source, "/home/alice/notes.txt", NOSUID | NODEV)
    );
    // Its mount point is an empty file.
    assert!(s.at("home/alice/notes.txt").is_file());
}

#[test]
fn a_device_bind_is_nosuid_but_keeps_devices() {
    let s = Scratch::new("bind-dev");
    let source = s.host("null");
    fs::write(&source, "").unwrap();
    let rec = Recorder::new(&s.root());
    let op = bind_op(&source, "/dev/null", Access::ReadWrite, false);
    apply_one(&rec, &s.root(), &op).unwrap();
    assert_eq!(rec.calls(), bind_calls(&source, "/dev/null", NOSUID));
}

#[test]
fn a_bind_source_that_changed_is_refused_before_any_mount() {
    let s = Scratch::new("bind-changed");
    let source = s.host("data");
    fs::create_dir(&source).unwrap();
    let op = bind_op(&source, "/srv/data", Access::ReadOnly, true);
    fs::remove_dir(&source).unwrap();
    fs::write(&source, "").unwrap();
    let rec = Recorder::new(&s.root());
    let err = apply_one(&rec, &s.root(), &op).unwrap_err();
    assert_eq!(
        err.what,
        format!("open the bind source {}", source.display())
    );
    assert!(err.reason.contains("it is not what was checked"), "{err}");
    assert_eq!(rec.calls(), []);
}

#[test]
fn a_link_on_the_way_to_a_mount_point_is_refused_before_any_mount() {
    let s = Scratch::new("planted-link");
    fs::create_dir(s.host("elsewhere")).unwrap();
    std::os::unix::fs::symlink(s.host("elsewhere"), s.at("home")).unwrap();
    let rec = Recorder::new(&s.root());
    let op = MountOp::Tmpfs {
        path: "/home/alice".into(),
        mode: 0o700,
    };
    let err = apply_one(&rec, &s.root(), &op).unwrap_err();
    assert_eq!(err.what, "make the mount point /home/alice");
    assert!(
        err.reason
            .starts_with("/home is a symbolic link where a folder was expected"),
        "{err}"
    );
    assert_eq!(rec.calls(), []);
    assert!(!s.host("elsewhere/alice").exists());
}

#[test]
fn folders_files_and_links_are_made_without_mounts() {
    let s = Scratch::new("plain");
    let rec = Recorder::new(&s.root());
    for op in [
        MountOp::Dir {
            path: "/var/cache".into(),
            mode: 0o700,
        },
        MountOp::File {
            path: "/etc/hostname".into(),
            contents: "box\n".into(),
        },
        MountOp::Symlink {
            target: "usr/bin".into(),
            path: "/bin".into(),
        },
    ] {
        apply_one(&rec, &s.root(), &op).unwrap();
    }
    assert_eq!(rec.calls(), []);
    let mode = |p: &str| fs::metadata(s.at(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("var/cache"), 0o700);
    assert_eq!(mode("etc/hostname"), 0o644);
    assert_eq!(fs::read_to_string(s.at("etc/hostname")).unwrap(), "box\n");
    assert_eq!(fs::read_link(s.at("bin")).unwrap(), Path::new("usr/bin"));
}

/// The calls that pivot into the root and seal it.
fn enter_calls() -> Vec<Call> {
    vec![
        Call::Chdir("/".into()),
        Call::PivotRoot {
            new_root: ".".into(),
            put_old: ".".into(),
        },
        Call::Umount2 {
            target: ".".into(),
            flags: MntFlags::MNT_DETACH,
        },
        Call::Chdir("/".into()),
        mount(
            None,
            "/",
            None,
            MsFlags::MS_REMOUNT
                | MsFlags::MS_BIND
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV,
            None,
        ),
    ]
}

#[test]
fn entering_pivots_detaches_the_old_root_and_seals_the_root_read_only() {
    let s = Scratch::new("enter");
    let rec = Recorder::new(&s.root());
    let notes = finish_and_enter(&rec, &s.root(), &[]).unwrap();
    assert!(notes.is_empty());
    assert_eq!(rec.calls(), enter_calls());
}

#[test]
fn sockets_in_a_share_are_hidden_under_a_read_only_file() {
    let s = Scratch::new("hide");
    let source = s.host("share");
    fs::create_dir(&source).unwrap();
    // What the share shows once bound (the recorder binds nothing).
    fs::create_dir_all(s.at("share")).unwrap();
    let _listener = UnixListener::bind(s.at("share/agent.sock")).unwrap();
    let mut op = bind_op(&source, "/share", Access::ReadWrite, true);
    if let MountOp::Bind { hide_sockets, .. } = &mut op {
        *hide_sockets = true;
    }
    let rec = Recorder::new(&s.root());
    let notes = finish_and_enter(&rec, &s.root(), &[op]).unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    let mut want = bind_calls(&source, "/share", NOSUID | NODEV);
    let empty = Path::new("/").join(EMPTY);
    want.extend(bind_calls(
        &empty,
        "/share/agent.sock",
        RDONLY | NOSUID | NODEV,
    ));
    want.extend(enter_calls());
    assert_eq!(rec.calls(), want);
    assert!(!s.at(EMPTY).exists());
}

#[test]
fn a_failed_mount_names_the_file_system_and_where() {
    let s = Scratch::new("fail-tmpfs");
    let mut rec = Recorder::new(&s.root());
    rec.fails = |call| matches!(call, Call::Mount { fstype: Some(t), .. } if t == "tmpfs");
    let op = MountOp::Tmpfs {
        path: "/tmp".into(),
        mode: 0o1777,
    };
    let err = apply_one(&rec, &s.root(), &op).unwrap_err();
    assert_eq!(
        err.to_string(),
        "mount tmpfs on /tmp: EPERM: Operation not permitted"
    );
}

#[test]
fn a_failed_bind_names_the_source_and_where_and_stops() {
    let s = Scratch::new("fail-bind");
    let source = s.host("data");
    fs::create_dir(&source).unwrap();
    let mut rec = Recorder::new(&s.root());
    rec.fails = |call| matches!(call, Call::SetFlags { .. });
    let op = bind_op(&source, "/srv/data", Access::ReadOnly, true);
    let err = apply_one(&rec, &s.root(), &op).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "bind {} on /srv/data: Operation not permitted (os error 1)",
            source.display()
        )
    );
    // Nothing is attached after the failure.
    assert_eq!(
        rec.calls(),
        bind_calls(&source, "/srv/data", RDONLY | NOSUID | NODEV)[..2]
    );
}

#[test]
fn a_failed_pivot_stops_before_the_old_root_is_detached() {
    let s = Scratch::new("fail-pivot");
    let mut rec = Recorder::new(&s.root());
    rec.fails = |call| matches!(call, Call::PivotRoot { .. });
    let err = finish_and_enter(&rec, &s.root(), &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "pivot_root(., .): EPERM: Operation not permitted"
    );
    assert_eq!(rec.calls(), enter_calls()[..2]);
}
