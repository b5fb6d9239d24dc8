//! The window, driven through egui_kittest: drops, dialogs, settings, and pixel snapshots
//! rendered on lavapipe (software Vulkan).
//!
//! Mock: these tests replace the helper with a recording link (it keeps the commands the
//! window sends and plays back fixed updates), so a request can be checked exactly and a
//! snapshot has the same data every time. The real helper and a real window are tested
//! together in `tests/tests/window_e2e.rs`.

use std::collections::VecDeque;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use hutch::gui::action::Action;
use hutch::gui::forms::Dialog;
use hutch::gui::link::{Command, Link, Update};
use hutch::gui::state::{DetailTab, Page, Span};
use hutch::gui::{Clock, HutchApp};
use hutch_core::anatomy::{Anatomy, CgroupAnatomy, Mount, Namespace, Security};
use hutch_core::network::NetworkMode;
use hutch_core::profile::{Profile, ShareMode};
use hutch_core::protocol::{
    Check, CheckStatus, DoctorReport, ExitStatus, IdMapKind, NetCounters, NetworkInfo, ProcessInfo,
    SandboxInfo, SandboxState, SandboxStats, Stdio,
};

/// 2026-11-30 12:00:00 UTC: the window's clock in every test.
const NOW: u64 = 1_795_953_600_000;

#[derive(Clone, Default)]
struct RecordingLink {
    sent: Arc<Mutex<Vec<Command>>>,
    queue: Arc<Mutex<VecDeque<Update>>>,
}

impl Link for RecordingLink {
    fn send(&self, command: Command) {
        self.sent.lock().unwrap().push(command);
    }
    fn try_recv(&self) -> Option<Update> {
        self.queue.lock().unwrap().pop_front()
    }
}

impl RecordingLink {
    fn runs(&self) -> Vec<hutch_core::protocol::RunRequest> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .filter_map(|c| match c {
                Command::Run { request, .. } => Some((**request).clone()),
                _ => None,
            })
            .collect()
    }
    fn push(&self, updates: impl IntoIterator<Item = Update>) {
        self.queue.lock().unwrap().extend(updates);
    }
}

#[derive(Debug)]
struct Dropped(PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

fn harness(profiles: &Path, link: &RecordingLink) -> Harness<'static, HutchApp> {
    let link = link.clone();
    let dir = profiles.to_owned();
    Harness::builder()
        .with_size([1120.0, 720.0])
        .wgpu()
        .build_eframe(move |cc| HutchApp::new(&cc.egui_ctx, Box::new(link), Clock::fixed(NOW), dir))
}

/// Compares with (or, with UPDATE_SNAPSHOTS=1, writes) `app/tests/snapshots/NAME.png`,
/// wherever the test runs from.
/// A window connected to a helper (limits available) that runs no sandbox yet.
fn empty_window(profiles: &Path) -> (RecordingLink, Harness<'static, HutchApp>) {
    let link = RecordingLink::default();
    link.push([connected(true), Update::Sandboxes(vec![])]);
    let mut h = harness(profiles, &link);
    h.run_steps(2);
    (link, h)
}

fn snapshot(h: &mut Harness<'static, HutchApp>, name: &str) {
    let options = egui_kittest::SnapshotOptions::new()
        .output_path(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots"));
    h.snapshot_options(name, &options);
}

fn drop_file(h: &mut Harness<'static, HutchApp>, path: &Path) {
    h.input_mut()
        .dropped_files
        .push(Arc::new(Dropped(path.to_owned())));
    h.run_steps(3);
}

fn connected(limits: bool) -> Update {
    Update::Connected {
        helper_version: "0.1.0".into(),
        helper_pid: 4242,
        limits,
        cgroups: if limits {
            "delegated: /sys/fs/cgroup/user.slice/hutch".into()
        } else {
            "hybrid cgroup hierarchy (no v2 controllers)".into()
        },
    }
}

fn program(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::copy("/bin/true", &path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn save(dir: &Path, name: &str, f: impl FnOnce(&mut Profile)) {
    let mut p = Profile::with_defaults(name);
    f(&mut p);
    hutch_client::profiles::save(dir, &p).unwrap();
}

#[test]
fn dropping_a_program_makes_its_profile_then_sends_the_launch() {
    let tmp = tempfile::tempdir().unwrap();
    let profiles = tmp.path().join("profiles");
    let (link, mut h) = empty_window(&profiles);
    let tool = program(tmp.path(), "mytool");
    drop_file(&mut h, &tool);
    // First launch: the profile dialog, nothing started yet.
    h.get_by_label("Run mytool in a sandbox");
    assert!(link.runs().is_empty());
    h.get_by_label("Let it reach the internet").click();
    h.get_by_label("Kept: its files stay between runs").click();
    h.run_steps(2);
    h.get_by_label("Create and run").click();
    h.run_steps(3);
    let runs = link.runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let tool_path = tool.display().to_string();
    assert_eq!(runs[0].command, std::slice::from_ref(&tool_path));
    assert_eq!(runs[0].profile.as_deref(), Some("mytool"));
    assert_eq!(runs[0].stdio, Stdio::Log);
    // The program is shared through its new profile (not twice).
    assert!(runs[0].shares.is_empty(), "{:?}", runs[0].shares);
    let saved = hutch_client::profiles::load(&profiles, Some("mytool")).unwrap();
    assert_eq!(saved.command, std::slice::from_ref(&tool_path));
    assert_eq!(saved.network, NetworkMode::User);
    assert_eq!(saved.home, hutch_core::profile::HomeMode::Persist);
    assert_eq!(saved.shares[0].path, tool_path);
    assert_eq!(saved.shares[0].mode, ShareMode::ReadOnly);
    // The second drop runs at once, under the same profile.
    drop_file(&mut h, &tool);
    assert!(h.query_by_label("Run mytool in a sandbox").is_none());
    assert_eq!(link.runs().len(), 2);
    assert_eq!(link.runs()[1].command, [tool_path]);
}

#[test]
fn the_launch_button_chooses_a_file_and_launches_it_like_a_drop() {
    let tmp = tempfile::tempdir().unwrap();
    let profiles = tmp.path().join("profiles");
    let (link, mut h) = empty_window(&profiles);
    let tool = program(tmp.path(), "chosen-tool");
    // The top bar's button (the empty list offers another).
    h.get_all_by_label("Launch…").next().unwrap().click();
    h.run_steps(2);
    h.get_by_label("Launch a program");
    // The chooser lists a folder; pick the program from it.
    if let Some(hutch::gui::forms::Dialog::Chooser(c)) = &mut h.state_mut().forms.dialog {
        c.enter(tmp.path().to_owned());
    }
    h.run_steps(2);
    h.get_by_label("chosen-tool").click();
    h.run_steps(2);
    h.get_by_label("Launch").click();
    h.run_steps(3);
    h.get_by_label("Run chosen-tool in a sandbox");
    // Let the dialog settle (the chooser's modal closed in the same frame).
    h.run_steps(3);
    h.get_by_label("Create and run").click();
    h.run_steps(3);
    let runs = link.runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].command, [tool.display().to_string()]);
}

#[test]
fn dropping_a_data_file_offers_to_open_it_with_an_app() {
    let tmp = tempfile::tempdir().unwrap();
    let profiles = tmp.path().join("profiles");
    save(&profiles, "viewer", |p| p.command = vec!["cat".into()]);
    let (link, mut h) = empty_window(&profiles);
    let notes = tmp.path().join("notes.txt");
    std::fs::write(&notes, "hello").unwrap();
    drop_file(&mut h, &notes);
    h.get_by_label("Open with an app");
    assert!(
        link.runs().is_empty(),
        "nothing starts before the user picks"
    );
    h.get_by_label("Open").click();
    h.run_steps(3);
    let runs = link.runs();
    assert_eq!(
        runs[0].command,
        ["cat".to_owned(), notes.display().to_string()]
    );
    assert_eq!(runs[0].profile.as_deref(), Some("viewer"));
    assert_eq!(runs[0].shares.len(), 1, "only that file is shared");
    assert_eq!(runs[0].shares[0].path, notes.display().to_string());
    assert_eq!(runs[0].shares[0].mode, ShareMode::ReadOnly);
}

#[test]
fn drops_that_cannot_launch_say_why_and_start_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let profiles = tmp.path().join("profiles");
    let link = RecordingLink::default();
    let mut h = harness(&profiles, &link);
    h.run_steps(2);
    let broken = tmp.path().join("broken.desktop");
    std::fs::write(
        &broken,
        "[Desktop Entry]\nType=Application\nName=B\nExec=\"x\n",
    )
    .unwrap();
    drop_file(&mut h, &broken);
    h.get_by_label("This cannot be launched");
    h.get_by_label_contains("line 4: Exec has a quote that is never closed");
    h.get_by_label("OK").click();
    h.run_steps(2);
    drop_file(&mut h, tmp.path());
    h.get_by_label_contains("is a folder");
    h.get_by_label("OK").click();
    h.run_steps(2);
    // A data file with no app to open it.
    let data = tmp.path().join("photo.raw");
    std::fs::write(&data, [0u8, 1, 2]).unwrap();
    drop_file(&mut h, &data);
    h.get_by_label("Nothing can open this file");
    assert!(link.runs().is_empty());
}

fn type_into(h: &mut Harness<'static, HutchApp>, field: &str, text: &str) {
    h.get_by_role_and_label(Role::TextInput, field).focus();
    h.run_steps(1);
    h.get_by_role_and_label(Role::TextInput, field)
        .type_text(text);
    h.run_steps(2);
}

fn open_settings(h: &mut Harness<'static, HutchApp>, name: &str) {
    h.get_by_label("App profiles").click();
    h.run_steps(2);
    h.get_by_label(name).click();
    h.run_steps(2);
}

#[test]
fn a_settings_change_is_saved_to_the_profile_and_applied_live() {
    let tmp = tempfile::tempdir().unwrap();
    let profiles = tmp.path().join("profiles");
    save(&profiles, "editor", |p| {
        p.command = vec!["/usr/bin/vi".into()]
    });
    let link = RecordingLink::default();
    link.push([
        connected(true),
        Update::Sandboxes(vec![sandbox("a1", "editor", SandboxState::Running, None)]),
    ]);
    let mut h = harness(&profiles, &link);
    h.run_steps(2);
    open_settings(&mut h, "editor");
    type_into(&mut h, "Memory", "256M");
    type_into(&mut h, "Processes", "64");
    h.get_by_label("Wayland").click();
    h.get_by_label("GPU (/dev/dri)").click();
    h.run_steps(2);
    h.get_by_label("Save").click();
    h.run_steps(2);
    let saved = hutch_client::profiles::load(&profiles, Some("editor")).unwrap();
    assert_eq!(saved.limits.memory, Some(256 << 20));
    assert_eq!(saved.limits.pids, Some(64));
    assert_eq!(saved.command, ["/usr/bin/vi"], "other keys are kept");
    assert_eq!(saved.display, hutch_core::profile::DisplayMode::Wayland);
    assert!(saved.gpu && !saved.audio);
    let limits: Vec<_> = link
        .sent
        .lock()
        .unwrap()
        .iter()
        .filter_map(|c| match c {
            Command::Limit { id, limits } => Some((id.clone(), *limits)),
            _ => None,
        })
        .collect();
    assert_eq!(limits.len(), 1, "the running sandbox gets the new limits");
    assert_eq!(limits[0].0, "a1");
    assert_eq!(limits[0].1.memory, Some(256 << 20));
    h.get_by_label_contains("new limits applied to 1 running sandbox");
}

#[test]
fn an_invalid_value_is_flagged_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let profiles = tmp.path().join("profiles");
    save(&profiles, "editor", |_| {});
    let file = profiles.join("editor.toml");
    let before = std::fs::read(&file).unwrap();
    let (_link, mut h) = empty_window(&profiles);
    open_settings(&mut h, "editor");
    type_into(&mut h, "Memory", "lots");
    h.run_steps(2);
    h.get_by_label_contains("lots");
    h.get_by_label("Save").click();
    h.run_steps(2);
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "the profile is untouched"
    );
    assert!(
        std::fs::read_dir(&profiles).unwrap().count() == 1,
        "no temporary file left"
    );
}

fn sandbox(id: &str, profile: &str, state: SandboxState, exit: Option<ExitStatus>) -> SandboxInfo {
    SandboxInfo {
        id: id.into(),
        profile: profile.into(),
        pid: Some(31337),
        started_at_ms: NOW - 754_000,
        command: vec![format!("/usr/bin/{profile}"), "--verbose".into()],
        state,
        id_map: IdMapKind::SubordinateRange,
        exit,
        network: NetworkInfo {
            mode: NetworkMode::User,
            backend: Some("pasta".into()),
            up: true,
            publish: Vec::new(),
            host_loopback: false,
        },
        user_namespaces: None,
    }
}

/// Ten minutes of samples: a CPU load that rises and falls, memory growing towards its
/// limit, traffic in bursts, and a 20-second hole in the data.
fn samples(id: &str) -> Vec<Update> {
    let mut out = Vec::new();
    let mut cpu = 0u64;
    let (mut rx, mut tx) = (0u64, 0u64);
    for i in 0..600u64 {
        if (400..420).contains(&i) {
            continue;
        }
        let t = NOW - (600 - i) * 1000;
        let load = 35.0 + 30.0 * ((i as f64) / 25.0).sin() + if i % 60 < 10 { 25.0 } else { 0.0 };
        cpu += (load * 10_000.0) as u64;
        rx += if i % 30 < 5 { 900_000 } else { 20_000 };
        tx += 12_000 + (i % 7) * 3_000;
        out.push(Update::Samples(vec![SandboxStats {
            id: id.into(),
            at_ms: t,
            net: NetCounters {
                rx_bytes: rx,
                rx_packets: 0,
                tx_bytes: tx,
                tx_packets: 0,
            },
            loopback: NetCounters::default(),
            source: "cgroup".into(),
            cpu_usage_usec: cpu,
            memory_bytes: (180 << 20) + i * (400 << 10),
            memory_peak: None,
            memory_limit: Some(512 << 20),
            pids: 4 + (i / 100),
            pids_limit: Some(256),
            oom_kills: 0,
            pids_limit_hits: 0,
            io_read_bytes: None,
            io_write_bytes: None,
            pressure: Some([load / 10.0, (i as f64 / 120.0).min(6.0), 0.5]),
            cpu_throttled: None,
        }]));
    }
    out
}

fn fixed_world(link: &RecordingLink) {
    link.push([
        connected(true),
        Update::Doctor(DoctorReport {
            checks: vec![
                Check {
                    id: "user_namespaces".into(),
                    title: "User namespaces".into(),
                    status: CheckStatus::Ok,
                    detail: "unprivileged user namespaces work".into(),
                    fix: None,
                },
                Check {
                    id: "network".into(),
                    title: "User-mode networking".into(),
                    status: CheckStatus::Ok,
                    detail: "pasta and slirp4netns are installed".into(),
                    fix: None,
                },
            ],
        }),
        Update::Sandboxes(vec![
            sandbox("3f9a1c2b7d", "firefox", SandboxState::Running, None),
            sandbox("8b2e4d1f09", "gimp", SandboxState::Paused, None),
            sandbox(
                "c47d19e2aa",
                "unzip",
                SandboxState::Exited,
                Some(ExitStatus::Code(0)),
            ),
            sandbox(
                "e5a0b3c8d1",
                "tool",
                SandboxState::Exited,
                Some(ExitStatus::Signal(9)),
            ),
        ]),
    ]);
    link.push(samples("3f9a1c2b7d"));
    link.push(samples("8b2e4d1f09"));
}

#[test]
fn snapshot_main_view() {
    let tmp = tempfile::tempdir().unwrap();
    let link = RecordingLink::default();
    fixed_world(&link);
    let mut h = harness(&tmp.path().join("profiles"), &link);
    h.run_steps(3);
    snapshot(&mut h, "main_view");
}

#[test]
fn snapshot_details_view_with_graphs() {
    let tmp = tempfile::tempdir().unwrap();
    let link = RecordingLink::default();
    fixed_world(&link);
    let mut h = harness(&tmp.path().join("profiles"), &link);
    h.run_steps(2);
    h.state_mut().ui.selected = Some("3f9a1c2b7d".into());
    h.state_mut().ui.span = hutch::gui::state::Span::TenMinutes;
    h.run_steps(3);
    snapshot(&mut h, "details_view");
}

#[test]
fn snapshot_settings_panel() {
    let tmp = tempfile::tempdir().unwrap();
    let profiles = tmp.path().join("profiles");
    save(&profiles, "firefox", |p| {
        p.command = vec!["/usr/bin/firefox".into()];
        p.limits.memory = Some(2 << 30);
        p.limits.cpu_weight = Some(50);
        p.network = NetworkMode::User;
        p.home = hutch_core::profile::HomeMode::Persist;
        p.display = hutch_core::profile::DisplayMode::Wayland;
        p.audio = true;
        p.shares = vec![
            hutch_core::profile::Share {
                path: "~/Downloads".into(),
                mode: ShareMode::ReadWrite,
                sockets: false,
            },
            hutch_core::profile::Share {
                path: "~/Pictures".into(),
                mode: ShareMode::ReadOnly,
                sockets: false,
            },
        ];
    });
    save(&profiles, "gimp", |_| {});
    let link = RecordingLink::default();
    fixed_world(&link);
    let mut h = harness(&profiles, &link);
    h.run_steps(2);
    open_settings(&mut h, "firefox");
    type_into(&mut h, "Processes", "x12");
    h.run_steps(3);
    snapshot(&mut h, "settings_panel");
}

#[test]
fn snapshot_anatomy_tab() {
    let tmp = tempfile::tempdir().unwrap();
    let link = RecordingLink::default();
    fixed_world(&link);
    let ns = |kind: &str, inode: u64, new: bool| Namespace {
        kind: kind.into(),
        inode,
        new,
        note: hutch_core::anatomy::namespace_note(kind, new),
    };
    let mount = |path: &str, fs: &str, ro: bool, host: bool| Mount {
        path: path.into(),
        fs_type: fs.into(),
        source: String::new(),
        read_only: ro,
        from_host: host,
    };
    link.push([Update::Anatomy(Box::new(Anatomy {
        id: "3f9a1c2b7d".into(),
        pid: 31337,
        namespaces: vec![
            ns("user", 4026532601, true),
            ns("mnt", 4026532602, true),
            ns("pid", 4026532604, true),
            ns("net", 4026532606, true),
            ns("time", 4026531834, false),
        ],
        id_map: IdMapKind::SubordinateRange,
        uid_map: vec![[0, 1000, 1], [1, 100000, 65536]],
        gid_map: vec![[0, 1000, 1], [1, 100000, 65536]],
        mounts: vec![
            mount("/", "tmpfs", true, false),
            mount("/usr", "ext4", true, true),
            mount("/home/user/Downloads", "ext4", false, true),
            mount("/tmp", "tmpfs", false, false),
        ],
        cgroup: Some(CgroupAnatomy {
            path: "/user.slice/hutch/sandboxes/3f9a1c2b7d".into(),
            files: vec![
                ("memory.max".into(), "536870912".into()),
                ("pids.max".into(), "256".into()),
            ],
        }),
        network: NetworkInfo {
            mode: NetworkMode::User,
            backend: Some("pasta".into()),
            up: true,
            publish: Vec::new(),
            host_loopback: true,
        },
        addresses: vec!["10.0.2.100/24".into()],
        routes: vec!["default via 10.0.2.2 dev tap0".into()],
        security: Security {
            seccomp_mode: 2,
            seccomp_filters: 3,
            no_new_privs: true,
            cap_effective: "0000000000000000".into(),
            cap_permitted: "0000000000000000".into(),
            cap_bounding: "0000000000000000".into(),
            cap_ambient: "0000000000000000".into(),
            landlock: "not used".into(),
            user_namespaces: "refused (seccomp)".into(),
        },
    }))]);
    let mut h = harness(&tmp.path().join("profiles"), &link);
    h.run_steps(2);
    h.state_mut().ui.selected = Some("3f9a1c2b7d".into());
    h.state_mut().ui.tab = hutch::gui::state::DetailTab::Anatomy;
    h.run_steps(3);
    h.get_by_label_contains("host loopback reachable");
    snapshot(&mut h, "anatomy_tab");
}

#[test]
fn the_process_tree_nests_children_under_parents() {
    let p = |pid: u32, ppid: u32, ns: u32, name: &str| ProcessInfo {
        pid,
        ns_pid: ns,
        ppid,
        name: name.into(),
        cmdline: vec![name.into()],
        state: "S".into(),
        threads: 1,
        rss_bytes: 0,
        cpu_usec: 0,
    };
    let list = vec![
        p(10, 5, 1, "init"),
        p(12, 10, 2, "sh"),
        p(15, 12, 4, "sleep"),
        p(13, 10, 3, "worker"),
    ];
    let mut rows = Vec::new();
    hutch::gui::views::details::tree(&list, 5, 0, &mut rows);
    let order: Vec<(usize, &str)> = rows.iter().map(|(d, p)| (*d, &p.name[..])).collect();
    assert_eq!(order, [(0, "init"), (1, "sh"), (2, "sleep"), (1, "worker")]);
}

#[test]
fn answers_find_their_launch_by_ticket_even_out_of_order() {
    let tmp = tempfile::tempdir().unwrap();
    let profiles = tmp.path().join("profiles");
    let (link, mut h) = empty_window(&profiles);
    let request = |name: &str| -> hutch_core::protocol::RunRequest {
        serde_json::from_value(serde_json::json!({"command": [name], "stdio": Stdio::Log})).unwrap()
    };
    // Two launches with the same title: only their tickets tell them apart.
    h.state_mut().start(request("first"), "Editor".into());
    h.state_mut().start(request("second"), "Editor".into());
    let tickets: Vec<u64> = link
        .sent
        .lock()
        .unwrap()
        .iter()
        .filter_map(|c| match c {
            Command::Run { ticket, .. } => Some(*ticket),
            _ => None,
        })
        .collect();
    assert_eq!(tickets.len(), 2);
    assert_ne!(tickets[0], tickets[1]);
    // The second is answered first; the first fails.
    link.push([
        Update::Started {
            id: "bbbb0002".into(),
            title: "Editor".into(),
            warnings: vec![],
            ticket: Some(tickets[1]),
        },
        Update::Failed {
            what: "start Editor".into(),
            message: "no".into(),
            ticket: Some(tickets[0]),
        },
    ]);
    h.run_steps(2);
    let launched = &h.state().launched;
    assert_eq!(launched.len(), 1, "{launched:?}");
    assert_eq!(launched["bbbb0002"].0.command, ["second"]);
}

#[test]
fn a_share_keeps_its_sockets_only_when_ticked_and_a_launch_says_what_was_hidden() {
    let tmp = tempfile::tempdir().unwrap();
    let profiles = tmp.path().join("profiles");
    save(&profiles, "term", |p| {
        p.shares = vec![hutch_core::profile::Share {
            path: "/srv/agent".into(),
            mode: ShareMode::ReadOnly,
            sockets: false,
        }];
    });
    let link = RecordingLink::default();
    link.push([connected(true)]);
    let mut h = harness(&profiles, &link);
    h.run_steps(2);
    open_settings(&mut h, "term");
    h.get_by_label("its sockets").click();
    h.run_steps(2);
    h.get_by_label_contains("the app can talk to what listens there");
    h.get_by_label("Save").click();
    h.run_steps(2);
    let saved = hutch_client::profiles::load(&profiles, Some("term")).unwrap();
    assert!(saved.shares[0].sockets, "{:?}", saved.shares);
    // The helper's warning about hidden sockets reaches the person launching.
    link.push([Update::Started {
        id: "cccc0003".into(),
        title: "Term".into(),
        warnings: vec![
            "/srv/agent holds 1 Unix socket (ssh.sock): hidden from the app, so nothing \
             listening there can act for it (add `,sockets` to the share to keep them)"
                .into(),
        ],
        ticket: None,
    }]);
    h.run_steps(3);
    h.get_by_label_contains("holds 1 Unix socket (ssh.sock): hidden from the app");
}

#[test]
fn dialogs_answer_the_keyboard() {
    let tmp = tempfile::tempdir().unwrap();
    let profiles = tmp.path().join("profiles");
    let (link, mut h) = empty_window(&profiles);
    let press = |h: &mut Harness<'static, HutchApp>, key: egui::Key| {
        h.key_press(key);
        h.run_steps(2);
    };
    // Escape cancels the first-launch dialog: no profile, no launch.
    let first = program(tmp.path(), "firsttool");
    drop_file(&mut h, &first);
    h.get_by_label("Run firsttool in a sandbox");
    press(&mut h, egui::Key::Escape);
    assert!(h.query_by_label("Run firsttool in a sandbox").is_none());
    assert!(link.runs().is_empty());
    assert!(hutch_client::profiles::load(&profiles, Some("firsttool")).is_err());
    // Tab moves through the fields (the name, then the network box, which Space ticks);
    // Enter takes the default button, "Create and run".
    let tool = program(tmp.path(), "keyed");
    drop_file(&mut h, &tool);
    press(&mut h, egui::Key::Tab);
    assert!(
        h.get_by_role(Role::TextInput).is_focused(),
        "the profile name first"
    );
    press(&mut h, egui::Key::Tab);
    assert!(h.get_by_label("Let it reach the internet").is_focused());
    press(&mut h, egui::Key::Space);
    press(&mut h, egui::Key::Enter);
    h.run_steps(2);
    assert!(h.query_by_label("Run keyed in a sandbox").is_none());
    assert_eq!(link.runs().len(), 1);
    let saved = hutch_client::profiles::load(&profiles, Some("keyed")).unwrap();
    assert_eq!(
        saved.network,
        NetworkMode::User,
        "Space ticked the network box"
    );
    // Tab to Cancel, then Enter presses Cancel, not the default button.
    let other = program(tmp.path(), "tabbed");
    drop_file(&mut h, &other);
    for _ in 0..6 {
        if h.get_by_label("Cancel").is_focused() {
            break;
        }
        press(&mut h, egui::Key::Tab);
    }
    assert!(h.get_by_label("Cancel").is_focused());
    press(&mut h, egui::Key::Enter);
    assert!(h.query_by_label("Run tabbed in a sandbox").is_none());
    assert_eq!(link.runs().len(), 1, "Enter on Cancel launched nothing");
    // A message closes on Enter.
    drop_file(&mut h, tmp.path());
    h.get_by_label_contains("is a folder");
    press(&mut h, egui::Key::Enter);
    assert!(h.query_by_label_contains("is a folder").is_none());
    // The chooser: a path typed in and Enter is the same as "Launch"; Escape leaves it.
    h.get_all_by_label("Launch…").next().unwrap().click();
    h.run_steps(2);
    press(&mut h, egui::Key::Escape);
    assert!(h.query_by_label("Launch a program").is_none());
    h.get_all_by_label("Launch…").next().unwrap().click();
    h.run_steps(2);
    let typed = program(tmp.path(), "typed");
    let field = h.get_by_role(Role::TextInput);
    field.focus();
    h.run_steps(1);
    if let Some(hutch::gui::forms::Dialog::Chooser(c)) = &mut h.state_mut().forms.dialog {
        c.path = typed.display().to_string();
    }
    h.run_steps(1);
    press(&mut h, egui::Key::Enter);
    h.run_steps(2);
    h.get_by_label("Run typed in a sandbox");
    h.run_steps(2);
    press(&mut h, egui::Key::Enter);
    assert_eq!(link.runs().len(), 2, "{:?}", link.runs());
    assert_eq!(link.runs()[1].command, [typed.display().to_string()]);
}

/// The app without a window: `apply` driven directly, the recording link checked.
fn bare_app(profiles: &Path, link: &RecordingLink) -> HutchApp {
    let mut app = HutchApp::new(
        &egui::Context::default(),
        Box::new(link.clone()),
        Clock::fixed(NOW),
        profiles.to_owned(),
    );
    app.model.apply(connected(true), NOW);
    app.model.apply(
        Update::Sandboxes(vec![
            sandbox("a1", "editor", SandboxState::Running, None),
            sandbox("b2", "editor", SandboxState::Paused, None),
            sandbox(
                "c3",
                "editor",
                SandboxState::Exited,
                Some(ExitStatus::Code(0)),
            ),
        ]),
        NOW,
    );
    link.sent.lock().unwrap().clear();
    app
}

#[test]
fn apply_sends_what_the_views_ask_for_and_changes_the_ui_state() {
    let tmp = tempfile::tempdir().unwrap();
    let link = RecordingLink::default();
    let mut app = bare_app(&tmp.path().join("profiles"), &link);
    for action in [
        Action::Stop("a1".into()),
        Action::Pause("a1".into()),
        Action::Resume("b2".into()),
        Action::Inspect("a1".into()),
        Action::CheckSystem,
    ] {
        app.apply(action);
    }
    assert_eq!(
        *link.sent.lock().unwrap(),
        [
            Command::Stop { id: "a1".into() },
            Command::Pause { id: "a1".into() },
            Command::Resume { id: "b2".into() },
            Command::Inspect { id: "a1".into() },
            Command::Doctor,
        ]
    );
    // "Run again" of a sandbox not started here: its profile and command, logged.
    app.apply(Action::RunAgain("c3".into()));
    let runs = link.runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].profile.as_deref(), Some("editor"));
    assert_eq!(runs[0].command, ["/usr/bin/editor", "--verbose"]);
    assert_eq!(runs[0].stdio, Stdio::Log);
    // UI state: no request.
    let sent = link.sent.lock().unwrap().len();
    app.apply(Action::Select("a1".into()));
    app.apply(Action::ShowTab(DetailTab::Processes));
    app.apply(Action::SetSpan(Span::Hour));
    app.apply(Action::DismissToasts(2));
    app.apply(Action::DismissToasts(1));
    assert_eq!(app.ui.selected.as_deref(), Some("a1"));
    assert_eq!(app.ui.tab, DetailTab::Processes);
    assert_eq!(app.ui.span, Span::Hour);
    assert_eq!(app.ui.toasts_seen, 2, "dismissed toasts stay dismissed");
    assert_eq!(link.sent.lock().unwrap().len(), sent);
    app.apply(Action::OpenChooser);
    assert!(matches!(app.forms.dialog, Some(Dialog::Chooser(_))));
    app.apply(Action::CloseDialog);
    assert!(app.forms.dialog.is_none());
}

#[test]
fn apply_saves_a_profile_and_limits_its_running_sandboxes() {
    let tmp = tempfile::tempdir().unwrap();
    let profiles = tmp.path().join("profiles");
    save(&profiles, "editor", |p| {
        p.command = vec!["/usr/bin/vi".into()]
    });
    let link = RecordingLink::default();
    let mut app = bare_app(&profiles, &link);
    app.apply(Action::ShowPage(Page::Profiles));
    app.apply(Action::EditProfile("editor".into()));
    let mut edited = app.forms.settings.as_ref().unwrap().original.clone();
    edited.limits.pids = Some(64);
    app.apply(Action::SaveProfile(edited));
    let saved = hutch_client::profiles::load(&profiles, Some("editor")).unwrap();
    assert_eq!(saved.limits.pids, Some(64));
    assert_eq!(saved.command, ["/usr/bin/vi"]);
    let limits: Vec<(String, Option<u64>)> = link
        .sent
        .lock()
        .unwrap()
        .iter()
        .filter_map(|c| match c {
            Command::Limit { id, limits } => Some((id.clone(), limits.pids)),
            _ => None,
        })
        .collect();
    // The running and the paused sandbox; not the exited one.
    assert_eq!(limits, [("a1".into(), Some(64)), ("b2".into(), Some(64))]);
    let form = app.forms.settings.as_ref().unwrap();
    assert_eq!(form.original.limits.pids, Some(64), "the form starts anew");
    assert!(
        form.saved
            .as_deref()
            .is_some_and(|s| s.ends_with("new limits applied to 2 running sandbox(es)")),
        "{:?}",
        form.saved
    );
    // A profile that cannot be written says why in the form, and nothing is sent.
    let sent = link.sent.lock().unwrap().len();
    std::fs::remove_dir_all(&profiles).unwrap();
    std::fs::write(&profiles, "not a folder").unwrap();
    let mut again = app.forms.settings.as_ref().unwrap().original.clone();
    again.limits.pids = Some(32);
    app.apply(Action::SaveProfile(again));
    assert!(app.forms.settings.as_ref().unwrap().save_error.is_some());
    assert_eq!(link.sent.lock().unwrap().len(), sent);
}

#[test]
fn apply_creates_a_profile_or_keeps_the_dialog_open_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let profiles = tmp.path().join("profiles");
    let link = RecordingLink::default();
    let mut app = bare_app(&profiles, &link);
    let tool = program(tmp.path(), "newtool");
    app.apply(Action::OpenPath(tool.clone()));
    let Some(Dialog::NewProfile(form)) = app.forms.dialog.clone() else {
        panic!("{:?}", app.forms.dialog);
    };
    let mut bad = form.clone();
    bad.name = "no/slash".into();
    app.apply(Action::CreateProfile(bad));
    match &app.forms.dialog {
        Some(Dialog::NewProfile(f)) => {
            assert!(
                f.error
                    .as_deref()
                    .is_some_and(|e| e.starts_with("invalid name"))
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(link.runs().is_empty());
    app.apply(Action::CreateProfile(form));
    assert!(app.forms.dialog.is_none());
    assert_eq!(link.runs().len(), 1);
    assert_eq!(link.runs()[0].command, [tool.display().to_string()]);
    assert!(hutch_client::profiles::load(&profiles, Some("newtool")).is_ok());
}
