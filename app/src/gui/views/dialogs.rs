//! Dialogs: the first launch of an app (its profile from a template), opening a data file
//! with an app, messages, and the "Launch…" file chooser.
//!
//! Each answers the keyboard: Enter takes its default button (unless Tab moved the focus to
//! another button, which Enter then presses), Escape cancels, Tab moves through its fields.

use egui::RichText;

use super::super::action::Action;
use super::super::forms::Dialog;
use super::{View, style};

/// Takes this frame's Enter before the dialog's widgets see it (a focused checkbox would take
/// it as a click): it means the default button, or the button Tab moved the focus to.
fn take_enter(ui: &mut egui::Ui) -> bool {
    ui.input_mut(|i| i.consume_key(egui::Modifiers::NONE, egui::Key::Enter))
}

/// Whether `button` was pressed: clicked, or focused when Enter came.
fn pressed(button: &egui::Response, enter: bool) -> bool {
    button.clicked() || (enter && button.has_focus())
}

fn modal(ctx: &egui::Context, id: &str, body: impl FnOnce(&mut egui::Ui)) -> bool {
    egui::Modal::new(egui::Id::unique(id))
        .show(ctx, |ui| {
            ui.set_width(460.0);
            body(ui);
        })
        .should_close()
}

/// The open dialog, edited in place; what it is answered with goes to `actions` (closing it,
/// or what closes it: a launch, a profile made).
pub fn show(view: &View, dialog: &mut Dialog, ctx: &egui::Context, actions: &mut Vec<Action>) {
    match dialog {
        Dialog::Message { title, text } => {
            let mut open = true;
            let closed = modal(ctx, "message", |ui| {
                let enter = take_enter(ui);
                ui.heading(title.as_str());
                ui.add_space(4.0);
                ui.label(text.as_str());
                ui.add_space(8.0);
                if ui.button("OK").clicked() || enter {
                    open = false;
                }
            });
            if !open || closed {
                actions.push(Action::CloseDialog);
            }
        }
        Dialog::NewProfile(form) => {
            let mut action = None;
            let closed = modal(ctx, "new-profile", |ui| {
                let enter = take_enter(ui);
                ui.heading(format!("Run {} in a sandbox", form.launch.title));
                ui.label(
                    RichText::new(format!(
                        "First launch: Hutch makes an app profile for it, kept for next time. \
                         Command: {}",
                        form.launch.command.join(" ")
                    ))
                    .color(style::MUTED),
                );
                if let Some(icon) = &form.launch.icon {
                    ui.label(
                        RichText::new(format!("Icon: {}", icon.display()))
                            .small()
                            .color(style::MUTED),
                    );
                }
                ui.add_space(8.0);
                egui::Grid::new("np")
                    .num_columns(2)
                    .spacing([12.0, 8.0])
                    .show(ui, |ui| {
                        ui.label("Profile name");
                        ui.text_edit_singleline(&mut form.name);
                        ui.end_row();
                        ui.label("Network");
                        ui.checkbox(&mut form.network, "Let it reach the internet");
                        ui.end_row();
                        ui.label("Home folder");
                        ui.vertical(|ui| {
                            ui.radio_value(
                                &mut form.keep_home,
                                false,
                                "Throwaway: empty at every start",
                            );
                            ui.radio_value(
                                &mut form.keep_home,
                                true,
                                "Kept: its files stay between runs",
                            );
                        });
                        ui.end_row();
                    });
                if let Some(e) = &form.error {
                    ui.label(RichText::new(e).color(style::BAD));
                }
                ui.add_space(8.0);
                ui.horizontal(|ui| {
                    let create = ui.button("Create and run");
                    let cancel = ui.button("Cancel");
                    if pressed(&cancel, enter) {
                        action = Some(false);
                    } else if create.clicked() || enter {
                        action = Some(true);
                    }
                });
            });
            match action {
                Some(true) => actions.push(Action::CreateProfile(form.clone())),
                Some(false) => actions.push(Action::CloseDialog),
                None if closed => actions.push(Action::CloseDialog),
                None => {}
            }
        }
        Dialog::OpenWith {
            path,
            profile,
            writable,
        } => {
            let mut action = None;
            let openers: Vec<(String, String)> = view
                .profiles
                .iter()
                .filter(|p| !p.command.is_empty())
                .map(|p| (p.name.clone(), p.command.join(" ")))
                .collect();
            let closed = modal(ctx, "open-with", |ui| {
                let enter = take_enter(ui);
                ui.heading("Open with an app");
                ui.label(format!(
                    "{} is not a program. Open it with one of your apps, in its sandbox; the \
                     app sees this file and nothing else of yours.",
                    path.display()
                ));
                ui.add_space(8.0);
                for (name, command) in &openers {
                    ui.radio_value(profile, Some(name.clone()), format!("{name}  ({command})"));
                }
                ui.checkbox(writable, "Let the app change this file");
                ui.add_space(8.0);
                ui.horizontal(|ui| {
                    let open = ui.add_enabled(profile.is_some(), egui::Button::new("Open"));
                    let cancel = ui.button("Cancel");
                    if pressed(&cancel, enter) {
                        action = Some(false);
                    } else if open.clicked() || (enter && profile.is_some()) {
                        action = Some(true);
                    }
                });
            });
            match (action, &profile) {
                (Some(true), Some(name)) => actions.push(Action::OpenWith {
                    path: path.clone(),
                    profile: name.clone(),
                    writable: *writable,
                }),
                (Some(_), _) => actions.push(Action::CloseDialog),
                (None, _) if closed => actions.push(Action::CloseDialog),
                (None, _) => {}
            }
        }
        Dialog::Chooser(chooser) => {
            let mut chosen = None;
            let mut enter = None;
            let mut cancel = false;
            let closed = modal(ctx, "chooser", |ui| {
                let enter_key = take_enter(ui);
                ui.heading("Launch a program");
                ui.label(
                    RichText::new("A program, a script, a .desktop file or an AppImage.")
                        .color(style::MUTED),
                );
                ui.horizontal(|ui| {
                    if pressed(&ui.button("Up"), enter_key)
                        && let Some(parent) = chooser.dir.parent()
                    {
                        enter = Some(parent.to_owned());
                    }
                    let edit =
                        ui.add(egui::TextEdit::singleline(&mut chooser.path).desired_width(360.0));
                    if enter_key && edit.has_focus() {
                        let p = std::path::PathBuf::from(chooser.path.trim());
                        if p.is_dir() {
                            enter = Some(p);
                        } else {
                            chosen = Some(p);
                        }
                    }
                });
                egui::ScrollArea::vertical()
                    .max_height(300.0)
                    .show(ui, |ui| {
                        for (name, is_dir) in &chooser.entries {
                            let label = if *is_dir {
                                format!("{name}/")
                            } else {
                                name.clone()
                            };
                            if pressed(&ui.selectable_label(false, label), enter_key) {
                                let p = chooser.dir.join(name);
                                if *is_dir {
                                    enter = Some(p);
                                } else {
                                    chooser.path = p.display().to_string();
                                }
                            }
                        }
                    });
                if let Some(e) = &chooser.error {
                    ui.label(RichText::new(e).color(style::BAD));
                }
                ui.horizontal(|ui| {
                    let launch = ui.button("Launch");
                    let cancel_button = ui.button("Cancel");
                    if pressed(&cancel_button, enter_key) {
                        cancel = true;
                    } else if launch.clicked()
                        || (enter_key
                            && chosen.is_none()
                            && enter.is_none()
                            && !chooser.path.trim().is_empty())
                    {
                        chosen = Some(std::path::PathBuf::from(chooser.path.trim()));
                    }
                });
            });
            if let Some(dir) = enter {
                chooser.enter(dir);
            }
            if let Some(path) = chosen {
                actions.push(Action::OpenPath(path));
            } else if cancel || closed {
                actions.push(Action::CloseDialog);
            }
        }
    }
}
