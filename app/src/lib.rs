//! `hutch`: run untrusted apps in rootless sandboxes and watch them live. One binary is both
//! the command line ([`cli`]) and the window ([`gui`]); [`launchable`] decides what a dropped
//! or named file is and how to run it.

pub mod cli;
pub mod gui;
pub mod launchable;
