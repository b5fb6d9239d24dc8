use std::collections::{BTreeMap, HashMap};

use hutch_core::network::{NetBackend, NetworkMode, PortForward};
use hutch_core::profile::{DisplayMode, Share};
use hutch_core::protocol::ShareSpec;

use super::*;

/// A made-up host file system: path -> entry (links resolved as the real one does).
struct FakeFs(HashMap<PathBuf, Entry>);

/// The made-up identity of the file at `real`.
fn fake_id(real: &Path) -> FileId {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    real.hash(&mut h);
    FileId {
        dev: 42,
        ino: h.finish(),
    }
}

impl FakeFs {
    fn debian() -> Self {
        let mut m = HashMap::new();
        for d in [
            "/usr",
            "/opt",
            "/etc/ssl",
            "/etc/fonts",
            "/home/alice",
            "/home/alice/Documents",
            "/home/alice/.config/hutch",
            "/srv/data",
            "/run/user/1000/hutch",
        ] {
            m.insert(PathBuf::from(d), Entry::Dir);
        }
        for (l, t) in [
            ("/bin", "usr/bin"),
            ("/lib", "usr/lib"),
            ("/lib64", "usr/lib64"),
            ("/sbin", "usr/sbin"),
            ("/etc/localtime", "/usr/share/zoneinfo/Etc/UTC"),
            ("/etc/resolv.conf", "/run/systemd/resolve/stub-resolv.conf"),
            ("/etc/host.conf", "/run/conf/host.conf"),
        ] {
            m.insert(PathBuf::from(l), Entry::Symlink(PathBuf::from(t)));
        }
        for f in [
            "/etc/ld.so.cache",
            "/etc/nsswitch.conf",
            "/run/systemd/resolve/stub-resolv.conf",
            "/run/conf/host.conf",
            "/dev/null",
            "/dev/zero",
            "/dev/urandom",
            "/home/alice/notes.txt",
            "/etc/passwd",
            "/usr/bin/true",
        ] {
            m.insert(PathBuf::from(f), Entry::File);
        }
        m.insert(PathBuf::from("/run/user/1000/bus"), Entry::Other);
        Self(m)
    }

    fn with(mut self, path: &str, entry: Entry) -> Self {
        self.0.insert(PathBuf::from(path), entry);
        self
    }

    /// The real path of `path`: every link on the way resolved.
    fn real(&self, path: &Path) -> Option<PathBuf> {
        let mut out = PathBuf::from("/");
        let mut hops = 0;
        let mut parts: Vec<PathBuf> = path
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(n) => Some(PathBuf::from(n)),
                _ => None,
            })
            .rev()
            .collect();
        while let Some(part) = parts.pop() {
            let next = out.join(&part);
            match self.0.get(&next) {
                Some(Entry::Symlink(t)) => {
                    hops += 1;
                    if hops > 40 {
                        return None;
                    }
                    let target = if t.is_absolute() {
                        out = PathBuf::from("/");
                        t.clone()
                    } else {
                        t.clone()
                    };
                    for c in target.components().rev() {
                        match c {
                            std::path::Component::Normal(n) => parts.push(PathBuf::from(n)),
                            std::path::Component::ParentDir => parts.push(PathBuf::from("..")),
                            _ => {}
                        }
                    }
                }
                _ if part == Path::new("..") => {
                    out.pop();
                }
                Some(_) => out = next,
                // A folder that holds known entries exists too.
                None if self.0.keys().any(|k| k.starts_with(&next)) => out = next,
                None => return None,
            }
        }
        Some(out)
    }
}

impl HostFs for FakeFs {
    fn entry(&self, path: &Path) -> Option<Entry> {
        self.0.get(path).cloned()
    }
    fn resolved(&self, path: &Path) -> Option<Entry> {
        match self.0.get(path)? {
            Entry::Symlink(t) => {
                let target = if t.is_absolute() {
                    t.clone()
                } else {
                    path.parent()?.join(t)
                };
                self.resolved(&target)
            }
            other => Some(other.clone()),
        }
    }
    fn check(&self, path: &Path) -> Result<Checked, Unchecked> {
        let real = self.real(path).ok_or(Unchecked::Missing)?;
        let kind = match self.0.get(&real) {
            Some(Entry::Symlink(_)) => unreachable!("resolved"),
            Some(e) => e.clone(),
            None => Entry::Dir,
        };
        Ok(Checked {
            id: fake_id(&real),
            path: real,
            kind,
        })
    }
}

fn alice() -> HostFacts {
    HostFacts::alice()
}

fn request(command: &[&str]) -> RunRequest {
    RunRequest {
        profile: None,
        command: command.iter().map(|s| s.to_string()).collect(),
        shares: vec![],
        home: None,
        env: BTreeMap::new(),
        cwd: None,
        stdio: Stdio::Inherit,
        net: None,
        net_backend: None,
        allow_host_loopback: false,
        publish: vec![],
        limits: Default::default(),
        display: None,
        audio: false,
        gpu: false,
        bound_to_caller: false,
    }
}

/// The machine id the tests' profile has.
const MACHINE_ID: &str = "5f0c3c9e2a7b4d1e8f6a0b1c2d3e4f50";

fn chosen() -> Chosen<'static> {
    Chosen {
        id: "x",
        root: Path::new("/r"),
        machine_id: MACHINE_ID,
    }
}

fn plan(profile: &Profile, req: &RunRequest) -> Result<SandboxPlan, PlanError> {
    build(
        Chosen {
            id: "ab12cd34",
            root: Path::new("/run/user/1000/hutch/sandboxes/ab12cd34/root"),
            machine_id: MACHINE_ID,
        },
        profile,
        req,
        &alice(),
        base_mounts(&alice(), &FakeFs::debian()),
        &FakeFs::debian(),
    )
}

/// A plan for another host (a changed `alice()`).
fn plan_fs(profile: &Profile, req: &RunRequest, fs: &FakeFs) -> Result<SandboxPlan, PlanError> {
    build(
        chosen(),
        profile,
        req,
        &alice(),
        base_mounts(&alice(), fs),
        fs,
    )
}

fn plan_on(
    host: &HostFacts,
    profile: &Profile,
    req: &RunRequest,
) -> Result<SandboxPlan, PlanError> {
    let fs = FakeFs::debian();
    build(chosen(), profile, req, host, base_mounts(host, &fs), &fs)
}

fn find<'a>(plan: &'a SandboxPlan, path: &str) -> Vec<&'a MountOp> {
    plan.base_mounts
        .iter()
        .chain(&plan.mounts)
        .filter(|op| match op {
            MountOp::Dir { path: p, .. }
            | MountOp::Symlink { path: p, .. }
            | MountOp::Tmpfs { path: p, .. }
            | MountOp::Bind { path: p, .. }
            | MountOp::File { path: p, .. }
            | MountOp::Proc { path: p }
            | MountOp::Devpts { path: p } => p == Path::new(path),
        })
        .collect()
}

#[test]
fn system_folders_are_read_only_and_links_are_recreated() {
    let p = plan(&Profile::builtin_default(), &request(&["true"])).unwrap();
    assert_eq!(
        find(&p, "/usr"),
        [&MountOp::Bind {
            source: "/usr".into(),
            path: "/usr".into(),
            access: Access::ReadOnly,
            dir: true,
            id: Some(fake_id(Path::new("/usr"))),
            sockets: false,
            hide_sockets: false,
        }]
    );
    assert_eq!(
        find(&p, "/bin"),
        [&MountOp::Symlink {
            target: "usr/bin".into(),
            path: "/bin".into()
        }]
    );
    assert!(
        find(&p, "/lib32").is_empty(),
        "absent host folders are skipped"
    );
    // Every bind of a system path is read-only; only device nodes and the home are writable.
    for op in p.base_mounts.iter().chain(&p.mounts) {
        if let MountOp::Bind {
            path,
            access: Access::ReadWrite,
            ..
        } = op
        {
            assert!(path.starts_with("/dev"), "{path:?} is writable");
        }
    }
}

#[test]
fn host_secrets_in_etc_are_never_bound() {
    let mut fs = FakeFs::debian();
    for secret in [
        "/etc/shadow",
        "/etc/gshadow",
        "/etc/sudoers",
        "/etc/machine-id",
        "/etc/subuid",
        "/etc/ssh/ssh_host_ed25519_key",
        "/etc/NetworkManager/system-connections/home.nmconnection",
        "/etc/wpa_supplicant/wpa_supplicant.conf",
    ] {
        fs = fs.with(secret, Entry::File);
    }
    for desktop in ["/etc/chromium.d", "/etc/xdg", "/etc/gtk-3.0"] {
        fs = fs.with(desktop, Entry::Dir);
    }
    let p = plan_fs(&Profile::builtin_default(), &request(&["true"]), &fs).unwrap();
    let bound: Vec<&Path> = p
        .base_mounts
        .iter()
        .chain(&p.mounts)
        .filter_map(|op| match op {
            MountOp::Bind { source, .. } => Some(source.as_path()),
            _ => None,
        })
        .collect();
    for secret in [
        "shadow",
        "gshadow",
        "sudoers",
        "machine-id",
        "subuid",
        "ssh",
        "NetworkManager",
        "wpa_supplicant",
    ] {
        assert!(
            !bound
                .iter()
                .any(|b| b.starts_with(Path::new("/etc").join(secret))),
            "{secret}: {bound:?}"
        );
    }
    for desktop in ["chromium.d", "xdg", "gtk-3.0"] {
        assert!(
            bound.contains(&Path::new("/etc").join(desktop).as_path()),
            "{desktop}: {bound:?}"
        );
    }
}

#[test]
fn etc_is_generated_or_bound_read_only() {
    let p = plan(&Profile::builtin_default(), &request(&["true"])).unwrap();
    let [MountOp::File { contents, .. }] = find(&p, "/etc/passwd")[..] else {
        panic!()
    };
    assert!(
        contents.contains("alice:x:1000:1000:alice:/home/alice:/bin/bash"),
        "{contents}"
    );
    assert_eq!(
        contents.lines().count(),
        3,
        "only root, the user and nobody: {contents}"
    );
    let [MountOp::File { contents, .. }] = find(&p, "/etc/hosts")[..] else {
        panic!()
    };
    assert!(contents.contains("127.0.1.1\thutch-default"));
    assert_eq!(
        find(&p, "/etc/localtime"),
        [&MountOp::Symlink {
            target: "/usr/share/zoneinfo/Etc/UTC".into(),
            path: "/etc/localtime".into()
        }]
    );
    // A link out of /usr is bound (following the link), not recreated.
    assert!(matches!(
        find(&p, "/etc/host.conf")[..],
        [MountOp::Bind {
            access: Access::ReadOnly,
            dir: false,
            ..
        }]
    ));
    assert!(matches!(
        find(&p, "/etc/ssl")[..],
        [MountOp::Bind { dir: true, .. }]
    ));
}

#[test]
fn the_app_has_its_profiles_machine_id_never_the_hosts() {
    let p = plan(&Profile::builtin_default(), &request(&["true"])).unwrap();
    assert_eq!(
        find(&p, "/etc/machine-id"),
        [&MountOp::File {
            path: "/etc/machine-id".into(),
            contents: format!("{MACHINE_ID}\n"),
        }]
    );
    assert_eq!(
        find(&p, "/var/lib/dbus/machine-id"),
        [&MountOp::Symlink {
            target: "/etc/machine-id".into(),
            path: "/var/lib/dbus/machine-id".into(),
        }]
    );
    assert!(
        !p.base_mounts
            .iter()
            .chain(&p.mounts)
            .any(|op| matches!(op, MountOp::Bind { source, .. } if source.ends_with("machine-id"))),
        "the host's machine id is never bound"
    );
}

#[test]
fn proc_dev_tmp_and_throwaway_home() {
    let p = plan(&Profile::builtin_default(), &request(&["true"])).unwrap();
    assert_eq!(
        find(&p, "/proc"),
        [&MountOp::Proc {
            path: "/proc".into()
        }]
    );
    assert_eq!(
        find(&p, "/dev/pts"),
        [&MountOp::Devpts {
            path: "/dev/pts".into()
        }]
    );
    assert!(matches!(
        find(&p, "/dev/null")[..],
        [MountOp::Bind { dir: false, .. }]
    ));
    assert!(find(&p, "/dev/sda").is_empty());
    assert_eq!(
        find(&p, "/tmp"),
        [&MountOp::Tmpfs {
            path: "/tmp".into(),
            mode: 0o1777
        }]
    );
    assert_eq!(
        find(&p, "/home/alice"),
        [&MountOp::Tmpfs {
            path: "/home/alice".into(),
            mode: 0o700
        }]
    );
    assert_eq!(p.cwd, Path::new("/home/alice"));
    assert!(p.prepare_dirs.is_empty());
}

#[test]
fn persistent_home_binds_the_apps_folder() {
    let mut req = request(&["true"]);
    req.home = Some(HomeMode::Persist);
    let mut profile = Profile::builtin_default();
    profile.name = "editor".into();
    let p = plan(&profile, &req).unwrap();
    let dir = PathBuf::from("/home/alice/.local/share/hutch/homes/editor");
    assert_eq!(
        find(&p, "/home/alice"),
        [&MountOp::Bind {
            source: dir.clone(),
            path: "/home/alice".into(),
            access: Access::ReadWrite,
            dir: true,
            id: None,
            sockets: true,
            hide_sockets: false,
        }]
    );
    assert_eq!(p.prepare_dirs, [dir]);
}

#[test]
fn shares_land_after_the_home_and_set_the_working_folder() {
    let mut profile = Profile::builtin_default();
    profile.shares.push(Share {
        path: "~/Documents".into(),
        mode: ShareMode::ReadWrite,
        sockets: false,
    });
    let mut req = request(&["ls"]);
    req.shares
        .push(ShareSpec::new("/srv/data", ShareMode::ReadOnly));
    req.shares
        .push(ShareSpec::new("/home/alice/notes.txt", ShareMode::ReadOnly));
    req.cwd = Some("/home/alice/Documents".into());
    let p = plan(&profile, &req).unwrap();
    let pos = |path: &str| {
        p.mounts
            .iter()
            .position(|op| find(&p, path).contains(&op))
            .unwrap()
    };
    assert!(pos("/home/alice") < pos("/home/alice/Documents"));
    assert!(matches!(
        find(&p, "/home/alice/Documents")[..],
        [MountOp::Bind {
            access: Access::ReadWrite,
            dir: true,
            ..
        }]
    ));
    assert!(matches!(
        find(&p, "/srv/data")[..],
        [MountOp::Bind {
            access: Access::ReadOnly,
            ..
        }]
    ));
    assert!(matches!(
        find(&p, "/home/alice/notes.txt")[..],
        [MountOp::Bind { dir: false, .. }]
    ));
    assert_eq!(p.cwd, Path::new("/home/alice/Documents"));
}

#[test]
fn a_read_only_share_of_a_system_file_needs_no_mount_of_its_own() {
    let share = |mode| ShareSpec::new("/usr/bin/true", mode);
    let mut req = request(&["/usr/bin/true"]);
    req.shares.push(share(ShareMode::ReadOnly));
    let p = plan(&Profile::builtin_default(), &req).unwrap();
    // /usr is bound read-only in every sandbox: the program in it is visible already.
    assert!(find(&p, "/usr/bin/true").is_empty(), "{:?}", p.mounts);
    // Read-write is more than the base gives: that stays a mount of its own.
    req.shares = vec![share(ShareMode::ReadWrite)];
    let p = plan(&Profile::builtin_default(), &req).unwrap();
    assert!(matches!(
        find(&p, "/usr/bin/true")[..],
        [MountOp::Bind {
            access: Access::ReadWrite,
            ..
        }]
    ));
}

#[test]
fn bad_shares_are_refused_before_anything_starts() {
    let profile = Profile::builtin_default();
    let with = |path: &str| {
        let mut req = request(&["true"]);
        req.shares.push(ShareSpec::new(path, ShareMode::ReadOnly));
        plan(&profile, &req).unwrap_err()
    };
    assert_eq!(
        with("/nonexistent"),
        PlanError::ShareMissing("/nonexistent".into())
    );
    assert!(
        with("/nonexistent")
            .to_string()
            .contains("/nonexistent does not exist")
    );
    assert_eq!(
        with("/run/user/1000/bus"),
        PlanError::ShareNotShareable("/run/user/1000/bus".into())
    );
    assert!(matches!(
        with("/home/alice"),
        PlanError::ShareForbidden { .. }
    ));
    assert!(matches!(
        with("/home/alice/.config/hutch"),
        PlanError::ShareForbidden { .. }
    ));
    assert!(matches!(with("/etc"), PlanError::ShareInvalid(_)));
}

#[test]
fn a_share_is_checked_and_bound_by_what_it_really_is() {
    // Links to the host system, to Hutch's folders and to the runtime folder are refused with
    // the rule and where the link led; the path as typed would pass.
    let fs = FakeFs::debian()
        .with("/home/alice/procl", Entry::Symlink("/proc".into()))
        .with("/home/alice/sysl", Entry::Symlink("../../sys".into()))
        .with("/home/alice/devl", Entry::Symlink("/dev".into()))
        .with(
            "/home/alice/run",
            Entry::Symlink("/run/user/1000/hutch".into()),
        )
        .with(
            "/home/alice/cfg",
            Entry::Symlink("/home/alice/.config".into()),
        )
        .with("/home/alice/rt", Entry::Symlink("/run/user/1000".into()))
        .with("/proc/1", Entry::Dir)
        .with("/sys/class", Entry::Dir)
        .with("/dev/null", Entry::File);
    let with = |path: &str| {
        let mut req = request(&["true"]);
        req.shares.push(ShareSpec::new(path, ShareMode::ReadOnly));
        plan_fs(&Profile::builtin_default(), &req, &fs)
    };
    for (link, rule, real) in [
        ("/home/alice/procl", "host's /proc", "/proc"),
        ("/home/alice/sysl", "host's /sys", "/sys"),
        ("/home/alice/devl", "host's /dev", "/dev"),
        (
            "/home/alice/run",
            "Hutch's own files",
            "/run/user/1000/hutch",
        ),
        (
            "/home/alice/cfg",
            "Hutch's own files",
            "/home/alice/.config",
        ),
        ("/home/alice/rt", "runtime folder", "/run/user/1000"),
    ] {
        let err = with(link).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, PlanError::ShareForbidden { .. }),
            "{link}: {err:?}"
        );
        assert!(text.contains(rule), "{link}: {text}");
        assert!(
            text.contains(&format!("{link} leads to {real}")),
            "{link}: {text}"
        );
    }
    // A link to an ordinary folder is mounted at the path given, from its real path, with the
    // identity it had when the plan looked.
    let fs = FakeFs::debian().with("/home/alice/docs", Entry::Symlink("Documents".into()));
    let mut req = request(&["true"]);
    req.shares
        .push(ShareSpec::new("/home/alice/docs", ShareMode::ReadWrite));
    let p = plan_fs(&Profile::builtin_default(), &req, &fs).unwrap();
    assert_eq!(
        find(&p, "/home/alice/docs"),
        [&MountOp::Bind {
            source: "/home/alice/Documents".into(),
            path: "/home/alice/docs".into(),
            access: Access::ReadWrite,
            dir: true,
            id: Some(fake_id(Path::new("/home/alice/Documents"))),
            sockets: false,
            hide_sockets: true,
        }]
    );
    // Every bind of the plan names its source by its real path and carries its identity, but
    // the kept home Hutch makes itself.
    for op in p.base_mounts.iter().chain(&p.mounts) {
        if let MountOp::Bind { source, id, .. } = op {
            assert_eq!(*id, Some(fake_id(source)), "{op:?}");
        }
    }
}

#[test]
fn sockets_in_a_shared_folder_are_hidden_and_socket_folders_need_to_be_asked_for() {
    let fs = FakeFs::debian()
        .with("/tmp", Entry::Dir)
        .with("/tmp/hp-tmux", Entry::Dir)
        .with("/tmp/.X11-unix", Entry::Dir)
        .with("/home/alice/.ssh", Entry::Dir);
    let hides = |p: &SandboxPlan, at: &str| {
        p.mounts.iter().any(|op| {
            matches!(op, MountOp::Bind { path, hide_sockets: true, sockets: false, .. }
                if path == Path::new(at))
        })
    };
    let mut req = request(&["true"]);
    req.shares
        .push(ShareSpec::new("/tmp/hp-tmux", ShareMode::ReadOnly));
    req.shares
        .push(ShareSpec::new("/home/alice/notes.txt", ShareMode::ReadOnly));
    let p = plan_fs(&Profile::builtin_default(), &req, &fs).unwrap();
    // A shared folder's sockets are hidden (by pid 1, on the mount); a file has none.
    assert!(hides(&p, "/tmp/hp-tmux"), "{:?}", p.mounts);
    assert!(matches!(
        find(&p, "/home/alice/notes.txt")[..],
        [MountOp::Bind {
            hide_sockets: false,
            ..
        }]
    ));
    // Asked for in so many words: bound with its sockets, and said so.
    req.shares[0].sockets = true;
    let p = plan_fs(&Profile::builtin_default(), &req, &fs).unwrap();
    assert!(matches!(
        find(&p, "/tmp/hp-tmux")[..],
        [MountOp::Bind {
            hide_sockets: false,
            sockets: true,
            ..
        }]
    ));
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("with its Unix sockets"))
    );
    // Folders known to hold the session's sockets are refused unless asked for.
    for folder in ["/tmp", "/tmp/.X11-unix", "/home/alice/.ssh"] {
        let mut req = request(&["true"]);
        req.shares.push(ShareSpec::new(folder, ShareMode::ReadOnly));
        let err = plan_fs(&Profile::builtin_default(), &req, &fs).unwrap_err();
        assert!(
            matches!(err, PlanError::ShareSocketFolder { .. }),
            "{folder}: {err:?}"
        );
        assert!(err.to_string().contains(",sockets"), "{err}");
        req.shares[0].sockets = true;
        let p = plan_fs(&Profile::builtin_default(), &req, &fs).unwrap();
        // The display's sockets (in /tmp/.X11-unix) warn as the X11 display does.
        assert_eq!(
            p.warnings.iter().any(|w| w.contains("every keystroke")),
            folder.starts_with("/tmp"),
            "{folder}: {:?}",
            p.warnings
        );
    }
    // A file in such a folder is no socket: it is shared as any file.
    let fs = fs.with("/home/alice/.ssh/config", Entry::File);
    let mut req = request(&["true"]);
    req.shares.push(ShareSpec::new(
        "/home/alice/.ssh/config",
        ShareMode::ReadOnly,
    ));
    plan_fs(&Profile::builtin_default(), &req, &fs).unwrap();
}

#[test]
fn the_users_look_is_shared_only_as_itself_never_through_a_link() {
    let mut req = request(&["app"]);
    session_env(&mut req);
    req.display = Some(DisplayMode::Wayland);
    // A program with the home shared read-write made settings.ini a link to a private key,
    // and .fonts a link to .ssh: neither is bound, and the launch says why.
    let fs = desktop_fs()
        .with("/home/alice/.ssh", Entry::Dir)
        .with("/home/alice/.ssh/id_ed25519", Entry::File)
        .with(
            "/home/alice/.config/gtk-3.0/settings.ini",
            Entry::Symlink("/home/alice/.ssh/id_ed25519".into()),
        )
        .with("/home/alice/.fonts", Entry::Symlink(".ssh".into()))
        .with("/home/alice/.themes", Entry::File);
    let p = desktop_plan(&Profile::builtin_default(), &req, &fs).unwrap();
    for look in [
        "/home/alice/.config/gtk-3.0/settings.ini",
        "/home/alice/.fonts",
        "/home/alice/.themes",
    ] {
        assert!(find(&p, look).is_empty(), "{look} bound: {:?}", p.mounts);
        assert!(
            p.warnings
                .iter()
                .any(|w| w.starts_with(&format!("{look} was not shared"))),
            "{look}: {:?}",
            p.warnings
        );
    }
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("it is a link to /home/alice/.ssh/id_ed25519"))
    );
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("/home/alice/.themes") && w.contains("not a folder"))
    );
    // The real font folder is bound read-only, its sockets hidden.
    assert!(matches!(
        find(&p, "/home/alice/.local/share/fonts")[..],
        [MountOp::Bind {
            access: Access::ReadOnly,
            hide_sockets: true,
            sockets: false,
            ..
        }]
    ));
}

#[test]
fn a_program_named_through_a_system_link_needs_no_mount_either() {
    let mut req = request(&["/bin/true"]);
    req.shares
        .push(ShareSpec::new("/bin/true", ShareMode::ReadOnly));
    let p = plan(&Profile::builtin_default(), &req).unwrap();
    assert!(find(&p, "/bin/true").is_empty(), "{:?}", p.mounts);
}

#[test]
fn command_comes_from_request_or_profile() {
    let mut profile = Profile::builtin_default();
    assert!(matches!(
        plan(&profile, &request(&[])),
        Err(PlanError::NoCommand { .. })
    ));
    profile.command = vec!["vim".into()];
    assert_eq!(plan(&profile, &request(&[])).unwrap().argv, ["vim"]);
    assert_eq!(
        plan(&profile, &request(&["ls", "-l"])).unwrap().argv,
        ["ls", "-l"]
    );
    assert_eq!(
        plan(&profile, &request(&[""])),
        Err(PlanError::EmptyProgram)
    );
}

#[test]
fn id_map_uses_the_range_or_falls_back_with_a_warning() {
    let p = plan(&Profile::builtin_default(), &request(&["true"])).unwrap();
    assert_eq!(p.id_map.kind, IdMapKind::SubordinateRange);
    assert!(p.id_map.uid_lines.contains(&MapLine {
        inside: 1000,
        outside: 1000,
        count: 1
    }));
    assert!(p.id_map.uid_lines.contains(&MapLine {
        inside: 0,
        outside: 100000,
        count: 1000
    }));
    assert!(p.warnings.is_empty());

    let mut host = alice();
    host.subuids.clear();
    let p = plan_on(&host, &Profile::builtin_default(), &request(&["true"])).unwrap();
    assert_eq!(p.id_map.kind, IdMapKind::SingleId);
    assert_eq!(
        p.id_map.uid_lines,
        [MapLine {
            inside: 1000,
            outside: 1000,
            count: 1
        }]
    );
    assert!(
        p.warnings[0].contains("usermod --add-subuids"),
        "{:?}",
        p.warnings
    );

    host.newuidmap = None;
    let p = plan_on(&host, &Profile::builtin_default(), &request(&["true"])).unwrap();
    assert!(p.warnings[0].contains("uidmap"), "{:?}", p.warnings);
}

#[test]
fn tty_and_user_namespace_options_carry_through() {
    let mut profile = Profile::builtin_default();
    profile.allow_user_namespaces = Some(true);
    let mut req = request(&["sh"]);
    req.stdio = Stdio::Tty {
        rows: 24,
        cols: 80,
        keep: [false, true, false],
    };
    let p = plan(&profile, &req).unwrap();
    assert!(p.allow_user_namespaces);
    assert_eq!(p.tty, Some((24, 80)));
    assert_eq!(
        p.keep,
        [false, true, false],
        "stdout stays the caller's file"
    );
    assert_eq!(p.hostname, "hutch-default");
}

#[test]
fn browsers_and_electron_apps_keep_their_own_sandbox_and_nothing_else_does() {
    let fs = FakeFs::debian()
        // Debian's launcher script, and the binary beside its files
        .with("/usr/bin/chromium", Entry::File)
        .with("/usr/lib/chromium/chromium", Entry::File)
        .with("/usr/lib/chromium/chrome-sandbox", Entry::File)
        // Firefox ESR: a link to the binary beside libxul
        .with(
            "/usr/bin/firefox-esr",
            Entry::Symlink("/usr/lib/firefox-esr/firefox-esr".into()),
        )
        .with("/usr/lib/firefox-esr/firefox-esr", Entry::File)
        // an Electron app in a shared folder, under a name of its own
        .with("/home/alice/Apps/Notes", Entry::Dir)
        .with("/home/alice/Apps/Notes/notes", Entry::File)
        .with("/home/alice/Apps/Notes/resources/app.asar", Entry::File)
        // a program named like nothing, beside nothing telling
        .with("/home/alice/Apps/tool", Entry::File);
    let profile = Profile::builtin_default();
    let run = |argv: &[&str], profile: &Profile| plan_fs(profile, &request(argv), &fs).unwrap();
    for (argv, who) in [
        ("chromium", "Chromium"),
        ("/usr/lib/chromium/chromium", "Chromium"),
        ("firefox-esr", "Firefox"),
        ("/home/alice/Apps/Notes/notes", "Electron"),
    ] {
        let p = run(&[argv], &profile);
        assert!(p.allow_user_namespaces, "{argv}");
        assert_eq!(
            p.user_namespaces.as_deref(),
            Some(format!("{who}'s own sandbox").as_str())
        );
        assert!(
            p.warnings
                .iter()
                .any(|w| w.starts_with(&format!("{who} keeps its own sandbox"))
                    && w.contains("allow_user_namespaces = false")),
            "{argv}: {:?}",
            p.warnings
        );
    }
    for argv in [
        "sh",
        "/home/alice/Apps/tool",
        "./chromium",
        "no-such-program",
    ] {
        let p = run(&[argv], &profile);
        assert!(!p.allow_user_namespaces, "{argv}");
        assert_eq!(p.user_namespaces, None, "{argv}");
    }
    // The profile decides when it says so, either way.
    let mut refused = Profile::builtin_default();
    refused.allow_user_namespaces = Some(false);
    assert!(!run(&["chromium"], &refused).allow_user_namespaces);
    let mut allowed = Profile::builtin_default();
    allowed.allow_user_namespaces = Some(true);
    let p = run(&["/home/alice/Apps/tool"], &allowed);
    assert!(p.allow_user_namespaces);
    assert!(
        p.user_namespaces
            .unwrap()
            .contains("the profile allows them")
    );
}

#[test]
fn the_base_is_the_same_for_every_sandbox_and_holds_nothing_personal() {
    let mut profile = Profile::builtin_default();
    profile.hostname = "other".into();
    profile.shares.push(Share {
        path: "/srv/data".into(),
        mode: ShareMode::ReadWrite,
        sockets: false,
    });
    let a = plan(&Profile::builtin_default(), &request(&["true"])).unwrap();
    let b = plan(&profile, &request(&["true"])).unwrap();
    assert_eq!(a.base_mounts, b.base_mounts);
    assert_eq!(a.base_mounts, base_mounts(&alice(), &FakeFs::debian()));
    for op in &a.base_mounts {
        let text = format!("{op:?}");
        assert!(
            !text.contains("/srv") && !text.contains("hutch-default") && !text.contains("other"),
            "{text}"
        );
        assert!(
            !matches!(op, MountOp::Tmpfs { path, .. } | MountOp::Bind { path, .. } if path.starts_with("/home"))
        );
    }
    // The host name files come with the plan.
    assert!(
        b.mounts
            .iter()
            .any(|op| matches!(op, MountOp::File { contents, .. } if contents == "other\n"))
    );
}

#[test]
fn no_network_by_default_and_resolv_conf_says_so() {
    let p = plan(&Profile::builtin_default(), &request(&["true"])).unwrap();
    assert_eq!(p.network, NetworkPlan::None);
    let [MountOp::File { contents, .. }] = find(&p, "/etc/resolv.conf")[..] else {
        panic!("resolv.conf is generated per sandbox")
    };
    assert!(contents.contains("no network"));
}

#[test]
fn user_network_picks_a_backend_and_points_dns_at_it() {
    let mut req = request(&["true"]);
    req.net = Some(NetworkMode::User);
    let p = plan(&Profile::builtin_default(), &req).unwrap();
    let NetworkPlan::User {
        backend,
        allow_host_loopback,
        confine_backend,
        ..
    } = &p.network
    else {
        panic!("{:?}", p.network)
    };
    assert_eq!(*backend, BackendKind::Pasta, "auto prefers pasta");
    assert!(!allow_host_loopback && *confine_backend);
    let [MountOp::File { contents, .. }] = find(&p, "/etc/resolv.conf")[..] else {
        panic!()
    };
    assert_eq!(contents, "nameserver 10.0.2.3\n");

    let mut host = alice();
    host.pasta = None;
    let p = plan_on(&host, &Profile::builtin_default(), &req).unwrap();
    assert!(matches!(
        p.network,
        NetworkPlan::User {
            backend: BackendKind::Slirp4netns,
            ..
        }
    ));

    req.net_backend = Some(NetBackend::Pasta);
    let err = plan_on(&host, &Profile::builtin_default(), &req).unwrap_err();
    assert_eq!(err, PlanError::BackendMissing(BackendKind::Pasta));
    assert!(err.to_string().contains("sudo apt install passt"), "{err}");
    host.slirp4netns = None;
    req.net_backend = None;
    let err = plan_on(&host, &Profile::builtin_default(), &req).unwrap_err();
    assert_eq!(err, PlanError::NoBackend);
}

#[test]
fn single_id_maps_do_not_confine_slirp4netns() {
    let mut host = alice();
    host.subuids.clear();
    let mut req = request(&["true"]);
    req.net = Some(NetworkMode::User);
    req.net_backend = Some(NetBackend::Slirp4netns);
    let p = plan_on(&host, &Profile::builtin_default(), &req).unwrap();
    assert!(matches!(
        p.network,
        NetworkPlan::User {
            confine_backend: false,
            ..
        }
    ));
}

#[test]
fn published_ports_merge_and_need_a_user_network() {
    let mut profile = Profile::builtin_default();
    profile.publish.push(PortForward::parse("8080:80").unwrap());
    let err = plan(&profile, &request(&["true"])).unwrap_err();
    assert!(err.to_string().contains("needs a user network"), "{err}");
    profile.network = NetworkMode::User;
    profile.allow_host_loopback = true;
    let mut req = request(&["true"]);
    req.publish.push(PortForward::parse("8080:8000").unwrap());
    req.publish.push(PortForward::parse("2222:22").unwrap());
    let p = plan(&profile, &req).unwrap();
    let NetworkPlan::User {
        publish,
        allow_host_loopback,
        ..
    } = &p.network
    else {
        panic!()
    };
    assert!(allow_host_loopback);
    let specs: Vec<String> = publish.iter().map(ToString::to_string).collect();
    assert_eq!(
        specs,
        ["127.0.0.1:8080:8000", "127.0.0.1:2222:22"],
        "the command line wins"
    );
    // One host port twice in one list is refused, naming both, not collapsed: also on every
    // address against one of them.
    for (a, b) in [
        ("8081:80", "8081:81"),
        ("0.0.0.0:8081:80", "127.0.0.1:8081:81"),
    ] {
        let mut req = request(&["true"]);
        req.publish.push(PortForward::parse(a).unwrap());
        req.publish.push(PortForward::parse(b).unwrap());
        let err = plan(&profile, &req).unwrap_err().to_string();
        assert!(
            err.contains("the command line publishes host port") && err.contains(":8081:81"),
            "{err}"
        );
    }
    let mut twice = profile.clone();
    twice.publish.push(PortForward::parse("8080:90").unwrap());
    let err = plan(&twice, &request(&["true"])).unwrap_err().to_string();
    assert!(
        err.starts_with("profile `default` publishes host port"),
        "{err}"
    );
}

#[test]
fn limits_merge_and_a_cpu_cap_above_the_cores_is_refused() {
    let mut profile = Profile::builtin_default();
    profile.limits.memory = Some(1 << 30);
    profile.limits.pids = Some(100);
    let mut req = request(&["true"]);
    req.limits.memory = Some(256 << 20);
    let p = plan(&profile, &req).unwrap();
    assert_eq!(
        (p.limits.memory, p.limits.pids),
        (Some(256 << 20), Some(100))
    );
    req.limits.cpu_percent = Some(300);
    let err = plan(&profile, &req).unwrap_err();
    assert!(
        err.to_string()
            .contains("CPU cap 300% is more than this machine's 2 core(s)"),
        "{err}"
    );
}

/// A desktop session on the made-up host: Wayland, X11 :0 with a cookie, PipeWire, PulseAudio.
fn desktop_fs() -> FakeFs {
    let mut fs = FakeFs::debian();
    for socket in [
        "/run/user/1000/wayland-0",
        "/tmp/.X11-unix/X0",
        "/run/user/1000/pipewire-0",
        "/run/user/1000/pulse/native",
    ] {
        fs.0.insert(PathBuf::from(socket), Entry::Other);
    }
    for file in [
        "/home/alice/.Xauthority",
        "/home/alice/.config/pulse/cookie",
    ] {
        fs.0.insert(PathBuf::from(file), Entry::File);
    }
    fs.0.insert(PathBuf::from("/home/alice/.local/share/fonts"), Entry::Dir);
    fs
}

fn session_env(req: &mut RunRequest) {
    for (k, v) in [
        ("XDG_RUNTIME_DIR", "/run/user/1000"),
        ("WAYLAND_DISPLAY", "wayland-0"),
        ("DISPLAY", ":0"),
        ("DBUS_SESSION_BUS_ADDRESS", "unix:path=/run/user/1000/bus"),
    ] {
        req.env.insert(k.into(), v.into());
    }
}

fn desktop_plan(
    profile: &Profile,
    req: &RunRequest,
    fs: &FakeFs,
) -> Result<SandboxPlan, PlanError> {
    let host = alice();
    let base = base_mounts(&host, fs);
    build(chosen(), profile, req, &host, base, fs)
}

fn env_of<'a>(plan: &'a SandboxPlan, key: &str) -> Option<&'a str> {
    plan.env
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[test]
fn no_desktop_permission_means_no_socket_and_no_session_variables() {
    let mut req = request(&["app"]);
    session_env(&mut req);
    let p = desktop_plan(&Profile::builtin_default(), &req, &desktop_fs()).unwrap();
    for key in [
        "WAYLAND_DISPLAY",
        "DISPLAY",
        "XDG_RUNTIME_DIR",
        "DBUS_SESSION_BUS_ADDRESS",
    ] {
        assert_eq!(env_of(&p, key), None, "{key} leaked");
    }
    assert!(find(&p, "/run/user/1000").is_empty());
    assert!(find(&p, "/tmp/.X11-unix").is_empty());
}

#[test]
fn wayland_gets_its_socket_alone_in_a_private_runtime_folder() {
    let mut req = request(&["app"]);
    session_env(&mut req);
    let mut profile = Profile::with_defaults("editor");
    profile.display = DisplayMode::Wayland;
    let p = desktop_plan(&profile, &req, &desktop_fs()).unwrap();
    assert_eq!(env_of(&p, "WAYLAND_DISPLAY"), Some("wayland-0"));
    assert_eq!(env_of(&p, "XDG_RUNTIME_DIR"), Some("/run/user/1000"));
    assert_eq!(env_of(&p, "DISPLAY"), None);
    assert_eq!(
        env_of(&p, "DBUS_SESSION_BUS_ADDRESS"),
        None,
        "no session bus inside"
    );
    assert!(p.mounts.contains(&MountOp::Bind {
        source: "/run/user/1000/wayland-0".into(),
        path: "/run/user/1000/wayland-0".into(),
        access: Access::ReadWrite,
        dir: false,
        id: Some(fake_id(Path::new("/run/user/1000/wayland-0"))),
        sockets: true,
        hide_sockets: false,
    }));
    // The runtime folder is a fresh one: nothing else of the host's is bound into it.
    let runtime_binds: Vec<_> = p
        .mounts
        .iter()
        .filter(|m| matches!(m, MountOp::Bind { path, .. } if path.starts_with("/run/user")))
        .collect();
    assert_eq!(runtime_binds.len(), 1, "{runtime_binds:?}");
    // Fonts come read-only, after the home.
    let home = p
        .mounts
        .iter()
        .position(|m| matches!(m, MountOp::Tmpfs { path, .. } if path == Path::new("/home/alice")))
        .unwrap();
    let fonts = p.mounts.iter().position(|m| matches!(m, MountOp::Bind { path, access: Access::ReadOnly, .. } if path == Path::new("/home/alice/.local/share/fonts"))).unwrap();
    assert!(home < fonts);
    assert!(p.warnings.is_empty());
}

#[test]
fn x11_binds_the_display_socket_and_cookie_and_says_it_is_unsafe() {
    let mut req = request(&["app"]);
    session_env(&mut req);
    req.display = Some(DisplayMode::X11);
    let p = desktop_plan(&Profile::builtin_default(), &req, &desktop_fs()).unwrap();
    assert_eq!(env_of(&p, "DISPLAY"), Some(":0"));
    assert_eq!(env_of(&p, "XAUTHORITY"), Some("/run/user/1000/Xauthority"));
    assert!(p.mounts.contains(&MountOp::Bind {
        source: "/tmp/.X11-unix/X0".into(),
        path: "/tmp/.X11-unix/X0".into(),
        access: Access::ReadWrite,
        dir: false,
        id: Some(fake_id(Path::new("/tmp/.X11-unix/X0"))),
        sockets: true,
        hide_sockets: false,
    }));
    assert!(p.mounts.contains(&MountOp::Bind {
        source: "/home/alice/.Xauthority".into(),
        path: "/run/user/1000/Xauthority".into(),
        access: Access::ReadOnly,
        dir: false,
        id: Some(fake_id(Path::new("/home/alice/.Xauthority"))),
        sockets: false,
        hide_sockets: false,
    }));
    assert!(
        p.warnings.iter().any(|w| w.contains("every keystroke")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn auto_prefers_wayland_and_falls_back_to_x11() {
    let mut req = request(&["app"]);
    session_env(&mut req);
    req.display = Some(DisplayMode::Auto);
    let p = desktop_plan(&Profile::builtin_default(), &req, &desktop_fs()).unwrap();
    assert_eq!(env_of(&p, "WAYLAND_DISPLAY"), Some("wayland-0"));
    req.env.remove("WAYLAND_DISPLAY");
    let p = desktop_plan(&Profile::builtin_default(), &req, &desktop_fs()).unwrap();
    assert_eq!(env_of(&p, "DISPLAY"), Some(":0"));
}

#[test]
fn a_missing_display_or_sound_server_is_refused_before_the_start() {
    let mut req = request(&["app"]);
    session_env(&mut req);
    req.env.insert("DISPLAY".into(), ":7".into());
    req.display = Some(DisplayMode::X11);
    let err = desktop_plan(&Profile::builtin_default(), &req, &desktop_fs()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "display: DISPLAY=:7 but /tmp/.X11-unix/X7 does not exist: is the X server running?"
    );
    req.env.insert("DISPLAY".into(), "otherhost:0".into());
    let err = desktop_plan(&Profile::builtin_default(), &req, &desktop_fs()).unwrap_err();
    assert!(err.to_string().contains("network display"), "{err}");
    req.display = Some(DisplayMode::Wayland);
    req.env.insert("WAYLAND_DISPLAY".into(), "wayland-9".into());
    let err = desktop_plan(&Profile::builtin_default(), &req, &desktop_fs()).unwrap_err();
    assert!(
        err.to_string()
            .contains("/run/user/1000/wayland-9 does not exist"),
        "{err}"
    );
    let mut req = request(&["app"]);
    req.audio = true;
    let err = desktop_plan(&Profile::builtin_default(), &req, &FakeFs::debian()).unwrap_err();
    assert!(
        err.to_string().starts_with("audio: no sound server"),
        "{err}"
    );
    let mut req = request(&["app"]);
    req.gpu = true;
    let err = desktop_plan(&Profile::builtin_default(), &req, &FakeFs::debian()).unwrap_err();
    assert!(err.to_string().contains("/dev/dri does not exist"), "{err}");
}

#[test]
fn audio_binds_pipewire_and_pulseaudio_with_its_cookie_and_gpu_binds_dri() {
    let mut req = request(&["app"]);
    session_env(&mut req);
    req.audio = true;
    req.gpu = true;
    let mut fs = desktop_fs();
    fs.0.insert(PathBuf::from("/dev/dri"), Entry::Dir);
    let p = desktop_plan(&Profile::builtin_default(), &req, &fs).unwrap();
    assert_eq!(
        env_of(&p, "PULSE_SERVER"),
        Some("unix:/run/user/1000/pulse/native")
    );
    assert_eq!(
        env_of(&p, "PULSE_COOKIE"),
        Some("/run/user/1000/pulse/cookie")
    );
    assert_eq!(
        env_of(&p, "WAYLAND_DISPLAY"),
        None,
        "audio alone gives no display"
    );
    for path in [
        "/run/user/1000/pipewire-0",
        "/run/user/1000/pulse/native",
        "/dev/dri",
    ] {
        assert_eq!(find(&p, path).len(), 1, "{path}");
    }
}
