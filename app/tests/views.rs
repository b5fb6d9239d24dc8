//! The window's views on their own: drawn against a model fixture (a few sandboxes, their
//! samples, a profile), with no link and no app, and checked for the actions a click pushes.
//! Nothing here sends a request or writes a file: `window.rs` checks what the app does with
//! the actions.

use std::path::PathBuf;

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use hutch::gui::action::Action;
use hutch::gui::forms::{Dialog, Forms, SettingsForm};
use hutch::gui::link::Update;
use hutch::gui::model::Model;
use hutch::gui::state::{DetailTab, Page, Span, UiState};
use hutch::gui::views::{self, Part, View};
use hutch_core::network::NetworkMode;
use hutch_core::profile::Profile;
use hutch_core::protocol::{
    ExitStatus, IdMapKind, NetCounters, NetworkInfo, SandboxInfo, SandboxState, SandboxStats,
};

/// 2026-11-30 12:00:00 UTC.
const NOW: u64 = 1_795_953_600_000;

/// What the views read and edit, and what they push.
struct Fixture {
    model: Model,
    ui: UiState,
    profiles: Vec<Profile>,
    forms: Forms,
    actions: Vec<Action>,
}

fn sandbox(id: &str, profile: &str, state: SandboxState, exit: Option<ExitStatus>) -> SandboxInfo {
    SandboxInfo {
        id: id.into(),
        profile: profile.into(),
        pid: Some(31337),
        started_at_ms: NOW - 60_000,
        command: vec![format!("/usr/bin/{profile}")],
        state,
        id_map: IdMapKind::SubordinateRange,
        exit,
        network: NetworkInfo {
            mode: NetworkMode::None,
            backend: None,
            up: true,
            publish: Vec::new(),
            host_loopback: false,
        },
        user_namespaces: None,
    }
}

fn sample(id: &str, at_ms: u64, cpu_usec: u64) -> Update {
    Update::Samples(vec![SandboxStats {
        id: id.into(),
        at_ms,
        net: NetCounters::default(),
        loopback: NetCounters::default(),
        source: "cgroup".into(),
        cpu_usage_usec: cpu_usec,
        memory_bytes: 64 << 20,
        memory_peak: None,
        memory_limit: None,
        pids: 3,
        pids_limit: None,
        oom_kills: 0,
        pids_limit_hits: 0,
        io_read_bytes: None,
        io_write_bytes: None,
        pressure: None,
        cpu_throttled: None,
    }])
}

/// A helper with limits, a running editor with samples, a paused player, an exited unzip,
/// and the editor's profile.
fn fixture() -> Fixture {
    let mut model = Model::default();
    for update in [
        Update::Connected {
            helper_version: "0.1.0".into(),
            helper_pid: 4242,
            limits: true,
            cgroups: "delegated".into(),
        },
        Update::Sandboxes(vec![
            sandbox("a1", "editor", SandboxState::Running, None),
            sandbox("b2", "player", SandboxState::Paused, None),
            sandbox(
                "c3",
                "unzip",
                SandboxState::Exited,
                Some(ExitStatus::Code(0)),
            ),
        ]),
        sample("a1", NOW - 2000, 0),
        sample("a1", NOW - 1000, 200_000),
    ] {
        model.apply(update, NOW);
    }
    let mut editor = Profile::with_defaults("editor");
    editor.command = vec!["/usr/bin/editor".into()];
    Fixture {
        model,
        ui: UiState::default(),
        profiles: vec![editor],
        forms: Forms::default(),
        actions: Vec::new(),
    }
}

/// Every part of the window drawn from the fixture; nothing applies the actions.
fn harness(fixture: Fixture) -> Harness<'static, Fixture> {
    Harness::builder()
        .with_size([1120.0, 720.0])
        .build_ui_state(
            |ui, f: &mut Fixture| {
                let view = View {
                    model: &f.model,
                    ui: &f.ui,
                    profiles: &f.profiles,
                    broken_profiles: &[],
                    now_ms: NOW,
                };
                for part in Part::ALL {
                    views::draw(part, ui, &view, &mut f.forms, &mut f.actions);
                }
            },
            fixture,
        )
}

/// Clicks the first widget labelled `label` and returns what the click pushed.
fn click(h: &mut Harness<'static, Fixture>, label: &str) -> Vec<Action> {
    h.state_mut().actions.clear();
    h.get_all_by_label(label).next().unwrap().click();
    h.run_steps(2);
    std::mem::take(&mut h.state_mut().actions)
}

#[test]
fn the_list_asks_to_stop_resume_run_again_and_select() {
    let mut h = harness(fixture());
    h.run_steps(2);
    // Rows in the table's order: the running editor first, then the paused player.
    assert_eq!(click(&mut h, "Stop"), [Action::Stop("a1".into())]);
    assert_eq!(click(&mut h, "Pause"), [Action::Pause("a1".into())]);
    assert_eq!(click(&mut h, "Resume"), [Action::Resume("b2".into())]);
    assert_eq!(click(&mut h, "Run again"), [Action::RunAgain("c3".into())]);
    assert_eq!(click(&mut h, "Details"), [Action::Select("a1".into())]);
    // Asking changed nothing: only the app applies actions.
    assert_eq!(h.state().ui, UiState::default());
    h.get_by_label("Select a sandbox to see its graphs, processes and output");
}

#[test]
fn the_details_ask_for_tabs_spans_and_a_new_inspection() {
    let mut f = fixture();
    f.ui.selected = Some("a1".into());
    let mut h = harness(f);
    h.run_steps(2);
    h.get_by_label("Show the last");
    assert_eq!(
        click(&mut h, "Processes"),
        [Action::ShowTab(DetailTab::Processes)]
    );
    assert_eq!(click(&mut h, "10 min"), [Action::SetSpan(Span::TenMinutes)]);
    assert!(
        click(&mut h, "Graphs").is_empty(),
        "the tab shown is not asked for again"
    );
    assert_eq!(h.state().ui.tab, DetailTab::Graphs);
    assert_eq!(h.state().ui.span, Span::Minute);
    // The Anatomy tab of a sandbox already inspected offers to inspect it again.
    h.state_mut().ui.tab = DetailTab::Anatomy;
    let anatomy = hutch_core::anatomy::Anatomy {
        id: "a1".into(),
        pid: 31337,
        namespaces: Vec::new(),
        id_map: IdMapKind::SubordinateRange,
        uid_map: Vec::new(),
        gid_map: Vec::new(),
        mounts: Vec::new(),
        cgroup: None,
        network: sandbox("a1", "editor", SandboxState::Running, None).network,
        addresses: Vec::new(),
        routes: Vec::new(),
        security: hutch_core::anatomy::Security {
            seccomp_mode: 2,
            seccomp_filters: 1,
            no_new_privs: true,
            cap_effective: "0".into(),
            cap_permitted: "0".into(),
            cap_bounding: "0".into(),
            cap_ambient: "0".into(),
            landlock: "on".into(),
            user_namespaces: "refused (seccomp)".into(),
        },
    };
    h.state_mut()
        .model
        .apply(Update::Anatomy(Box::new(anatomy)), NOW);
    h.run_steps(2);
    assert_eq!(
        click(&mut h, "Inspect again"),
        [Action::Inspect("a1".into())]
    );
}

#[test]
fn the_top_bar_status_bar_and_system_check_ask_for_pages_and_checks() {
    let mut h = harness(fixture());
    h.run_steps(2);
    assert_eq!(
        click(&mut h, "App profiles"),
        [Action::ShowPage(Page::Profiles)]
    );
    assert_eq!(click(&mut h, "Launch…"), [Action::OpenChooser]);
    assert!(
        h.state().forms.dialog.is_none(),
        "the app opens the chooser"
    );
    h.state_mut().ui.page = Page::SystemCheck;
    h.run_steps(2);
    assert_eq!(click(&mut h, "Check again"), [Action::CheckSystem]);
}

#[test]
fn saving_settings_asks_to_save_the_edited_profile() {
    let mut f = fixture();
    f.ui.page = Page::Profiles;
    let mut h = harness(f);
    h.run_steps(2);
    assert_eq!(
        click(&mut h, "editor"),
        [Action::EditProfile("editor".into())]
    );
    // The app answers with the form; the view edits it in place.
    let form = SettingsForm::new(&h.state().profiles[0]);
    h.state_mut().forms.settings = Some(form);
    h.run_steps(2);
    h.get_by_role_and_label(Role::TextInput, "Memory").focus();
    h.run_steps(1);
    h.get_by_role_and_label(Role::TextInput, "Memory")
        .type_text("256M");
    h.run_steps(2);
    assert_eq!(
        h.state().forms.settings.as_ref().unwrap().memory,
        "256M",
        "the form holds what was typed"
    );
    let actions = click(&mut h, "Save");
    let [Action::SaveProfile(saved)] = &actions[..] else {
        panic!("{actions:?}");
    };
    assert_eq!(saved.name, "editor");
    assert_eq!(saved.limits.memory, Some(256 << 20));
    assert_eq!(saved.command, ["/usr/bin/editor"], "other keys are kept");
    // Revert is the form's own business: no action.
    assert!(click(&mut h, "Revert").is_empty());
    assert_eq!(h.state().forms.settings.as_ref().unwrap().memory, "");
}

#[test]
fn dialogs_ask_to_close_or_to_do_what_they_offer() {
    let mut f = fixture();
    f.forms.dialog = Some(Dialog::Message {
        title: "This cannot be launched".into(),
        text: "why".into(),
    });
    let mut h = harness(f);
    h.run_steps(2);
    assert_eq!(click(&mut h, "OK"), [Action::CloseDialog]);
    assert!(
        h.state().forms.dialog.is_some(),
        "the app closes the dialog"
    );
    h.state_mut().forms.dialog = Some(Dialog::OpenWith {
        path: PathBuf::from("/tmp/notes.txt"),
        profile: Some("editor".into()),
        writable: false,
    });
    h.run_steps(3);
    h.get_by_label("Let the app change this file").click();
    h.run_steps(2);
    assert_eq!(
        click(&mut h, "Open"),
        [Action::OpenWith {
            path: PathBuf::from("/tmp/notes.txt"),
            profile: "editor".into(),
            writable: true,
        }]
    );
}
