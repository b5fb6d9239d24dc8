//! `hutch ps`.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::bail;
use hutch_core::protocol::{NetworkInfo, Request, Response, SandboxInfo, SandboxState};

use super::{PsArgs, connect};

/// "3s", "4m05s", "2h10m", "3d4h".
pub fn format_uptime(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

fn state_text(info: &SandboxInfo) -> String {
    match (info.state, info.exit) {
        (SandboxState::Exited, Some(status)) => format!("exited ({status})"),
        (state, _) => format!("{state:?}").to_lowercase(),
    }
}

/// "none", "pasta", "slirp4netns (down)".
fn network_text(net: &NetworkInfo) -> String {
    match (&net.backend, net.up) {
        (None, _) => "none".into(),
        (Some(b), true) => b.clone(),
        (Some(b), false) => format!("{b} (down)"),
    }
}

pub fn ps(args: PsArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect()?;
    let sandboxes = match client.request(&Request::List, &[])? {
        Response::Sandboxes { sandboxes } => sandboxes,
        Response::Error { message, .. } => bail!("{message}"),
        other => bail!("unexpected answer from the helper: {other:?}"),
    };
    let shown: Vec<&SandboxInfo> = sandboxes
        .iter()
        .filter(|s| args.all || s.state != SandboxState::Exited)
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&shown)?);
        return Ok(ExitCode::SUCCESS);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    println!(
        "{:<10} {:<14} {:>8} {:<22} {:>8}  {:<18} COMMAND",
        "ID", "PROFILE", "PID", "STATE", "UPTIME", "NETWORK"
    );
    for s in shown {
        let pid = s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let uptime = format_uptime(now.saturating_sub(s.started_at_ms) / 1000);
        println!(
            "{:<10} {:<14} {:>8} {:<22} {:>8}  {:<18} {}",
            s.id,
            s.profile,
            pid,
            state_text(s),
            uptime,
            network_text(&s.network),
            // The command line may hold anything: no control character reaches the terminal.
            hutch_core::text::escape_line(&s.command.join(" "))
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptimes_read_naturally() {
        assert_eq!(format_uptime(5), "5s");
        assert_eq!(format_uptime(245), "4m05s");
        assert_eq!(format_uptime(7800), "2h10m");
        assert_eq!(format_uptime(3 * 86400 + 4 * 3600), "3d4h");
    }
}
