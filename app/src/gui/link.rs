//! The window's line to the helper: one thread keeps a subscription (the table of sandboxes,
//! samples, limit events) and reconnects when the helper goes away; another carries the
//! user's requests. Both hand their results to the window as [`Update`]s and wake it, so the
//! window repaints when something arrives, not continuously.

use std::sync::mpsc;
use std::time::Duration;

use hutch_client::connection::{Client, ClientError};
use hutch_core::anatomy::Anatomy;
use hutch_core::limits::Limits;
use hutch_core::protocol::{
    DoctorReport, Event, ProcessInfo, Request, Response, RunRequest, SandboxInfo, SandboxStats,
};

/// What the window asks of the helper.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Run {
        request: Box<RunRequest>,
        /// What the user launched, for messages ("Text Editor").
        title: String,
        /// The window's number for this request, given back with its answer.
        ticket: u64,
    },
    Stop {
        id: String,
    },
    Pause {
        id: String,
    },
    Resume {
        id: String,
    },
    Limit {
        id: String,
        limits: Limits,
    },
    Logs {
        id: String,
        since: Option<u64>,
    },
    Processes {
        id: String,
    },
    Inspect {
        id: String,
    },
    Doctor,
}

/// What comes back.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    Connected {
        helper_version: String,
        helper_pid: u32,
        limits: bool,
        cgroups: String,
    },
    Disconnected {
        reason: String,
    },
    Sandboxes(Vec<SandboxInfo>),
    Samples(Vec<SandboxStats>),
    OutOfMemory {
        id: String,
        kills: u64,
    },
    ProcessLimit {
        id: String,
        hits: u64,
    },
    Started {
        id: String,
        title: String,
        warnings: Vec<String>,
        /// The run request's ticket.
        ticket: Option<u64>,
    },
    Logs {
        id: String,
        start: u64,
        end: u64,
        text: String,
        finished: bool,
    },
    Processes {
        id: String,
        processes: Vec<ProcessInfo>,
    },
    Anatomy(Box<Anatomy>),
    Doctor(DoctorReport),
    /// A request failed: what was tried, and the helper's reason.
    Failed {
        what: String,
        message: String,
        /// The run request's ticket, when a run failed.
        ticket: Option<u64>,
    },
}

/// The window's side of the line. The real one talks to the helper; tests use one that
/// records commands and plays back updates.
pub trait Link {
    fn send(&self, command: Command);
    fn try_recv(&self) -> Option<Update>;
}

/// The real line to `hutch-helper`.
#[derive(Debug)]
pub struct HelperLink {
    commands: mpsc::Sender<Command>,
    updates: mpsc::Receiver<Update>,
}

impl HelperLink {
    /// Starts both threads; `wake` is called after each update (the window's repaint).
    pub fn start(wake: impl Fn() + Send + Sync + 'static) -> Self {
        let wake: Wake = std::sync::Arc::new(wake);
        let (cmd_tx, cmd_rx) = mpsc::channel();
        let (up_tx, up_rx) = mpsc::channel();
        {
            let up = up_tx.clone();
            let wake = wake.clone();
            std::thread::Builder::new()
                .name("hutch-subscription".into())
                .spawn(move || subscription(&up, &*wake))
                .expect("spawn the subscription thread");
        }
        std::thread::Builder::new()
            .name("hutch-requests".into())
            .spawn(move || requests(&cmd_rx, &up_tx, &wake))
            .expect("spawn the request thread");
        Self {
            commands: cmd_tx,
            updates: up_rx,
        }
    }
}

impl Link for HelperLink {
    fn send(&self, command: Command) {
        let _ = self.commands.send(command);
    }

    fn try_recv(&self) -> Option<Update> {
        self.updates.try_recv().ok()
    }
}

fn helper_said(e: &ClientError) -> String {
    e.to_string()
}

/// Whether the window runs inside Flatpak, where the helper cannot be started: it must run
/// on the host (see flatpak/README.md).
pub fn in_flatpak() -> bool {
    std::path::Path::new("/.flatpak-info").exists()
}

/// Connects to the helper; outside Flatpak, starts it when none answers.
fn connect(name: &str) -> Result<Client, ClientError> {
    if !in_flatpak() {
        return Client::connect_or_start(name);
    }
    let socket = hutch_client::paths::socket_path()?;
    Client::connect(&socket, name).map_err(|e| match e {
        ClientError::NoHelper { .. } => ClientError::Refused(format!(
            "no Hutch helper answers on {}. Inside Flatpak the window cannot start it: install \
             and start it on the host (`make install` from Hutch's sources enables its systemd \
             user socket; see flatpak/README.md)",
            socket.display()
        )),
        other => other,
    })
}

/// Keeps a subscription open, reconnecting (and starting the helper) when it drops.
fn subscription(up: &mpsc::Sender<Update>, wake: &(dyn Fn() + Send + Sync)) {
    let send = |u: Update| {
        let ok = up.send(u).is_ok();
        wake();
        ok
    };
    let mut connected = false;
    loop {
        let result = (|| -> Result<(), ClientError> {
            let mut client = connect("hutch-window")?;
            if !send(Update::Connected {
                helper_version: client.helper_version.clone(),
                helper_pid: client.helper_pid,
                limits: client.limits,
                cgroups: client.cgroups.clone(),
            }) {
                return Ok(());
            }
            connected = true;
            match client.request(
                &Request::Subscribe {
                    interval_ms: Some(1000),
                },
                &[],
            )? {
                Response::Done { .. } => {}
                other => {
                    return Err(ClientError::Unexpected(format!("{other:?}")));
                }
            }
            loop {
                let update = match client.next_event()? {
                    Event::Sandboxes { sandboxes } => Update::Sandboxes(sandboxes),
                    Event::Samples { samples } => Update::Samples(samples),
                    Event::OutOfMemory { id, kills } => Update::OutOfMemory { id, kills },
                    Event::ProcessLimit { id, hits } => Update::ProcessLimit { id, hits },
                    Event::Exited { .. } | Event::NetworkDown { .. } => continue,
                };
                if !send(update) {
                    return Ok(());
                }
            }
        })();
        match result {
            Ok(()) => return, // the window is gone
            Err(e) => {
                if connected || !matches!(e, ClientError::NoHelper { .. }) {
                    tracing::info!("helper connection lost: {e}");
                }
                connected = false;
                if !send(Update::Disconnected {
                    reason: helper_said(&e),
                }) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(1000));
            }
        }
    }
}

/// Wakes the window.
type Wake = std::sync::Arc<dyn Fn() + Send + Sync>;

/// Carries requests one at a time on a connection of its own.
fn requests(commands: &mpsc::Receiver<Command>, up: &mpsc::Sender<Update>, wake: &Wake) {
    let mut client: Option<Client> = None;
    while let Ok(command) = commands.recv() {
        if let Command::Stop { .. } = command {
            // A stop waits for the exit (up to its grace period): on a connection of its own,
            // so the window's other requests are not held up.
            let (up, wake) = (up.clone(), Wake::clone(wake));
            let _ = std::thread::Builder::new()
                .name("hutch-stop".into())
                .spawn(move || {
                    let what = describe(&command);
                    if let Err(e) = perform(&mut None, &command) {
                        let _ = up.send(Update::Failed {
                            what,
                            message: helper_said(&e),
                            ticket: None,
                        });
                    }
                    wake();
                });
            continue;
        }
        let what = describe(&command);
        let update = match perform(&mut client, &command) {
            Ok(Some(update)) => update,
            Ok(None) => continue,
            Err(e) => {
                client = None;
                Update::Failed {
                    what,
                    message: helper_said(&e),
                    ticket: ticket_of(&command),
                }
            }
        };
        if up.send(update).is_err() {
            return;
        }
        wake();
    }
}

/// The ticket of a run request.
fn ticket_of(command: &Command) -> Option<u64> {
    match command {
        Command::Run { ticket, .. } => Some(*ticket),
        _ => None,
    }
}

/// What a command does, in words for a failure message ("start Text Editor").
fn describe(command: &Command) -> String {
    match command {
        Command::Run { title, .. } => format!("start {title}"),
        Command::Stop { id } => format!("stop {id}"),
        Command::Pause { id } => format!("pause {id}"),
        Command::Resume { id } => format!("resume {id}"),
        Command::Limit { id, .. } => format!("change the limits of {id}"),
        Command::Logs { id, .. } => format!("read the output of {id}"),
        Command::Processes { id } => format!("list the processes of {id}"),
        Command::Inspect { id } => format!("inspect {id}"),
        Command::Doctor => "run the system check".into(),
    }
}

/// Sends one request; `None` when its answer needs no update (stop, pause, resume and limits
/// show in the next table or sample).
fn perform(client: &mut Option<Client>, command: &Command) -> Result<Option<Update>, ClientError> {
    let c = match client {
        Some(c) => c,
        None => client.insert(connect("hutch-window-requests")?),
    };
    let request = match command.clone() {
        Command::Run { request, .. } => Request::Run(request),
        Command::Stop { id } => Request::Stop {
            id,
            grace_ms: Some(5000),
        },
        Command::Pause { id } => Request::Pause { id },
        Command::Resume { id } => Request::Resume { id },
        Command::Limit { id, limits } => Request::Limit { id, limits },
        Command::Logs { id, since } => Request::Logs { id, since },
        Command::Processes { id } => Request::Processes { id },
        Command::Inspect { id } => Request::Inspect { id },
        Command::Doctor => Request::Doctor,
    };
    // Exits of sandboxes started here arrive on this connection too; the subscription
    // reports them, so they are dropped.
    let response = c.request(&request, &[])?;
    c.drop_queued_events();
    let what = describe(command);
    Ok(Some(match response {
        Response::Started { id, warnings, .. } => Update::Started {
            id,
            title: match command {
                Command::Run { title, .. } => title.clone(),
                _ => String::new(),
            },
            warnings,
            ticket: ticket_of(command),
        },
        Response::Logs {
            id,
            start,
            end,
            text,
            finished,
        } => Update::Logs {
            id,
            start,
            end,
            text,
            finished,
        },
        Response::Processes { id, processes } => Update::Processes { id, processes },
        Response::Anatomy { anatomy } => Update::Anatomy(anatomy),
        Response::Doctor { report } => Update::Doctor(report),
        Response::Error { message, .. } => Update::Failed {
            what,
            message,
            ticket: ticket_of(command),
        },
        _ => return Ok(None),
    }))
}
