//! Packaging: the desktop entry, the AppStream metainfo and the Flatpak manifest are valid and
//! name only files that exist; `make install` into a temporary prefix puts every file in place
//! and `make uninstall` leaves nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use hutch_tests::{bin_dir, have, skip_or_fail};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

const APP_ID: &str = "io.github.hutchbox.Hutch";

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_desktop_entry_and_the_metainfo_validate() {
    if !(have("desktop-file-validate") && have("appstreamcli")) {
        skip_or_fail(
            "desktop-file-validate and appstreamcli are needed (desktop-file-utils, appstream)",
        );
        return;
    }
    let dist = repo().join("dist");
    run_ok(Command::new("desktop-file-validate").arg(dist.join(format!("{APP_ID}.desktop"))));
    run_ok(
        Command::new("appstreamcli")
            .args(["validate", "--no-net"])
            .arg(dist.join(format!("{APP_ID}.metainfo.xml"))),
    );
    let entry = std::fs::read_to_string(dist.join(format!("{APP_ID}.desktop"))).unwrap();
    let parsed = hutch_core::desktop::DesktopEntry::parse(&entry, "x").unwrap();
    assert_eq!(parsed.icon.as_deref(), Some(APP_ID));
    assert!(
        parsed.takes_files(),
        "file managers can open files with Hutch"
    );
    assert!(entry.contains("[Desktop Action run-sandboxed]\nName=Run a program sandboxed"));
    assert!(entry.contains("MimeType=application/x-executable;"));
}

#[test]
fn the_metainfo_lists_the_screenshots_that_exist_and_the_icon_is_there_in_every_size() {
    let repo = repo();
    let meta = std::fs::read_to_string(repo.join(format!("dist/{APP_ID}.metainfo.xml"))).unwrap();
    let shots: Vec<&str> = meta
        .split("<image>")
        .skip(1)
        .map(|s| s.split("</image>").next().unwrap())
        .collect();
    assert_eq!(shots.len(), 3, "{shots:?}");
    for url in shots {
        let name = url.rsplit('/').next().unwrap();
        assert!(url.starts_with("https://"), "{url}");
        assert!(
            repo.join("screenshots").join(name).is_file(),
            "screenshots/{name} is missing"
        );
    }
    assert!(repo.join(format!("dist/icons/{APP_ID}.svg")).is_file());
    for size in [16, 24, 32, 48, 64, 128, 256, 512] {
        let png = repo.join(format!("dist/icons/{size}x{size}/{APP_ID}.png"));
        let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert_eq!(&bytes[1..4], b"PNG");
        let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        assert_eq!(w, size, "{}", png.display());
    }
}

#[test]
fn the_flatpak_manifest_is_complete_and_names_only_files_that_exist() {
    let repo = repo();
    let text = std::fs::read_to_string(repo.join(format!("flatpak/{APP_ID}.json"))).unwrap();
    let m: serde_json::Value = serde_json::from_str(&text).expect("the manifest is JSON");
    assert_eq!(m["id"], APP_ID);
    assert_eq!(m["command"], "hutch");
    for key in ["runtime", "runtime-version", "sdk"] {
        assert!(m[key].is_string(), "missing {key}");
    }
    assert!(
        m["sdk-extensions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().contains("rust-stable"))
    );
    let finish: Vec<&str> = m["finish-args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for arg in [
        "--socket=wayland",
        "--socket=fallback-x11",
        "--device=dri",
        "--filesystem=xdg-run/hutch:create",
    ] {
        assert!(finish.contains(&arg), "finish-args lack {arg}");
    }
    let module = &m["modules"][0];
    let commands = module["build-commands"].as_array().unwrap();
    assert!(
        commands
            .iter()
            .any(|c| c.as_str().unwrap().contains("cargo --offline build"))
    );
    // Every dist/ file a build command installs exists.
    for c in commands {
        for word in c.as_str().unwrap().split_whitespace() {
            if word.starts_with("dist/") && !word.contains('$') {
                assert!(repo.join(word).is_file(), "{word} is named but missing");
            }
        }
    }
    let sources = module["sources"].as_array().unwrap();
    let cargo_sources = sources
        .iter()
        .find_map(|s| s.as_str())
        .expect("the cargo sources file");
    let list: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo.join("flatpak").join(cargo_sources)).unwrap(),
    )
    .unwrap();
    // Every crate of Cargo.lock from crates.io is in it.
    let lock = std::fs::read_to_string(repo.join("Cargo.lock")).unwrap();
    let dests: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["dest"].as_str().map(str::to_owned))
        .collect();
    let mut checked = 0;
    for pkg in lock.split("[[package]]").skip(1) {
        if !pkg.contains("source = \"registry+") {
            continue;
        }
        let field = |k: &str| {
            pkg.lines()
                .find_map(|l| l.strip_prefix(&format!("{k} = \"")))
                .unwrap()
                .trim_end_matches('"')
                .to_owned()
        };
        let want = format!("cargo/vendor/{}-{}", field("name"), field("version"));
        assert!(
            dests.contains(&want),
            "{want} is not in {cargo_sources}: run flatpak-cargo-generator again"
        );
        checked += 1;
    }
    assert!(checked > 100, "{checked}");
    let readme = std::fs::read_to_string(repo.join("flatpak/README.md")).unwrap();
    assert!(readme.contains("make install") && readme.contains("host"));
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn make_install_into_a_prefix_then_uninstall_leaves_nothing() {
    if !have("make") {
        skip_or_fail("make is needed (Debian package make)");
        return;
    }
    let dest = tempfile::tempdir().unwrap();
    let make = |target: &str| {
        run_ok(
            Command::new("make")
                .arg("-s")
                .arg("-C")
                .arg(repo())
                .arg(target)
                .arg(format!("DESTDIR={}", dest.path().display()))
                .arg("PREFIX=/usr")
                .arg(format!("BINSRC={}", bin_dir().display()))
                .env_remove("MAKEFLAGS"),
        )
    };
    let said = make("install");
    assert!(said.contains("installed"), "{said}");
    let root = dest.path().join("usr");
    for f in [
        "bin/hutch",
        "bin/hutch-helper",
        "lib/systemd/user/hutch-helper.service",
        "lib/systemd/user/hutch-helper.socket",
        "share/applications/io.github.hutchbox.Hutch.desktop",
        "share/metainfo/io.github.hutchbox.Hutch.metainfo.xml",
        "share/icons/hicolor/scalable/apps/io.github.hutchbox.Hutch.svg",
        "share/icons/hicolor/48x48/apps/io.github.hutchbox.Hutch.png",
        "share/bash-completion/completions/hutch",
        "share/zsh/site-functions/_hutch",
        "share/fish/vendor_completions.d/hutch.fish",
        "share/man/man1/hutch.1",
        "share/man/man1/hutch-run.1",
        "share/hutch/profile-templates/graphical-app.toml",
    ] {
        assert!(root.join(f).is_file(), "{f} was not installed");
    }
    let service =
        std::fs::read_to_string(root.join("lib/systemd/user/hutch-helper.service")).unwrap();
    assert!(
        service.contains("ExecStart=/usr/bin/hutch-helper --foreground"),
        "{service}"
    );
    let entry =
        std::fs::read_to_string(root.join("share/applications/io.github.hutchbox.Hutch.desktop"))
            .unwrap();
    assert!(entry.contains("Exec=/usr/bin/hutch open %F"), "{entry}");
    let bash =
        std::fs::read_to_string(root.join("share/bash-completion/completions/hutch")).unwrap();
    assert!(
        bash.contains("reset-home") && bash.contains("--display"),
        "completions know the commands"
    );
    let man = std::fs::read_to_string(root.join("share/man/man1/hutch-run.1")).unwrap();
    assert!(
        man.contains(".TH hutch-run") && man.contains("display"),
        "{}",
        &man[..200.min(man.len())]
    );

    make("uninstall");
    let left = files_under(dest.path());
    assert!(left.is_empty(), "left behind: {left:?}");
}
