//! Loading app profiles from `$XDG_CONFIG_HOME/hutch/profiles/NAME.toml`.

use std::io::ErrorKind;
use std::path::Path;

use hutch_core::profile::{DEFAULT_PROFILE, Profile, ProfileError, validate_name};

/// Loads profile `name` from `dir`. `None` loads `default.toml` when it exists, else the
/// built-in default.
pub fn load(dir: &Path, name: Option<&str>) -> Result<Profile, ProfileError> {
    let wanted = name.unwrap_or(DEFAULT_PROFILE);
    validate_name(wanted).map_err(|reason| ProfileError::Name {
        name: wanted.to_owned(),
        reason,
    })?;
    let file = dir.join(format!("{wanted}.toml"));
    match std::fs::read_to_string(&file) {
        Ok(text) => Profile::parse(wanted, &file, &text),
        Err(e) if e.kind() == ErrorKind::NotFound && name.is_none() => {
            Ok(Profile::builtin_default())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Err(ProfileError::NotFound {
            name: wanted.to_owned(),
            dir: dir.to_owned(),
        }),
        Err(e) => Err(ProfileError::Read {
            file,
            message: e.to_string(),
        }),
    }
}

/// Every profile in `dir`, sorted by name: the valid ones, and why the others are not.
pub fn list(dir: &Path) -> (Vec<Profile>, Vec<ProfileError>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (good, bad);
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".toml")?;
            (!stem.starts_with('.')).then(|| stem.to_owned())
        })
        .collect();
    names.sort();
    for name in names {
        match load(dir, Some(&name)) {
            Ok(p) => good.push(p),
            Err(e) => bad.push(e),
        }
    }
    (good, bad)
}

/// Writes `profile` to `dir/NAME.toml` atomically: a temporary file in the same folder,
/// flushed to disk, then renamed over the old one, so a crash leaves the old file or the new
/// one, never half of either.
pub fn save(dir: &Path, profile: &Profile) -> Result<std::path::PathBuf, ProfileError> {
    validate_name(&profile.name).map_err(|reason| ProfileError::Name {
        name: profile.name.clone(),
        reason,
    })?;
    let file = dir.join(format!("{}.toml", profile.name));
    let write_err = |e: std::io::Error| ProfileError::Write {
        file: file.clone(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(write_err)?;
    let text = profile.to_toml();
    // The text must read back as the same profile before it replaces anything.
    let reread = Profile::parse(&profile.name, &file, &text)?;
    if &reread != profile {
        return Err(ProfileError::Write {
            file,
            message: "the profile does not survive a round trip through TOML".into(),
        });
    }
    let tmp = dir.join(format!(".{}.toml.tmp-{}", profile.name, std::process::id()));
    let result = (|| {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(b"# Hutch app profile; see `hutch run --help` and the README for the keys.\n")?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &file)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(write_err(e));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "hutch-profiles-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn saves_atomically_and_lists_good_and_bad() {
        let dir = tempdir().join("profiles");
        let mut p = Profile::with_defaults("editor");
        p.command = vec!["/opt/editor".into()];
        p.limits.memory = Some(512 << 20);
        let file = save(&dir, &p).unwrap();
        assert_eq!(load(&dir, Some("editor")).unwrap(), p);
        p.limits.pids = Some(64);
        save(&dir, &p).unwrap();
        assert_eq!(load(&dir, Some("editor")).unwrap().limits.pids, Some(64));
        // No temporary file is left beside it.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [file.file_name().unwrap()]);
        std::fs::write(dir.join("broken.toml"), "home = 1\n").unwrap();
        let (good, bad) = list(&dir);
        assert_eq!(
            good.iter().map(|p| &p.name[..]).collect::<Vec<_>>(),
            ["editor"]
        );
        assert!(
            bad[0].to_string().contains("broken.toml, line 1"),
            "{}",
            bad[0]
        );
        // An invalid name is refused before anything is written.
        let bad_name = Profile::with_defaults("../evil");
        assert!(save(&dir, &bad_name).is_err());
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn missing_named_profile_names_the_folder() {
        let dir = tempdir();
        let err = load(&dir, Some("nosuch")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("no profile named `nosuch`"), "{text}");
        assert!(text.contains(&dir.display().to_string()), "{text}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn default_falls_back_to_builtin_and_reads_a_file() {
        let dir = tempdir();
        assert_eq!(load(&dir, None).unwrap(), Profile::builtin_default());
        std::fs::write(dir.join("tool.toml"), "home = \"persist\"\n").unwrap();
        let p = load(&dir, Some("tool")).unwrap();
        assert_eq!(p.name, "tool");
        std::fs::write(dir.join("bad.toml"), "home = 3\n").unwrap();
        let err = load(&dir, Some("bad")).unwrap_err().to_string();
        assert!(err.contains("bad.toml, line 1, key `home`"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
