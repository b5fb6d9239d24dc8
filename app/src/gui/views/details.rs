//! One sandbox in detail: live graphs, its processes as a tree, its output, and what it is
//! made of (the Anatomy tab).

use egui::{Color32, RichText, Ui};
use egui_plot::{HLine, Legend, Line, Plot, PlotPoints};
use hutch_core::protocol::{ProcessInfo, SandboxState};

use super::super::action::Action;
use super::super::history::{History, Point};
use super::super::model::title;
use super::super::state::{DetailTab, Span};
use super::{View, style, widgets};

pub fn show(view: &View, ui: &mut Ui, id: &str, actions: &mut Vec<Action>) {
    let Some(info) = view.model.sandbox(id) else {
        return;
    };
    let now = view.now_ms;
    ui.horizontal(|ui| {
        widgets::avatar(ui, &title(info), 40.0);
        ui.vertical(|ui| {
            ui.horizontal(|ui| {
                ui.heading(title(info));
                let (text, color) = widgets::state(info);
                widgets::chip(ui, &text, color);
            });
            let pid = info.pid.map(|p| format!(" · pid {p}")).unwrap_or_default();
            let up = if info.state == SandboxState::Exited {
                String::new()
            } else {
                format!(
                    " · up {}",
                    hutch_core::units::duration_ms(now.saturating_sub(info.started_at_ms))
                )
            };
            let net = match (&info.network.mode, &info.network.backend, info.network.up) {
                (hutch_core::network::NetworkMode::None, _, _) => " · no network".to_owned(),
                (_, Some(b), true) => format!(" · network via {b}"),
                (_, _, false) => " · network DOWN".to_owned(),
                _ => " · network".to_owned(),
            };
            ui.label(
                RichText::new(format!(
                    "{}{pid}{up}{net} · profile {}",
                    info.id, info.profile
                ))
                .small()
                .color(style::MUTED),
            );
            let command = info.command.join(" ");
            ui.label(
                RichText::new(widgets::ellipsize(&command, 90))
                    .monospace()
                    .small(),
            )
            .on_hover_text(command);
        });
    });
    ui.add_space(4.0);
    ui.horizontal(|ui| {
        for (tab, label) in [
            (DetailTab::Graphs, "Graphs"),
            (DetailTab::Processes, "Processes"),
            (DetailTab::Output, "Output"),
            (DetailTab::Anatomy, "Anatomy"),
        ] {
            if ui.selectable_label(view.ui.tab == tab, label).clicked() && view.ui.tab != tab {
                actions.push(Action::ShowTab(tab));
            }
        }
    });
    ui.separator();
    match view.ui.tab {
        DetailTab::Graphs => graphs(view, ui, id, now, actions),
        DetailTab::Processes => processes(view, ui, id, info.state),
        DetailTab::Output => output(view, ui, id),
        DetailTab::Anatomy => anatomy(view, ui, id, info.state, actions),
    }
}

fn graphs(view: &View, ui: &mut Ui, id: &str, now: u64, actions: &mut Vec<Action>) {
    ui.horizontal(|ui| {
        ui.label("Show the last");
        for span in [Span::Minute, Span::TenMinutes, Span::Hour] {
            if ui
                .selectable_label(view.ui.span == span, span.label())
                .clicked()
            {
                actions.push(Action::SetSpan(span));
            }
        }
    });
    let empty = History::default();
    let h = view.model.history.get(id).unwrap_or(&empty);
    if h.points().is_empty() {
        ui.label(RichText::new("Waiting for the first samples…").color(style::MUTED));
        return;
    }
    let since = now.saturating_sub(view.ui.span.ms());
    let span_s = view.ui.span.ms() as f64 / 1000.0;
    let latest = h.latest().copied();
    let width = ui.available_width();
    let height = ((ui.available_height() - 110.0) / 3.0).clamp(70.0, 220.0);
    let plot = |name: &str, unit: Unit| {
        Plot::new(name.to_owned())
            .height(height)
            .width((width - 12.0) / 2.0)
            .default_x_bounds(-span_s, 0.0)
            .auto_bounds([false, true])
            .include_y(0.0)
            .include_y(unit.floor())
            .allow_drag(false)
            .allow_zoom(false)
            .allow_scroll(false)
            .allow_boxed_zoom(false)
            .show_grid([false, true])
            .legend(Legend::default().position(egui_plot::Corner::LeftTop))
            .x_grid_spacer(egui_plot::uniform_grid_spacer(move |_| {
                match span_s as u64 {
                    0..=60 => [5.0, 15.0, 30.0],
                    61..=600 => [60.0, 300.0, 600.0],
                    _ => [300.0, 900.0, 1800.0],
                }
            }))
            .x_axis_formatter(|mark, _| seconds_ago(mark.value))
            .y_axis_formatter(move |mark, _| unit.format(mark.value))
            .label_formatter(move |hover| match hover {
                egui_plot::HoverPosition::NearDataPoint {
                    plot_name,
                    position,
                    ..
                } => Some(format!(
                    "{plot_name}: {}\n{}",
                    unit.format(position.y),
                    seconds_ago(position.x)
                )),
                _ => None,
            })
    };
    let lines = |h: &History, value: fn(&Point) -> Option<f64>| h.segments(since, now, value);
    ui.horizontal(|ui| {
        ui.vertical(|ui| {
            caption(ui, "CPU", latest.map(|p| format!("{:.1} %", p.cpu_percent)));
            plot("cpu", Unit::Percent).show(ui, |p| {
                for run in lines(h, |p| Some(p.cpu_percent)) {
                    p.line(series("CPU %", run, style::CPU));
                }
            });
        });
        ui.vertical(|ui| {
            caption(
                ui,
                "Memory",
                latest.map(|p| match p.memory_limit {
                    Some(l) => format!(
                        "{} of {}",
                        widgets::bytes(p.memory_bytes),
                        widgets::bytes(l)
                    ),
                    None => widgets::bytes(p.memory_bytes),
                }),
            );
            let limit = latest.and_then(|p| p.memory_limit);
            plot("memory", Unit::Bytes).show(ui, |p| {
                for run in lines(h, |p| Some(p.memory_bytes)) {
                    p.line(series("Memory", run, style::MEMORY));
                }
                if let Some(limit) = limit {
                    p.hline(
                        HLine::new("Limit", limit)
                            .color(style::BAD)
                            .style(egui_plot::LineStyle::dashed_loose()),
                    );
                }
            });
        });
    });
    ui.horizontal(|ui| {
        ui.vertical(|ui| {
            caption(
                ui,
                "Processes",
                latest.map(|p| format!("{:.0}", p.processes)),
            );
            plot("processes", Unit::Count).show(ui, |p| {
                for run in lines(h, |p| Some(p.processes)) {
                    p.line(series("Processes", run, style::PROCS));
                }
            });
        });
        ui.vertical(|ui| {
            caption(
                ui,
                "Network",
                latest.map(|p| {
                    format!(
                        "in {} · out {}",
                        hutch_core::units::rate(p.rx_rate.max(0.0) as u64),
                        hutch_core::units::rate(p.tx_rate.max(0.0) as u64)
                    )
                }),
            );
            plot("network", Unit::Rate).show(ui, |p| {
                for run in lines(h, |p| Some(p.rx_rate)) {
                    p.line(series("Receive", run, style::RX));
                }
                for run in lines(h, |p| Some(p.tx_rate)) {
                    p.line(series("Send", run, style::TX));
                }
            });
        });
    });
    ui.vertical(|ui| {
        let has_pressure = latest.is_some_and(|p| p.pressure.is_some());
        caption(
            ui,
            "Pressure (time stalled, 10 s average)",
            Some(if has_pressure {
                latest
                    .and_then(|p| p.pressure)
                    .map(|[c, m, i]| format!("cpu {c:.1}% · memory {m:.1}% · io {i:.1}%"))
                    .unwrap_or_default()
            } else {
                "needs cgroup v2 delegation".into()
            }),
        );
        if has_pressure {
            plot("pressure", Unit::Percent)
                .width(width - 8.0)
                .show(ui, |p| {
                    for (i, (name, color)) in [
                        ("CPU", style::CPU),
                        ("Memory", style::MEMORY),
                        ("I/O", style::TX),
                    ]
                    .into_iter()
                    .enumerate()
                    {
                        for run in h.segments(since, now, |p| p.pressure.map(|v| v[i])) {
                            p.line(series(name, run, color));
                        }
                    }
                });
        }
    });
}

fn caption(ui: &mut Ui, name: &str, value: Option<String>) {
    ui.horizontal(|ui| {
        ui.label(RichText::new(name).strong());
        if let Some(v) = value {
            ui.label(RichText::new(v).monospace().color(style::MUTED));
        }
    });
}

fn series(name: &str, run: Vec<[f64; 2]>, color: Color32) -> Line<'static> {
    Line::new(name.to_owned(), PlotPoints::from(run))
        .color(color)
        .width(1.5)
}

/// Units of a graph's values.
#[derive(Debug, Clone, Copy)]
enum Unit {
    Percent,
    Bytes,
    Rate,
    Count,
}

impl Unit {
    /// The least the y axis shows, so a quiet graph is not blown up.
    fn floor(self) -> f64 {
        match self {
            Self::Percent => 10.0,
            Self::Bytes => 1024.0 * 1024.0,
            Self::Rate => 1024.0,
            Self::Count => 2.0,
        }
    }

    fn format(self, v: f64) -> String {
        match self {
            Self::Percent => format!("{v:.0}%"),
            Self::Bytes => widgets::bytes(v.max(0.0)),
            Self::Rate => hutch_core::units::rate(v.max(0.0) as u64),
            Self::Count => format!("{v:.0}"),
        }
    }
}

fn seconds_ago(x: f64) -> String {
    let s = -x;
    if s < 0.5 {
        "now".into()
    } else if s < 120.0 {
        format!("-{s:.0} s")
    } else {
        format!("-{:.0} min", s / 60.0)
    }
}

fn processes(view: &View, ui: &mut Ui, id: &str, state: SandboxState) {
    if state == SandboxState::Exited {
        ui.label(
            RichText::new("The sandbox has exited: no processes are left.").color(style::MUTED),
        );
        return;
    }
    let Some(list) = view.model.processes.get(id) else {
        ui.label(RichText::new("Reading the process list…").color(style::MUTED));
        return;
    };
    egui::Grid::new("processes")
        .striped(true)
        .num_columns(6)
        .show(ui, |ui| {
            for h in [
                "PID inside",
                "Process",
                "State",
                "CPU time",
                "Memory",
                "Host PID",
            ] {
                ui.label(RichText::new(h).strong());
            }
            ui.end_row();
            let root = list.first().map(|p| p.ppid);
            let mut rows = Vec::new();
            if let Some(root) = root {
                tree(list, root, 0, &mut rows);
            }
            for (depth, p) in rows {
                ui.label(RichText::new(p.ns_pid.to_string()).monospace());
                let indent = "   ".repeat(depth);
                let args = if p.cmdline.len() > 1 {
                    format!(" {}", p.cmdline[1..].join(" "))
                } else {
                    String::new()
                };
                let name = if p.ns_pid == 1 {
                    format!("{indent}{} (the sandbox's init)", p.name)
                } else {
                    format!("{indent}{}{}", p.name, widgets::ellipsize(&args, 60))
                };
                ui.label(RichText::new(hutch_core::text::escape_line(&name)).monospace());
                ui.label(p.state.clone());
                ui.label(format!("{:.1} s", p.cpu_usec as f64 / 1e6));
                ui.label(widgets::bytes(p.rss_bytes as f64));
                ui.label(RichText::new(p.pid.to_string()).color(style::MUTED));
                ui.end_row();
            }
        });
}

/// Depth-first order of the process tree under `parent`.
pub fn tree<'a>(
    list: &'a [ProcessInfo],
    parent: u32,
    depth: usize,
    out: &mut Vec<(usize, &'a ProcessInfo)>,
) {
    for p in list.iter().filter(|p| p.ppid == parent) {
        if out.iter().any(|(_, q)| q.pid == p.pid) {
            continue;
        }
        out.push((depth, p));
        tree(list, p.pid, depth + 1, out);
    }
}

fn output(view: &View, ui: &mut Ui, id: &str) {
    let Some(out) = view.model.outputs.get(id) else {
        ui.label(RichText::new("Reading the output…").color(style::MUTED));
        return;
    };
    if out.dropped > 0 {
        ui.label(
            RichText::new(format!(
                "({} of older output not kept)",
                widgets::bytes(out.dropped as f64)
            ))
            .color(style::MUTED),
        );
    }
    if out.text.is_empty() {
        ui.label(RichText::new("No output yet.").color(style::MUTED));
    }
    egui::ScrollArea::vertical()
        .stick_to_bottom(true)
        .auto_shrink([false, false])
        .show(ui, |ui| {
            // The app's control characters, shown as escapes as `hutch logs` shows them.
            let text = hutch_core::text::escape_controls(&out.text);
            ui.add(
                egui::Label::new(RichText::new(text.as_ref()).monospace())
                    .wrap_mode(egui::TextWrapMode::Wrap),
            );
        });
}

/// What the sandbox is made of, part by part, with a note on each; anything shared with
/// the host in the warning colour.
pub fn anatomy(view: &View, ui: &mut Ui, id: &str, state: SandboxState, actions: &mut Vec<Action>) {
    if state == SandboxState::Exited {
        ui.label(
            RichText::new("The sandbox has exited: there is nothing left to inspect.")
                .color(style::MUTED),
        );
        return;
    }
    let Some(a) = view.model.anatomy.get(id) else {
        ui.label(RichText::new("Inspecting…").color(style::MUTED));
        return;
    };
    if ui.small_button("Inspect again").clicked() {
        actions.push(Action::Inspect(id.to_owned()));
    }
    let note = |ui: &mut Ui, text: &str| {
        ui.label(RichText::new(text).small().color(style::MUTED));
    };
    let shared = |ui: &mut Ui, text: String, warn: bool| {
        if warn {
            ui.label(RichText::new(format!("! {text}")).color(style::WARN));
        } else {
            ui.label(text);
        }
    };
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show(ui, |ui| {
            section(ui, "Namespaces: what it can see", |ui| {
                egui::Grid::new("ns")
                    .num_columns(3)
                    .striped(true)
                    .show(ui, |ui| {
                        for ns in &a.namespaces {
                            ui.label(RichText::new(&ns.kind).monospace());
                            shared(
                                ui,
                                if ns.new {
                                    format!("new ({})", ns.inode)
                                } else {
                                    "shared with the host".into()
                                },
                                !ns.new,
                            );
                            note(ui, &ns.note);
                            ui.end_row();
                        }
                    });
            });
            section(ui, "Users and groups", |ui| {
                let tool = match a.id_map {
                    hutch_core::protocol::IdMapKind::SubordinateRange => {
                        "written by newuidmap/newgidmap from /etc/subuid and /etc/subgid"
                    }
                    hutch_core::protocol::IdMapKind::SingleId => {
                        "your own uid and gid only (no subordinate range)"
                    }
                };
                for (name, map) in [("uid map", &a.uid_map), ("gid map", &a.gid_map)] {
                    let text: Vec<String> = map
                        .iter()
                        .map(|[inside, outside, count]| {
                            format!(
                                "{inside}-{} -> host {outside}",
                                inside + count.saturating_sub(1)
                            )
                        })
                        .collect();
                    ui.label(format!("{name}: {}", text.join(", ")));
                }
                note(ui, &format!("{tool}; root inside is your own user outside"));
            });
            section(ui, "Files: its own root", |ui| {
                egui::Grid::new("mounts")
                    .num_columns(3)
                    .striped(true)
                    .show(ui, |ui| {
                        for m in &a.mounts {
                            ui.label(RichText::new(&m.path).monospace());
                            let mode = if m.read_only {
                                "read-only"
                            } else {
                                "read-write"
                            };
                            let warn = m.from_host && !m.read_only;
                            let what = if m.from_host {
                                format!("from the host, {mode}")
                            } else {
                                format!("{}, {mode}", m.fs_type)
                            };
                            shared(ui, what, warn);
                            note(
                                ui,
                                if warn {
                                    "the app can change these host files"
                                } else if m.from_host {
                                    "host files it can read"
                                } else {
                                    "private to the sandbox"
                                },
                            );
                            ui.end_row();
                        }
                    });
            });
            section(ui, "Resources: its cgroup", |ui| match &a.cgroup {
                Some(cg) => {
                    ui.label(RichText::new(&cg.path).monospace());
                    egui::Grid::new("cg").num_columns(2).show(ui, |ui| {
                        for (k, v) in &cg.files {
                            ui.label(RichText::new(k).monospace());
                            ui.label(v);
                            ui.end_row();
                        }
                    });
                }
                None => note(ui, "no cgroup of its own: limits need cgroup v2 delegation"),
            });
            section(ui, "Network", |ui| {
                let n = &a.network;
                match n.mode {
                    hutch_core::network::NetworkMode::None => ui.label("loopback only: no way out"),
                    hutch_core::network::NetworkMode::User => ui.label(format!(
                        "user-mode stack {} ({})",
                        n.backend.as_deref().unwrap_or("?"),
                        if n.up { "up" } else { "DOWN" }
                    )),
                };
                if !a.addresses.is_empty() {
                    ui.label(format!("addresses: {}", a.addresses.join(", ")));
                }
                for r in &a.routes {
                    ui.label(RichText::new(r).monospace().small());
                }
                shared(
                    ui,
                    if n.host_loopback {
                        "host loopback reachable at 10.0.2.2".into()
                    } else {
                        "host loopback closed".into()
                    },
                    n.host_loopback,
                );
                for p in &n.publish {
                    shared(ui, format!("published port {p}"), true);
                }
            });
            section(ui, "Confinement", |ui| {
                let s = &a.security;
                ui.label(format!(
                    "seccomp: {} ({} filter(s)) · no_new_privs: {}",
                    match s.seccomp_mode {
                        2 => "filter",
                        1 => "strict",
                        _ => "off",
                    },
                    s.seccomp_filters,
                    if s.no_new_privs { "on" } else { "off" }
                ));
                let caps_empty = |c: &str| c.trim_start_matches('0').is_empty();
                shared(
                    ui,
                    format!(
                        "capabilities: effective {} · bounding {}",
                        s.cap_effective, s.cap_bounding
                    ),
                    !caps_empty(&s.cap_effective),
                );
                ui.label(format!("Landlock: {}", s.landlock));
                if !s.user_namespaces.is_empty() {
                    ui.label(format!("user namespaces: {}", s.user_namespaces));
                }
                note(
                    ui,
                    "a filter on system calls, no way to gain privileges, no capabilities",
                );
            });
        });
}

fn section(ui: &mut Ui, title: &str, body: impl FnOnce(&mut Ui)) {
    ui.add_space(6.0);
    ui.label(RichText::new(title).strong().size(15.0));
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.set_width(ui.available_width());
        body(ui);
    });
}
