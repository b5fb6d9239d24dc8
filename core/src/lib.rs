//! Hutch's shared model, used by the GUI/CLI (`hutch`) and the daemon (`hutch-helper`).
//!
//! - [`profile`]: per-app profiles (TOML), their defaults and validation.
//! - [`network`]: network modes, backends and published ports.
//! - [`protocol`]: the messages exchanged over the helper's Unix socket.
//! - [`desktop`]: `.desktop` files and their `Exec` field codes.
//! - [`frame`]: length-prefixed JSON framing of those messages.
//! - [`text`]: an app's text made safe to show on a terminal.
//! - [`units`]: sizes, rates and durations as the CLI and the window show them.
//!
//! This crate does no I/O and has no `unsafe`: everything here is plain data and pure
//! functions, unit tested without a socket or a syscall.

pub mod anatomy;
pub mod checks;
pub mod desktop;
pub mod frame;
pub mod limits;
pub mod network;
pub mod profile;
pub mod protocol;
pub mod text;
pub mod units;
