//! The Hutch window (eframe/egui): drop an app to run it sandboxed, watch every sandbox live,
//! and set each app's limits and permissions.
//!
//! Data path: [`link`] (threads on the helper's socket) → [`model`] (what the window knows,
//! with [`history`] for the graphs) → [`app`] (state and actions) → [`views`] (drawing).

pub mod app;
pub mod history;
pub mod link;
pub mod model;
pub mod notify;
pub mod report;
pub mod views;

pub use app::{Clock, HutchApp};

/// Opens the window and runs until it is closed.
pub fn run() -> anyhow::Result<()> {
    let renderer = match std::env::var("HUTCH_RENDERER").as_deref() {
        Ok("wgpu") => eframe::Renderer::Wgpu,
        _ => eframe::Renderer::Glow,
    };
    let options = eframe::NativeOptions {
        renderer,
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
            Ok(Box::new(
                HutchApp::new(
                    &cc.egui_ctx,
                    Box::new(link),
                    Clock::system(),
                    hutch_helper::paths::profiles_dir()?,
                )
                .with_desktop_notifications(),
            ))
        }),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}
