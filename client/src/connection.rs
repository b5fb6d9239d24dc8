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
    #[error(
        "the request is too large to send ({len} bytes; the most the helper reads is {max}): \
         nothing was sent. A command line, environment or .desktop Exec this long cannot be run"
    )]
    TooLarge { len: usize, max: usize },
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

/// A connection to the helper. Its hello goes out first; the helper's answer is read before
/// anything else (at once by [`Client::connect`], with the first answer by [`Client::open`]).
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    rx: Receiver,
    events: VecDeque<Event>,
    /// The hello was sent and its answer not read yet.
    hello_pending: bool,
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
    /// Connects to the helper at `socket`, says hello and waits for its answer.
    pub fn connect(socket: &Path, name: &str) -> Result<Self, ClientError> {
        let mut client = Self::open(socket, name)?;
        client.finish_hello()?;
        Ok(client)
    }

    /// Connects to the helper at `socket` and says hello without waiting for the answer: the
    /// first request goes out right behind it, and its answer is read after the hello's (a
    /// launch saves a round trip). The hello fields are known after that first request.
    pub fn open(socket: &Path, name: &str) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(socket).map_err(|err| ClientError::NoHelper {
            socket: socket.to_owned(),
            err,
        })?;
        let rx = Receiver::new(stream.try_clone().map_err(ChannelError::from)?);
        let hello = Request::Hello {
            protocol: PROTOCOL_VERSION,
            client: name.into(),
        };
        let sent = channel::send(&stream, &hello, &[]);
        let mut client = Self {
            stream,
            rx,
            events: VecDeque::new(),
            hello_pending: true,
            helper_pid: 0,
            limits: false,
            cgroups: String::new(),
            helper_version: String::new(),
        };
        if let Err(e) = sent {
            // A helper that refuses us at once (another uid) answers and closes before our
            // hello is read: the answer is waiting in our receive buffer.
            return match client.finish_hello() {
                Err(refused @ ClientError::Refused(_)) => Err(refused),
                _ => Err(e.into()),
            };
        }
        Ok(client)
    }

    /// Reads the helper's answer to the hello, if not read yet.
    fn finish_hello(&mut self) -> Result<(), ClientError> {
        if !std::mem::take(&mut self.hello_pending) {
            return Ok(());
        }
        match self.rx.recv::<ServerMessage>()? {
            ServerMessage::Response(Response::Hello {
                helper_pid,
                limits,
                cgroups,
                helper_version,
                ..
            }) => {
                self.helper_version = helper_version;
                self.helper_pid = helper_pid;
                self.limits = limits;
                self.cgroups = cgroups;
                Ok(())
            }
            ServerMessage::Response(Response::Error { message, .. }) => {
                Err(ClientError::Refused(message))
            }
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Connects to the default socket, starting the helper when none answers.
    pub fn connect_or_start(name: &str) -> Result<Self, ClientError> {
        let mut client = Self::open_or_start(name)?;
        client.finish_hello()?;
        Ok(client)
    }

    /// [`Client::open`] on the default socket, starting the helper when none answers.
    pub fn open_or_start(name: &str) -> Result<Self, ClientError> {
        let socket = paths::socket_path()?;
        match Self::open(&socket, name) {
            Ok(client) => Ok(client),
            Err(ClientError::NoHelper { err, .. })
                if matches!(
                    err.kind(),
                    ErrorKind::NotFound | ErrorKind::ConnectionRefused
                ) =>
            {
                start_helper()?;
                Self::open(&socket, name)
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
            // Refused here, before a byte went out: there is no answer to wait for.
            if let ChannelError::Frame(hutch_core::frame::FrameError::TooLarge { len, max }) = e {
                return Err(ClientError::TooLarge { len, max });
            }
            // The helper may have answered and closed before reading us (a refusal of the
            // hello, or of this request): its answer is still waiting in our receive buffer.
            self.finish_hello()?;
            return match self.rx.recv::<ServerMessage>() {
                Ok(ServerMessage::Response(response)) => Ok(response),
                _ => Err(e.into()),
            };
        }
        self.finish_hello()?;
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
        self.finish_hello()?;
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
