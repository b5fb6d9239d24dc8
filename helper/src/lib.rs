//! `hutch-helper`: the per-user daemon that builds and supervises rootless sandboxes.
//!
//! Data path, module by module:
//!
//! ```text
//! client (hutch CLI/GUI) ── client ─► socket ── daemon::connection ─► daemon::launch
//!                                                    │                   │ profiles, plan
//!                                                    │                   ▼
//!                          daemon::registry ◄── events ◄── sandbox::supervisor (fresh process)
//!                                                                        │ sandbox::idmap
//!                                                                        ▼
//!                                    sandbox::init (pid 1) ── rootfs ── exec ── seccomp ─► app
//! ```
//!
//! `sys` is the only module with `unsafe` code.

pub mod cgroup;
pub mod channel;
pub mod client;
pub mod daemon;
pub mod doctor;
pub mod paths;
pub mod plan;
pub mod profiles;
pub mod sandbox;
pub mod sys;
