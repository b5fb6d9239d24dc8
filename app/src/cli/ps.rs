//! `hutch ps`.

use std::process::ExitCode;

use anyhow::bail;
use hutch_core::protocol::{NetworkInfo, Request, Response, SandboxInfo, SandboxState};

use super::{PsArgs, connect};

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
    let now = hutch_client::now_ms();
    println!(
        "{:<10} {:<14} {:>8} {:<22} {:>10}  {:<18} COMMAND",
        "ID", "PROFILE", "PID", "STATE", "UPTIME", "NETWORK"
    );
    for s in shown {
        let pid = s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let uptime = hutch_core::units::duration_ms(now.saturating_sub(s.started_at_ms));
        println!(
            "{:<10} {:<14} {:>8} {:<22} {:>10}  {:<18} {}",
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
