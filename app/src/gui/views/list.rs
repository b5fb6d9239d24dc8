//! The main page: every sandbox, running and recently exited, with live sparklines and
//! actions; the selected one's details beside the list.

use egui::{RichText, Ui, vec2};
use hutch_core::protocol::SandboxState;

use super::super::action::Action;
use super::super::model::title;
use super::{View, details, style, widgets};

/// Sparklines show the last minute.
const SPARK_MS: u64 = 60_000;

pub fn page(view: &View, ui: &mut Ui, actions: &mut Vec<Action>) {
    if view.model.sandboxes.is_empty() {
        empty(ui, actions);
        return;
    }
    egui::Panel::left("sandbox-list")
        .resizable(true)
        .default_size(430.0)
        .show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| {
                for info in &view.model.sandboxes {
                    row(view, ui, info, actions);
                }
            });
        });
    egui::CentralPanel::default().show(ui, |ui| match &view.ui.selected {
        Some(id) => details::show(view, ui, id, actions),
        None => {
            ui.centered_and_justified(|ui| {
                ui.label(
                    RichText::new("Select a sandbox to see its graphs, processes and output")
                        .color(style::MUTED),
                );
            });
        }
    });
}

fn empty(ui: &mut Ui, actions: &mut Vec<Action>) {
    ui.vertical_centered(|ui| {
        ui.add_space(ui.available_height() * 0.3);
        ui.label(RichText::new("Drop an app here to run it in a sandbox").size(24.0));
        ui.add_space(8.0);
        ui.label(
            RichText::new(
                "A program, a script, a .desktop file or an AppImage. It sees only its own \
                 files, and you watch what it uses.",
            )
            .color(style::MUTED),
        );
        ui.add_space(16.0);
        if ui.button("Launch…").clicked() {
            actions.push(Action::OpenChooser);
        }
    });
}

fn row(
    view: &View,
    ui: &mut Ui,
    info: &hutch_core::protocol::SandboxInfo,
    actions: &mut Vec<Action>,
) {
    let id = info.id.as_str();
    let now = view.now_ms;
    let selected = view.ui.selected.as_deref() == Some(id);
    let frame = egui::Frame::new()
        .inner_margin(egui::Margin::same(8))
        .corner_radius(6.0)
        .fill(if selected {
            ui.visuals().selection.bg_fill.gamma_multiply(0.35)
        } else {
            ui.visuals().faint_bg_color
        });
    // The row senses clicks below its buttons (a click on Stop stops, elsewhere selects).
    let row = egui::UiBuilder::new().sense(egui::Sense::click());
    let response = ui
        .scope_builder(row, |ui| {
            frame.show(ui, |ui| {
                ui.set_width(ui.available_width());
                ui.horizontal(|ui| {
                    widgets::avatar(ui, &title(info), 32.0);
                    ui.vertical(|ui| {
                        ui.horizontal(|ui| {
                            ui.label(RichText::new(title(info)).strong());
                            let (text, color) = widgets::state(info);
                            widgets::chip(ui, &text, color);
                        });
                        let command = info.command.join(" ");
                        ui.label(
                            RichText::new(widgets::ellipsize(&command, 48))
                                .small()
                                .color(style::MUTED),
                        )
                        .on_hover_text(command);
                        ui.horizontal(|ui| {
                            let live = info.state != SandboxState::Exited;
                            let uptime = now.saturating_sub(info.started_at_ms);
                            ui.label(
                                RichText::new(if live {
                                    format!("up {}", hutch_core::units::duration_ms(uptime))
                                } else {
                                    format!("id {}", &info.id)
                                })
                                .small(),
                            );
                            if live {
                                sparklines(view, ui, id, now);
                            }
                        });
                        ui.horizontal(|ui| buttons(view, ui, info, actions));
                    });
                });
            })
        })
        .response;
    if response.clicked() {
        actions.push(Action::Select(id.to_owned()));
    }
    ui.add_space(4.0);
}

fn sparklines(view: &View, ui: &mut Ui, id: &str, now: u64) {
    let Some(h) = view.model.history.get(id) else {
        ui.label(
            RichText::new("waiting for samples")
                .small()
                .color(style::MUTED),
        );
        return;
    };
    let recent: Vec<&super::super::history::Point> = h
        .points()
        .iter()
        .filter(|p| p.at_ms + SPARK_MS >= now)
        .collect();
    let cpu: Vec<f64> = recent.iter().map(|p| p.cpu_percent).collect();
    let mem: Vec<f64> = recent.iter().map(|p| p.memory_bytes).collect();
    let latest = h.latest();
    ui.label(RichText::new("CPU").small().color(style::CPU));
    widgets::sparkline(
        ui,
        &cpu,
        cpu.iter().copied().fold(100.0, f64::max),
        style::CPU,
        vec2(70.0, 18.0),
    );
    ui.label(
        RichText::new(format!("{:.0}%", latest.map_or(0.0, |p| p.cpu_percent)))
            .small()
            .monospace(),
    );
    ui.label(RichText::new("Mem").small().color(style::MEMORY));
    let mem_max = latest
        .and_then(|p| p.memory_limit)
        .unwrap_or_else(|| mem.iter().copied().fold(1.0, f64::max) * 1.2);
    widgets::sparkline(ui, &mem, mem_max, style::MEMORY, vec2(70.0, 18.0));
    ui.label(
        RichText::new(widgets::bytes(latest.map_or(0.0, |p| p.memory_bytes)))
            .small()
            .monospace(),
    );
}

fn buttons(
    view: &View,
    ui: &mut Ui,
    info: &hutch_core::protocol::SandboxInfo,
    actions: &mut Vec<Action>,
) {
    let id = info.id.clone();
    match info.state {
        SandboxState::Exited => {
            if ui.small_button("Run again").clicked() {
                actions.push(Action::RunAgain(id.clone()));
            }
        }
        state => {
            if ui
                .add_enabled(
                    state != SandboxState::Stopping,
                    egui::Button::new("Stop").small(),
                )
                .on_hover_text("SIGTERM, then SIGKILL after 5 seconds")
                .clicked()
            {
                actions.push(Action::Stop(id.clone()));
            }
            let limits = view.model.limits_available();
            let (label, action) = if state == SandboxState::Paused {
                ("Resume", Action::Resume(id.clone()))
            } else {
                ("Pause", Action::Pause(id.clone()))
            };
            let button = ui.add_enabled(limits.is_ok(), egui::Button::new(label).small());
            let button = match &limits {
                Ok(()) => button.on_hover_text("Freeze or thaw every process of the app"),
                Err(reason) => {
                    button.on_disabled_hover_text(format!("Pausing needs cgroups: {reason}"))
                }
            };
            if button.clicked() {
                actions.push(action);
            }
        }
    }
    if ui.small_button("Details").clicked() {
        actions.push(Action::Select(id));
    }
}
