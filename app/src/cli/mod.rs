//! The command line: `hutch run|ps|stop|doctor`.

mod doctor;
mod inspect;
mod logs;
mod packaging;
mod profile;
mod ps;
mod run;
mod stats;
mod stop;
mod terminal;
mod top;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use hutch_client::connection::Client;
use hutch_core::limits;
use hutch_core::network::{NetBackend, NetworkMode, PortForward};
use hutch_core::profile::{DisplayMode, HomeMode};
use hutch_core::protocol::{Request, Response, ShareSpec};

/// Exit code for Hutch's own failures (the app's codes pass through unchanged), as podman.
pub const HUTCH_ERROR: u8 = 125;

#[derive(Parser, Debug)]
#[command(
    name = "hutch",
    version,
    about = "Run untrusted desktop apps in rootless sandboxes and watch them live",
    long_about = "Run untrusted desktop apps in rootless sandboxes and watch them live.\n\n\
                  Without a command, opens the Hutch window."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
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
    /// Show what a sandbox is made of: namespaces, ids, files, cgroup, network, confinement.
    Inspect(InspectArgs),
    /// Change the limits of a running sandbox.
    Limit(LimitCmdArgs),
    /// A live table of the running sandboxes: CPU, memory against its limit, processes, network.
    Top(TopArgs),
    /// Print the output of a sandbox started without a terminal (from the window, or with
    /// `run --detach`).
    Logs(LogsArgs),
    /// App profiles: list them, or make one from a template.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Empty an app's kept home (asks first).
    ResetHome(ResetHomeArgs),
    /// Open the window and launch these files as if dropped on it (for file managers).
    Open(OpenArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell).
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
    /// Write man pages (hutch.1 and one per command) into a folder.
    #[command(hide = true)]
    Manpages { dir: std::path::PathBuf },
    /// Freeze every process of a sandbox.
    Pause(IdArgs),
    /// Thaw a paused sandbox.
    Resume(IdArgs),
}

#[derive(Args, Debug)]
pub struct LimitCmdArgs {
    /// Sandbox id (a unique prefix is enough).
    id: String,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Args, Debug)]
pub struct TopArgs {
    /// Seconds between samples (0.1 to 10).
    #[arg(long, short = 'n', default_value_t = 1.0, value_name = "SECONDS")]
    interval: f64,
    /// Print this many tables and stop (for scripts); default: until interrupted.
    #[arg(long, value_name = "N")]
    iterations: Option<u64>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Sandbox id (a unique prefix is enough).
    id: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Sandbox id (a unique prefix is enough); exited sandboxes keep their log for a while.
    id: String,
    /// Keep printing new output until the sandbox exits.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Pass the app's control characters to a terminal as they are (by default, when
    /// standard output is a terminal, they are shown as escapes like `\e[31m`, so an app's
    /// output cannot drive the terminal).
    #[arg(long)]
    raw: bool,
}

#[derive(Args, Debug)]
pub struct OpenArgs {
    /// Programs, scripts, .desktop files, AppImages, or data files to open with an app.
    files: Vec<std::path::PathBuf>,
    /// Show the file chooser ("Launch…") at once.
    #[arg(long)]
    choose: bool,
}

#[derive(Subcommand, Debug)]
pub enum ProfileCommand {
    /// The profiles in $XDG_CONFIG_HOME/hutch/profiles.
    List,
    /// The templates shipped with Hutch.
    Templates,
    /// Make profile NAME from a template, to edit.
    New {
        name: String,
        /// untrusted-cli, graphical-app or offline-graphical-app.
        #[arg(long, short = 't', default_value = "untrusted-cli")]
        template: String,
    },
}

#[derive(Args, Debug)]
pub struct ResetHomeArgs {
    /// The app profile whose kept home is emptied.
    name: String,
    /// Do not ask.
    #[arg(long, short = 'y')]
    yes: bool,
}

#[derive(Args, Debug)]
pub struct IdArgs {
    /// Sandbox id (a unique prefix is enough).
    id: String,
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
    /// Let the app show windows: wayland, x11 (UNSAFE: any X11 client can read every
    /// keystroke of your session), auto (Wayland, else X11) or none.
    #[arg(long, value_name = "wayland|x11|auto|none", num_args = 0..=1, default_missing_value = "auto", value_parser = parse_display)]
    display: Option<DisplayMode>,
    /// Let the app play and record sound (the PipeWire or PulseAudio socket).
    #[arg(long)]
    audio: bool,
    /// Let the app use the GPU (/dev/dri).
    #[arg(long)]
    gpu: bool,
    #[command(flatten)]
    limits: LimitArgs,
    /// Give the app its own pseudo-terminal (for shells and other interactive programs).
    #[arg(long, short = 't', conflicts_with = "detach")]
    tty: bool,
    /// Start the app in the background and print its id; its output goes to `hutch logs ID`.
    #[arg(long, short = 'd')]
    detach: bool,
    /// The command and its arguments (after `--`, or after the options): a program in the
    /// sandbox's PATH, or a program, script, `.desktop` file (then its FILES) or AppImage
    /// named by its path.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    command: Vec<String>,
}

/// Resource limits (cgroup v2); each overrides the profile's `[limits]`.
#[derive(Args, Debug)]
pub struct LimitArgs {
    /// Memory limit, e.g. 512M or 2G (memory.max; swap is closed unless --memory-swap).
    #[arg(long, value_name = "SIZE", value_parser = |s: &str| limits::parse_memory(s).map_err(|e| e.to_string()))]
    memory: Option<u64>,
    /// Memory above which the app is slowed down and reclaimed (memory.high).
    #[arg(long, value_name = "SIZE", value_parser = |s: &str| limits::parse_memory(s).map_err(|e| e.to_string()))]
    memory_high: Option<u64>,
    /// Swap the app may use (memory.swap.max).
    #[arg(long, value_name = "SIZE", value_parser = |s: &str| limits::parse_size(s).map_err(|e| e.to_string()))]
    memory_swap: Option<u64>,
    /// Hard CPU cap: 150% or 1.5 (cores). Prefer --cpu-weight, which wastes no idle core.
    #[arg(long, value_name = "PERCENT", value_parser = |s: &str| limits::parse_cpu(s).map_err(|e| e.to_string()))]
    cpu: Option<u32>,
    /// CPU share against other apps, 1-10000 (100 is the usual default).
    #[arg(long, value_name = "WEIGHT", value_parser = |s: &str| limits::parse_weight(s, "CPU weight").map_err(|e| e.to_string()))]
    cpu_weight: Option<u32>,
    /// Most processes and threads at once (pids.max).
    #[arg(long, value_name = "N", value_parser = |s: &str| limits::parse_pids(s).map_err(|e| e.to_string()))]
    pids: Option<u64>,
    /// Disk I/O share, 1-10000, where the io controller is delegated.
    #[arg(long, value_name = "WEIGHT", value_parser = |s: &str| limits::parse_weight(s, "io weight").map_err(|e| e.to_string()))]
    io_weight: Option<u32>,
}

impl LimitArgs {
    fn limits(&self) -> limits::Limits {
        limits::Limits {
            memory: self.memory,
            memory_high: self.memory_high,
            memory_swap: self.memory_swap,
            cpu_percent: self.cpu,
            cpu_weight: self.cpu_weight,
            pids: self.pids,
            io_weight: self.io_weight,
        }
    }
}

fn parse_home(s: &str) -> Result<HomeMode, String> {
    s.parse()
}

fn parse_display(s: &str) -> Result<DisplayMode, String> {
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

/// Sends a request answered by `Done`, and says what happened.
fn done(request: Request, what: &str) -> anyhow::Result<ExitCode> {
    match connect()?.request(&request, &[])? {
        Response::Done { id } => {
            println!("{what}: {id}");
            Ok(ExitCode::SUCCESS)
        }
        Response::Error { message, .. } => anyhow::bail!("{message}"),
        other => anyhow::bail!("unexpected answer from the helper: {other:?}"),
    }
}

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let Some(command) = cli.command else {
        crate::gui::run_with(crate::gui::Start::default())?;
        return Ok(ExitCode::SUCCESS);
    };
    match command {
        Command::Run(args) => run::run(args),
        Command::Ps(args) => ps::ps(args),
        Command::Stop(args) => stop::stop(args),
        Command::Doctor(args) => doctor::doctor(args),
        Command::Stats(args) => stats::stats(args),
        Command::Inspect(args) => inspect::inspect(args),
        Command::Limit(args) => {
            let limits = args.limits.limits();
            if limits.is_empty() {
                anyhow::bail!("give at least one limit to change (see `hutch limit --help`)");
            }
            done(
                Request::Limit {
                    id: args.id,
                    limits,
                },
                "limits changed",
            )
        }
        Command::Top(args) => top::top(args),
        Command::Logs(args) => logs::logs(args),
        Command::Profile(command) => profile::profile(command),
        Command::Open(args) => {
            crate::gui::run_with(crate::gui::Start {
                files: args.files,
                choose: args.choose,
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => packaging::completions(shell),
        Command::Manpages { dir } => packaging::manpages(&dir),
        Command::ResetHome(args) => profile::reset_home(args),
        Command::Pause(args) => done(Request::Pause { id: args.id }, "paused"),
        Command::Resume(args) => done(Request::Resume { id: args.id }, "resumed"),
    }
}
