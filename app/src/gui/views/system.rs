//! The system check: what `hutch doctor` finds, with the fix for each problem.

use egui::{RichText, Ui};
use hutch_core::protocol::CheckStatus;

use super::super::action::Action;
use super::{View, style, widgets};

pub fn page(view: &View, ui: &mut Ui, actions: &mut Vec<Action>) {
    ui.horizontal(|ui| {
        ui.heading("System check");
        if ui.button("Check again").clicked() {
            actions.push(Action::CheckSystem);
        }
    });
    ui.label(
        RichText::new("What this system lets Hutch do, and how to fix what it does not.")
            .color(style::MUTED),
    );
    ui.add_space(8.0);
    let Some(report) = &view.model.doctor else {
        ui.label("Running the checks…");
        return;
    };
    egui::ScrollArea::vertical().show(ui, |ui| {
        for c in &report.checks {
            let (color, word) = match c.status {
                CheckStatus::Ok => (style::OK, "ok"),
                CheckStatus::Warn => (style::WARN, "warning"),
                CheckStatus::Fail => (style::BAD, "failed"),
            };
            egui::Frame::group(ui.style()).show(ui, |ui| {
                ui.set_width(ui.available_width());
                ui.horizontal(|ui| {
                    widgets::dot(ui, color);
                    ui.label(RichText::new(&c.title).strong());
                    widgets::chip(ui, word, color);
                });
                ui.label(&c.detail);
                if let Some(fix) = &c.fix {
                    ui.horizontal_wrapped(|ui| {
                        ui.label(RichText::new("Fix:").strong());
                        ui.label(RichText::new(fix).monospace());
                    });
                }
            });
            ui.add_space(4.0);
        }
    });
}
