//! Desktop permissions: the display (Wayland, or X11 with its cookie), the sound server
//! (PipeWire, PulseAudio with its cookie), the GPU, and the user's fonts, icons and themes.
//! Each is off unless the profile or the request turns it on, and each hands the app one
//! socket or folder, never the session bus or the whole runtime folder.
//!
//! Sockets are bound into a private runtime folder inside (`/run/user/UID`), except X11's,
//! which clients look for at `/tmp/.X11-unix/XN`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hutch_core::profile::{DisplayMode, Profile};
use hutch_core::protocol::RunRequest;

use super::host::{Entry, HostFacts, HostFs};
use super::{Access, MountOp, PlanError, checked};

/// What the app and the user are told whenever an app gets the X11 display.
pub const X11_WARNING: &str = "this app has the X11 display: X11 lets any client read every \
     keystroke and see every window of your session (use Wayland to give a display safely)";

/// Folders and files of the user's own look (read-only), shared when the app may show windows.
const LOOKS: &[&str] = &[
    ".local/share/fonts",
    ".fonts",
    ".local/share/icons",
    ".icons",
    ".local/share/themes",
    ".themes",
    ".config/fontconfig",
    ".config/gtk-3.0/settings.ini",
    ".config/gtk-4.0/settings.ini",
];

/// What the desktop permissions add to a sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesktopPlan {
    /// Mounts after the system ones (runtime folder, sockets, devices).
    pub mounts: Vec<MountOp>,
    /// Mounts inside the home, placed after it (fonts, icons, themes).
    pub home_mounts: Vec<MountOp>,
    /// Variables set for the app (on top of the allowlist).
    pub env: Vec<(String, String)>,
    pub warnings: Vec<String>,
    /// What was granted, in words (`wayland`, `x11`, `pipewire`, `pulseaudio`, `gpu`).
    pub granted: Vec<String>,
}

/// The display that was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Display {
    Wayland {
        socket: PathBuf,
        name: String,
    },
    X11 {
        socket: PathBuf,
        number: String,
        cookie: Option<PathBuf>,
    },
}

fn exists(fs: &dyn HostFs, path: &Path) -> bool {
    fs.resolved(path).is_some()
}

fn socket(fs: &dyn HostFs, path: &Path) -> bool {
    matches!(fs.resolved(path), Some(Entry::Other))
}

/// The caller's runtime folder (their `XDG_RUNTIME_DIR`), where session sockets live.
fn caller_runtime(env: &BTreeMap<String, String>) -> Option<PathBuf> {
    env.get("XDG_RUNTIME_DIR")
        .filter(|v| v.starts_with('/'))
        .map(PathBuf::from)
}

fn wayland(env: &BTreeMap<String, String>, fs: &dyn HostFs) -> Result<Display, PlanError> {
    let name = env
        .get("WAYLAND_DISPLAY")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            PlanError::Display("no Wayland display: WAYLAND_DISPLAY is not set".into())
        })?;
    let socket_path = if name.starts_with('/') {
        PathBuf::from(name)
    } else {
        caller_runtime(env)
            .ok_or_else(|| {
                PlanError::Display(format!(
                    "WAYLAND_DISPLAY={name} but XDG_RUNTIME_DIR is not set, so its socket \
                     cannot be found"
                ))
            })?
            .join(name)
    };
    if !socket(fs, &socket_path) {
        return Err(PlanError::Display(format!(
            "the Wayland socket {} does not exist: is the compositor running?",
            socket_path.display()
        )));
    }
    let base = socket_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "wayland-0".into());
    Ok(Display::Wayland {
        socket: socket_path,
        name: base,
    })
}

fn x11(
    env: &BTreeMap<String, String>,
    host: &HostFacts,
    fs: &dyn HostFs,
) -> Result<Display, PlanError> {
    let display = env
        .get("DISPLAY")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| PlanError::Display("no X11 display: DISPLAY is not set".into()))?;
    // ":N", ":N.S" or "unix:N[.S]"; a host name means TCP, which a sandbox cannot reach.
    let rest = display
        .strip_prefix("unix:")
        .or_else(|| display.strip_prefix(':'))
        .ok_or_else(|| {
            PlanError::Display(format!(
                "DISPLAY={display} is a network display; only local X11 displays (:N) can be \
                 given to a sandbox"
            ))
        })?;
    let number = rest.split('.').next().unwrap_or_default();
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit()) {
        return Err(PlanError::Display(format!(
            "DISPLAY={display} is not a display name like :0"
        )));
    }
    let socket_path = PathBuf::from(format!("/tmp/.X11-unix/X{number}"));
    if !socket(fs, &socket_path) {
        return Err(PlanError::Display(format!(
            "DISPLAY={display} but {} does not exist: is the X server running?",
            socket_path.display()
        )));
    }
    let cookie = env
        .get("XAUTHORITY")
        .map(PathBuf::from)
        .or_else(|| Some(host.home.join(".Xauthority")))
        .filter(|p| matches!(fs.resolved(p), Some(Entry::File)));
    Ok(Display::X11 {
        socket: socket_path,
        number: number.to_owned(),
        cookie,
    })
}

/// The read-only bind of one of the user's [`LOOKS`], if it is there as it should be: the
/// folder or file itself, not a link (a program with the home shared read-write could make
/// `settings.ini` a link to a private key, or `.fonts` one to `.ssh`), of its kind, in no
/// folder of the session's sockets. Anything else is left out, and the launch says so. Sockets
/// in a look folder are hidden.
fn look_bind(
    fs: &dyn HostFs,
    host: &HostFacts,
    look: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<MountOp>, PlanError> {
    let path = host.home.join(look);
    let Some(found) = checked(fs, host, &path)? else {
        return Ok(None);
    };
    let dir = !look.ends_with(".ini");
    let wanted = if dir { Entry::Dir } else { Entry::File };
    let left_out = |why: String| {
        format!(
            "{} was not shared with the app's look ({why}): share what it leads to yourself if \
             the app should have it",
            path.display()
        )
    };
    if found.path != host.real_home.join(look) {
        warnings.push(left_out(format!(
            "it is a link to {}",
            found.path.display()
        )));
        return Ok(None);
    }
    if found.kind != wanted {
        warnings.push(left_out(format!(
            "it is not a {}",
            if dir { "folder" } else { "file" }
        )));
        return Ok(None);
    }
    if dir && let Some(folder) = super::source::socket_folder(&found.path, host) {
        warnings.push(left_out(format!(
            "it is in {}, a folder of the session's sockets",
            folder.display()
        )));
        return Ok(None);
    }
    Ok(Some(MountOp::Bind {
        source: found.path,
        path,
        access: Access::ReadOnly,
        dir,
        id: Some(found.id),
        sockets: false,
        hide_sockets: dir,
    }))
}

/// Plans the desktop permissions of a sandbox.
pub fn plan(
    profile: &Profile,
    request: &RunRequest,
    host: &HostFacts,
    fs: &dyn HostFs,
) -> Result<DesktopPlan, PlanError> {
    let env = &request.env;
    let mode = request.display.unwrap_or(profile.display);
    let audio = profile.audio || request.audio;
    let gpu = profile.gpu || request.gpu;
    let mut out = DesktopPlan::default();
    if mode == DisplayMode::None && !audio && !gpu {
        return Ok(out);
    }
    let runtime = PathBuf::from(format!("/run/user/{}", host.uid));
    let mut runtime_made = false;
    let mut need_runtime = |out: &mut DesktopPlan| {
        if !runtime_made {
            runtime_made = true;
            out.mounts.push(MountOp::Dir {
                path: "/run/user".into(),
                mode: 0o755,
            });
            out.mounts.push(MountOp::Dir {
                path: runtime.clone(),
                mode: 0o700,
            });
            out.env
                .push(("XDG_RUNTIME_DIR".into(), runtime.display().to_string()));
        }
    };
    // Each bind is of what the path really is, checked once (a socket or cookie path from the
    // caller's environment), and must be the kind of thing it was asked for: a socket the
    // app is given on purpose, or a file.
    let bind = |source: &Path, path: PathBuf, access: Access, socket: bool| {
        let found = checked(fs, host, source)?.ok_or_else(|| PlanError::Changed {
            path: source.to_owned(),
            at: source.to_owned(),
        })?;
        let wanted = if socket { Entry::Other } else { Entry::File };
        if found.kind != wanted {
            return Err(PlanError::Changed {
                path: source.to_owned(),
                at: found.path,
            });
        }
        Ok::<_, PlanError>(MountOp::Bind {
            // The display's and sound server's sockets are what the app is given them for.
            sockets: socket,
            dir: false,
            source: found.path,
            path,
            access,
            id: Some(found.id),
            hide_sockets: false,
        })
    };

    let display = match mode {
        DisplayMode::None => None,
        DisplayMode::Wayland => Some(wayland(env, fs)?),
        DisplayMode::X11 => Some(x11(env, host, fs)?),
        DisplayMode::Auto => match wayland(env, fs) {
            Ok(d) => Some(d),
            Err(wayland_err) => Some(x11(env, host, fs).map_err(|x11_err| {
                PlanError::Display(format!("no display for the app: {wayland_err}; {x11_err}"))
            })?),
        },
    };
    match &display {
        Some(Display::Wayland { socket, name }) => {
            need_runtime(&mut out);
            out.mounts
                .push(bind(socket, runtime.join(name), Access::ReadWrite, true)?);
            out.env.push(("WAYLAND_DISPLAY".into(), name.clone()));
            out.granted.push("wayland".into());
        }
        Some(Display::X11 {
            socket,
            number,
            cookie,
        }) => {
            out.mounts.push(MountOp::Dir {
                path: "/tmp/.X11-unix".into(),
                mode: 0o1777,
            });
            out.mounts
                .push(bind(socket, socket.clone(), Access::ReadWrite, true)?);
            out.env.push(("DISPLAY".into(), format!(":{number}")));
            if let Some(cookie) = cookie {
                need_runtime(&mut out);
                let inside = runtime.join("Xauthority");
                out.mounts
                    .push(bind(cookie, inside.clone(), Access::ReadOnly, false)?);
                out.env
                    .push(("XAUTHORITY".into(), inside.display().to_string()));
            }
            out.warnings.push(X11_WARNING.into());
            out.granted.push("x11".into());
        }
        None => {}
    }
    if display.is_some() {
        for look in LOOKS {
            if let Some(op) = look_bind(fs, host, look, &mut out.warnings)? {
                out.home_mounts.push(op);
            }
        }
    }

    if audio {
        let host_runtime = caller_runtime(env);
        let pipewire = host_runtime
            .as_ref()
            .map(|r| r.join("pipewire-0"))
            .filter(|p| socket(fs, p));
        let pulse = env
            .get("PULSE_SERVER")
            .and_then(|s| s.strip_prefix("unix:"))
            .map(PathBuf::from)
            .or_else(|| host_runtime.as_ref().map(|r| r.join("pulse/native")))
            .filter(|p| socket(fs, p));
        if pipewire.is_none() && pulse.is_none() {
            return Err(PlanError::Audio(format!(
                "no sound server: neither a PipeWire socket (pipewire-0) nor a PulseAudio \
                 socket (pulse/native) is in {}",
                host_runtime
                    .map(|r| r.display().to_string())
                    .unwrap_or_else(|| "the runtime folder (XDG_RUNTIME_DIR is not set)".into())
            )));
        }
        need_runtime(&mut out);
        if let Some(pw) = pipewire {
            out.mounts.push(bind(
                &pw,
                runtime.join("pipewire-0"),
                Access::ReadWrite,
                true,
            )?);
            out.granted.push("pipewire".into());
        }
        if let Some(pulse) = pulse {
            out.mounts.push(MountOp::Dir {
                path: runtime.join("pulse"),
                mode: 0o700,
            });
            let inside = runtime.join("pulse/native");
            out.mounts
                .push(bind(&pulse, inside.clone(), Access::ReadWrite, true)?);
            out.env
                .push(("PULSE_SERVER".into(), format!("unix:{}", inside.display())));
            let cookie = env
                .get("PULSE_COOKIE")
                .map(PathBuf::from)
                .unwrap_or_else(|| host.home.join(".config/pulse/cookie"));
            if matches!(fs.resolved(&cookie), Some(Entry::File)) {
                let inside = runtime.join("pulse/cookie");
                out.mounts
                    .push(bind(&cookie, inside.clone(), Access::ReadOnly, false)?);
                out.env
                    .push(("PULSE_COOKIE".into(), inside.display().to_string()));
            }
            out.granted.push("pulseaudio".into());
        }
    }

    if gpu {
        let dri = Path::new("/dev/dri");
        if !exists(fs, dri) {
            return Err(PlanError::Gpu(
                "the GPU was asked for, but /dev/dri does not exist on this machine (no GPU \
                 driver loaded)"
                    .into(),
            ));
        }
        let found = fs
            .check(dri)
            .map_err(|e| PlanError::Gpu(format!("/dev/dri: {e}")))?;
        out.mounts.push(MountOp::Bind {
            source: found.path,
            path: dri.to_owned(),
            access: Access::ReadWrite,
            dir: true,
            id: Some(found.id),
            sockets: false,
            hide_sockets: false,
        });
        out.granted.push("gpu".into());
    }
    Ok(out)
}
