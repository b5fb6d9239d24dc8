//! `hutch doctor`.

use std::process::ExitCode;

use anyhow::bail;
use hutch_core::protocol::{CheckStatus, Request, Response};

use super::{DoctorArgs, connect};

pub fn doctor(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect()?;
    let report = match client.request(&Request::Doctor, &[])? {
        Response::Doctor { report } => report,
        Response::Error { message, .. } => bail!("{message}"),
        other => bail!("unexpected answer from the helper: {other:?}"),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for check in &report.checks {
            let tag = match check.status {
                CheckStatus::Ok => " ok ",
                CheckStatus::Warn => "warn",
                CheckStatus::Fail => "FAIL",
            };
            println!("[{tag}] {}: {}", check.title, check.detail);
            if let Some(fix) = &check.fix {
                println!("       fix: {fix}");
            }
        }
    }
    Ok(match report.overall() {
        CheckStatus::Fail => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    })
}
