//! `hutch logs`: the output kept of a sandbox started without a terminal.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use hutch_core::protocol::{Request, Response};

use super::{LogsArgs, connect};

pub fn logs(args: LogsArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect()?;
    let mut since = None;
    let mut stdout = std::io::stdout();
    loop {
        let request = Request::Logs {
            id: args.id.clone(),
            since,
        };
        let (start, end, text, finished) = match client.request(&request, &[])? {
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
        stdout.write_all(text.as_bytes())?;
        stdout.flush()?;
        if !args.follow || finished {
            return Ok(ExitCode::SUCCESS);
        }
        since = Some(end);
        std::thread::sleep(Duration::from_millis(200));
    }
}
