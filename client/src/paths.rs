//! Where Hutch keeps things: the helper's runtime folder, profiles, per-app homes.

use std::path::{Path, PathBuf};

/// A folder or variable Hutch needs is missing.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error(
        "XDG_RUNTIME_DIR is not set: log in through a desktop or systemd session, or set it to a \
         private folder you own with mode 0700"
    )]
    NoRuntimeDir,
    #[error("XDG_RUNTIME_DIR={0} is not an absolute path")]
    RelativeRuntimeDir(String),
    #[error("cannot find your home folder (HOME is not set and there is no passwd entry)")]
    NoHome,
}

/// Environment variable naming the helper's socket, overriding the default location.
pub const SOCKET_ENV: &str = "HUTCH_SOCKET";

/// `$XDG_RUNTIME_DIR/hutch`: the helper's socket, lock, log and per-sandbox state.
pub fn runtime_dir() -> Result<PathBuf, PathError> {
    let dir = std::env::var_os("XDG_RUNTIME_DIR").ok_or(PathError::NoRuntimeDir)?;
    let dir = PathBuf::from(dir);
    if !dir.is_absolute() {
        return Err(PathError::RelativeRuntimeDir(dir.display().to_string()));
    }
    Ok(dir.join("hutch"))
}

/// The helper's socket: `$HUTCH_SOCKET`, else `$XDG_RUNTIME_DIR/hutch/helper.sock`.
pub fn socket_path() -> Result<PathBuf, PathError> {
    match std::env::var_os(SOCKET_ENV) {
        Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
        _ => Ok(runtime_dir()?.join("helper.sock")),
    }
}

/// The lock file that keeps one helper per socket.
pub fn lock_path(socket: &Path) -> PathBuf {
    let mut name = socket.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    socket.with_file_name(name)
}

/// The helper's log when it runs detached.
pub fn log_path(socket: &Path) -> PathBuf {
    socket.with_file_name("helper.log")
}

fn base_dirs() -> Result<directories::BaseDirs, PathError> {
    directories::BaseDirs::new().ok_or(PathError::NoHome)
}

/// `$XDG_CONFIG_HOME/hutch`.
pub fn config_dir() -> Result<PathBuf, PathError> {
    Ok(base_dirs()?.config_dir().join("hutch"))
}

/// `$XDG_CONFIG_HOME/hutch/profiles`.
pub fn profiles_dir() -> Result<PathBuf, PathError> {
    Ok(config_dir()?.join("profiles"))
}

/// `$XDG_DATA_HOME/hutch`.
pub fn data_dir() -> Result<PathBuf, PathError> {
    Ok(base_dirs()?.data_dir().join("hutch"))
}

/// `$XDG_DATA_HOME/hutch/machine-ids`: each profile's machine id (`/etc/machine-id` inside).
pub fn machine_ids_dir() -> Result<PathBuf, PathError> {
    Ok(data_dir()?.join("machine-ids"))
}

/// `$XDG_DATA_HOME/hutch/homes`: persistent per-app homes.
pub fn homes_dir() -> Result<PathBuf, PathError> {
    Ok(data_dir()?.join("homes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_and_log_sit_beside_the_socket() {
        let sock = Path::new("/run/user/1000/hutch/helper.sock");
        assert_eq!(
            lock_path(sock),
            Path::new("/run/user/1000/hutch/helper.sock.lock")
        );
        assert_eq!(log_path(sock), Path::new("/run/user/1000/hutch/helper.log"));
    }
}
