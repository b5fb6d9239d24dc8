//! What the window knows, built from the helper's updates: the connection, the sandboxes and
//! their histories, outputs, process lists and anatomies, the system check, and the notices
//! to show. No drawing here, so it is tested without a window.

use std::collections::HashMap;

use hutch_core::anatomy::Anatomy;
use hutch_core::protocol::{
    CheckStatus, DoctorReport, ExitStatus, ProcessInfo, SandboxInfo, SandboxState,
};

use super::history::History;
use super::link::Update;

/// The line to the helper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    Connecting,
    Connected {
        helper_version: String,
        helper_pid: u32,
        /// Limits can be set (cgroup v2 delegation).
        limits: bool,
        /// The helper's cgroup mode in words (why limits are off, when they are).
        cgroups: String,
    },
    Lost {
        reason: String,
    },
}

/// How much a notice matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warning,
    Error,
}

/// Something to tell the user: in the window, and as a desktop notification when one can
/// be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub at_ms: u64,
    pub level: Level,
    pub title: String,
    pub body: String,
    /// The sandbox it is about.
    pub sandbox: Option<String>,
}

/// Output kept of one sandbox (from the helper's log).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub text: String,
    /// Offset of the next byte to ask for.
    pub end: u64,
    /// Bytes the helper dropped before what is shown.
    pub dropped: u64,
    pub finished: bool,
}

/// Outputs shown in the window are capped too.
const OUTPUT_CAP: usize = 256 * 1024;

#[derive(Debug, Default)]
pub struct Model {
    pub connection: Option<Connection>,
    /// The pid of the helper last connected to: another one means the helper was restarted.
    last_helper_pid: Option<u32>,
    /// Running sandboxes first, then recently exited ones (the helper's order).
    pub sandboxes: Vec<SandboxInfo>,
    pub history: HashMap<String, History>,
    pub outputs: HashMap<String, Output>,
    pub processes: HashMap<String, Vec<ProcessInfo>>,
    pub anatomy: HashMap<String, Anatomy>,
    pub doctor: Option<DoctorReport>,
    /// Newest last.
    pub notices: Vec<Notice>,
    /// Whether the first table since connecting has been seen (exits before it are old news).
    seen_table: bool,
}

impl Model {
    pub fn connection(&self) -> Connection {
        self.connection.clone().unwrap_or(Connection::Connecting)
    }

    pub fn limits_available(&self) -> Result<(), String> {
        match self.connection() {
            Connection::Connected { limits: true, .. } => Ok(()),
            Connection::Connected { cgroups, .. } => Err(format!(
                "limits need cgroup v2 delegation, which the helper does not have: {cgroups}"
            )),
            _ => Err("the helper is not connected".into()),
        }
    }

    pub fn sandbox(&self, id: &str) -> Option<&SandboxInfo> {
        self.sandboxes.iter().find(|s| s.id == id)
    }

    /// Whether a user-mode network stack is installed, from the system check.
    pub fn networking(&self) -> Option<(CheckStatus, String)> {
        let check = self
            .doctor
            .as_ref()?
            .checks
            .iter()
            .find(|c| c.id == "network")?;
        Some((check.status, check.detail.clone()))
    }

    fn notify(&mut self, now_ms: u64, level: Level, title: String, body: String, id: Option<&str>) {
        // A notice may name what an app made (a socket in a share): shown with its control
        // characters escaped, as the terminal shows it.
        self.notices.push(Notice {
            at_ms: now_ms,
            level,
            title: hutch_core::text::escape_line(&title).into_owned(),
            body: hutch_core::text::escape_controls(&body).into_owned(),
            sandbox: id.map(str::to_owned),
        });
        if self.notices.len() > 50 {
            self.notices.remove(0);
        }
    }

    /// A name for people: the profile, and the program.
    pub fn title_of(&self, id: &str) -> String {
        self.sandbox(id).map(title).unwrap_or_else(|| id.to_owned())
    }

    /// Applies one update; returns how many notices it added.
    pub fn apply(&mut self, update: Update, now_ms: u64) -> usize {
        let before = self.notices.len();
        match update {
            Update::Connected {
                helper_version,
                helper_pid,
                limits,
                cgroups,
            } => {
                self.seen_table = false;
                if self.last_helper_pid.is_some_and(|pid| pid != helper_pid) {
                    // A new helper took the sandboxes over: its logs start anew (from what
                    // their supervisors kept while no helper ran).
                    for out in self.outputs.values_mut().filter(|o| !o.finished) {
                        out.text.push_str(
                            "\n[the helper was restarted: output from just before may be missing]\n",
                        );
                        out.end = 0;
                    }
                }
                self.last_helper_pid = Some(helper_pid);
                self.connection = Some(Connection::Connected {
                    helper_version,
                    helper_pid,
                    limits,
                    cgroups,
                });
            }
            Update::Disconnected { reason } => {
                if matches!(self.connection, Some(Connection::Connected { .. })) {
                    self.notify(
                        now_ms,
                        Level::Warning,
                        "Lost the helper".into(),
                        format!("{reason}. Reconnecting…"),
                        None,
                    );
                }
                self.connection = Some(Connection::Lost { reason });
            }
            Update::Sandboxes(table) => self.take_table(table, now_ms),
            Update::Samples(samples) => {
                for s in &samples {
                    self.history.entry(s.id.clone()).or_default().push(s);
                }
            }
            Update::OutOfMemory { id, kills } => {
                let t = self.title_of(&id);
                self.notify(
                    now_ms,
                    Level::Error,
                    format!("{t} ran out of memory"),
                    format!(
                        "It reached its memory limit and the kernel killed {kills} of its \
                         processes. Raise the limit in its profile if it needs more."
                    ),
                    Some(&id),
                );
            }
            Update::ProcessLimit { id, hits } => {
                let t = self.title_of(&id);
                self.notify(
                    now_ms,
                    Level::Warning,
                    format!("{t} hit its process limit"),
                    format!("{hits} attempt(s) to start a process were refused."),
                    Some(&id),
                );
            }
            Update::Started {
                id,
                title,
                warnings,
                ..
            } => {
                for w in warnings {
                    self.notify(
                        now_ms,
                        Level::Warning,
                        format!("{title}: warning"),
                        w,
                        Some(&id),
                    );
                }
            }
            Update::Logs {
                id,
                start,
                end,
                text,
                finished,
            } => {
                let out = self.outputs.entry(id).or_default();
                if start > out.end {
                    out.dropped += start - out.end;
                }
                out.text.push_str(&text);
                if out.text.len() > OUTPUT_CAP {
                    let mut cut = out.text.len() - OUTPUT_CAP;
                    while !out.text.is_char_boundary(cut) {
                        cut += 1;
                    }
                    out.dropped += cut as u64;
                    out.text.drain(..cut);
                }
                out.end = end;
                out.finished = finished;
            }
            Update::Processes { id, processes } => {
                self.processes.insert(id, processes);
            }
            Update::Anatomy(anatomy) => {
                self.anatomy.insert(anatomy.id.clone(), *anatomy);
            }
            Update::Doctor(report) => self.doctor = Some(report),
            Update::Failed { what, message, .. } => {
                self.notify(
                    now_ms,
                    Level::Error,
                    format!("Could not {what}"),
                    message,
                    None,
                );
            }
        }
        self.notices.len() - before
    }

    fn take_table(&mut self, table: Vec<SandboxInfo>, now_ms: u64) {
        if self.seen_table {
            for s in &table {
                let was_running = self
                    .sandboxes
                    .iter()
                    .any(|old| old.id == s.id && old.state != SandboxState::Exited);
                if let (true, SandboxState::Exited, Some(status)) = (was_running, s.state, s.exit) {
                    let (level, body) = match status {
                        ExitStatus::Code(0) => (Level::Info, "It finished normally.".to_owned()),
                        ExitStatus::Code(c) => (
                            Level::Warning,
                            format!("It exited with code {c}; its output may say why."),
                        ),
                        ExitStatus::Signal(sig) => (
                            Level::Warning,
                            format!("It was killed by signal {sig} ({}).", signal_name(sig)),
                        ),
                    };
                    self.notify(
                        now_ms,
                        level,
                        format!("{} exited", title(s)),
                        body,
                        Some(&s.id),
                    );
                }
            }
        }
        self.seen_table = true;
        // Forget what belongs to sandboxes the helper no longer lists.
        self.history
            .retain(|id, _| table.iter().any(|s| &s.id == id));
        self.outputs
            .retain(|id, _| table.iter().any(|s| &s.id == id));
        self.processes
            .retain(|id, _| table.iter().any(|s| &s.id == id));
        self.anatomy
            .retain(|id, _| table.iter().any(|s| &s.id == id));
        self.sandboxes = table;
    }
}

/// "profile: program".
pub fn title(s: &SandboxInfo) -> String {
    let program = s
        .command
        .first()
        .map(|c| c.rsplit('/').next().unwrap_or(c))
        .unwrap_or("?");
    if s.profile == hutch_core::profile::DEFAULT_PROFILE || s.profile == program {
        program.to_owned()
    } else {
        format!("{} ({program})", s.profile)
    }
}

pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        6 => "SIGABRT",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        _ => "a signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hutch_core::protocol::{IdMapKind, NetworkInfo};

    pub fn info(id: &str, state: SandboxState, exit: Option<ExitStatus>) -> SandboxInfo {
        SandboxInfo {
            id: id.into(),
            profile: "editor".into(),
            pid: Some(42),
            started_at_ms: 0,
            command: vec!["/usr/bin/gedit".into()],
            state,
            id_map: IdMapKind::SubordinateRange,
            exit,
            network: NetworkInfo {
                mode: hutch_core::network::NetworkMode::None,
                backend: None,
                up: true,
                publish: Vec::new(),
                host_loopback: false,
            },
            user_namespaces: None,
        }
    }

    #[test]
    fn exits_seen_live_become_notices_and_old_ones_do_not() {
        let mut m = Model::default();
        let exited = info("old", SandboxState::Exited, Some(ExitStatus::Code(1)));
        assert_eq!(m.apply(Update::Sandboxes(vec![exited.clone()]), 0), 0);
        let running = info("a", SandboxState::Running, None);
        m.apply(Update::Sandboxes(vec![running, exited.clone()]), 1);
        let gone = info("a", SandboxState::Exited, Some(ExitStatus::Signal(9)));
        assert_eq!(m.apply(Update::Sandboxes(vec![gone, exited]), 2), 1);
        let n = m.notices.last().unwrap();
        assert_eq!(n.title, "editor (gedit) exited");
        assert!(n.body.contains("signal 9 (SIGKILL)"), "{}", n.body);
        assert_eq!(n.level, Level::Warning);
    }

    #[test]
    fn out_of_memory_and_failures_are_errors() {
        let mut m = Model::default();
        m.apply(
            Update::Sandboxes(vec![info("a", SandboxState::Running, None)]),
            0,
        );
        m.apply(
            Update::OutOfMemory {
                id: "a".into(),
                kills: 2,
            },
            1,
        );
        assert_eq!(m.notices[0].title, "editor (gedit) ran out of memory");
        assert_eq!(m.notices[0].level, Level::Error);
        m.apply(
            Update::Failed {
                what: "start x".into(),
                message: "no".into(),
                ticket: None,
            },
            2,
        );
        assert_eq!(m.notices[1].title, "Could not start x");
    }

    #[test]
    fn output_accumulates_and_counts_what_was_dropped() {
        let mut m = Model::default();
        let logs = |start, end, text: &str| Update::Logs {
            id: "a".into(),
            start,
            end,
            text: text.into(),
            finished: false,
        };
        m.apply(logs(0, 6, "hello "), 0);
        m.apply(logs(6, 11, "world"), 0);
        assert_eq!(m.outputs["a"].text, "hello world");
        m.apply(logs(20, 23, "new"), 0);
        assert_eq!(m.outputs["a"].dropped, 9);
        assert_eq!(m.outputs["a"].end, 23);
        // Another helper took over: its log of the sandbox starts at 0 again.
        let connected = |pid| Update::Connected {
            helper_version: "0.1.0".into(),
            helper_pid: pid,
            limits: false,
            cgroups: String::new(),
        };
        m.apply(connected(10), 0);
        assert_eq!(m.outputs["a"].end, 23, "a first connection changes nothing");
        m.apply(connected(10), 0);
        assert_eq!(
            m.outputs["a"].end, 23,
            "the same helper again changes nothing"
        );
        m.apply(connected(11), 0);
        assert_eq!(m.outputs["a"].end, 0);
        assert!(m.outputs["a"].text.ends_with("may be missing]\n"));
        m.apply(logs(0, 5, "again"), 0);
        assert!(m.outputs["a"].text.ends_with("missing]\nagain"));
    }

    #[test]
    fn limits_availability_carries_the_reason() {
        let mut m = Model::default();
        assert!(m.limits_available().is_err());
        m.apply(
            Update::Connected {
                helper_version: "0.1.0".into(),
                helper_pid: 1,
                limits: false,
                cgroups: "hybrid hierarchy".into(),
            },
            0,
        );
        assert!(
            m.limits_available()
                .unwrap_err()
                .contains("hybrid hierarchy")
        );
        m.apply(
            Update::Disconnected {
                reason: "gone".into(),
            },
            1,
        );
        assert_eq!(m.notices.last().unwrap().title, "Lost the helper");
    }
}
