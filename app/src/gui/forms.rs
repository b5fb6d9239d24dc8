//! The text and choices being edited: the open dialog and the profile settings form. A view
//! edits its own form in place; what the form is for (a launch, a save) goes to the app as an
//! [`Action`](super::action::Action).

use std::path::PathBuf;

use hutch_core::limits::{self, Limits};
use hutch_core::network::NetworkMode;
use hutch_core::profile::{DisplayMode, HomeMode, Profile, Share};

use crate::launchable::Launch;

/// The forms open in the window.
#[derive(Debug, Clone, Default)]
pub struct Forms {
    pub dialog: Option<Dialog>,
    /// The settings form of the profile being edited.
    pub settings: Option<SettingsForm>,
}

/// A dialog over the window.
#[derive(Debug, Clone, PartialEq)]
pub enum Dialog {
    /// First launch of an app: make its profile.
    NewProfile(NewProfileForm),
    /// A data file was dropped: open it with an app.
    OpenWith {
        path: PathBuf,
        profile: Option<String>,
        writable: bool,
    },
    /// Something could not be done, and why.
    Message { title: String, text: String },
    /// "Launch…": pick a file.
    Chooser(Chooser),
}

/// The first-launch dialog's fields.
#[derive(Debug, Clone, PartialEq)]
pub struct NewProfileForm {
    pub launch: Launch,
    pub name: String,
    pub network: bool,
    pub keep_home: bool,
    /// Windows (Wayland, else X11) and sound.
    pub desktop: bool,
    pub error: Option<String>,
}

/// A small file chooser: a folder's entries and a path field.
#[derive(Debug, Clone, PartialEq)]
pub struct Chooser {
    pub dir: PathBuf,
    pub path: String,
    pub entries: Vec<(String, bool)>,
    pub error: Option<String>,
}

impl Chooser {
    pub fn open(dir: PathBuf) -> Self {
        let mut c = Self {
            path: String::new(),
            dir: PathBuf::new(),
            entries: Vec::new(),
            error: None,
        };
        c.enter(dir);
        c
    }

    /// Lists `dir`: folders first, hidden entries left out.
    pub fn enter(&mut self, dir: PathBuf) {
        match std::fs::read_dir(&dir) {
            Ok(rd) => {
                let mut entries: Vec<(String, bool)> = rd
                    .flatten()
                    .filter_map(|e| {
                        let name = e.file_name().into_string().ok()?;
                        (!name.starts_with('.')).then(|| (name, e.path().is_dir()))
                    })
                    .collect();
                entries.sort_by(|a, b| {
                    b.1.cmp(&a.1)
                        .then(a.0.to_lowercase().cmp(&b.0.to_lowercase()))
                });
                self.entries = entries;
                self.path = format!("{}/", dir.display()).replace("//", "/");
                self.dir = dir;
                self.error = None;
            }
            Err(e) => self.error = Some(format!("cannot open {}: {e}", dir.display())),
        }
    }
}

/// The form's text, as typed.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingsForm {
    pub original: Profile,
    pub memory: String,
    pub cpu_weight: String,
    pub cpu_cap: String,
    pub pids: String,
    pub network: NetworkMode,
    pub home: HomeMode,
    pub display: DisplayMode,
    pub audio: bool,
    pub gpu: bool,
    pub shares: Vec<Share>,
    pub new_share: String,
    pub saved: Option<String>,
    pub save_error: Option<String>,
}

/// The form's problems, by field.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Problems {
    pub memory: Option<String>,
    pub cpu_weight: Option<String>,
    pub cpu_cap: Option<String>,
    pub pids: Option<String>,
    pub new_share: Option<String>,
}

impl Problems {
    pub fn any(&self) -> bool {
        self.memory.is_some()
            || self.cpu_weight.is_some()
            || self.cpu_cap.is_some()
            || self.pids.is_some()
    }
}

fn opt<T>(
    text: &str,
    parse: impl Fn(&str) -> Result<T, limits::LimitError>,
) -> Result<Option<T>, String> {
    let t = text.trim();
    if t.is_empty() {
        Ok(None)
    } else {
        parse(t).map(Some).map_err(|e| e.to_string())
    }
}

impl SettingsForm {
    pub fn new(p: &Profile) -> Self {
        let l = &p.limits;
        Self {
            original: p.clone(),
            memory: l.memory.map(limits::format_size_exact).unwrap_or_default(),
            cpu_weight: l.cpu_weight.map(|w| w.to_string()).unwrap_or_default(),
            cpu_cap: l.cpu_percent.map(|c| format!("{c}%")).unwrap_or_default(),
            pids: l.pids.map(|n| n.to_string()).unwrap_or_default(),
            network: p.network,
            home: p.home,
            display: p.display,
            audio: p.audio,
            gpu: p.gpu,
            shares: p.shares.clone(),
            new_share: String::new(),
            saved: None,
            save_error: None,
        }
    }

    /// The profile the form describes, or what is wrong with it.
    pub fn profile(&self) -> (Profile, Problems) {
        let mut problems = Problems::default();
        let mut p = self.original.clone();
        let mut lim = Limits {
            memory_high: p.limits.memory_high,
            memory_swap: p.limits.memory_swap,
            io_weight: p.limits.io_weight,
            ..Limits::default()
        };
        match opt(&self.memory, limits::parse_memory) {
            Ok(v) => lim.memory = v,
            Err(e) => problems.memory = Some(e),
        }
        match opt(&self.cpu_weight, |s| limits::parse_weight(s, "CPU weight")) {
            Ok(v) => lim.cpu_weight = v,
            Err(e) => problems.cpu_weight = Some(e),
        }
        match opt(&self.cpu_cap, limits::parse_cpu) {
            Ok(v) => lim.cpu_percent = v,
            Err(e) => problems.cpu_cap = Some(e),
        }
        match opt(&self.pids, limits::parse_pids) {
            Ok(v) => lim.pids = v,
            Err(e) => problems.pids = Some(e),
        }
        if !self.new_share.trim().is_empty() {
            problems.new_share =
                hutch_core::profile::validate_share_path(self.new_share.trim()).err();
        }
        p.limits = lim;
        p.network = self.network;
        p.home = self.home;
        p.display = self.display;
        p.audio = self.audio;
        p.gpu = self.gpu;
        p.shares = self.shares.clone();
        (p, problems)
    }
}
