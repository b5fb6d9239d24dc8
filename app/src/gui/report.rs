//! A JSON report of what the window shows and how long its frames take, written when
//! `HUTCH_GUI_REPORT=FILE` is set: the end-to-end test reads it to see a sandbox appear and
//! its CPU graph move, and `bench/window.sh` reads the frame times.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::model::Model;

#[derive(Debug)]
pub struct Reporter {
    path: PathBuf,
    last_write: Option<Instant>,
    frames: u64,
    /// Time spent building each of the recent frames, milliseconds.
    frame_ms: Vec<f64>,
    /// Whole frames (building, tessellating and rendering, as eframe times them).
    total_ms: Vec<f64>,
}

#[derive(Serialize)]
struct Report<'a> {
    frames: u64,
    frame_ms_mean: f64,
    frame_ms_max: f64,
    /// Whole frames, rendering included (over the last 200; the first frames of a window
    /// build its fonts and shaders).
    total_ms_mean: f64,
    total_ms_max: f64,
    /// The slowest of the last 20 whole frames: the steady state.
    total_ms_recent_max: f64,
    connected: bool,
    helper_pid: Option<u32>,
    sandboxes: Vec<Row<'a>>,
}

#[derive(Serialize)]
struct Row<'a> {
    id: &'a str,
    state: String,
    /// Points in its CPU graph, and the newest value.
    cpu_points: usize,
    cpu_last: Option<f64>,
    memory_last: Option<f64>,
}

impl Reporter {
    pub fn from_env() -> Option<Self> {
        let path = std::env::var_os("HUTCH_GUI_REPORT")?;
        Some(Self {
            path: path.into(),
            last_write: None,
            frames: 0,
            frame_ms: Vec::new(),
            total_ms: Vec::new(),
        })
    }

    /// Records one frame's build time (and the previous frame's whole time, from eframe)
    /// and, at most every 200 ms, writes the report.
    pub fn frame(&mut self, took: Duration, previous_total: Option<f32>, model: &Model) {
        self.frames += 1;
        self.frame_ms.push(took.as_secs_f64() * 1000.0);
        if self.frame_ms.len() > 200 {
            self.frame_ms.remove(0);
        }
        if let Some(total) = previous_total {
            self.total_ms.push(f64::from(total) * 1000.0);
            if self.total_ms.len() > 200 {
                self.total_ms.remove(0);
            }
        }
        if self
            .last_write
            .is_some_and(|t| t.elapsed() < Duration::from_millis(200))
        {
            return;
        }
        self.last_write = Some(Instant::now());
        let report = Report {
            frames: self.frames,
            frame_ms_mean: self.frame_ms.iter().sum::<f64>() / self.frame_ms.len() as f64,
            frame_ms_max: self.frame_ms.iter().copied().fold(0.0, f64::max),
            total_ms_mean: self.total_ms.iter().sum::<f64>() / self.total_ms.len().max(1) as f64,
            total_ms_max: self.total_ms.iter().copied().fold(0.0, f64::max),
            total_ms_recent_max: self
                .total_ms
                .iter()
                .rev()
                .take(20)
                .copied()
                .fold(0.0, f64::max),
            connected: matches!(
                model.connection(),
                super::model::Connection::Connected { .. }
            ),
            helper_pid: match model.connection() {
                super::model::Connection::Connected { helper_pid, .. } => Some(helper_pid),
                _ => None,
            },
            sandboxes: model
                .sandboxes
                .iter()
                .map(|s| {
                    let h = model.history.get(&s.id);
                    Row {
                        id: &s.id,
                        state: format!("{:?}", s.state).to_lowercase(),
                        cpu_points: h.map_or(0, |h| h.points().len()),
                        cpu_last: h.and_then(|h| h.latest()).map(|p| p.cpu_percent),
                        memory_last: h.and_then(|h| h.latest()).map(|p| p.memory_bytes),
                    }
                })
                .collect(),
        };
        let tmp = self.path.with_extension("tmp");
        if let Ok(text) = serde_json::to_vec_pretty(&report)
            && std::fs::write(&tmp, text).is_ok()
        {
            let _ = std::fs::rename(&tmp, &self.path);
        }
    }
}
