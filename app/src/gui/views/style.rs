//! Colours and spacing shared by the views.

use egui::Color32;

pub const OK: Color32 = Color32::from_rgb(0x3f, 0xb9, 0x50);
pub const WARN: Color32 = Color32::from_rgb(0xe3, 0xa0, 0x08);
pub const BAD: Color32 = Color32::from_rgb(0xe5, 0x48, 0x4d);
pub const MUTED: Color32 = Color32::from_rgb(0x80, 0x80, 0x88);
pub const CPU: Color32 = Color32::from_rgb(0x4c, 0x9a, 0xff);
pub const MEMORY: Color32 = Color32::from_rgb(0xb0, 0x7c, 0xff);
pub const PROCS: Color32 = Color32::from_rgb(0x2e, 0xc4, 0xb6);
pub const RX: Color32 = Color32::from_rgb(0x3f, 0xb9, 0x50);
pub const TX: Color32 = Color32::from_rgb(0xff, 0x8c, 0x42);

pub fn apply(ctx: &egui::Context) {
    ctx.all_styles_mut(|style| {
        style.spacing.item_spacing = egui::vec2(8.0, 6.0);
        style.spacing.button_padding = egui::vec2(10.0, 4.0);
    });
}

/// A stable colour for an app's initial.
pub fn avatar(name: &str) -> Color32 {
    let hash = name
        .bytes()
        .fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619));
    let palette = [
        Color32::from_rgb(0x4c, 0x9a, 0xff),
        Color32::from_rgb(0xb0, 0x7c, 0xff),
        Color32::from_rgb(0x2e, 0xc4, 0xb6),
        Color32::from_rgb(0xff, 0x8c, 0x42),
        Color32::from_rgb(0xe5, 0x48, 0x4d),
        Color32::from_rgb(0x3f, 0xb9, 0x50),
    ];
    palette[hash as usize % palette.len()]
}
