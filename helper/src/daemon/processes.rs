//! The processes inside a sandbox, read from the host's /proc: pid 1's descendants, with
//! the pid each has inside the sandbox's pid namespace.

use hutch_core::protocol::ProcessInfo;

/// Clock ticks per second and page size, for /proc's units.
pub fn units() -> (u64, u64) {
    let conf = |var| nix::unistd::sysconf(var).ok().flatten().map(|v| v as u64);
    (
        conf(nix::unistd::SysconfVar::CLK_TCK).unwrap_or(100).max(1),
        conf(nix::unistd::SysconfVar::PAGE_SIZE).unwrap_or(4096),
    )
}

/// The fields of `/proc/PID/stat` that Hutch uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatFields {
    pub name: String,
    pub state: String,
    pub ppid: u32,
    /// utime + stime, clock ticks.
    pub cpu_ticks: u64,
    pub threads: u64,
    pub rss_pages: u64,
}

impl StatFields {
    /// Parses the text of `/proc/PID/stat` (the command, in parentheses, may contain spaces
    /// and parentheses: the last `) ` ends it).
    pub fn parse(stat: &str) -> Option<Self> {
        let (head, rest) = stat.rsplit_once(") ")?;
        let name = head.split_once(" (").map(|(_, n)| n)?.to_owned();
        let f: Vec<&str> = rest.split_whitespace().collect();
        // Fields after the command: state(3) ppid(4) ... utime(14) stime(15) threads(20)
        // rss(24).
        let num = |i: usize| {
            f.get(i - 3)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Some(Self {
            name,
            state: f.first().copied().unwrap_or("?").to_owned(),
            ppid: num(4) as u32,
            cpu_ticks: num(14) + num(15),
            threads: num(20),
            rss_pages: num(24),
        })
    }
}

/// One process from `/proc/PID/{stat,status,cmdline}`; `None` once it has gone.
pub fn read(pid: u32, tick: u64, page: u64) -> Option<ProcessInfo> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f = StatFields::parse(&stat)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    // NSpid: the pid in every namespace from the host's down; the last is the sandbox's.
    let ns_pid = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|v| v.split_whitespace().last()?.parse().ok())
        .unwrap_or(pid);
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default();
    Some(ProcessInfo {
        pid,
        ns_pid,
        ppid: f.ppid,
        cmdline,
        state: f.state,
        threads: f.threads,
        rss_bytes: f.rss_pages * page,
        cpu_usec: f.cpu_ticks * 1_000_000 / tick,
        name: f.name,
    })
}

/// The processes of a sandbox: pid 1's descendants, walked through `task/*/children` (no scan
/// of the whole of /proc).
pub fn descendants(init: i32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut queue = vec![init as u32];
    while let Some(pid) = queue.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let path = task.path().join("children");
            let Ok(children) = std::fs::read_to_string(path) else {
                continue;
            };
            for child in children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok())
            {
                out.push(child);
                queue.push(child);
            }
        }
        if out.len() > 100_000 {
            break;
        }
    }
    out
}

/// The sandbox's processes, its pid 1 first, then in pid order.
pub fn list(init: i32) -> Vec<ProcessInfo> {
    let (tick, page) = units();
    let mut pids = descendants(init);
    pids.sort_unstable();
    std::iter::once(init as u32)
        .chain(pids)
        .filter_map(|pid| read(pid, tick, page))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_a_process_tree_with_names_and_parents() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let me = std::process::id();
        // Right after exec the child's arguments may not be readable yet: the list is a
        // snapshot, so look again for a moment.
        let mut list = list(me as i32);
        for _ in 0..100 {
            if list
                .iter()
                .any(|p| p.pid == child.id() && !p.cmdline.is_empty())
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
            list = super::list(me as i32);
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(list[0].pid, me);
        let sleep = list
            .iter()
            .find(|p| p.pid == child.id())
            .expect("child listed");
        assert_eq!(sleep.name, "sleep");
        assert_eq!(sleep.ppid, me);
        assert_eq!(sleep.cmdline, ["sleep", "30"]);
        // Outside any new pid namespace the pid inside is the host pid.
        assert_eq!(sleep.ns_pid, sleep.pid);
        // This process surely has memory and threads (a just-started child may not have
        // touched a page yet).
        assert!(
            list[0].rss_bytes > 0 && list[0].threads >= 1,
            "{:?}",
            list[0]
        );
    }
}
