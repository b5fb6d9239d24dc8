//! `hutch stop`.

use std::process::ExitCode;

use anyhow::bail;
use hutch_core::protocol::{Request, Response};

use super::{StopArgs, connect};

pub fn stop(args: StopArgs) -> anyhow::Result<ExitCode> {
    if !(args.grace.is_finite() && args.grace >= 0.0) {
        bail!("--grace {} is not a number of seconds >= 0", args.grace);
    }
    let mut client = connect()?;
    let request = Request::Stop {
        id: args.id,
        grace_ms: Some((args.grace * 1000.0) as u64),
    };
    match client.request(&request, &[])? {
        Response::Stopped { id, status } => {
            println!("stopped {id} ({status})");
            Ok(ExitCode::SUCCESS)
        }
        Response::Error { message, .. } => bail!("{message}"),
        other => bail!("unexpected answer from the helper: {other:?}"),
    }
}
