//! What a dropped (or chosen) file is, and how to launch it: a program, an AppImage, a script
//! with a shebang, a `.desktop` file, or a data file to open with an app profile. Anything
//! else gets an error saying why, and nothing starts.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use hutch_core::desktop::DesktopEntry;
use hutch_core::profile::ShareMode;
use hutch_core::protocol::ShareSpec;

/// Folders the sandbox sees from the host (read-only), where programs can be found.
const SANDBOX_PATH: &[&str] = &["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"];

/// The kind of a launchable file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A native executable.
    Program,
    /// A type 2 AppImage, run by extract-and-run (no FUSE needed).
    AppImage,
    /// A script, run by the interpreter its `#!` line names.
    Script { interpreter: String },
    /// A `.desktop` file's `Exec`.
    Desktop { name: String, icon: Option<String> },
}

/// How to launch a file in a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub kind: Kind,
    /// The dropped file.
    pub path: PathBuf,
    /// A name for people ("Text Editor", "tool.sh").
    pub title: String,
    /// The app profile it runs under (created on first launch).
    pub profile: String,
    pub command: Vec<String>,
    /// Host paths the command needs inside (the program itself, read-only).
    pub shares: Vec<ShareSpec>,
    /// Working directory (`Path=` of a `.desktop` file).
    pub cwd: Option<String>,
    /// The icon file (`Icon=` of a `.desktop` file, through the icon theme).
    pub icon: Option<PathBuf>,
}

/// What a dropped file turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dropped {
    Launch(Launch),
    /// Not a program: it can be opened with an app profile, shared alone.
    Data(PathBuf),
}

/// Why a file cannot be launched.
#[derive(Debug, thiserror::Error)]
pub enum NotLaunchable {
    #[error("{}: cannot read it: {err}", path.display())]
    Unreadable { path: PathBuf, err: std::io::Error },
    #[error("{} is a folder: drop a program, a script, a .desktop file or an AppImage (to share a folder, add it in the app's settings)", path.display())]
    Folder { path: PathBuf },
    #[error("{} is not a regular file (a device, socket or pipe cannot be launched)", path.display())]
    NotAFile { path: PathBuf },
    #[error("{} is a program but is not marked executable: if you trust it to run at all, run `chmod +x {}` and drop it again", path.display(), path.display())]
    NotExecutable { path: PathBuf },
    #[error("{}: broken .desktop file, {err}", path.display())]
    Desktop {
        path: PathBuf,
        err: hutch_core::desktop::DesktopError,
    },
    #[error("{}: {message}", path.display())]
    Unusable { path: PathBuf, message: String },
}

fn unusable(path: &Path, message: impl Into<String>) -> NotLaunchable {
    NotLaunchable::Unusable {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// A profile name made from a file name: letters, digits, `.`, `_`, `-`.
pub fn profile_name_for(stem: &str) -> String {
    let stem = stem
        .trim_end_matches(".AppImage")
        .trim_end_matches(".appimage");
    let stem = ["-x86_64", "_x86_64", "-amd64", "_amd64", "-aarch64"]
        .iter()
        .fold(stem, |s, arch| s.strip_suffix(arch).unwrap_or(s));
    let mut name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    name = name.trim_matches(|c| c == '-' || c == '.').to_owned();
    name.truncate(64);
    if name.is_empty() { "app".into() } else { name }
}

/// Finds `program` where the sandbox can run it: an absolute path, or a name in the
/// sandbox's PATH.
fn find_program(program: &str) -> Option<PathBuf> {
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return executable(&p).then_some(p);
    }
    SANDBOX_PATH
        .iter()
        .map(|dir| Path::new(dir).join(program))
        .find(|p| executable(p))
}

/// Whether a host path is visible inside every sandbox (the read-only system folders).
fn visible_inside(path: &Path) -> bool {
    ["/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/"]
        .iter()
        .any(|dir| path.starts_with(dir))
}

fn share_ro(path: &Path) -> ShareSpec {
    ShareSpec::new(path.display().to_string(), ShareMode::ReadOnly)
}

/// Reads up to `n` bytes at `offset`.
fn read_at(file: &mut std::fs::File, offset: u64, n: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Seek;
    file.seek(std::io::SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity(n);
    file.take(n as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Checks that an AppImage carries its squashfs image where the ELF runtime ends (the
/// section header table's end), as the AppImage runtime itself looks for it.
fn check_appimage(path: &Path, file: &mut std::fs::File, head: &[u8]) -> Result<(), NotLaunchable> {
    let corrupt = |why: &str| {
        unusable(
            path,
            format!("this AppImage is damaged ({why}): download it again"),
        )
    };
    if head.len() < 64 || head[4] != 2 || head[5] != 1 {
        return Err(corrupt("not a 64-bit little-endian ELF runtime"));
    }
    let u64_at = |o: usize| u64::from_le_bytes(head[o..o + 8].try_into().unwrap_or([0; 8]));
    let u16_at = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]) as u64;
    let end = u64_at(0x28).saturating_add(u16_at(0x3a) * u16_at(0x3c));
    let magic = read_at(file, end, 4)
        .map_err(|e| unusable(path, format!("cannot read the AppImage: {e}")))?;
    if magic != b"hsqs" {
        return Err(corrupt("no squashfs image after its runtime"));
    }
    Ok(())
}

/// What `path` is, and how to launch it.
pub fn classify(path: &Path) -> Result<Dropped, NotLaunchable> {
    let unreadable = |err| NotLaunchable::Unreadable {
        path: path.to_owned(),
        err,
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if meta.is_dir() {
        return Err(NotLaunchable::Folder {
            path: path.to_owned(),
        });
    }
    if !meta.is_file() {
        return Err(NotLaunchable::NotAFile {
            path: path.to_owned(),
        });
    }
    let executable = meta.permissions().mode() & 0o111 != 0;
    let mut file = std::fs::File::open(path).map_err(unreadable)?;
    let head = read_at(&mut file, 0, 4096).map_err(unreadable)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = path
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();

    if file_name.ends_with(".desktop") {
        let text = String::from_utf8(std::fs::read(path).map_err(unreadable)?)
            .map_err(|_| unusable(path, "a .desktop file must be UTF-8 text; this one is not"))?;
        let entry = DesktopEntry::parse(&text, &path.display().to_string()).map_err(|err| {
            NotLaunchable::Desktop {
                path: path.to_owned(),
                err,
            }
        })?;
        return desktop_launch(path, &stem, entry).map(Dropped::Launch);
    }

    if head.starts_with(b"\x7fELF") {
        if !executable {
            return Err(NotLaunchable::NotExecutable {
                path: path.to_owned(),
            });
        }
        let kind = match head.get(8..11) {
            Some(b"AI\x02") => {
                check_appimage(path, &mut file, &head)?;
                Kind::AppImage
            }
            Some(b"AI\x01") => {
                return Err(unusable(
                    path,
                    "this is a type 1 AppImage (an ISO 9660 image), which Hutch cannot run: \
                     look for a newer (type 2) release of the app",
                ));
            }
            _ => Kind::Program,
        };
        let mut command = vec![path.display().to_string()];
        if kind == Kind::AppImage {
            // The AppImage runtime unpacks itself to /tmp and runs from there: no FUSE.
            command.push("--appimage-extract-and-run".into());
        }
        return Ok(Dropped::Launch(Launch {
            kind,
            path: path.to_owned(),
            title: file_name,
            profile: profile_name_for(&stem),
            command,
            shares: vec![share_ro(path)],
            cwd: None,
            icon: None,
        }));
    }

    if let Some(rest) = head.strip_prefix(b"#!") {
        let line = rest.split(|b| *b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        let line = line.trim();
        // As the kernel reads it: the interpreter, then at most one argument (the rest).
        let (interpreter, arg) = match line.split_once([' ', '\t']) {
            Some((i, a)) => (i, Some(a.trim())),
            None => (line, None),
        };
        if interpreter.is_empty() {
            return Err(unusable(path, "its #! line names no interpreter"));
        }
        let found = find_program(interpreter).ok_or_else(|| {
            unusable(
                path,
                format!("its interpreter {interpreter} (from the #! line) is not installed"),
            )
        })?;
        if !visible_inside(&found) {
            return Err(unusable(
                path,
                format!(
                    "its interpreter {} is outside /usr, so a sandbox cannot see it",
                    found.display()
                ),
            ));
        }
        let mut command = vec![interpreter.to_owned()];
        command.extend(arg.filter(|a| !a.is_empty()).map(str::to_owned));
        command.push(path.display().to_string());
        return Ok(Dropped::Launch(Launch {
            kind: Kind::Script {
                interpreter: interpreter.to_owned(),
            },
            path: path.to_owned(),
            title: file_name,
            profile: profile_name_for(&stem),
            command,
            shares: vec![share_ro(path)],
            cwd: None,
            icon: None,
        }));
    }
    Ok(Dropped::Data(path.to_owned()))
}

fn desktop_launch(path: &Path, stem: &str, entry: DesktopEntry) -> Result<Launch, NotLaunchable> {
    if let Some(try_exec) = &entry.try_exec
        && find_program(try_exec).is_none()
    {
        return Err(unusable(
            path,
            format!("TryExec={try_exec}: that program is not installed, so the entry is unusable"),
        ));
    }
    let command = entry.command_lines(&[]).swap_remove(0);
    let program = &command[0];
    let found = find_program(program).ok_or_else(|| {
        unusable(
            path,
            format!(
                "line {}: Exec runs `{program}`, which is not installed",
                entry.exec_line
            ),
        )
    })?;
    // A program outside the system folders is shared alone, read-only: a crafted entry must
    // not choose a host folder for the app to read by naming a program in it. (An app whose
    // files sit beside its program gets that folder from its profile's shares.)
    let shares = if visible_inside(&found) {
        Vec::new()
    } else {
        vec![share_ro(&found)]
    };
    let data_dirs = icon_search_dirs();
    Ok(Launch {
        icon: entry
            .icon
            .as_deref()
            .and_then(|name| resolve_icon(name, &data_dirs)),
        title: entry.name.clone(),
        profile: profile_name_for(stem.rsplit('.').next().unwrap_or(stem)),
        kind: Kind::Desktop {
            name: entry.name,
            icon: entry.icon,
        },
        path: path.to_owned(),
        command,
        shares,
        cwd: entry.path,
    })
}

/// Where icons are looked for, most specific first: `$XDG_DATA_HOME`, `~/.icons`,
/// `$XDG_DATA_DIRS` (the icon theme specification's base directories).
pub fn icon_search_dirs() -> Vec<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".local/share")));
    let data_dirs = std::env::var("XDG_DATA_DIRS")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "/usr/local/share:/usr/share".into());
    let mut dirs = Vec::new();
    if let Some(d) = data_home {
        dirs.push(d.join("icons"));
    }
    if let Some(h) = home {
        dirs.push(h.join(".icons"));
    }
    for d in data_dirs.split(':').filter(|d| !d.is_empty()) {
        dirs.push(Path::new(d).join("icons"));
    }
    dirs
}

/// The file of icon `name` (`Icon=`): an absolute path as is, else the hicolor theme (the
/// fallback every theme inherits) at the usual sizes, largest bitmap under 128 first, then
/// scalable, then `pixmaps`.
pub fn resolve_icon(name: &str, icon_dirs: &[PathBuf]) -> Option<PathBuf> {
    if name.starts_with('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    if name.contains('/') || name.is_empty() {
        return None;
    }
    const SIZES: &[&str] = &[
        "128x128", "96x96", "64x64", "48x48", "scalable", "256x256", "512x512", "32x32", "24x24",
        "16x16",
    ];
    for dir in icon_dirs {
        for size in SIZES {
            for ext in ["png", "svg"] {
                let p = dir
                    .join("hicolor")
                    .join(size)
                    .join("apps")
                    .join(format!("{name}.{ext}"));
                if p.is_file() {
                    return Some(p);
                }
            }
        }
        for ext in ["png", "svg", "xpm"] {
            let p = dir.join(format!("{name}.{ext}"));
            if p.is_file() {
                return Some(p);
            }
        }
    }
    for ext in ["png", "svg", "xpm"] {
        for base in icon_dirs.iter().filter_map(|d| d.parent()) {
            let p = base.join("pixmaps").join(format!("{name}.{ext}"));
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn programs_scripts_and_desktop_files_are_launchable() {
        let dir = tempfile::tempdir().unwrap();
        let elf = std::fs::read("/bin/true").unwrap();
        let prog = write(dir.path(), "My Tool", &elf, 0o755);
        let Dropped::Launch(l) = classify(&prog).unwrap() else {
            panic!()
        };
        assert_eq!(l.kind, Kind::Program);
        assert_eq!(l.command, [prog.display().to_string()]);
        assert_eq!(l.shares, [share_ro(&prog)]);
        assert_eq!(l.profile, "my-tool");

        let script = write(
            dir.path(),
            "run.py",
            b"#!/usr/bin/env python3\nprint(1)\n",
            0o644,
        );
        let Dropped::Launch(l) = classify(&script).unwrap() else {
            panic!()
        };
        assert_eq!(
            l.command,
            ["/usr/bin/env", "python3", &script.display().to_string()]
        );
        assert_eq!(l.profile, "run");

        let desktop = write(
            dir.path(),
            "org.example.Shell.desktop",
            b"[Desktop Entry]\nType=Application\nName=Shell\nExec=sh -c \"echo hi\" %F\nPath=/tmp\nIcon=utilities-terminal\n",
            0o644,
        );
        let Dropped::Launch(l) = classify(&desktop).unwrap() else {
            panic!()
        };
        assert_eq!(l.command, ["sh", "-c", "echo hi"]);
        assert_eq!(l.title, "Shell");
        assert_eq!(l.profile, "shell");
        assert_eq!(l.cwd.as_deref(), Some("/tmp"));
        assert!(l.shares.is_empty());

        let data = write(dir.path(), "notes.txt", b"hello", 0o644);
        assert_eq!(classify(&data).unwrap(), Dropped::Data(data));
    }

    #[test]
    fn a_desktop_entry_naming_a_program_elsewhere_shares_that_program_alone() {
        // A crafted entry whose Exec names a shell copied into a folder of secrets must not
        // hand the app that folder.
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("secretdir");
        std::fs::create_dir(&secrets).unwrap();
        write(&secrets, "id_rsa", b"PRIVATE KEY", 0o600);
        let shell = write(&secrets, "sh", &std::fs::read("/bin/sh").unwrap(), 0o755);
        let desktop = write(
            dir.path(),
            "evil.desktop",
            format!(
                "[Desktop Entry]\nType=Application\nName=Evil\nExec={} -c \"cat id_rsa\"\n",
                shell.display()
            )
            .as_bytes(),
            0o644,
        );
        let Dropped::Launch(l) = classify(&desktop).unwrap() else {
            panic!()
        };
        assert_eq!(l.shares, [share_ro(&shell)]);
    }

    #[test]
    fn unlaunchable_drops_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let elf = std::fs::read("/bin/true").unwrap();
        let cases: Vec<(PathBuf, &str)> = vec![
            (dir.path().to_owned(), "is a folder"),
            (dir.path().join("missing"), "cannot read it"),
            (write(dir.path(), "prog", &elf, 0o644), "chmod +x"),
            (
                write(
                    dir.path(),
                    "bad.desktop",
                    b"[Desktop Entry]\nType=Application\nName=X\nExec=\"x\n",
                    0o644,
                ),
                "broken .desktop file, line 4: Exec has a quote that is never closed",
            ),
            (
                write(
                    dir.path(),
                    "gone.desktop",
                    b"[Desktop Entry]\nType=Application\nName=X\nExec=no-such-prog-hutch\n",
                    0o644,
                ),
                "line 4: Exec runs `no-such-prog-hutch`, which is not installed",
            ),
            (
                write(
                    dir.path(),
                    "try.desktop",
                    b"[Desktop Entry]\nType=Application\nName=X\nExec=sh\nTryExec=/nonexistent\n",
                    0o644,
                ),
                "TryExec=/nonexistent",
            ),
            (
                write(dir.path(), "s.sh", b"#!/no/such/interp\n", 0o755),
                "interpreter /no/such/interp (from the #! line) is not installed",
            ),
            (PathBuf::from("/dev/null"), "not a regular file"),
        ];
        for (path, want) in cases {
            let err = classify(&path).unwrap_err().to_string();
            assert!(err.contains(want), "{}: {err}", path.display());
            assert!(err.contains(&path.display().to_string()), "{err}");
        }
    }

    #[test]
    fn icons_resolve_through_the_hicolor_theme_then_pixmaps() {
        let data = tempfile::tempdir().unwrap();
        let icons = data.path().join("icons");
        let big = icons.join("hicolor/256x256/apps");
        let mid = icons.join("hicolor/48x48/apps");
        let svg = icons.join("hicolor/scalable/apps");
        for d in [&big, &mid, &svg] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(big.join("editor.png"), "png").unwrap();
        std::fs::write(mid.join("editor.png"), "png").unwrap();
        std::fs::write(svg.join("editor.svg"), "svg").unwrap();
        std::fs::create_dir_all(data.path().join("pixmaps")).unwrap();
        std::fs::write(data.path().join("pixmaps/old.xpm"), "xpm").unwrap();
        let dirs = vec![icons.clone()];
        assert_eq!(resolve_icon("editor", &dirs), Some(mid.join("editor.png")));
        std::fs::remove_file(mid.join("editor.png")).unwrap();
        assert_eq!(resolve_icon("editor", &dirs), Some(svg.join("editor.svg")));
        assert_eq!(
            resolve_icon("old", &dirs),
            Some(data.path().join("pixmaps/old.xpm"))
        );
        assert_eq!(resolve_icon("missing", &dirs), None);
        assert_eq!(resolve_icon("../etc/passwd", &dirs), None);
        let abs = big.join("editor.png");
        assert_eq!(resolve_icon(abs.to_str().unwrap(), &dirs), Some(abs));
    }

    #[test]
    fn appimages_are_checked_for_their_image() {
        let dir = tempfile::tempdir().unwrap();
        // A runtime-like ELF header whose section table ends at 0x100, then the image.
        let mut bytes = vec![0u8; 0x100];
        bytes[..4].copy_from_slice(b"\x7fELF");
        bytes[4] = 2;
        bytes[5] = 1;
        bytes[8..11].copy_from_slice(b"AI\x02");
        bytes[0x28..0x30].copy_from_slice(&0x40u64.to_le_bytes());
        bytes[0x3a..0x3c].copy_from_slice(&0x40u16.to_le_bytes());
        bytes[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        let mut good = bytes.clone();
        good.extend_from_slice(b"hsqs and the rest");
        let app = write(dir.path(), "Editor-2.1-x86_64.AppImage", &good, 0o755);
        let Dropped::Launch(l) = classify(&app).unwrap() else {
            panic!()
        };
        assert_eq!(l.kind, Kind::AppImage);
        assert_eq!(l.command[1], "--appimage-extract-and-run");
        assert_eq!(l.profile, "editor-2.1");
        let broken = write(dir.path(), "Broken.AppImage", &bytes, 0o755);
        let err = classify(&broken).unwrap_err().to_string();
        assert!(err.contains("damaged (no squashfs image"), "{err}");
        let not_exec = write(dir.path(), "NoExec.AppImage", &good, 0o644);
        assert!(
            classify(&not_exec)
                .unwrap_err()
                .to_string()
                .contains("chmod +x")
        );
    }
}
