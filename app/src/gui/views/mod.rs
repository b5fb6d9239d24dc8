//! Drawing: the top bar with the pages, the status bar, the page itself, dialogs, notices.
//!
//! Views read a [`View`] (the model, the UI state, the profiles, the time), edit only their
//! own form ([`Forms`]), and push what the user asked for as [`Action`]s; they never send a
//! request or write a file.

pub mod details;
pub mod dialogs;
pub mod list;
pub mod settings;
pub mod style;
pub mod system;
pub mod widgets;

use hutch_core::profile::{Profile, ProfileError};

use super::action::Action;
use super::forms::Forms;
use super::model::{Connection, Model};
use super::state::{Page, UiState};

/// What the views read.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub model: &'a Model,
    pub ui: &'a UiState,
    pub profiles: &'a [Profile],
    pub broken_profiles: &'a [ProfileError],
    /// Milliseconds since the Unix epoch, for uptimes, graphs and toasts.
    pub now_ms: u64,
}

impl View<'_> {
    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.name == name)
    }
}

/// The parts of the window, in drawing order. The app carries out each part's actions before
/// it draws the next, so a dialog opened from the top bar shows in the same frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    TopBar,
    StatusBar,
    Page,
    Dialog,
    Toasts,
}

impl Part {
    pub const ALL: [Self; 5] = [
        Self::TopBar,
        Self::StatusBar,
        Self::Page,
        Self::Dialog,
        Self::Toasts,
    ];
}

/// One part of the window: what the user asks for goes to `actions`.
pub fn draw(
    part: Part,
    ui: &mut egui::Ui,
    view: &View,
    forms: &mut Forms,
    actions: &mut Vec<Action>,
) {
    match part {
        Part::TopBar => {
            egui::Panel::top("top").show(ui, |ui| top_bar(view, ui, actions));
        }
        Part::StatusBar => {
            egui::Panel::bottom("status").show(ui, |ui| status_bar(view, ui, actions));
        }
        Part::Page => {
            egui::CentralPanel::default().show(ui, |ui| match view.ui.page {
                Page::Sandboxes => list::page(view, ui, actions),
                Page::Profiles => settings::page(view, &mut forms.settings, ui, actions),
                Page::SystemCheck => system::page(view, ui, actions),
            });
        }
        Part::Dialog => {
            if let Some(dialog) = &mut forms.dialog {
                dialogs::show(view, dialog, ui.ctx(), actions);
            }
        }
        Part::Toasts => {
            widgets::toasts(view, ui.ctx(), actions);
            drop_hint(ui.ctx());
        }
    }
}

fn top_bar(view: &View, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    ui.add_space(6.0);
    ui.horizontal(|ui| {
        ui.heading(egui::RichText::new("Hutch").strong());
        ui.add_space(16.0);
        let running = view
            .model
            .sandboxes
            .iter()
            .filter(|s| s.state != hutch_core::protocol::SandboxState::Exited)
            .count();
        for (page, label) in [
            (Page::Sandboxes, format!("Sandboxes ({running})")),
            (Page::Profiles, "App profiles".to_owned()),
            (Page::SystemCheck, "System check".to_owned()),
        ] {
            if ui.selectable_label(view.ui.page == page, label).clicked() {
                actions.push(Action::ShowPage(page));
            }
        }
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            if ui
                .button("Launch…")
                .on_hover_text(
                    "Choose a program, script, .desktop file or AppImage to run sandboxed",
                )
                .clicked()
            {
                actions.push(Action::OpenChooser);
            }
        });
    });
    ui.add_space(4.0);
}

fn status_bar(view: &View, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    ui.horizontal(|ui| {
        match view.model.connection() {
            Connection::Connected {
                helper_version,
                helper_pid,
                ..
            } => {
                widgets::dot(ui, style::OK);
                ui.label(format!("Helper {helper_version} (pid {helper_pid})"));
            }
            Connection::Connecting => {
                widgets::dot(ui, style::WARN);
                ui.label("Connecting to the helper…");
            }
            Connection::Lost { reason } => {
                widgets::dot(ui, style::BAD);
                ui.label("Helper unreachable, retrying")
                    .on_hover_text(reason);
            }
        }
        ui.separator();
        match view.model.limits_available() {
            Ok(()) => {
                widgets::dot(ui, style::OK);
                ui.label("Limits and metrics: cgroup v2");
            }
            Err(reason) => {
                widgets::dot(ui, style::WARN);
                ui.label("Limits off · metrics from /proc")
                    .on_hover_text(reason);
            }
        }
        ui.separator();
        match view.model.networking() {
            Some((hutch_core::protocol::CheckStatus::Ok, detail)) => {
                widgets::dot(ui, style::OK);
                ui.label("Networking").on_hover_text(detail);
            }
            Some((_, detail)) => {
                widgets::dot(ui, style::BAD);
                ui.label("No networking").on_hover_text(detail);
            }
            None => {
                widgets::dot(ui, style::MUTED);
                ui.label("Networking: not checked yet");
            }
        }
        if view
            .model
            .doctor
            .as_ref()
            .is_some_and(|d| d.overall() != hutch_core::protocol::CheckStatus::Ok)
        {
            ui.separator();
            if ui.link("See the system check").clicked() {
                actions.push(Action::ShowPage(Page::SystemCheck));
            }
        }
    });
}

fn drop_hint(ctx: &egui::Context) {
    let hovering = ctx.input(|i| !i.raw.hovered_files.is_empty());
    if !hovering {
        return;
    }
    let rect = ctx.content_rect();
    let painter = ctx.layer_painter(egui::LayerId::new(
        egui::Order::Foreground,
        egui::Id::unique("drop-hint"),
    ));
    painter.rect_filled(rect, 0.0, egui::Color32::from_black_alpha(160));
    painter.text(
        rect.center(),
        egui::Align2::CENTER_CENTER,
        "Drop to run it in a sandbox",
        egui::FontId::proportional(28.0),
        egui::Color32::WHITE,
    );
}
