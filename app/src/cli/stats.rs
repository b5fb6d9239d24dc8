//! `hutch stats`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use hutch_core::protocol::{ErrorCode, Request, Response, SandboxStats};

use super::{StatsArgs, connect};

/// "1.5 MB", "320 B".
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn print(stats: &SandboxStats, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(stats)?);
    } else {
        let n = &stats.net;
        let limit = stats
            .memory_limit
            .map(|l| format!(" of {}", hutch_core::limits::format_size(l)))
            .unwrap_or_default();
        println!(
            "{}  cpu {:.2}s  memory {}{limit}  pids {}  net rx {} ({} packets) tx {} ({} packets)  [{}]",
            stats.id,
            stats.cpu_usage_usec as f64 / 1e6,
            hutch_core::limits::format_size(stats.memory_bytes),
            stats.pids,
            human_bytes(n.rx_bytes),
            n.rx_packets,
            human_bytes(n.tx_bytes),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_naturally() {
        assert_eq!(human_bytes(320), "320 B");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
        assert_eq!(human_bytes(2_000_000_000), "2.0 GB");
    }
}
