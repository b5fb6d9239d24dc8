//! The settings of each app profile: limits, network, home, shared folders and desktop
//! permissions. Invalid values are flagged beside their field and Save stays off; Save asks
//! for [`Action::SaveProfile`], which writes the same TOML files the CLI reads, atomically,
//! and applies new limits at once to the app's running sandboxes.

use egui::{RichText, Ui};
use hutch_core::network::NetworkMode;
use hutch_core::profile::{DisplayMode, HomeMode, Share, ShareMode};

use super::super::action::Action;
use super::super::forms::SettingsForm;
use super::{View, style, widgets};

pub fn page(
    view: &View,
    settings: &mut Option<SettingsForm>,
    ui: &mut Ui,
    actions: &mut Vec<Action>,
) {
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
            let current = settings.as_ref().map(|f| f.original.name.as_str());
            for p in view.profiles {
                let name = &p.name;
                ui.horizontal(|ui| {
                    widgets::avatar(ui, name, 20.0);
                    if ui.selectable_label(current == Some(name), name).clicked() {
                        actions.push(Action::EditProfile(name.clone()));
                    }
                });
            }
            if view.profiles.is_empty() {
                ui.label(
                    RichText::new("No profiles yet: drop an app on the window.")
                        .color(style::MUTED),
                );
            }
            for bad in view.broken_profiles {
                ui.label(RichText::new(format!("! {bad}")).small().color(style::BAD));
            }
        });
    egui::CentralPanel::default().show(ui, |ui| {
        let Some(f) = settings else {
            ui.centered_and_justified(|ui| {
                ui.label(
                    RichText::new("Choose a profile to change its settings").color(style::MUTED),
                );
            });
            return;
        };
        egui::ScrollArea::vertical().show(ui, |ui| form(view, f, ui, actions));
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

/// The form of one profile: edited in place; Save pushes the profile it describes.
pub fn form(view: &View, f: &mut SettingsForm, ui: &mut Ui, actions: &mut Vec<Action>) {
    let limits_ok = view.model.limits_available();
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
        actions.push(Action::SaveProfile(profile));
    }
}
