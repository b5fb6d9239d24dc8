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
