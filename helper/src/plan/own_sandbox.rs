//! Programs that sandbox themselves: Chromium and what is built on it (Chrome, Brave, Edge,
//! Electron and CEF apps) and Firefox put their renderers in user namespaces of their own.
//! Hutch's seccomp filter refuses new user namespaces to other apps; these get them (and
//! nothing else more), so nobody has to throw their sandbox away with `--no-sandbox`.
//!
//! A program is recognised by its name or by the files beside it, on the host (the sandbox
//! sees the same `/usr`, and shares at the same paths). A profile's `allow_user_namespaces`
//! decides instead when it says so, for any app (an AppImage, whose files are inside it).

use std::path::{Path, PathBuf};

use super::env::SANDBOX_PATH;
use super::host::{Entry, HostFs};

/// A family of programs with a sandbox of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnSandbox {
    Chromium,
    Electron,
    Firefox,
}

impl OwnSandbox {
    pub fn name(self) -> &'static str {
        match self {
            Self::Chromium => "Chromium",
            Self::Electron => "Electron",
            Self::Firefox => "Firefox",
        }
    }
}

/// Launchers and binaries known by name (a launcher script has nothing telling beside it).
const CHROMIUM_NAMES: &[&str] = &[
    "chromium",
    "chromium-browser",
    "chrome",
    "google-chrome",
    "google-chrome-stable",
    "brave",
    "brave-browser",
    "microsoft-edge",
    "msedge",
    "vivaldi",
    "vivaldi-stable",
    "opera",
];
const FIREFOX_NAMES: &[&str] = &["firefox", "firefox-esr", "firefox-bin", "librewolf"];

/// The host file `program` (argv[0]) runs: a path as given (absolute), or the first match in
/// the sandbox's `PATH`, with its links followed.
fn program_path(program: &str, fs: &dyn HostFs) -> Option<PathBuf> {
    let named = if program.contains('/') {
        let path = Path::new(program);
        path.is_absolute().then(|| path.to_owned())?
    } else {
        SANDBOX_PATH
            .split(':')
            .map(|dir| Path::new(dir).join(program))
            .find(|p| matches!(fs.resolved(p), Some(Entry::File)))?
    };
    let checked = fs.check(&named).ok()?;
    (checked.kind == Entry::File).then_some(checked.path)
}

/// Which sandboxing program `program` is, if it is one.
pub fn detect(program: &str, fs: &dyn HostFs) -> Option<OwnSandbox> {
    let path = program_path(program, fs)?;
    let named = Path::new(program).file_name()?.to_str()?;
    let real = path.file_name()?.to_str()?;
    if CHROMIUM_NAMES.contains(&named) || CHROMIUM_NAMES.contains(&real) {
        return Some(OwnSandbox::Chromium);
    }
    if FIREFOX_NAMES.contains(&named) || FIREFOX_NAMES.contains(&real) {
        return Some(OwnSandbox::Firefox);
    }
    let dir = path.parent()?;
    let beside = |name: &str| fs.entry(&dir.join(name)).is_some();
    if beside("resources/app.asar") || beside("resources/electron.asar") {
        Some(OwnSandbox::Electron)
    } else if beside("chrome-sandbox") || beside("libcef.so") || beside("v8_context_snapshot.bin") {
        Some(OwnSandbox::Chromium)
    } else if beside("libxul.so") && beside("omni.ja") {
        Some(OwnSandbox::Firefox)
    } else {
        None
    }
}
