//! Drawing: the top bar with the pages, the status bar, the page itself, dialogs, notices.

pub mod details;
pub mod dialogs;
pub mod list;
pub mod settings;
pub mod style;
pub mod system;
pub mod widgets;

use super::app::{Chooser, Dialog, HutchApp, Page};
use super::model::Connection;

pub fn draw(app: &mut HutchApp, ui: &mut egui::Ui) {
    egui::Panel::top("top").show(ui, |ui| top_bar(app, ui));
    egui::Panel::bottom("status").show(ui, |ui| status_bar(app, ui));
    egui::CentralPanel::default().show(ui, |ui| match app.page {
        Page::Sandboxes => list::page(app, ui),
        Page::Profiles => settings::page(app, ui),
        Page::SystemCheck => system::page(app, ui),
    });
    dialogs::show(app, ui.ctx());
    widgets::toasts(app, ui.ctx());
    drop_hint(ui.ctx());
}

fn top_bar(app: &mut HutchApp, ui: &mut egui::Ui) {
    ui.add_space(6.0);
    ui.horizontal(|ui| {
        ui.heading(egui::RichText::new("Hutch").strong());
        ui.add_space(16.0);
        let running = app
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
            if ui.selectable_label(app.page == page, label).clicked() {
                app.page = page;
                if page == Page::Profiles {
                    app.reload_profiles();
                }
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
                let home = std::env::var_os("HOME")
                    .map(Into::into)
                    .unwrap_or_else(|| "/".into());
                app.dialog = Some(Dialog::Chooser(Chooser::open(home)));
            }
        });
    });
    ui.add_space(4.0);
}

fn status_bar(app: &mut HutchApp, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        match app.model.connection() {
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
        match app.model.limits_available() {
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
        match app.model.networking() {
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
        if app
            .model
            .doctor
            .as_ref()
            .is_some_and(|d| d.overall() != hutch_core::protocol::CheckStatus::Ok)
        {
            ui.separator();
            if ui.link("See the system check").clicked() {
                app.page = Page::SystemCheck;
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
