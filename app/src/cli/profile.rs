//! `hutch profile`: the app profiles (list them, make one from a shipped template) and
//! `hutch reset-home`.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use hutch_core::profile::{Profile, validate_name};
use hutch_core::protocol::{Request, Response, SandboxState};

use super::{ProfileCommand, ResetHomeArgs, connect};

/// The templates shipped with Hutch (`dist/profiles/`).
pub const TEMPLATES: &[(&str, &str)] = &[
    (
        "untrusted-cli",
        include_str!("../../../dist/profiles/untrusted-cli.toml"),
    ),
    (
        "graphical-app",
        include_str!("../../../dist/profiles/graphical-app.toml"),
    ),
    (
        "offline-graphical-app",
        include_str!("../../../dist/profiles/offline-graphical-app.toml"),
    ),
];

pub fn profile(command: ProfileCommand) -> anyhow::Result<ExitCode> {
    let dir = hutch_client::paths::profiles_dir()?;
    match command {
        ProfileCommand::List => {
            let (good, bad) = hutch_client::profiles::list(&dir);
            for p in &good {
                let desc = if p.description.is_empty() {
                    String::new()
                } else {
                    format!("  {}", p.description)
                };
                println!("{}{desc}", p.name);
            }
            for e in &bad {
                eprintln!(
                    "hutch: {}",
                    hutch_core::text::escape_controls(&e.to_string())
                );
            }
            if good.is_empty() && bad.is_empty() {
                println!(
                    "no profiles in {} (see `hutch profile templates`)",
                    dir.display()
                );
            }
        }
        ProfileCommand::Templates => {
            for (name, text) in TEMPLATES {
                let first = text
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim_start_matches("# ");
                println!("{name:<24} {first}");
            }
        }
        ProfileCommand::New { name, template } => {
            validate_name(&name)
                .map_err(|r| anyhow::anyhow!("invalid profile name `{name}`: {r}"))?;
            let Some((_, text)) = TEMPLATES.iter().find(|(t, _)| *t == template) else {
                let names: Vec<&str> = TEMPLATES.iter().map(|(t, _)| *t).collect();
                bail!(
                    "no template named `{template}` (there are: {})",
                    names.join(", ")
                );
            };
            let file = dir.join(format!("{name}.toml"));
            // Checked here, so the template's comments survive (the text is copied as is).
            Profile::parse(&name, &file, text)?;
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&file)
                .with_context(|| {
                    format!("cannot create {} (does it exist already?)", file.display())
                })?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            println!(
                "created {} from the {template} template: edit it to suit the app",
                file.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Files and bytes under `dir` (not following links).
fn usage(dir: &std::path::Path) -> (u64, u64) {
    let mut files = 0;
    let mut bytes = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                files += 1;
                bytes += meta.len();
            }
        }
    }
    (files, bytes)
}

pub fn reset_home(args: ResetHomeArgs) -> anyhow::Result<ExitCode> {
    validate_name(&args.name)
        .map_err(|r| anyhow::anyhow!("invalid profile name `{}`: {r}", args.name))?;
    let home = hutch_client::paths::homes_dir()?.join(&args.name);
    if !home.is_dir() {
        println!(
            "{} has no kept home (nothing at {}): nothing to reset",
            args.name,
            home.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    // Not while the app runs: it would lose files under its feet.
    if let Response::Sandboxes { sandboxes } = connect()?.request(&Request::List, &[])? {
        let running: Vec<String> = sandboxes
            .iter()
            .filter(|s| s.profile == args.name && s.state != SandboxState::Exited)
            .map(|s| s.id.clone())
            .collect();
        if !running.is_empty() {
            bail!(
                "{} is running (sandbox {}): stop it first with `hutch stop ID`",
                args.name,
                running.join(", ")
            );
        }
    }
    let (files, bytes) = usage(&home);
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            bail!(
                "this deletes {files} file(s) in {}; without a terminal to ask on, add --yes",
                home.display()
            );
        }
        print!(
            "Empty the kept home of {} at {} ({files} file(s), {})? [y/N] ",
            args.name,
            home.display(),
            hutch_core::limits::format_size(bytes)
        );
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("left as it was");
            return Ok(ExitCode::SUCCESS);
        }
    }
    let mut failed = Vec::new();
    for entry in std::fs::read_dir(&home).with_context(|| format!("read {}", home.display()))? {
        let path = entry?.path();
        let is_dir = path.symlink_metadata().is_ok_and(|m| m.is_dir());
        let removed = if is_dir {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if let Err(e) = removed {
            failed.push(format!("{}: {e}", path.display()));
        }
    }
    if !failed.is_empty() {
        bail!(
            "some files could not be removed (files made inside by another uid belong to your \
             subordinate range):\n  {}",
            failed.join("\n  ")
        );
    }
    println!("emptied the kept home of {} ({files} file(s))", args.name);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_valid_profiles() {
        for (name, text) in TEMPLATES {
            let p = Profile::parse(name, std::path::Path::new(name), text)
                .unwrap_or_else(|e| panic!("template {name}: {e}"));
            assert!(!p.description.is_empty(), "{name}");
        }
        let cli = Profile::parse("x", std::path::Path::new("x"), TEMPLATES[0].1).unwrap();
        assert_eq!(cli.display, hutch_core::profile::DisplayMode::None);
        assert_eq!(cli.network, hutch_core::network::NetworkMode::None);
        let gui = Profile::parse("x", std::path::Path::new("x"), TEMPLATES[1].1).unwrap();
        assert!(gui.audio && gui.gpu);
        assert_eq!(gui.home, hutch_core::profile::HomeMode::Persist);
    }
}
