//! The output of sandboxes started without a terminal ([`Stdio::Log`]): a pipe the helper
//! drains into a bounded buffer, so a user can read why an app failed, even after it exited.
//!
//! [`Stdio::Log`]: hutch_core::protocol::Stdio::Log

use std::collections::VecDeque;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

/// Bytes kept per sandbox; older output is dropped first.
pub const LOG_CAPACITY: usize = 256 * 1024;

/// The last [`LOG_CAPACITY`] bytes a sandbox wrote, and how many came before them.
#[derive(Debug, Default)]
pub struct LogBuffer {
    data: VecDeque<u8>,
    /// Bytes written in all (the offset just past the last byte kept).
    end: u64,
    /// The writer has closed (the app and everything it started are gone).
    closed: bool,
}

/// A log shared between its reader thread and the requests that read it.
pub type SharedLog = Arc<Mutex<LogBuffer>>;

impl LogBuffer {
    pub fn push(&mut self, bytes: &[u8]) {
        self.end += bytes.len() as u64;
        let bytes = &bytes[bytes.len().saturating_sub(LOG_CAPACITY)..];
        let overflow = (self.data.len() + bytes.len()).saturating_sub(LOG_CAPACITY);
        self.data.drain(..overflow);
        self.data.extend(bytes);
    }

    /// Offset of the first byte still kept.
    pub fn start(&self) -> u64 {
        self.end - self.data.len() as u64
    }

    pub fn end(&self) -> u64 {
        self.end
    }

    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Marks the output ended (its writers are gone).
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// The bytes from offset `since` on (from the oldest kept when `since` is older):
    /// (offset of the first byte returned, the bytes).
    pub fn read_from(&self, since: u64) -> (u64, Vec<u8>) {
        let start = since.clamp(self.start(), self.end);
        let skip = (start - self.start()) as usize;
        (start, self.data.iter().skip(skip).copied().collect())
    }
}

/// Drains `reader` (the read end of the app's stdout/stderr pipe) into `log` until every
/// writer has closed it.
pub fn drain(id: String, mut reader: std::fs::File, log: SharedLog) {
    let spawned = std::thread::Builder::new()
        .name(format!("log-{id}"))
        .spawn(move || {
            let mut chunk = [0u8; 16 * 1024];
            loop {
                match reader.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => lock(&log).push(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        tracing::warn!(%id, "reading the sandbox's output failed: {e}");
                        break;
                    }
                }
            }
            lock(&log).closed = true;
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start a log reader: {e}");
    }
}

pub fn lock(log: &SharedLog) -> std::sync::MutexGuard<'_, LogBuffer> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}

/// A pipe for the app's output: (read end for the helper, write end for the app), both
/// close-on-exec (the write end is passed on explicitly).
pub fn pipe() -> std::io::Result<(std::fs::File, OwnedFd)> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    Ok((std::fs::File::from(read), write))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_bytes_and_their_offsets() {
        let mut log = LogBuffer::default();
        log.push(b"hello ");
        log.push(b"world");
        assert_eq!(log.read_from(0), (0, b"hello world".to_vec()));
        assert_eq!(log.read_from(6), (6, b"world".to_vec()));
        assert_eq!(log.read_from(99), (11, Vec::new()));
        let big = vec![b'x'; LOG_CAPACITY];
        log.push(&big);
        log.push(b"end");
        assert_eq!(log.end(), 11 + LOG_CAPACITY as u64 + 3);
        assert_eq!(log.start(), log.end() - LOG_CAPACITY as u64);
        let (start, bytes) = log.read_from(0);
        assert_eq!(start, log.start());
        assert_eq!(bytes.len(), LOG_CAPACITY);
        assert!(bytes.ends_with(b"xxend"));
        // A single write larger than the buffer keeps its tail.
        let mut log = LogBuffer::default();
        let mut huge = vec![b'a'; LOG_CAPACITY + 10];
        huge.extend_from_slice(b"tail");
        log.push(&huge);
        assert!(log.read_from(0).1.ends_with(b"atail"));
        assert_eq!(log.read_from(0).1.len(), LOG_CAPACITY);
    }

    #[test]
    fn drains_a_pipe_until_it_closes() {
        let (reader, writer) = pipe().unwrap();
        let log = SharedLog::default();
        drain("t".into(), reader, Arc::clone(&log));
        let mut w = std::fs::File::from(writer);
        std::io::Write::write_all(&mut w, b"line 1\nline 2\n").unwrap();
        drop(w);
        for _ in 0..200 {
            if lock(&log).closed() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let log = lock(&log);
        assert!(log.closed());
        assert_eq!(log.read_from(0).1, b"line 1\nline 2\n");
    }
}
