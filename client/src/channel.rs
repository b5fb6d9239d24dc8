//! Framed messages over a Unix stream socket, with file descriptors passed beside them.
//!
//! The framing itself (length prefix, size limit, JSON) lives in `hutch_core::frame`; this
//! module adds the socket: `sendmsg` with `SCM_RIGHTS` on the way out, `recvmsg` on the way in.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use hutch_core::frame::{self, FrameBuffer, FrameError};
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::sys;

/// A failure on a framed channel.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("connection closed by the other side")]
    Closed,
    #[error("connection closed in the middle of a frame ({0} bytes pending)")]
    Truncated(usize),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("the client sent {0} bytes of a frame, then nothing for too long")]
    Stalled(usize),
    #[error("socket error: {0}")]
    Io(io::Error),
}

// The messages show their cause, so it is not also a `source()` (chains would repeat it).
impl From<io::Error> for ChannelError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl ChannelError {
    /// Whether the other side simply went away.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed | Self::Truncated(_))
            || matches!(self, Self::Io(e) if matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset))
    }
}

/// Sends one message, with `fds` attached to its first byte.
pub fn send<T: Serialize>(
    stream: &UnixStream,
    msg: &T,
    fds: &[BorrowedFd<'_>],
) -> Result<(), ChannelError> {
    let bytes = frame::encode(msg)?;
    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let mut sent = 0;
    while sent < bytes.len() {
        let iov = [IoSlice::new(&bytes[sent..])];
        let cmsgs_storage;
        let cmsgs: &[ControlMessage<'_>] = if sent == 0 && !raw.is_empty() {
            cmsgs_storage = [ControlMessage::ScmRights(&raw)];
            &cmsgs_storage
        } else {
            &[]
        };
        match sendmsg::<()>(
            stream.as_raw_fd(),
            &iov,
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(n) => sent += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e).into()),
        }
    }
    Ok(())
}

/// Reads framed messages from a stream, keeping fds that arrive with them.
#[derive(Debug)]
pub struct Receiver {
    stream: UnixStream,
    buf: FrameBuffer,
    fds: VecDeque<OwnedFd>,
    /// How long the rest of a started frame may take (`None`: forever).
    frame_timeout: Option<std::time::Duration>,
    /// How long to wait for a frame to start (`None`: forever).
    idle_timeout: Option<std::time::Duration>,
}

impl Receiver {
    pub fn new(stream: UnixStream) -> Self {
        Self {
            stream,
            buf: FrameBuffer::new(),
            fds: VecDeque::new(),
            frame_timeout: None,
            idle_timeout: None,
        }
    }

    /// Bounds the time between the first and the last byte of a frame: a peer that sends half
    /// a frame and stalls gets [`ChannelError::Stalled`].
    pub fn set_frame_timeout(&mut self, timeout: Option<std::time::Duration>) {
        self.frame_timeout = timeout;
    }

    /// Bounds the wait for the next frame to start (used with a frame timeout).
    pub fn set_idle_timeout(&mut self, timeout: Option<std::time::Duration>) {
        self.idle_timeout = timeout;
    }

    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Bytes already read from the stream but not yet returned as a frame: poll on the stream
    /// does not see them, so check this before waiting.
    pub fn has_buffered(&self) -> bool {
        self.buf.pending() > 0
    }

    /// The next message; [`ChannelError::Closed`] at a clean end of stream.
    pub fn recv<T: DeserializeOwned>(&mut self) -> Result<T, ChannelError> {
        let body = self.recv_body()?;
        Ok(frame::decode(&body)?)
    }

    /// The next frame body, undecoded.
    pub fn recv_body(&mut self) -> Result<Vec<u8>, ChannelError> {
        loop {
            if let Some(body) = self.buf.next_frame()? {
                return Ok(body);
            }
            let pending = self.buf.pending();
            // Without a frame timeout the socket's own read timeout (if any) is left alone.
            if self.frame_timeout.is_some() {
                let timeout = if pending > 0 {
                    self.frame_timeout
                } else {
                    self.idle_timeout
                };
                self.stream.set_read_timeout(timeout)?;
            }
            let mut chunk = [0u8; 16 * 1024];
            let (n, fds) = match sys::recv_with_fds(self.stream.as_fd(), &mut chunk) {
                Ok(got) => got,
                Err(e)
                    if pending > 0
                        && matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                {
                    return Err(ChannelError::Stalled(pending));
                }
                Err(e) => return Err(e.into()),
            };
            self.fds.extend(fds);
            if n == 0 {
                return Err(match self.buf.pending() {
                    0 => ChannelError::Closed,
                    pending => ChannelError::Truncated(pending),
                });
            }
            self.buf.push(&chunk[..n]);
        }
    }

    /// Takes up to `n` fds received so far, oldest first.
    pub fn take_fds(&mut self, n: usize) -> Vec<OwnedFd> {
        let n = n.min(self.fds.len());
        self.fds.drain(..n).collect()
    }

    /// Drops any fds received but not taken (a client may attach fds where none are expected).
    pub fn discard_fds(&mut self) {
        self.fds.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hutch_core::protocol::{PROTOCOL_VERSION, Request};
    use std::io::{Read, Write};

    #[test]
    fn message_and_fds_arrive_together() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut pipe_r, mut pipe_w) = {
            let (r, w) = nix::unistd::pipe().unwrap();
            (std::fs::File::from(r), std::fs::File::from(w))
        };
        let hello = Request::Hello {
            protocol: PROTOCOL_VERSION,
            client: "t".into(),
        };
        send(&a, &hello, &[pipe_w.as_fd()]).unwrap();
        let mut rx = Receiver::new(b);
        assert_eq!(rx.recv::<Request>().unwrap(), hello);
        let fds = rx.take_fds(3);
        assert_eq!(fds.len(), 1);
        // The received fd is the same pipe: writing through it reaches the read end.
        let mut passed = std::fs::File::from(fds.into_iter().next().unwrap());
        passed.write_all(b"hi").unwrap();
        drop(passed);
        pipe_w.flush().unwrap();
        drop(pipe_w);
        let mut got = String::new();
        pipe_r.read_to_string(&mut got).unwrap();
        assert_eq!(got, "hi");
    }

    #[test]
    fn a_stalled_half_frame_times_out_but_an_idle_wait_does_not() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let mut rx = Receiver::new(b);
        rx.set_frame_timeout(Some(std::time::Duration::from_millis(100)));
        a.write_all(&[0, 0, 0, 40, b'{', b'"']).unwrap();
        let started = std::time::Instant::now();
        assert!(matches!(
            rx.recv::<Request>(),
            Err(ChannelError::Stalled(6))
        ));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // Nothing pending: the idle timeout applies (here a short one, to see it is separate).
        let (_a, b) = UnixStream::pair().unwrap();
        let mut rx = Receiver::new(b);
        rx.set_frame_timeout(Some(std::time::Duration::from_millis(10)));
        rx.set_idle_timeout(Some(std::time::Duration::from_millis(50)));
        assert!(matches!(rx.recv::<Request>(), Err(ChannelError::Io(_))));
    }

    #[test]
    fn clean_close_and_truncated_frame_are_told_apart() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(a);
        assert!(matches!(
            Receiver::new(b).recv::<Request>(),
            Err(ChannelError::Closed)
        ));

        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&[0, 0, 0, 10, b'{']).unwrap();
        drop(a);
        assert!(matches!(
            Receiver::new(b).recv::<Request>(),
            Err(ChannelError::Truncated(5))
        ));
    }
}
