//! The settings of each app profile: limits, network, home, shared folders and desktop
//! permissions. Saved to the same TOML files the CLI reads, atomically; invalid values are
//! flagged beside their field and nothing is saved; new limits apply at once to the app's
//! running sandboxes.

use egui::{RichText, Ui};
use hutch_core::limits::{self, Limits};
use hutch_core::network::NetworkMode;
use hutch_core::profile::{DisplayMode, HomeMode, Profile, Share, ShareMode};
use hutch_core::protocol::SandboxState;

use super::super::app::HutchApp;
use super::super::link::Command;
use super::{style, widgets};

/// The form's text, as typed.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingsForm {
    pub original: Profile,
    pub memory: String,
    pub cpu_weight: String,
    pub cpu_cap: String,
    pub pids: String,
    pub network: NetworkMode,
    pub home: HomeMode,
    pub display: DisplayMode,
    pub audio: bool,
    pub gpu: bool,
    pub shares: Vec<Share>,
    pub new_share: String,
    pub saved: Option<String>,
    pub save_error: Option<String>,
}

/// The form's problems, by field.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Problems {
    pub memory: Option<String>,
    pub cpu_weight: Option<String>,
    pub cpu_cap: Option<String>,
    pub pids: Option<String>,
    pub new_share: Option<String>,
}

impl Problems {
    pub fn any(&self) -> bool {
        self.memory.is_some()
            || self.cpu_weight.is_some()
            || self.cpu_cap.is_some()
            || self.pids.is_some()
    }
}

fn opt<T>(
    text: &str,
    parse: impl Fn(&str) -> Result<T, limits::LimitError>,
) -> Result<Option<T>, String> {
    let t = text.trim();
    if t.is_empty() {
        Ok(None)
    } else {
        parse(t).map(Some).map_err(|e| e.to_string())
    }
}

impl SettingsForm {
    pub fn new(p: &Profile) -> Self {
        let l = &p.limits;
        Self {
            original: p.clone(),
            memory: l.memory.map(limits::format_size_exact).unwrap_or_default(),
            cpu_weight: l.cpu_weight.map(|w| w.to_string()).unwrap_or_default(),
            cpu_cap: l.cpu_percent.map(|c| format!("{c}%")).unwrap_or_default(),
            pids: l.pids.map(|n| n.to_string()).unwrap_or_default(),
            network: p.network,
            home: p.home,
            display: p.display,
            audio: p.audio,
            gpu: p.gpu,
            shares: p.shares.clone(),
            new_share: String::new(),
            saved: None,
            save_error: None,
        }
    }

    /// The profile the form describes, or what is wrong with it.
    pub fn profile(&self) -> (Profile, Problems) {
        let mut problems = Problems::default();
        let mut p = self.original.clone();
        let mut lim = Limits {
            memory_high: p.limits.memory_high,
            memory_swap: p.limits.memory_swap,
            io_weight: p.limits.io_weight,
            ..Limits::default()
        };
        match opt(&self.memory, limits::parse_memory) {
            Ok(v) => lim.memory = v,
            Err(e) => problems.memory = Some(e),
        }
        match opt(&self.cpu_weight, |s| limits::parse_weight(s, "CPU weight")) {
            Ok(v) => lim.cpu_weight = v,
            Err(e) => problems.cpu_weight = Some(e),
        }
        match opt(&self.cpu_cap, limits::parse_cpu) {
            Ok(v) => lim.cpu_percent = v,
            Err(e) => problems.cpu_cap = Some(e),
        }
        match opt(&self.pids, limits::parse_pids) {
            Ok(v) => lim.pids = v,
            Err(e) => problems.pids = Some(e),
        }
        if !self.new_share.trim().is_empty() {
            problems.new_share =
                hutch_core::profile::validate_share_path(self.new_share.trim()).err();
        }
        p.limits = lim;
        p.network = self.network;
        p.home = self.home;
        p.display = self.display;
        p.audio = self.audio;
        p.gpu = self.gpu;
        p.shares = self.shares.clone();
        (p, problems)
    }
}

pub fn page(app: &mut HutchApp, ui: &mut Ui) {
    egui::Panel::left("profile-list")
        .resizable(false)
        .exact_size(220.0)
        .show(ui, |ui| {
            ui.heading("App profiles");
            ui.label(
                RichText::new("One per app; made on its first launch.")
                    .small()
                    .color(style::MUTED),
            );
            ui.add_space(6.0);
            let current = app.settings.as_ref().map(|f| f.original.name.clone());
            let names: Vec<String> = app.profiles.iter().map(|p| p.name.clone()).collect();
            for name in names {
                ui.horizontal(|ui| {
                    widgets::avatar(ui, &name, 20.0);
                    if ui
                        .selectable_label(current.as_deref() == Some(&name), &name)
                        .clicked()
                        && let Some(p) = app.profile(&name)
                    {
                        app.settings = Some(SettingsForm::new(p));
                    }
                });
            }
            if app.profiles.is_empty() {
                ui.label(
                    RichText::new("No profiles yet: drop an app on the window.")
                        .color(style::MUTED),
                );
            }
            for bad in &app.broken_profiles {
                ui.label(RichText::new(format!("! {bad}")).small().color(style::BAD));
            }
        });
    egui::CentralPanel::default().show(ui, |ui| {
        if app.settings.is_none() {
            ui.centered_and_justified(|ui| {
                ui.label(
                    RichText::new("Choose a profile to change its settings").color(style::MUTED),
                );
            });
            return;
        }
        egui::ScrollArea::vertical().show(ui, |ui| form(app, ui));
    });
}

fn field(
    ui: &mut Ui,
    label: &str,
    hint: &str,
    text: &mut String,
    problem: &Option<String>,
    enabled: Result<(), String>,
) {
    let name = ui.label(label);
    ui.vertical(|ui| {
        let edit = ui
            .add_enabled(
                enabled.is_ok(),
                egui::TextEdit::singleline(text)
                    .hint_text(hint)
                    .desired_width(160.0),
            )
            .labelled_by(name.id);
        if let Err(reason) = &enabled {
            edit.on_disabled_hover_text(reason);
        }
        if let Some(p) = problem {
            ui.label(RichText::new(p).small().color(style::BAD));
        }
    });
    ui.end_row();
}

fn form(app: &mut HutchApp, ui: &mut Ui) {
    let limits_ok = app.model.limits_available();
    let Some(f) = app.settings.as_mut() else {
        return;
    };
    let (profile, problems) = f.profile();
    ui.horizontal(|ui| {
        widgets::avatar(ui, &f.original.name, 32.0);
        ui.heading(&f.original.name);
    });
    if !f.original.command.is_empty() {
        ui.label(
            RichText::new(f.original.command.join(" "))
                .monospace()
                .small()
                .color(style::MUTED),
        );
    }
    ui.add_space(8.0);
    ui.label(RichText::new("Limits").strong());
    if let Err(reason) = &limits_ok {
        ui.label(
            RichText::new(format!("Limits cannot be set here: {reason}"))
                .small()
                .color(style::WARN),
        );
    }
    egui::Grid::new("limits")
        .num_columns(2)
        .spacing([16.0, 8.0])
        .show(ui, |ui| {
            field(
                ui,
                "Memory",
                "no limit, e.g. 512M",
                &mut f.memory,
                &problems.memory,
                limits_ok.clone(),
            );
            field(
                ui,
                "CPU weight",
                "100 (1-10000)",
                &mut f.cpu_weight,
                &problems.cpu_weight,
                limits_ok.clone(),
            );
            field(
                ui,
                "CPU cap",
                "none, e.g. 50%",
                &mut f.cpu_cap,
                &problems.cpu_cap,
                limits_ok.clone(),
            );
            field(
                ui,
                "Processes",
                "no limit, e.g. 256",
                &mut f.pids,
                &problems.pids,
                limits_ok.clone(),
            );
        });
    ui.add_space(8.0);
    ui.label(RichText::new("Network and home").strong());
    egui::Grid::new("modes")
        .num_columns(2)
        .spacing([16.0, 8.0])
        .show(ui, |ui| {
            ui.label("Network");
            ui.horizontal(|ui| {
                ui.radio_value(&mut f.network, NetworkMode::None, "Off (loopback only)");
                ui.radio_value(&mut f.network, NetworkMode::User, "On (user-mode stack)");
            });
            ui.end_row();
            ui.label("Home folder");
            ui.horizontal(|ui| {
                ui.radio_value(&mut f.home, HomeMode::Tmp, "Throwaway (empty each run)");
                ui.radio_value(&mut f.home, HomeMode::Persist, "Kept for this app");
            });
            ui.end_row();
        });
    ui.add_space(8.0);
    ui.label(RichText::new("Shared folders and files").strong());
    let mut remove = None;
    for (i, s) in f.shares.iter_mut().enumerate() {
        ui.horizontal(|ui| {
            ui.label(RichText::new(&s.path).monospace());
            ui.radio_value(&mut s.mode, ShareMode::ReadOnly, "read-only");
            ui.radio_value(&mut s.mode, ShareMode::ReadWrite, "read-write");
            ui.checkbox(&mut s.sockets, "its sockets").on_hover_text(
                "Keep the Unix sockets in this folder reachable. Off, they are hidden: a \
                     socket lets the app make whatever listens on it (an agent, tmux, a \
                     display) act for it outside the sandbox.",
            );
            if s.mode == ShareMode::ReadWrite {
                ui.label(
                    RichText::new("the app can change these files")
                        .small()
                        .color(style::WARN),
                );
            }
            if s.sockets {
                ui.label(
                    RichText::new("the app can talk to what listens there")
                        .small()
                        .color(style::WARN),
                );
            }
            if ui.small_button("Remove").clicked() {
                remove = Some(i);
            }
        });
    }
    if let Some(i) = remove {
        f.shares.remove(i);
    }
    ui.horizontal(|ui| {
        ui.add(
            egui::TextEdit::singleline(&mut f.new_share)
                .hint_text("/path or ~/path")
                .desired_width(260.0),
        );
        let path = f.new_share.trim().to_owned();
        if ui
            .add_enabled(
                !path.is_empty() && problems.new_share.is_none(),
                egui::Button::new("Add read-only"),
            )
            .clicked()
        {
            f.shares.push(Share {
                path,
                mode: ShareMode::ReadOnly,
                sockets: false,
            });
            f.new_share.clear();
        }
    });
    if let Some(p) = &problems.new_share {
        ui.label(RichText::new(p).small().color(style::BAD));
    }
    ui.add_space(8.0);
    ui.label(RichText::new("Desktop").strong());
    egui::Grid::new("desktop")
        .num_columns(2)
        .spacing([16.0, 8.0])
        .show(ui, |ui| {
            ui.label("Windows");
            ui.horizontal(|ui| {
                ui.radio_value(&mut f.display, DisplayMode::None, "None");
                ui.radio_value(&mut f.display, DisplayMode::Wayland, "Wayland");
                ui.radio_value(&mut f.display, DisplayMode::Auto, "Wayland, else X11");
                ui.radio_value(&mut f.display, DisplayMode::X11, "X11 (unsafe)");
            });
            ui.end_row();
            ui.label("");
            ui.horizontal(|ui| {
                ui.checkbox(&mut f.audio, "Sound (PipeWire or PulseAudio)");
                ui.checkbox(&mut f.gpu, "GPU (/dev/dri)");
            });
            ui.end_row();
        });
    if matches!(f.display, DisplayMode::X11 | DisplayMode::Auto) {
        ui.label(
            RichText::new(
                "X11 lets the app read every keystroke and see every window of your session. \
                 Prefer Wayland.",
            )
            .small()
            .color(style::WARN),
        );
    }
    ui.label(
        RichText::new("Desktop permissions apply from the app's next start.")
            .small()
            .color(style::MUTED),
    );
    ui.add_space(12.0);
    let changed = profile != f.original;
    let saved = f.saved.clone();
    let save_error = f.save_error.clone();
    let mut save = false;
    ui.horizontal(|ui| {
        let button = ui.add_enabled(changed && !problems.any(), egui::Button::new("Save"));
        if problems.any() {
            button.on_disabled_hover_text("Fix the values marked in red first");
        } else if button.clicked() {
            save = true;
        }
        if ui
            .add_enabled(changed, egui::Button::new("Revert"))
            .clicked()
        {
            let original = f.original.clone();
            *f = SettingsForm::new(&original);
        }
        if let Some(s) = saved {
            ui.label(RichText::new(s).color(style::OK));
        }
        if let Some(e) = save_error {
            ui.label(RichText::new(e).color(style::BAD));
        }
    });
    if save {
        save_profile(app, profile);
    }
}

/// Writes the profile and applies its limits to the app's running sandboxes.
pub fn save_profile(app: &mut HutchApp, profile: Profile) {
    match hutch_client::profiles::save(&app.profiles_dir, &profile) {
        Ok(file) => {
            let live: Vec<String> = app
                .model
                .sandboxes
                .iter()
                .filter(|s| s.profile == profile.name && s.state != SandboxState::Exited)
                .map(|s| s.id.clone())
                .collect();
            let limits_changed = app
                .settings
                .as_ref()
                .is_some_and(|f| f.original.limits != profile.limits);
            let mut note = format!("Saved to {}", file.display());
            if limits_changed && !live.is_empty() && !profile.limits.is_empty() {
                for id in &live {
                    app.link.send(Command::Limit {
                        id: id.clone(),
                        limits: profile.limits,
                    });
                }
                note.push_str(&format!(
                    "; new limits applied to {} running sandbox(es)",
                    live.len()
                ));
            }
            app.reload_profiles();
            let mut form = SettingsForm::new(&profile);
            form.saved = Some(note);
            app.settings = Some(form);
        }
        Err(e) => {
            if let Some(f) = app.settings.as_mut() {
                f.save_error = Some(e.to_string());
            }
        }
    }
}
