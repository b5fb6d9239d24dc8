//! App profiles: one TOML file per app, `$XDG_CONFIG_HOME/hutch/profiles/NAME.toml`.
//!
//! ```toml
//! description = "A command-line tool I do not trust"
//! command = ["tool", "--flag"]     # default command when none is given
//! home = "tmp"                      # "tmp" (throwaway) or "persist" (kept per app)
//! network = "user"                  # "none" (loopback only, the default) or "user"
//! net_backend = "auto"              # "auto", "slirp4netns" or "pasta"
//! allow_host_loopback = false       # may the app reach services on the host's loopback?
//! publish = ["8080:80"]             # [ADDR:]HOSTPORT:SANDBOXPORT, host side on 127.0.0.1
//! hostname = "tool"                 # defaults to "hutch-NAME"
//! allow_user_namespaces = false     # may the app make user namespaces (its own sandbox)?
//!                                   # unset: yes for Chromium, Electron and Firefox only
//! display = "wayland"               # "none" (default), "wayland", "x11" (unsafe) or "auto"
//! audio = true                      # PipeWire / PulseAudio socket (default false)
//! gpu = true                        # /dev/dri (default false)
//! env = { EDITOR = "vi" }           # extra environment
//!
//! [limits]
//! memory = "512M"                   # memory.max (swap follows unless memory_swap is set)
//! cpu_weight = 50                   # share of the CPU against other apps (1-10000)
//! cpu = "150%"                      # hard cap, only when asked for
//! pids = 256
//!
//! [[share]]
//! path = "~/Documents/tool"         # absolute, or under ~/
//! mode = "rw"                       # "ro" (default) or "rw"
//! ```
//!
//! Parsing never trusts the file: unknown keys, wrong types and invalid values are errors that
//! name the file, the line and the key.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::limits::{self, Limits};

/// The name used when no profile is given.
pub const DEFAULT_PROFILE: &str = "default";

/// Where the app's home directory comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HomeMode {
    /// A fresh empty tmpfs each run.
    #[default]
    Tmp,
    /// A folder kept per app under `$XDG_DATA_HOME/hutch/homes/NAME`.
    Persist,
}

impl std::str::FromStr for HomeMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tmp" => Ok(Self::Tmp),
            "persist" => Ok(Self::Persist),
            other => Err(format!("unknown home mode `{other}` (use tmp or persist)")),
        }
    }
}

pub use crate::network::{NetBackend, NetworkMode, PortForward};

/// Which display server socket the app gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisplayMode {
    /// No display: the app cannot show windows.
    #[default]
    None,
    /// Wayland when the session has it, else X11.
    Auto,
    /// The Wayland socket only.
    Wayland,
    /// The X11 socket and cookie. Unsafe: any X11 client can read every keystroke of the
    /// session and take pictures of every window.
    X11,
}

impl std::str::FromStr for DisplayMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "auto" => Ok(Self::Auto),
            "wayland" => Ok(Self::Wayland),
            "x11" => Ok(Self::X11),
            other => Err(format!(
                "unknown display `{other}` (use none, auto, wayland or x11)"
            )),
        }
    }
}

/// Whether a shared path can be written from inside.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShareMode {
    #[default]
    #[serde(rename = "ro")]
    ReadOnly,
    #[serde(rename = "rw")]
    ReadWrite,
}

/// A host path made visible inside the sandbox at the same path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    /// Absolute, or `~/...` relative to the user's home.
    pub path: String,
    pub mode: ShareMode,
    /// Keep the Unix sockets in it reachable. Off by default: sockets found in a shared folder
    /// are hidden, and folders known to hold the session's sockets are refused, because a
    /// socket lets the app make whatever listens on it act for it, outside the sandbox.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sockets: bool,
}

/// A validated profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub name: String,
    pub description: String,
    pub command: Vec<String>,
    pub home: HomeMode,
    pub network: NetworkMode,
    pub net_backend: NetBackend,
    pub allow_host_loopback: bool,
    pub publish: Vec<PortForward>,
    pub limits: Limits,
    pub hostname: String,
    /// May the app make user namespaces (what Chromium's, Electron's and Firefox's own
    /// sandboxes are made of)? `None`: Hutch decides by the program (yes for those).
    pub allow_user_namespaces: Option<bool>,
    pub env: BTreeMap<String, String>,
    pub shares: Vec<Share>,
    /// The display server socket, if any.
    pub display: DisplayMode,
    /// The sound server socket (PipeWire, or PulseAudio and its cookie).
    pub audio: bool,
    /// The GPU's render nodes (/dev/dri).
    pub gpu: bool,
}

impl Profile {
    /// The profile used when none is named: no network, throwaway home, nothing shared.
    pub fn builtin_default() -> Self {
        Self::with_defaults(DEFAULT_PROFILE)
    }

    /// A profile named `name` with every setting at its default.
    pub fn with_defaults(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            description: String::new(),
            command: Vec::new(),
            home: HomeMode::default(),
            network: NetworkMode::default(),
            net_backend: NetBackend::default(),
            allow_host_loopback: false,
            publish: Vec::new(),
            limits: Limits::default(),
            hostname: default_hostname(name),
            allow_user_namespaces: None,
            env: BTreeMap::new(),
            shares: Vec::new(),
            display: DisplayMode::None,
            audio: false,
            gpu: false,
        }
    }

    /// Parses and validates the TOML text of profile `name`, read from `file`.
    pub fn parse(name: &str, file: &Path, text: &str) -> Result<Self, ProfileError> {
        validate_name(name).map_err(|reason| ProfileError::Name {
            name: name.to_owned(),
            reason,
        })?;
        let raw: RawProfile = toml::from_str(text).map_err(|err| {
            let line = err
                .span()
                .map(|span| line_of(text, span.start))
                .unwrap_or(1);
            ProfileError::Invalid {
                file: file.to_owned(),
                line,
                key: key_at_line(text, line),
                message: err.message().trim().to_owned(),
            }
        })?;
        let mut profile = Self::with_defaults(name);
        let fail = |span: Range<usize>, key: &str, message: String| ProfileError::Invalid {
            file: file.to_owned(),
            line: line_of(text, span.start),
            key: key.to_owned(),
            message,
        };
        if let Some(description) = raw.description {
            profile.description = description;
        }
        if let Some(command) = raw.command {
            if let Some(bad) = command.get_ref().iter().find(|a| a.contains('\0')) {
                return Err(fail(
                    command.span(),
                    "command",
                    format!("{bad:?} contains a NUL"),
                ));
            }
            if command.get_ref().first().is_some_and(|c| c.is_empty()) {
                return Err(fail(
                    command.span(),
                    "command",
                    "the program name is empty".into(),
                ));
            }
            profile.command = command.into_inner();
        }
        if let Some(home) = raw.home {
            profile.home = home;
        }
        if let Some(network) = raw.network {
            profile.network = network;
        }
        if let Some(backend) = raw.net_backend {
            profile.net_backend = backend;
        }
        if let Some(allow) = raw.allow_host_loopback {
            profile.allow_host_loopback = allow;
        }
        if let Some(limits) = raw.limits {
            profile.limits = limits.validate(&fail)?;
        }
        if let Some(publish) = raw.publish {
            for spec in publish.get_ref() {
                let forward =
                    PortForward::parse(spec).map_err(|m| fail(publish.span(), "publish", m))?;
                profile.publish.push(forward);
            }
        }
        if let Some(hostname) = raw.hostname {
            validate_hostname(hostname.get_ref())
                .map_err(|m| fail(hostname.span(), "hostname", m))?;
            profile.hostname = hostname.into_inner();
        }
        if let Some(allow) = raw.allow_user_namespaces {
            profile.allow_user_namespaces = Some(allow);
        }
        if let Some(env) = raw.env {
            for (key, value) in env.get_ref() {
                validate_env(key, value).map_err(|m| fail(env.span(), "env", m))?;
            }
            profile.env = env.into_inner();
        }
        if let Some(display) = raw.display {
            profile.display = display;
        }
        if let Some(audio) = raw.audio {
            profile.audio = audio;
        }
        if let Some(gpu) = raw.gpu {
            profile.gpu = gpu;
        }
        for share in raw.share.unwrap_or_default() {
            let span = share.span();
            let share = share.into_inner();
            validate_share_path(&share.path).map_err(|m| fail(span, "share.path", m))?;
            profile.shares.push(Share {
                path: share.path,
                mode: share.mode.unwrap_or_default(),
                sockets: share.sockets.unwrap_or(false),
            });
        }
        Ok(profile)
    }

    /// The profile as TOML, in the same form [`Profile::parse`] reads.
    pub fn to_toml(&self) -> String {
        let raw = WriteProfile {
            description: (!self.description.is_empty()).then_some(&self.description),
            command: (!self.command.is_empty()).then_some(&self.command),
            home: self.home,
            network: self.network,
            net_backend: self.net_backend,
            allow_host_loopback: self.allow_host_loopback,
            publish: self.publish.iter().map(ToString::to_string).collect(),
            limits: (!self.limits.is_empty()).then(|| WriteLimits::from(&self.limits)),
            hostname: &self.hostname,
            allow_user_namespaces: self.allow_user_namespaces,
            env: &self.env,
            display: self.display,
            audio: self.audio,
            gpu: self.gpu,
            share: &self.shares,
        };
        // Serialising plain strings, lists and maps cannot fail.
        toml::to_string_pretty(&raw).unwrap_or_default()
    }
}

/// Why a profile could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("invalid profile name `{name}`: {reason}")]
    Name { name: String, reason: String },
    #[error("{}, line {line}, key `{key}`: {message}", file.display())]
    Invalid {
        file: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
    #[error(
        "no profile named `{name}` in {} (create {name}.toml there, or leave out --profile)",
        dir.display()
    )]
    NotFound { name: String, dir: PathBuf },
    #[error("cannot read profile {}: {message}", file.display())]
    Read { file: PathBuf, message: String },
    #[error("cannot save profile {}: {message}", file.display())]
    Write { file: PathBuf, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    description: Option<String>,
    command: Option<Spanned<Vec<String>>>,
    home: Option<HomeMode>,
    network: Option<NetworkMode>,
    net_backend: Option<NetBackend>,
    allow_host_loopback: Option<bool>,
    publish: Option<Spanned<Vec<String>>>,
    limits: Option<RawLimits>,
    hostname: Option<Spanned<String>>,
    allow_user_namespaces: Option<bool>,
    env: Option<Spanned<BTreeMap<String, String>>>,
    display: Option<DisplayMode>,
    audio: Option<bool>,
    gpu: Option<bool>,
    share: Option<Vec<Spanned<RawShare>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShare {
    path: String,
    mode: Option<ShareMode>,
    sockets: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory: Option<Spanned<String>>,
    memory_high: Option<Spanned<String>>,
    memory_swap: Option<Spanned<String>>,
    cpu: Option<Spanned<String>>,
    cpu_weight: Option<Spanned<u32>>,
    pids: Option<Spanned<u64>>,
    io_weight: Option<Spanned<u32>>,
}

impl RawLimits {
    fn validate(
        self,
        fail: &dyn Fn(Range<usize>, &str, String) -> ProfileError,
    ) -> Result<Limits, ProfileError> {
        let size = |v: Option<Spanned<String>>, key: &str, min: bool| {
            v.map(|v| {
                let parsed = if min {
                    limits::parse_memory(v.get_ref())
                } else {
                    limits::parse_size(v.get_ref())
                };
                parsed.map_err(|e| fail(v.span(), key, e.to_string()))
            })
            .transpose()
        };
        let weight = |v: Option<Spanned<u32>>, key: &str, what: &'static str| {
            v.map(|v| {
                limits::parse_weight(&v.get_ref().to_string(), what)
                    .map_err(|e| fail(v.span(), key, e.to_string()))
            })
            .transpose()
        };
        Ok(Limits {
            memory: size(self.memory, "limits.memory", true)?,
            memory_high: size(self.memory_high, "limits.memory_high", true)?,
            memory_swap: size(self.memory_swap, "limits.memory_swap", false)?,
            cpu_percent: self
                .cpu
                .map(|v| {
                    limits::parse_cpu(v.get_ref())
                        .map_err(|e| fail(v.span(), "limits.cpu", e.to_string()))
                })
                .transpose()?,
            cpu_weight: weight(self.cpu_weight, "limits.cpu_weight", "CPU weight")?,
            pids: self
                .pids
                .map(|v| {
                    limits::parse_pids(&v.get_ref().to_string())
                        .map_err(|e| fail(v.span(), "limits.pids", e.to_string()))
                })
                .transpose()?,
            io_weight: weight(self.io_weight, "limits.io_weight", "io weight")?,
        })
    }
}

#[derive(Serialize, Default)]
struct WriteLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    memory: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_high: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_swap: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_weight: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pids: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    io_weight: Option<u32>,
}

impl From<&Limits> for WriteLimits {
    fn from(l: &Limits) -> Self {
        Self {
            memory: l.memory.map(limits::format_size_exact),
            memory_high: l.memory_high.map(limits::format_size_exact),
            memory_swap: l.memory_swap.map(|b| b.to_string()),
            cpu: l.cpu_percent.map(|p| format!("{p}%")),
            cpu_weight: l.cpu_weight,
            pids: l.pids,
            io_weight: l.io_weight,
        }
    }
}

#[derive(Serialize)]
struct WriteProfile<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<&'a Vec<String>>,
    home: HomeMode,
    network: NetworkMode,
    net_backend: NetBackend,
    allow_host_loopback: bool,
    publish: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limits: Option<WriteLimits>,
    hostname: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    allow_user_namespaces: Option<bool>,
    env: &'a BTreeMap<String, String>,
    display: DisplayMode,
    audio: bool,
    gpu: bool,
    share: &'a [Share],
}

fn default_hostname(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let host = format!("hutch-{}", cleaned.trim_matches('-'));
    host.trim_end_matches('-').chars().take(63).collect()
}

/// A profile name is a file stem: letters, digits, `.`, `_`, `-`; no leading dot.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("it must be 1 to 64 characters long".into());
    }
    if name.starts_with('.') {
        return Err("it must not start with a dot".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c)))
    {
        return Err(format!(
            "`{c}` is not allowed (use letters, digits, `.`, `_` and `-`)"
        ));
    }
    Ok(())
}

fn validate_hostname(host: &str) -> Result<(), String> {
    let ok = !host.is_empty()
        && host.len() <= 63
        && !host.starts_with('-')
        && !host.ends_with('-')
        && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{host:?} is not a valid host name (1-63 letters, digits and inner `-`)"
        ))
    }
}

fn validate_env(key: &str, value: &str) -> Result<(), String> {
    if key.is_empty() || key.contains('=') || key.contains('\0') {
        return Err(format!("{key:?} is not a valid variable name"));
    }
    if value.contains('\0') {
        return Err(format!("the value of {key} contains a NUL"));
    }
    Ok(())
}

/// Paths that can never be shared: they would hand the sandbox the host itself.
const UNSHAREABLE: &[&str] = &[
    "/", "/proc", "/sys", "/dev", "/run", "/etc", "/usr", "/boot",
];

/// Checks a shared path's form (not its existence, which is the helper's business).
pub fn validate_share_path(path: &str) -> Result<(), String> {
    if path.contains('\0') {
        return Err(format!("{path:?} contains a NUL"));
    }
    if !(path.starts_with('/') || path.starts_with("~/")) {
        return Err(format!("{path:?} must be absolute or start with ~/"));
    }
    if path.split('/').any(|part| part == "..") {
        return Err(format!("{path:?} must not contain `..`"));
    }
    let trimmed = path.trim_end_matches('/');
    let normal = if trimmed.is_empty() { "/" } else { trimmed };
    if UNSHAREABLE.contains(&normal) || normal.starts_with("/proc/") || normal.starts_with("/sys/")
    {
        return Err(format!(
            "{path:?} is part of the host system and cannot be shared"
        ));
    }
    Ok(())
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The dotted key defined on `line` (1-based), with the table it sits in.
fn key_at_line(text: &str, line: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let Some(current) = lines.get(line.saturating_sub(1)) else {
        return String::from("(end of file)");
    };
    let key = current
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_owned());
    let table = lines[..line.saturating_sub(1)].iter().rev().find_map(|l| {
        let l = l.trim();
        l.starts_with('[')
            .then(|| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned())
    });
    match (table, key) {
        (Some(table), Some(key)) => format!("{table}.{key}"),
        (None, Some(key)) => key,
        (Some(table), None) => table,
        (None, None) => current.trim().chars().take(40).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Profile, ProfileError> {
        Profile::parse("tool", Path::new("/cfg/hutch/profiles/tool.toml"), text)
    }

    #[test]
    fn empty_file_gives_defaults() {
        let p = parse("").unwrap();
        assert_eq!(p.home, HomeMode::Tmp);
        assert_eq!(p.network, NetworkMode::None);
        assert_eq!(p.hostname, "hutch-tool");
        assert!(p.allow_user_namespaces.is_none() && p.shares.is_empty() && p.command.is_empty());
    }

    #[test]
    fn full_profile_parses() {
        let p = parse(
            r#"
description = "x"
command = ["tool", "--flag"]
home = "persist"
hostname = "box1"
allow_user_namespaces = true
env = { EDITOR = "vi" }

[[share]]
path = "~/Documents"
mode = "rw"

[[share]]
path = "/srv/data"
sockets = true
"#,
        )
        .unwrap();
        assert_eq!(p.command, ["tool", "--flag"]);
        assert_eq!(p.home, HomeMode::Persist);
        assert_eq!(p.hostname, "box1");
        assert_eq!(p.allow_user_namespaces, Some(true));
        assert_eq!(p.env["EDITOR"], "vi");
        assert_eq!(
            p.shares,
            [
                Share {
                    path: "~/Documents".into(),
                    mode: ShareMode::ReadWrite,
                    sockets: false,
                },
                Share {
                    path: "/srv/data".into(),
                    mode: ShareMode::ReadOnly,
                    sockets: true,
                },
            ]
        );
    }

    #[test]
    fn round_trips_through_toml() {
        let mut p = Profile::builtin_default();
        p.command = vec!["a b".into(), "c".into()];
        p.shares.push(Share {
            path: "/srv".into(),
            mode: ShareMode::ReadWrite,
            sockets: true,
        });
        p.env.insert("K".into(), "v".into());
        let text = p.to_toml();
        assert_eq!(Profile::parse("default", Path::new("x"), &text).unwrap(), p);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err = parse("home = \"tmp\"\nnetwrok = \"none\"\n").unwrap_err();
        let ProfileError::Invalid {
            file,
            line,
            key,
            message,
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(file, Path::new("/cfg/hutch/profiles/tool.toml"));
        assert_eq!((*line, key.as_str()), (2, "netwrok"));
        assert!(message.contains("netwrok"), "{message}");
        assert!(
            err.to_string()
                .starts_with("/cfg/hutch/profiles/tool.toml, line 2, key `netwrok`")
        );
    }

    #[test]
    fn wrong_type_names_the_key_in_its_table() {
        let err = parse("[[share]]\npath = \"/srv\"\nmode = \"rwx\"\n").unwrap_err();
        let ProfileError::Invalid { line, key, .. } = err else {
            panic!()
        };
        assert_eq!((line, key.as_str()), (3, "share.mode"));
        let err = parse("allow_user_namespaces = \"yes\"").unwrap_err();
        let ProfileError::Invalid { line, key, .. } = err else {
            panic!()
        };
        assert_eq!((line, key.as_str()), (1, "allow_user_namespaces"));
    }

    #[test]
    fn syntax_error_has_a_line() {
        let err = parse("home = \"tmp\"\n\ncommand = [\"a\"\n").unwrap_err();
        let ProfileError::Invalid { line, .. } = err else {
            panic!()
        };
        assert!(line >= 3, "line {line}");
    }

    #[test]
    fn invalid_values_are_refused_with_their_line() {
        let err = parse("\nhostname = \"-bad-\"").unwrap_err();
        assert!(matches!(&err, ProfileError::Invalid { line: 2, key, .. } if key == "hostname"));
        let err = parse("[[share]]\npath = \"relative/dir\"").unwrap_err();
        assert!(matches!(&err, ProfileError::Invalid { line: 1, key, .. } if key == "share.path"));
        assert!(err.to_string().contains("must be absolute"), "{err}");
        let err = parse("[[share]]\npath = \"/proc/1\"").unwrap_err();
        assert!(err.to_string().contains("cannot be shared"), "{err}");
        let err = parse("command = [\"\"]").unwrap_err();
        assert!(err.to_string().contains("program name is empty"), "{err}");
        let err = parse("env = { \"A=B\" = \"x\" }").unwrap_err();
        assert!(
            err.to_string().contains("not a valid variable name"),
            "{err}"
        );
    }

    #[test]
    fn limits_parse_with_their_line() {
        let p = parse("[limits]\nmemory = \"512M\"\ncpu = \"150%\"\ncpu_weight = 50\npids = 256\n")
            .unwrap();
        assert_eq!(p.limits.memory, Some(512 << 20));
        assert_eq!(p.limits.cpu_percent, Some(150));
        assert_eq!((p.limits.cpu_weight, p.limits.pids), (Some(50), Some(256)));
        let text = p.to_toml();
        assert_eq!(
            Profile::parse("tool", Path::new("x"), &text)
                .unwrap()
                .limits,
            p.limits
        );
        let err = parse("[limits]\n\nmemory = \"12Q\"\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("line 3, key `limits.memory`: `12Q` is not a size"),
            "{err}"
        );
        let err = parse("[limits]\npids = 0\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("key `limits.pids`: process limit 0"),
            "{err}"
        );
        let err = parse("[limits]\nmemroy = \"1G\"\n").unwrap_err();
        assert!(err.to_string().contains("key `limits.memroy`"), "{err}");
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("firefox-esr_2.0").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        let err = Profile::parse("../x", Path::new("x"), "").unwrap_err();
        assert!(
            err.to_string().starts_with("invalid profile name `../x`"),
            "{err}"
        );
    }

    #[test]
    fn share_paths_are_checked() {
        assert!(validate_share_path("/home/u/Documents").is_ok());
        assert!(validate_share_path("~/x").is_ok());
        for bad in [
            "/",
            "//",
            "/usr",
            "/etc/",
            "/proc/self",
            "/a/../b",
            "x",
            "~x",
        ] {
            assert!(validate_share_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn default_hostname_is_clean() {
        assert_eq!(default_hostname("My App.2"), "hutch-my-app-2");
        assert_eq!(default_hostname("default"), "hutch-default");
    }
}
