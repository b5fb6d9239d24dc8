//! `hutch`: run untrusted apps in rootless sandboxes. With no arguments it opens the window;
//! with a command it is the CLI.

use std::process::ExitCode;

use clap::Parser;
use hutch::cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(e) => {
            // Messages carry paths an app may have named (a socket's, a link's): no control
            // character of theirs reaches the terminal.
            eprintln!(
                "hutch: {}",
                hutch_core::text::escape_line(&format!("{e:#}"))
            );
            ExitCode::from(cli::HUTCH_ERROR)
        }
    }
}
