//! What an app is to the programs that ask: its own machine id, one per profile, made at its
//! first launch and kept in Hutch's data folder (`machine-ids/PROFILE`, which no sandbox
//! sees), so an app keeps the id it had and two apps never share one, nor the host's.

use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

/// A profile's machine id could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot make the folder of machine ids {}: {err}", dir.display())]
    Folder { dir: PathBuf, err: std::io::Error },
    #[error("cannot read the machine id {}: {err}", path.display())]
    Read { path: PathBuf, err: std::io::Error },
    #[error("cannot write the machine id {}: {err}", path.display())]
    Write { path: PathBuf, err: std::io::Error },
    #[error("cannot read random bytes from /dev/urandom: {0}")]
    Random(std::io::Error),
}

/// Whether `text` is a machine id: 32 lowercase hex digits (`machine-id(5)`).
fn valid(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A new random machine id (a version 4 UUID's bits, as systemd makes them).
fn random() -> Result<String, IdentityError> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(IdentityError::Random)?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The machine id of `profile` (a validated profile name), kept in `dir`: read when it is
/// there and well formed, else made and written atomically (a file that is not an id, left
/// by a crash or an edit, is replaced).
pub fn machine_id(dir: &Path, profile: &str) -> Result<String, IdentityError> {
    let path = dir.join(profile);
    match std::fs::read_to_string(&path) {
        Ok(text) if valid(text.trim_end()) => return Ok(text.trim_end().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(err) => return Err(IdentityError::Read { path, err }),
    }
    std::fs::create_dir_all(dir).map_err(|err| IdentityError::Folder {
        dir: dir.to_owned(),
        err,
    })?;
    let id = random()?;
    let tmp = dir.join(format!(".{profile}.tmp-{}", std::process::id()));
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(format!("{id}\n").as_bytes())?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(err) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(IdentityError::Write { path, err });
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("hutch-identity-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_profile_keeps_its_machine_id_and_two_profiles_differ() {
        let dir = folder("keeps");
        let first = machine_id(&dir, "editor").unwrap();
        assert!(valid(&first), "{first}");
        assert_eq!(machine_id(&dir, "editor").unwrap(), first);
        let other = machine_id(&dir, "browser").unwrap();
        assert!(valid(&other) && other != first, "{other} {first}");
        assert_eq!(
            std::fs::read_to_string(dir.join("editor")).unwrap(),
            format!("{first}\n")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_that_is_no_machine_id_is_replaced() {
        let dir = folder("replaced");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("editor"), "not an id\n").unwrap();
        let id = machine_id(&dir, "editor").unwrap();
        assert!(valid(&id), "{id}");
        assert_eq!(
            std::fs::read_to_string(dir.join("editor")).unwrap(),
            format!("{id}\n")
        );
        assert!(
            !valid("5F0C3C9E2A7B4D1E8F6A0B1C2D3E4F50"),
            "upper case is not an id"
        );
        assert!(!valid("5f0c3c9e"), "too short");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
