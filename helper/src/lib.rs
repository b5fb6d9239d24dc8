//! `hutch-helper`: the per-user daemon that builds and supervises rootless sandboxes.
//!
//! Data path, module by module:
//!
//! ```text
//! hutch (CLI/GUI) ─── hutch_client ─► socket ── daemon::connection ─► daemon::dispatch
//!                                                    │                   │ run
//!                                                    │                   ▼
//!                                                    │             daemon::launch ◄── daemon::pool
//!                                                    │                   │ profiles, plan
//!                                                    │                   ▼
//!       daemon::registry ◄── daemon::monitor ◄── events ◄── sandbox::supervisor (fresh process)
//!                                                                        │ sandbox::idmap
//!                                                                        ▼
//!                                    sandbox::init (pid 1) ── rootfs ── exec ── seccomp ─► app
//! ```
//!
//! `sys` is the only module with `unsafe` code (the client crate has its own for what both sides
//! use).

pub(crate) mod cgroup;
pub mod daemon;
pub mod doctor;
pub mod plan;
pub mod sandbox;
pub mod sys;
