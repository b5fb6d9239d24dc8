//! `hutch logs`: the output kept of a sandbox started without a terminal.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use hutch_core::protocol::{Request, Response};

use super::{LogsArgs, connect};

/// A connection to the next helper, which may take a moment to come up.
fn reconnect() -> anyhow::Result<hutch_client::connection::Client> {
    let mut tries = 0;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        match connect() {
            Ok(client) => return Ok(client),
            Err(_) if tries < 20 => tries += 1,
            Err(e) => return Err(e),
        }
    }
}

pub fn logs(args: LogsArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect()?;
    let mut since = None;
    let mut stdout = std::io::stdout();
    // An app's escape sequences drive a terminal (`ESC[6n` makes it type into the user's
    // input): shown escaped there, unless asked for raw.
    let escape = !args.raw && std::io::IsTerminal::is_terminal(&stdout);
    loop {
        let request = Request::Logs {
            id: args.id.clone(),
            since,
        };
        let answer = match client.request(&request, &[]) {
            // Following, and the helper went away: the next one takes the sandbox over, with
            // a log that starts anew.
            Err(e) if args.follow && e.is_lost() => {
                eprintln!(
                    "hutch: lost the helper; following the output of {} through a new one",
                    args.id
                );
                client = reconnect()?;
                since = None;
                continue;
            }
            other => other?,
        };
        let (start, end, text, finished) = match answer {
            Response::Logs {
                start,
                end,
                text,
                finished,
                ..
            } => (start, end, text, finished),
            Response::Error { message, .. } => bail!("{message}"),
            other => bail!("unexpected answer from the helper: {other:?}"),
        };
        if since.is_some_and(|asked| end < asked) {
            // A new helper's log (after a restart) starts at 0 again: read it from there.
            eprintln!("hutch: the helper was restarted; output from just before may be missing");
            since = None;
            continue;
        }
        if let Some(asked) = since
            && start > asked
        {
            eprintln!(
                "hutch: {} bytes of output were dropped (the log keeps the newest 256 KiB)",
                start - asked
            );
        } else if since.is_none() && start > 0 {
            eprintln!(
                "hutch: the first {start} bytes of output were dropped (the log keeps the newest 256 KiB)"
            );
        }
        if escape {
            stdout.write_all(hutch_core::text::escape_controls(&text).as_bytes())?;
        } else {
            stdout.write_all(text.as_bytes())?;
        }
        stdout.flush()?;
        if !args.follow || finished {
            return Ok(ExitCode::SUCCESS);
        }
        since = Some(end);
        std::thread::sleep(Duration::from_millis(200));
    }
}
