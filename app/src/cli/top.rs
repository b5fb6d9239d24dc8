//! `hutch top`: a live table of the running sandboxes.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::bail;
use hutch_core::protocol::{Event, Request, Response, SandboxStats};
use hutch_core::units;

use super::{TopArgs, connect};

/// CPU percent of one core between two samples.
pub fn cpu_percent(prev: &SandboxStats, now: &SandboxStats) -> f64 {
    let dt_us = now.at_ms.saturating_sub(prev.at_ms) as f64 * 1000.0;
    if dt_us <= 0.0 {
        return 0.0;
    }
    now.cpu_usage_usec.saturating_sub(prev.cpu_usage_usec) as f64 / dt_us * 100.0
}

/// Bytes per second of a counter between two samples.
fn rate(prev: u64, now: u64, dt_ms: u64) -> u64 {
    (now.saturating_sub(prev) * 1000)
        .checked_div(dt_ms)
        .unwrap_or(0)
}

fn row(s: &SandboxStats, prev: Option<&SandboxStats>) -> String {
    let cpu = prev
        .map(|p| format!("{:5.1}%", cpu_percent(p, s)))
        .unwrap_or_else(|| "    -".into());
    let mem = match s.memory_limit {
        Some(limit) => format!("{} / {}", units::bytes(s.memory_bytes), units::bytes(limit)),
        None => units::bytes(s.memory_bytes),
    };
    let pids = match s.pids_limit {
        Some(limit) => format!("{}/{limit}", s.pids),
        None => s.pids.to_string(),
    };
    let (rx, tx) = match prev {
        Some(p) => {
            let dt = s.at_ms.saturating_sub(p.at_ms);
            let total = |c: &SandboxStats| {
                (
                    c.net.rx_bytes + c.loopback.rx_bytes,
                    c.net.tx_bytes + c.loopback.tx_bytes,
                )
            };
            let (prx, ptx) = total(p);
            let (nrx, ntx) = total(s);
            (
                units::rate(rate(prx, nrx, dt)),
                units::rate(rate(ptx, ntx, dt)),
            )
        }
        None => ("-".into(), "-".into()),
    };
    format!(
        "{:<10} {:>7} {:>20} {:>9} {:>12} {:>12}  {}",
        s.id, cpu, mem, pids, rx, tx, s.source
    )
}

pub fn top(args: TopArgs) -> anyhow::Result<ExitCode> {
    if !(args.interval.is_finite() && (0.1..=10.0).contains(&args.interval)) {
        bail!(
            "--interval {} is not a number of seconds from 0.1 to 10",
            args.interval
        );
    }
    let mut client = connect()?;
    let interval_ms = (args.interval * 1000.0) as u64;
    match client.request(
        &Request::Subscribe {
            interval_ms: Some(interval_ms),
        },
        &[],
    )? {
        Response::Done { .. } => {}
        Response::Error { message, .. } => bail!("{message}"),
        other => bail!("unexpected answer from the helper: {other:?}"),
    }
    let tty = std::io::stdout().is_terminal();
    let mut previous: HashMap<String, SandboxStats> = HashMap::new();
    let mut printed = 0;
    let mut notes: Vec<String> = Vec::new();
    loop {
        let samples = match client.next_event()? {
            Event::Samples { samples } => samples,
            Event::OutOfMemory { id, kills } => {
                notes.push(format!("{id}: out of memory, {kills} process(es) killed"));
                continue;
            }
            Event::ProcessLimit { id, hits } => {
                notes.push(format!(
                    "{id}: process limit reached ({hits} fork(s) refused)"
                ));
                continue;
            }
            _ => continue,
        };
        let mut out = String::new();
        if tty {
            out.push_str("\x1b[H\x1b[2J");
        }
        out.push_str(&format!(
            "{:<10} {:>7} {:>20} {:>9} {:>12} {:>12}  SOURCE\n",
            "ID", "CPU", "MEMORY", "PIDS", "NET RX", "NET TX"
        ));
        for s in &samples {
            out.push_str(&row(s, previous.get(&s.id)));
            out.push('\n');
        }
        if samples.is_empty() {
            out.push_str("(no running sandboxes)\n");
        }
        // The latest limit events under the table.
        if notes.len() > 5 {
            notes.drain(..notes.len() - 5);
        }
        for note in &notes {
            out.push_str(&format!("! {note}\n"));
        }
        let mut stdout = std::io::stdout();
        stdout.write_all(out.as_bytes())?;
        stdout.flush()?;
        previous = samples.into_iter().map(|s| (s.id.clone(), s)).collect();
        printed += 1;
        if args.iterations.is_some_and(|n| printed >= n) {
            return Ok(ExitCode::SUCCESS);
        }
    }
}
