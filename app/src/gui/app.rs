//! The window: the helper's updates taken into the model, dropped files launched, and every
//! [`Action`] of the views carried out in one place ([`HutchApp::apply`]): requests to the
//! helper, profile files, the UI state.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use hutch_core::profile::{Profile, ProfileError, Share, ShareMode};
use hutch_core::protocol::{RunRequest, SandboxState, ShareSpec, Stdio};

use super::action::Action;
use super::forms::{Chooser, Dialog, Forms, NewProfileForm, SettingsForm};
use super::link::{Command, Link};
use super::model::{Model, Notice};
use super::notify::Notifier;
use super::report::Reporter;
use super::state::{DetailTab, Page, UiState};
use super::views;
use crate::launchable::{self, Dropped, Launch};

/// Milliseconds since the Unix epoch; fixed in tests so snapshots do not change.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now_ms())
    }
}

impl Clock {
    pub fn system() -> Self {
        Self(Arc::new(hutch_client::now_ms))
    }

    pub fn fixed(ms: u64) -> Self {
        Self(Arc::new(move || ms))
    }

    pub fn now_ms(&self) -> u64 {
        (self.0)()
    }
}

/// A run from the window: under `profile`, its output kept by the helper (no terminal), the
/// window's environment (the helper keeps its allowlist), everything else from the profile.
fn window_run(
    profile: &str,
    command: Vec<String>,
    shares: Vec<ShareSpec>,
    cwd: Option<String>,
) -> RunRequest {
    RunRequest {
        profile: Some(profile.to_owned()),
        command,
        shares,
        home: None,
        env: std::env::vars().collect(),
        cwd,
        stdio: Stdio::Log,
        net: None,
        net_backend: None,
        allow_host_loopback: false,
        publish: Vec::new(),
        limits: Default::default(),
        display: None,
        audio: false,
        gpu: false,
        // The window's sandboxes outlive a closed window (they are listed when it opens again).
        bound_to_caller: false,
    }
}

/// The Hutch window.
pub struct HutchApp {
    pub link: Box<dyn Link>,
    pub clock: Clock,
    pub model: Model,
    pub profiles_dir: PathBuf,
    pub profiles: Vec<Profile>,
    pub broken_profiles: Vec<ProfileError>,
    /// The page, selection, tab and span: what the views read.
    pub ui: UiState,
    /// The dialog and the settings form: what the views edit.
    pub forms: Forms,
    /// Requests of the sandboxes started here, for "Run again".
    pub launched: HashMap<String, (RunRequest, String)>,
    /// Run requests sent and not yet answered, by ticket, for "Run again" bookkeeping.
    pending_runs: Vec<(u64, RunRequest, String)>,
    /// The ticket of the next run request.
    next_ticket: u64,
    /// When the processes or output of the selected sandbox were last asked for.
    pub last_poll_ms: u64,
    notifier: Option<Notifier>,
    reporter: Option<Reporter>,
    /// `HUTCH_GUI_SHOW=details` selects the first running sandbox once one is listed (for
    /// `screenshots/take.sh`).
    show_details: bool,
    /// When the last update from the helper arrived (each one repaints the window).
    last_update: Option<Instant>,
}

impl std::fmt::Debug for HutchApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HutchApp").field("ui", &self.ui).finish()
    }
}

impl HutchApp {
    pub fn new(
        ctx: &egui::Context,
        link: Box<dyn Link>,
        clock: Clock,
        profiles_dir: PathBuf,
    ) -> Self {
        views::style::apply(ctx);
        link.send(Command::Doctor);
        let mut app = Self {
            link,
            clock,
            model: Model::default(),
            profiles_dir,
            profiles: Vec::new(),
            broken_profiles: Vec::new(),
            ui: UiState::default(),
            forms: Forms::default(),
            launched: HashMap::new(),
            pending_runs: Vec::new(),
            next_ticket: 1,
            last_poll_ms: 0,
            notifier: None,
            reporter: Reporter::from_env(),
            show_details: false,
            last_update: None,
        };
        app.reload_profiles();
        match std::env::var("HUTCH_GUI_SHOW").as_deref() {
            Ok("details") => app.show_details = true,
            Ok("system") => app.ui.page = Page::SystemCheck,
            Ok(other) => {
                if let Some(name) = other.strip_prefix("profile:")
                    && let Some(p) = app.profile(name)
                {
                    app.forms.settings = Some(SettingsForm::new(p));
                    app.ui.page = Page::Profiles;
                }
            }
            Err(_) => {}
        }
        app
    }

    /// Sends desktop notifications too (not in tests).
    pub fn with_desktop_notifications(mut self) -> Self {
        self.notifier = Notifier::start();
        self
    }

    pub fn reload_profiles(&mut self) {
        let (good, bad) = hutch_client::profiles::list(&self.profiles_dir);
        self.profiles = good;
        self.broken_profiles = bad;
    }

    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    pub fn message(&mut self, title: impl Into<String>, text: impl Into<String>) {
        self.forms.dialog = Some(Dialog::Message {
            title: title.into(),
            text: text.into(),
        });
    }

    /// Takes the helper's updates.
    fn pump(&mut self) {
        let now = self.clock.now_ms();
        while let Some(update) = self.link.try_recv() {
            self.last_update = Some(Instant::now());
            let answered = match &update {
                super::link::Update::Started { ticket, .. }
                | super::link::Update::Failed { ticket, .. } => *ticket,
                _ => None,
            };
            if let Some(i) = answered
                .and_then(|ticket| self.pending_runs.iter().position(|(t, ..)| *t == ticket))
            {
                let (_, request, title) = self.pending_runs.remove(i);
                if let super::link::Update::Started { id, .. } = &update {
                    self.launched.insert(id.clone(), (request, title));
                    self.ui.selected = Some(id.clone());
                }
            }
            let added = self.model.apply(update, now);
            let notices: Vec<Notice> =
                self.model.notices[self.model.notices.len() - added..].to_vec();
            if let Some(notifier) = &self.notifier {
                for n in &notices {
                    notifier.send(n);
                }
            }
        }
        if self.show_details
            && let Some(s) = self
                .model
                .sandboxes
                .iter()
                .find(|s| s.state == SandboxState::Running)
        {
            self.ui.selected = Some(s.id.clone());
            self.show_details = false;
        }
        // Keep the selected sandbox's lists fresh while they are shown.
        if let (Page::Sandboxes, Some(id)) = (self.ui.page, self.ui.selected.clone())
            && now.saturating_sub(self.last_poll_ms) >= 1000
        {
            let running = self
                .model
                .sandbox(&id)
                .is_some_and(|s| s.state != SandboxState::Exited);
            match self.ui.tab {
                DetailTab::Processes if running => {
                    self.link.send(Command::Processes { id });
                    self.last_poll_ms = now;
                }
                DetailTab::Output if !self.model.outputs.get(&id).is_some_and(|o| o.finished) => {
                    let since = self.model.outputs.get(&id).map(|o| o.end);
                    self.link.send(Command::Logs { id, since });
                    self.last_poll_ms = now;
                }
                DetailTab::Anatomy if running && !self.model.anatomy.contains_key(&id) => {
                    self.link.send(Command::Inspect { id });
                    self.last_poll_ms = now;
                }
                _ => {}
            }
        }
    }

    /// The request that runs `launch` under its profile.
    fn run_request(&self, launch: &Launch, profile: &Profile) -> RunRequest {
        let shares = launch
            .shares
            .iter()
            .filter(|s| !profile.shares.iter().any(|p| p.path == s.path))
            .cloned()
            .collect();
        window_run(
            &profile.name,
            launch.command.clone(),
            shares,
            launch.cwd.clone(),
        )
    }

    /// Sends a run request and remembers it for "Run again".
    pub fn start(&mut self, request: RunRequest, title: String) {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.pending_runs
            .push((ticket, request.clone(), title.clone()));
        self.link.send(Command::Run {
            request: Box::new(request),
            title,
            ticket,
        });
    }

    /// Launches a file the user dropped or chose: at once under its profile, or through
    /// the first-launch dialog; a data file opens the open-with dialog.
    pub fn open_path(&mut self, path: &Path) {
        match launchable::classify(path) {
            Ok(Dropped::Launch(launch)) => match self.profile(&launch.profile).cloned() {
                Some(profile) => {
                    let request = self.run_request(&launch, &profile);
                    self.start(request, launch.title.clone());
                }
                None => {
                    // Desktop entries and AppImages are graphical apps, as a rule.
                    let desktop = matches!(
                        launch.kind,
                        launchable::Kind::Desktop { .. } | launchable::Kind::AppImage
                    );
                    self.forms.dialog = Some(Dialog::NewProfile(NewProfileForm {
                        name: launch.profile.clone(),
                        network: false,
                        keep_home: desktop,
                        desktop,
                        error: None,
                        launch,
                    }));
                }
            },
            Ok(Dropped::Data(path)) => {
                let openers: Vec<&Profile> = self
                    .profiles
                    .iter()
                    .filter(|p| !p.command.is_empty())
                    .collect();
                if openers.is_empty() {
                    self.message(
                        "Nothing can open this file",
                        format!(
                            "{} is neither a program nor a script, and no app profile has a \
                             command to open files with. Drop an app here first; then files \
                             can be opened with it.",
                            path.display()
                        ),
                    );
                } else {
                    self.forms.dialog = Some(Dialog::OpenWith {
                        profile: Some(openers[0].name.clone()),
                        path,
                        writable: false,
                    });
                }
            }
            Err(e) => self.message("This cannot be launched", e.to_string()),
        }
    }

    /// Creates the profile of the first-launch dialog and launches the app under it.
    pub fn create_profile_and_launch(&mut self, form: &NewProfileForm) -> Result<(), String> {
        hutch_core::profile::validate_name(&form.name)
            .map_err(|reason| format!("invalid name: {reason}"))?;
        if self.profile(&form.name).is_some() {
            return Err(format!("a profile named {} exists already", form.name));
        }
        let mut profile = Profile::with_defaults(&form.name);
        profile.description = format!("Made by Hutch for {}", form.launch.path.display());
        profile.command = form.launch.command.clone();
        profile.network = if form.network {
            hutch_core::network::NetworkMode::User
        } else {
            hutch_core::network::NetworkMode::None
        };
        profile.home = if form.keep_home {
            hutch_core::profile::HomeMode::Persist
        } else {
            hutch_core::profile::HomeMode::Tmp
        };
        if form.desktop {
            profile.display = hutch_core::profile::DisplayMode::Auto;
            // Sound only where a sound server runs: asking for it elsewhere stops the start.
            profile.audio = std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|dir| {
                let dir = PathBuf::from(dir);
                dir.join("pipewire-0").exists() || dir.join("pulse/native").exists()
            });
        }
        profile.shares = form
            .launch
            .shares
            .iter()
            .map(|s| Share {
                path: s.path.clone(),
                mode: s.mode,
                sockets: s.sockets,
            })
            .collect();
        hutch_client::profiles::save(&self.profiles_dir, &profile).map_err(|e| e.to_string())?;
        self.reload_profiles();
        let request = self.run_request(&form.launch, &profile);
        self.start(request, form.launch.title.clone());
        Ok(())
    }

    /// Opens a data file with an app profile, sharing that file alone.
    pub fn open_with(&mut self, path: &Path, profile: &str, writable: bool) {
        let Some(p) = self.profile(profile).cloned() else {
            self.message("No such profile", format!("the profile {profile} is gone"));
            return;
        };
        let mut command = p.command.clone();
        command.push(path.display().to_string());
        let share = ShareSpec::new(
            path.display().to_string(),
            if writable {
                ShareMode::ReadWrite
            } else {
                ShareMode::ReadOnly
            },
        );
        let request = window_run(&p.name, command, vec![share], None);
        let title = format!(
            "{} ({})",
            p.name,
            path.file_name().unwrap_or_default().to_string_lossy()
        );
        self.start(request, title);
    }

    /// Starts an exited sandbox's app again, the same way.
    pub fn run_again(&mut self, id: &str) {
        if let Some((request, title)) = self.launched.get(id).cloned() {
            self.start(request, title);
            return;
        }
        let Some(info) = self.model.sandbox(id).cloned() else {
            return;
        };
        let request = window_run(&info.profile, info.command.clone(), Vec::new(), None);
        self.start(request, super::model::title(&info));
    }

    /// Carries out what a view asked for: the only place the window sends requests, writes
    /// profiles and changes its UI state on the user's behalf.
    pub fn apply(&mut self, action: Action) {
        match action {
            Action::ShowPage(page) => {
                self.ui.page = page;
                if page == Page::Profiles {
                    self.reload_profiles();
                }
            }
            Action::Select(id) => self.ui.selected = Some(id),
            Action::ShowTab(tab) => {
                if self.ui.tab != tab {
                    self.ui.tab = tab;
                    self.last_poll_ms = 0;
                }
            }
            Action::SetSpan(span) => self.ui.span = span,
            Action::DismissToasts(n) => self.ui.toasts_seen = self.ui.toasts_seen.max(n),
            Action::Stop(id) => self.link.send(Command::Stop { id }),
            Action::Pause(id) => self.link.send(Command::Pause { id }),
            Action::Resume(id) => self.link.send(Command::Resume { id }),
            Action::RunAgain(id) => self.run_again(&id),
            Action::Inspect(id) => self.link.send(Command::Inspect { id }),
            Action::CheckSystem => self.link.send(Command::Doctor),
            Action::OpenChooser => {
                let home = std::env::var_os("HOME")
                    .map(Into::into)
                    .unwrap_or_else(|| "/".into());
                self.forms.dialog = Some(Dialog::Chooser(Chooser::open(home)));
            }
            Action::CloseDialog => self.forms.dialog = None,
            Action::OpenPath(path) => {
                self.forms.dialog = None;
                self.open_path(&path);
            }
            Action::CreateProfile(mut form) => {
                self.forms.dialog = None;
                if let Err(e) = self.create_profile_and_launch(&form) {
                    form.error = Some(e);
                    self.forms.dialog = Some(Dialog::NewProfile(form));
                }
            }
            Action::OpenWith {
                path,
                profile,
                writable,
            } => {
                self.forms.dialog = None;
                self.open_with(&path, &profile, writable);
            }
            Action::EditProfile(name) => {
                if let Some(p) = self.profile(&name) {
                    self.forms.settings = Some(SettingsForm::new(p));
                }
            }
            Action::SaveProfile(profile) => self.save_profile(profile),
        }
    }

    /// Writes the profile and applies its limits to the app's running sandboxes.
    fn save_profile(&mut self, profile: Profile) {
        match hutch_client::profiles::save(&self.profiles_dir, &profile) {
            Ok(file) => {
                let live: Vec<String> = self
                    .model
                    .sandboxes
                    .iter()
                    .filter(|s| s.profile == profile.name && s.state != SandboxState::Exited)
                    .map(|s| s.id.clone())
                    .collect();
                let limits_changed = self
                    .forms
                    .settings
                    .as_ref()
                    .is_some_and(|f| f.original.limits != profile.limits);
                let mut note = format!("Saved to {}", file.display());
                if limits_changed && !live.is_empty() && !profile.limits.is_empty() {
                    for id in &live {
                        self.link.send(Command::Limit {
                            id: id.clone(),
                            limits: profile.limits,
                        });
                    }
                    note.push_str(&format!(
                        "; new limits applied to {} running sandbox(es)",
                        live.len()
                    ));
                }
                self.reload_profiles();
                let mut form = SettingsForm::new(&profile);
                form.saved = Some(note);
                self.forms.settings = Some(form);
            }
            Err(e) => {
                if let Some(f) = self.forms.settings.as_mut() {
                    f.save_error = Some(e.to_string());
                }
            }
        }
    }

    fn take_drops(&mut self, ctx: &egui::Context) {
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_owned())
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        });
        for path in dropped {
            self.open_path(&path);
        }
    }
}

impl eframe::App for HutchApp {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        let started = Instant::now();
        let ctx = ui.ctx().clone();
        if std::env::var_os("HUTCH_DEBUG_REPAINT").is_some() {
            eprintln!(
                "frame {:?}: {:?}",
                ctx.cumulative_pass_nr(),
                ctx.repaint_causes()
            );
        }
        self.pump();
        self.take_drops(&ctx);
        // A sandbox gone from the list is no longer selected.
        if self.ui.page == Page::Sandboxes
            && !self.model.sandboxes.is_empty()
            && self
                .ui
                .selected
                .as_ref()
                .is_some_and(|id| self.model.sandbox(id).is_none())
        {
            self.ui.selected = None;
        }
        let now_ms = self.clock.now_ms();
        let mut acted = false;
        for part in views::Part::ALL {
            let mut actions = Vec::new();
            let view = views::View {
                model: &self.model,
                ui: &self.ui,
                profiles: &self.profiles,
                broken_profiles: &self.broken_profiles,
                now_ms,
            };
            views::draw(part, ui, &view, &mut self.forms, &mut actions);
            acted |= !actions.is_empty();
            for action in actions {
                self.apply(action);
            }
        }
        if acted {
            // What changed inside a part shows in the next frame.
            ctx.request_repaint();
        }
        // Uptimes tick once a second. While samples stream (every second), their arrival
        // repaints; a timer is needed only when they stop, so frames are not doubled.
        let streaming = self
            .last_update
            .is_some_and(|t| t.elapsed() < std::time::Duration::from_millis(1500));
        let live = self
            .model
            .sandboxes
            .iter()
            .any(|s| s.state != SandboxState::Exited);
        if (live || self.ui.selected.is_some()) && !streaming {
            ctx.request_repaint_after(std::time::Duration::from_secs(1));
        }
        if let Some(r) = &mut self.reporter {
            r.frame(started.elapsed(), frame.info().cpu_usage, &self.model);
        }
    }
}
