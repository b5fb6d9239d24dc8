//! Asking the systemd user manager (over D-Bus, as podman and crun do) for a transient scope
//! with `Delegate=yes`, when the helper was started outside a delegated cgroup (by the CLI or
//! the window rather than by its socket unit).

use std::time::{Duration, Instant};

use zbus::zvariant::Value;

/// Why no scope could be had.
#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    #[error("no session bus to reach the systemd user manager: {0}")]
    NoBus(String),
    #[error("systemd refused the transient scope {unit}: {err}")]
    Refused { unit: String, err: String },
    #[error("systemd accepted the scope {unit}, but this process was not moved into it")]
    NotMoved { unit: String },
}

/// The scope's unit name for this helper.
pub fn unit_name(pid: u32) -> String {
    format!("hutch-helper-{pid}.scope")
}

/// Asks for scope `hutch-helper-PID.scope` holding this process, with its cgroup delegated,
/// and waits until the move shows in /proc/self/cgroup.
pub fn move_into_delegated_scope() -> Result<String, ScopeError> {
    let pid = std::process::id();
    let unit = unit_name(pid);
    let conn =
        zbus::blocking::Connection::session().map_err(|e| ScopeError::NoBus(e.to_string()))?;
    let before = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let properties: Vec<(&str, Value<'_>)> = vec![
        ("Description", Value::from("Hutch sandbox helper")),
        ("PIDs", Value::from(vec![pid])),
        ("Delegate", Value::from(true)),
        ("CollectMode", Value::from("inactive-or-failed")),
    ];
    let aux: Vec<(&str, Vec<(&str, Value<'_>)>)> = Vec::new();
    conn.call_method(
        Some("org.freedesktop.systemd1"),
        "/org/freedesktop/systemd1",
        Some("org.freedesktop.systemd1.Manager"),
        "StartTransientUnit",
        &(unit.as_str(), "fail", properties, aux),
    )
    .map_err(|err| ScopeError::Refused {
        unit: unit.clone(),
        err: err.to_string(),
    })?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let now = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        if now != before && now.contains(&unit) {
            return Ok(unit);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(ScopeError::NotMoved { unit })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_names_carry_the_pid() {
        assert_eq!(unit_name(42), "hutch-helper-42.scope");
    }
}
