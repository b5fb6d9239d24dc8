//! Small pieces: status dots, app avatars, state chips, sparklines, toasts, and formatting.

use egui::{Color32, Sense, Stroke, Ui, pos2, vec2};
use hutch_core::protocol::{ExitStatus, SandboxInfo, SandboxState};

use super::super::action::Action;
use super::super::model::Level;
use super::super::state::Page;
use super::{View, style};

pub fn dot(ui: &mut Ui, color: Color32) {
    let (rect, _) = ui.allocate_exact_size(vec2(10.0, 10.0), Sense::hover());
    ui.painter().circle_filled(rect.center(), 4.5, color);
}

/// A round badge with the app's initial.
pub fn avatar(ui: &mut Ui, name: &str, size: f32) {
    let (rect, _) = ui.allocate_exact_size(vec2(size, size), Sense::hover());
    let initial = name
        .chars()
        .find(|c| c.is_alphanumeric())
        .unwrap_or('?')
        .to_ascii_uppercase();
    ui.painter()
        .circle_filled(rect.center(), size / 2.0, style::avatar(name));
    ui.painter().text(
        rect.center(),
        egui::Align2::CENTER_CENTER,
        initial,
        egui::FontId::proportional(size * 0.5),
        Color32::WHITE,
    );
}

/// The state in words and colour.
pub fn state(info: &SandboxInfo) -> (String, Color32) {
    match (info.state, info.exit) {
        (SandboxState::Starting, _) => ("starting".into(), style::WARN),
        (SandboxState::Running, _) => ("running".into(), style::OK),
        (SandboxState::Paused, _) => ("paused".into(), style::WARN),
        (SandboxState::Stopping, _) => ("stopping".into(), style::WARN),
        (SandboxState::Exited, Some(ExitStatus::Code(0))) => ("exited".into(), style::MUTED),
        (SandboxState::Exited, Some(ExitStatus::Code(c))) => (format!("exited ({c})"), style::BAD),
        (SandboxState::Exited, Some(ExitStatus::Signal(s))) => (
            format!("killed ({})", super::super::model::signal_name(s)),
            style::BAD,
        ),
        (SandboxState::Exited, None) => ("exited".into(), style::MUTED),
    }
}

pub fn chip(ui: &mut Ui, text: &str, color: Color32) {
    egui::Frame::new()
        .fill(color.gamma_multiply(0.18))
        .corner_radius(8.0)
        .inner_margin(egui::Margin::symmetric(8, 2))
        .show(ui, |ui| {
            ui.label(egui::RichText::new(text).color(color).small().strong());
        });
}

/// A small line graph of `values` (oldest first) scaled to `max`, drawn directly (cheap
/// enough for many rows).
pub fn sparkline(ui: &mut Ui, values: &[f64], max: f64, color: Color32, size: egui::Vec2) {
    let (rect, _) = ui.allocate_exact_size(size, Sense::hover());
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 3.0, ui.visuals().extreme_bg_color);
    if values.len() < 2 || max <= 0.0 {
        return;
    }
    let n = values.len() as f32 - 1.0;
    let points: Vec<egui::Pos2> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let x = rect.left() + rect.width() * i as f32 / n;
            let y = rect.bottom() - 2.0 - (rect.height() - 4.0) * (v / max).clamp(0.0, 1.0) as f32;
            pos2(x, y)
        })
        .collect();
    let mut fill = points.clone();
    fill.push(pos2(rect.right(), rect.bottom()));
    fill.push(pos2(rect.left(), rect.bottom()));
    painter.add(egui::Shape::convex_polygon(
        fill,
        color.gamma_multiply(0.15),
        Stroke::NONE,
    ));
    painter.add(egui::Shape::line(points, Stroke::new(1.5, color)));
}

/// A size from a plotted value (never negative), as [`hutch_core::units::bytes`] says it.
pub fn bytes(n: f64) -> String {
    hutch_core::units::bytes(n.max(0.0) as u64)
}

/// The newest notices, top right, until dismissed; they fade after 8 seconds.
pub fn toasts(view: &View, ctx: &egui::Context, actions: &mut Vec<Action>) {
    let now = view.now_ms;
    let fresh: Vec<(usize, &super::super::model::Notice)> = view
        .model
        .notices
        .iter()
        .enumerate()
        .skip(view.ui.toasts_seen)
        .filter(|(_, n)| now.saturating_sub(n.at_ms) < 8_000)
        .collect();
    if fresh.is_empty() {
        return;
    }
    ctx.request_repaint_after(std::time::Duration::from_secs(1));
    egui::Area::new(egui::Id::unique("toasts"))
        .anchor(egui::Align2::RIGHT_BOTTOM, vec2(-12.0, -40.0))
        .order(egui::Order::Foreground)
        .show(ctx, |ui| {
            ui.set_max_width(360.0);
            for (i, n) in fresh.iter().rev().take(4) {
                let color = match n.level {
                    Level::Info => style::OK,
                    Level::Warning => style::WARN,
                    Level::Error => style::BAD,
                };
                egui::Frame::popup(ui.style())
                    .stroke(Stroke::new(1.0, color))
                    .show(ui, |ui| {
                        ui.set_width(340.0);
                        ui.horizontal(|ui| {
                            dot(ui, color);
                            ui.label(egui::RichText::new(&n.title).strong());
                            ui.with_layout(
                                egui::Layout::right_to_left(egui::Align::Center),
                                |ui| {
                                    if ui.small_button("×").on_hover_text("Dismiss").clicked() {
                                        actions.push(Action::DismissToasts(i + 1));
                                    }
                                },
                            );
                        });
                        ui.label(&n.body);
                        if let Some(id) = &n.sandbox
                            && ui.link("Show").clicked()
                        {
                            actions.push(Action::Select(id.clone()));
                            actions.push(Action::ShowPage(Page::Sandboxes));
                        }
                    });
                ui.add_space(6.0);
            }
        });
}

/// One line of at most `max` characters (line breaks become spaces).
pub fn ellipsize(text: &str, max: usize) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() <= max {
        text
    } else {
        let mut s: String = text.chars().take(max - 1).collect();
        s.push('…');
        s
    }
}
