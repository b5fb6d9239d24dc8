//! The command line: `hutch run|ps|stop|doctor`.

mod doctor;
mod ps;
mod run;
mod stats;
mod stop;
mod terminal;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use hutch_core::network::{NetBackend, NetworkMode, PortForward};
use hutch_core::profile::HomeMode;
use hutch_core::protocol::ShareSpec;
use hutch_helper::client::Client;

/// Exit code for Hutch's own failures (the app's codes pass through unchanged), as podman.
pub const HUTCH_ERROR: u8 = 125;

#[derive(Parser, Debug)]
#[command(
    name = "hutch",
    version,
    about = "Run untrusted desktop apps in rootless sandboxes and watch them live",
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a command in a new sandbox, with your terminal's stdin, stdout and stderr.
    Run(RunArgs),
    /// List sandboxes.
    Ps(PsArgs),
    /// Stop a sandbox: SIGTERM, then SIGKILL after a grace period.
    Stop(StopArgs),
    /// Check what this system supports, and how to fix what it does not.
    Doctor(DoctorArgs),
    /// Show a sandbox's counters (network traffic).
    Stats(StatsArgs),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// App profile ($XDG_CONFIG_HOME/hutch/profiles/NAME.toml).
    #[arg(long, short = 'p', value_name = "NAME")]
    profile: Option<String>,
    /// Share a host path at the same path inside (read-only unless :rw). Repeatable.
    #[arg(long, value_name = "PATH[:ro|:rw]", value_parser = ShareSpec::parse)]
    share: Vec<ShareSpec>,
    /// Home folder: a throwaway tmpfs, or kept per app.
    #[arg(long, value_name = "tmp|persist", value_parser = parse_home)]
    home: Option<HomeMode>,
    /// Network: none (loopback only) or user (a user-mode stack to the outside).
    #[arg(long, value_name = "none|user")]
    net: Option<NetworkMode>,
    /// User-mode network stack: auto picks pasta when installed, else slirp4netns.
    #[arg(long, value_name = "auto|slirp4netns|pasta")]
    net_backend: Option<NetBackend>,
    /// Let the app reach services on the host's loopback (at 10.0.2.2). Off by default.
    #[arg(long)]
    allow_host_loopback: bool,
    /// Forward a host TCP port into the sandbox (host side on 127.0.0.1 unless ADDR is given).
    #[arg(long, value_name = "[ADDR:]HOSTPORT:SANDBOXPORT", value_parser = PortForward::parse)]
    publish: Vec<PortForward>,
    /// Give the app its own pseudo-terminal (for shells and other interactive programs).
    #[arg(long, short = 't')]
    tty: bool,
    /// The command and its arguments (after `--`).
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

fn parse_home(s: &str) -> Result<HomeMode, String> {
    s.parse()
}

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Include recently exited sandboxes.
    #[arg(long, short = 'a')]
    all: bool,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Sandbox id (a unique prefix is enough).
    id: String,
    /// Seconds between SIGTERM and SIGKILL.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    grace: f64,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Sandbox id (a unique prefix is enough).
    id: String,
    /// Print JSON samples instead of text.
    #[arg(long)]
    json: bool,
    /// Keep printing a sample every this many seconds, until the sandbox exits.
    #[arg(long, value_name = "SECONDS")]
    watch: Option<f64>,
}

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn connect() -> anyhow::Result<Client> {
    Ok(Client::connect_or_start("hutch-cli")?)
}

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Ps(args) => ps::ps(args),
        Command::Stop(args) => stop::stop(args),
        Command::Doctor(args) => doctor::doctor(args),
        Command::Stats(args) => stats::stats(args),
    }
}
