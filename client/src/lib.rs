//! `hutch-client`: how Hutch's programs talk to the helper, and where Hutch keeps things.
//!
//! Both sides use it: the `hutch` window and CLI to reach the helper, the helper to answer them
//! and to talk to its sandboxes' processes. It holds no sandbox code, so the `hutch` binary
//! links none (no seccomp, Landlock or capability crates).
//!
//! ```text
//! hutch (CLI/GUI) ── connection::Client ── channel (frames + fds) ─► socket ─► hutch-helper
//!                 └─ paths, profiles (the folders and the profile store both sides read)
//! ```
//!
//! `sys` is this crate's only module with `unsafe` code.

pub mod channel;
pub mod connection;
pub mod paths;
pub mod profiles;
pub mod sys;

pub use connection::{Client, ClientError};

/// Now, as the protocol's timestamps say it (`started_at_ms`, samples' `at_ms`): milliseconds
/// since the Unix epoch, read from the system clock (0 for a clock set before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}
