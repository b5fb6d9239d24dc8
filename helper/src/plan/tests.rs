use std::collections::{BTreeMap, HashMap};

use hutch_core::network::{NetBackend, NetworkMode, PortForward};
use hutch_core::profile::Share;
use hutch_core::protocol::ShareSpec;

use super::host::SubRange;
use super::*;

/// A made-up host file system: path -> entry; canonical paths are the paths themselves.
struct FakeFs(HashMap<PathBuf, Entry>);

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
        ] {
            m.insert(PathBuf::from(f), Entry::File);
        }
        m.insert(PathBuf::from("/run/user/1000/bus"), Entry::Other);
        Self(m)
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
    fn canonical(&self, path: &Path) -> Option<PathBuf> {
        self.0.contains_key(path).then(|| path.to_owned())
    }
}

fn alice() -> HostFacts {
    HostFacts {
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
    }
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
    }
}

fn plan(profile: &Profile, req: &RunRequest) -> Result<SandboxPlan, PlanError> {
    build(
        "ab12cd34",
        "/run/user/1000/hutch/sandboxes/ab12cd34/root".into(),
        profile,
        req,
        &alice(),
        &FakeFs::debian(),
    )
}

/// A plan for another host (a changed `alice()`).
fn plan_on(
    host: &HostFacts,
    profile: &Profile,
    req: &RunRequest,
) -> Result<SandboxPlan, PlanError> {
    build("x", "/r".into(), profile, req, host, &FakeFs::debian())
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
            dir: true
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
            dir: true
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
    });
    let mut req = request(&["ls"]);
    req.shares.push(ShareSpec {
        path: "/srv/data".into(),
        mode: ShareMode::ReadOnly,
    });
    req.shares.push(ShareSpec {
        path: "/home/alice/notes.txt".into(),
        mode: ShareMode::ReadOnly,
    });
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
fn bad_shares_are_refused_before_anything_starts() {
    let profile = Profile::builtin_default();
    let with = |path: &str| {
        let mut req = request(&["true"]);
        req.shares.push(ShareSpec {
            path: path.into(),
            mode: ShareMode::ReadOnly,
        });
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
        PlanError::ShareExposesHutch { .. }
    ));
    assert!(matches!(
        with("/home/alice/.config/hutch"),
        PlanError::ShareExposesHutch { .. }
    ));
    assert!(matches!(with("/etc"), PlanError::ShareInvalid(_)));
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
    profile.allow_user_namespaces = true;
    let mut req = request(&["sh"]);
    req.stdio = Stdio::Tty { rows: 24, cols: 80 };
    let p = plan(&profile, &req).unwrap();
    assert!(p.allow_user_namespaces);
    assert_eq!(p.tty, Some((24, 80)));
    assert_eq!(p.hostname, "hutch-default");
}

#[test]
fn the_base_is_the_same_for_every_sandbox_and_holds_nothing_personal() {
    let mut profile = Profile::builtin_default();
    profile.hostname = "other".into();
    profile.shares.push(Share {
        path: "/srv/data".into(),
        mode: ShareMode::ReadWrite,
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
