//! `hutch`: run untrusted apps in rootless sandboxes. The same binary is the CLI and (in a
//! later release) the window.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hutch: {e:#}");
            ExitCode::from(cli::HUTCH_ERROR)
        }
    }
}
