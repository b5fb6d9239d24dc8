//! The Hutch window (eframe/egui): drop an app to run it sandboxed, watch every sandbox live,
//! and set each app's limits and permissions.
//!
//! Data path: [`link`] (threads on the helper's socket) → [`model`] (what the window knows,
//! with [`history`] for the graphs) → [`views`] (drawing: they read the model, [`state`] and
//! [`forms`], and push [`action::Action`]s) → [`app`] (`HutchApp::apply`: requests, profile
//! files, the UI state).

pub mod action;
pub mod app;
pub mod forms;
pub mod history;
pub mod link;
pub mod model;
pub mod notify;
pub mod report;
pub mod state;
pub mod views;

pub use app::{Clock, HutchApp};

/// What the window does when it opens.
#[derive(Debug, Default)]
pub struct Start {
    /// Files to launch as if dropped (`hutch open FILES`).
    pub files: Vec<std::path::PathBuf>,
    /// Show the file chooser at once.
    pub choose: bool,
}

/// Opens the window and runs until it is closed.
pub fn run_with(start: Start) -> anyhow::Result<()> {
    // OpenGL (glow): wgpu is linked only into the tests (kittest's snapshots), which keeps the
    // binary, and every start of the CLI, smaller.
    let options = eframe::NativeOptions {
        renderer: eframe::Renderer::Glow,
        viewport: egui::ViewportBuilder::default()
            .with_title("Hutch")
            .with_app_id("io.github.hutchbox.Hutch")
            .with_inner_size([1120.0, 720.0])
            .with_min_inner_size([720.0, 480.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    eframe::run_native(
        "Hutch",
        options,
        Box::new(|cc| {
            let ctx = cc.egui_ctx.clone();
            // A (tiny) delay instead of `request_repaint()`: egui paints twice for an
            // immediate request, once for a delayed one, and each software-rendered frame
            // costs milliseconds of CPU.
            let link = link::HelperLink::start(move || {
                ctx.request_repaint_after(std::time::Duration::from_millis(1))
            });
            let mut app = HutchApp::new(
                &cc.egui_ctx,
                Box::new(link),
                Clock::system(),
                hutch_client::paths::profiles_dir()?,
            )
            .with_desktop_notifications();
            for file in &start.files {
                let file = std::fs::canonicalize(file).unwrap_or_else(|_| file.clone());
                app.open_path(&file);
            }
            if start.choose {
                app.apply(action::Action::OpenChooser);
            }
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}
