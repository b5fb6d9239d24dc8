//! The client side of the helper's socket, used by the `hutch` CLI and GUI (and the tests).

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hutch_core::protocol::{Event, PROTOCOL_VERSION, Request, Response, ServerMessage};

use crate::channel::{self, ChannelError, Receiver};
use crate::paths;

/// Environment variable naming the helper binary to start when none answers.
pub const HELPER_ENV: &str = "HUTCH_HELPER";

/// Why talking to the helper failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Paths(#[from] paths::PathError),
    #[error("no helper answers on {}: {err}", socket.display())]
    NoHelper {
        socket: PathBuf,
        err: std::io::Error,
    },
    #[error("cannot start hutch-helper ({}): {message}", helper.display())]
    StartFailed { helper: PathBuf, message: String },
    #[error("the helper refused: {0}")]
    Refused(String),
    #[error("talking to the helper: {0}")]
    Channel(ChannelError),
    #[error("unexpected answer from the helper: {0}")]
    Unexpected(String),
}

impl ClientError {
    /// The helper went away in the middle of the conversation (it stopped, crashed or was
    /// killed): a new one may take its sandboxes over.
    pub fn is_lost(&self) -> bool {
        matches!(self, Self::Channel(e) if e.is_closed())
    }
}

impl From<ChannelError> for ClientError {
    fn from(e: ChannelError) -> Self {
        Self::Channel(e)
    }
}

/// A connection that has completed the handshake.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    rx: Receiver,
    events: VecDeque<Event>,
    /// The helper's pid, from its hello.
    pub helper_pid: u32,
    /// Whether the helper can set limits (cgroup v2 delegation), from its hello.
    pub limits: bool,
    /// The helper's cgroup mode, in words.
    pub cgroups: String,
    /// The helper's version, from its hello.
    pub helper_version: String,
}

impl Client {
    /// Connects to the helper at `socket` and says hello.
    pub fn connect(socket: &Path, name: &str) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(socket).map_err(|err| ClientError::NoHelper {
            socket: socket.to_owned(),
            err,
        })?;
        let rx = Receiver::new(stream.try_clone().map_err(ChannelError::from)?);
        let mut client = Self {
            stream,
            rx,
            events: VecDeque::new(),
            helper_pid: 0,
            limits: false,
            cgroups: String::new(),
            helper_version: String::new(),
        };
        match client.request(
            &Request::Hello {
                protocol: PROTOCOL_VERSION,
                client: name.into(),
            },
            &[],
        )? {
            Response::Hello {
                helper_pid,
                limits,
                cgroups,
                helper_version,
                ..
            } => {
                client.helper_version = helper_version;
                client.helper_pid = helper_pid;
                client.limits = limits;
                client.cgroups = cgroups;
            }
            Response::Error { message, .. } => return Err(ClientError::Refused(message)),
            other => return Err(ClientError::Unexpected(format!("{other:?}"))),
        }
        Ok(client)
    }

    /// Connects to the default socket, starting the helper when none answers.
    pub fn connect_or_start(name: &str) -> Result<Self, ClientError> {
        let socket = paths::socket_path()?;
        match Self::connect(&socket, name) {
            Ok(client) => Ok(client),
            Err(ClientError::NoHelper { err, .. })
                if matches!(
                    err.kind(),
                    ErrorKind::NotFound | ErrorKind::ConnectionRefused
                ) =>
            {
                start_helper()?;
                Self::connect(&socket, name)
            }
            Err(e) => Err(e),
        }
    }

    /// Sends a request (with fds attached) and returns its response; events that arrive
    /// meanwhile are kept for [`Client::next_event`].
    pub fn request(
        &mut self,
        request: &Request,
        fds: &[BorrowedFd<'_>],
    ) -> Result<Response, ClientError> {
        if let Err(e) = channel::send(&self.stream, request, fds) {
            // The helper may have answered and closed before reading us (a refusal): its
            // answer is still waiting in our receive buffer.
            return match self.rx.recv::<ServerMessage>() {
                Ok(ServerMessage::Response(response)) => Ok(response),
                _ => Err(e.into()),
            };
        }
        loop {
            match self.rx.recv::<ServerMessage>()? {
                ServerMessage::Response(response) => return Ok(response),
                ServerMessage::Event(event) => self.events.push_back(event),
            }
        }
    }

    /// Drops the events that arrived while waiting for responses.
    pub fn drop_queued_events(&mut self) {
        self.events.clear();
    }

    /// The next event, waiting for it.
    pub fn next_event(&mut self) -> Result<Event, ClientError> {
        if let Some(event) = self.events.pop_front() {
            return Ok(event);
        }
        match self.rx.recv::<ServerMessage>()? {
            ServerMessage::Event(event) => Ok(event),
            ServerMessage::Response(r) => Err(ClientError::Unexpected(format!(
                "response without request: {r:?}"
            ))),
        }
    }

    /// Fds that came with the last response (a terminal for `tty` runs).
    pub fn take_fds(&mut self, n: usize) -> Vec<OwnedFd> {
        self.rx.take_fds(n)
    }

    /// The socket, e.g. to poll it for readability.
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }
}

/// Finds the helper binary: `$HUTCH_HELPER`, beside the running executable, then `PATH`.
pub fn helper_binary() -> PathBuf {
    if let Some(path) = std::env::var_os(HELPER_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    if let Some(sibling) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("hutch-helper")))
        .filter(|p| p.is_file())
    {
        return sibling;
    }
    PathBuf::from("hutch-helper")
}

/// Starts the helper in the background and waits until it answers.
pub fn start_helper() -> Result<(), ClientError> {
    let helper = helper_binary();
    let out = Command::new(&helper)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| ClientError::StartFailed {
            helper: helper.clone(),
            message: e.to_string(),
        })?;
    // Exit code 3: another helper won the race to start; it serves us just as well.
    if out.status.success() || out.status.code() == Some(3) {
        return Ok(());
    }
    Err(ClientError::StartFailed {
        helper,
        message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

/// Waits until a helper answers on `socket`, up to `timeout`.
pub fn wait_ready(socket: &Path, timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if Client::connect(socket, "readiness-probe").is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}
