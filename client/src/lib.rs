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
