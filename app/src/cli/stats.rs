//! `hutch stats`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use hutch_core::protocol::{ErrorCode, Request, Response, SandboxStats};
use hutch_core::units;

use super::{StatsArgs, connect};

fn print(stats: &SandboxStats, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(stats)?);
    } else {
        let n = &stats.net;
        let limit = stats
            .memory_limit
            .map(|l| format!(" of {}", units::bytes(l)))
            .unwrap_or_default();
        println!(
            "{}  cpu {:.2}s  memory {}{limit}  pids {}  net rx {} ({} packets) tx {} ({} packets)  [{}]",
            stats.id,
            stats.cpu_usage_usec as f64 / 1e6,
            units::bytes(stats.memory_bytes),
            stats.pids,
            units::bytes(n.rx_bytes),
            n.rx_packets,
            units::bytes(n.tx_bytes),
            n.tx_packets,
            stats.source
        );
    }
    Ok(())
}

pub fn stats(args: StatsArgs) -> anyhow::Result<ExitCode> {
    let interval = match args.watch {
        Some(s) if s.is_finite() && s >= 0.1 => Some(Duration::from_secs_f64(s)),
        Some(s) => bail!("--watch {s} is not a number of seconds >= 0.1"),
        None => None,
    };
    let mut client = connect()?;
    let mut first = true;
    loop {
        match client.request(
            &Request::Stats {
                id: args.id.clone(),
            },
            &[],
        )? {
            Response::Stats { stats } => print(&stats, args.json)?,
            // Watching ends quietly when the sandbox does.
            Response::Error {
                code: ErrorCode::NotFound,
                ..
            } if !first => {
                return Ok(ExitCode::SUCCESS);
            }
            Response::Error { message, .. } => bail!("{message}"),
            other => bail!("unexpected answer from the helper: {other:?}"),
        }
        first = false;
        match interval {
            Some(every) => std::thread::sleep(every),
            None => return Ok(ExitCode::SUCCESS),
        }
    }
}
