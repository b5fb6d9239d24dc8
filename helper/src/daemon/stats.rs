//! Counters of a running sandbox, read from the live system.
//!
//! Delegated: the sandbox's cgroup files (cpu.stat, memory.current/peak/max/events,
//! pids.current/max/events, io.stat, PSI). Degraded: summed from /proc over pid 1's
//! descendants (found through `task/*/children`, without scanning all of /proc). Network
//! traffic comes from the sandbox's own network namespace seen through its pid 1
//! (`/proc/PID/net/dev`), a rootless figure cgroups lack.

use std::path::Path;

use hutch_core::protocol::{NetCounters, SandboxStats};

use super::processes;

/// Parses `/proc/net/dev`: (loopback, every other interface added up).
pub fn parse_net_dev(text: &str) -> (NetCounters, NetCounters) {
    let mut lo = NetCounters::default();
    let mut other = NetCounters::default();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let fields: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        if fields.len() < 10 {
            continue;
        }
        let target = if name.trim() == "lo" {
            &mut lo
        } else {
            &mut other
        };
        target.rx_bytes += fields[0];
        target.rx_packets += fields[1];
        target.tx_bytes += fields[8];
        target.tx_packets += fields[9];
    }
    (lo, other)
}

/// `key value` lines (cpu.stat, memory.events, pids.events): the value of `key`.
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// A single-value file that may say `max`.
fn limit_value(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// io.stat: total bytes read and written.
pub fn parse_io_stat(text: &str) -> (u64, u64) {
    let mut read = 0;
    let mut written = 0;
    for field in text.split_whitespace() {
        if let Some(v) = field.strip_prefix("rbytes=") {
            read += v.parse::<u64>().unwrap_or(0);
        } else if let Some(v) = field.strip_prefix("wbytes=") {
            written += v.parse::<u64>().unwrap_or(0);
        }
    }
    (read, written)
}

/// A PSI file: the `some avg10` percentage.
pub fn parse_pressure(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    line.split_whitespace()
        .find_map(|f| f.strip_prefix("avg10=")?.parse().ok())
}

fn empty(id: &str, source: &str) -> SandboxStats {
    SandboxStats {
        id: id.to_owned(),
        at_ms: hutch_client::now_ms(),
        net: NetCounters::default(),
        loopback: NetCounters::default(),
        source: source.to_owned(),
        cpu_usage_usec: 0,
        memory_bytes: 0,
        memory_peak: None,
        memory_limit: None,
        pids: 0,
        pids_limit: None,
        oom_kills: 0,
        pids_limit_hits: 0,
        io_read_bytes: None,
        io_write_bytes: None,
        pressure: None,
        cpu_throttled: None,
    }
}

fn from_cgroup(stats: &mut SandboxStats, dir: &Path) {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
    if let Some(cpu) = read("cpu.stat") {
        stats.cpu_usage_usec = keyed(&cpu, "usage_usec").unwrap_or(0);
        stats.cpu_throttled = keyed(&cpu, "nr_throttled");
    }
    stats.memory_bytes = read("memory.current")
        .and_then(|t| limit_value(&t))
        .unwrap_or(0);
    stats.memory_peak = read("memory.peak").and_then(|t| limit_value(&t));
    stats.memory_limit = read("memory.max").and_then(|t| limit_value(&t));
    stats.oom_kills = read("memory.events")
        .and_then(|t| keyed(&t, "oom_kill"))
        .unwrap_or(0);
    stats.pids = read("pids.current")
        .and_then(|t| limit_value(&t))
        .unwrap_or(0);
    stats.pids_limit = read("pids.max").and_then(|t| limit_value(&t));
    stats.pids_limit_hits = read("pids.events")
        .and_then(|t| keyed(&t, "max"))
        .unwrap_or(0);
    if let Some(io) = read("io.stat") {
        let (r, w) = parse_io_stat(&io);
        stats.io_read_bytes = Some(r);
        stats.io_write_bytes = Some(w);
    }
    let psi = |f: &str| read(f).and_then(|t| parse_pressure(&t));
    if let (Some(c), Some(m), Some(i)) = (
        psi("cpu.pressure"),
        psi("memory.pressure"),
        psi("io.pressure"),
    ) {
        stats.pressure = Some([c, m, i]);
    }
}

/// Adds CPU time, resident memory and threads of a sandbox's processes (pid 1 aside: it is
/// not dumpable, and small) from /proc.
fn from_proc(stats: &mut SandboxStats, init: i32) {
    let (tick, page) = processes::units();
    for pid in processes::descendants(init) {
        if let Some(f) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| processes::StatFields::parse(&stat))
        {
            stats.cpu_usage_usec += f.cpu_ticks * 1_000_000 / tick;
            stats.pids += f.threads;
            stats.memory_bytes += f.rss_pages * page;
        }
    }
}

/// Samples of several sandboxes: (id, pid 1's host pid, cgroup).
pub fn sample_all(targets: &[(String, i32, Option<std::path::PathBuf>)]) -> Vec<SandboxStats> {
    let mut out = Vec::with_capacity(targets.len());
    for (id, init, cgroup) in targets {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{init}/net/dev")) else {
            continue;
        };
        let mut stats = empty(id, if cgroup.is_some() { "cgroup" } else { "proc" });
        let (loopback, net) = parse_net_dev(&text);
        stats.net = net;
        stats.loopback = loopback;
        match cgroup {
            Some(dir) => from_cgroup(&mut stats, dir),
            None => from_proc(&mut stats, *init),
        }
        out.push(stats);
    }
    out
}

/// One sample of sandbox `id`, whose pid 1 has host pid `init`.
pub fn sample(id: &str, init: i32, cgroup: Option<&Path>) -> std::io::Result<SandboxStats> {
    let target = [(id.to_owned(), init, cgroup.map(Path::to_owned))];
    sample_all(&target).pop().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("/proc/{init} is gone"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_sums_all_but_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     120       2    0    0    0     0          0         0      120       2    0    0    0     0       0          0
  tap0:  500000     400    0    0    0     0          0         0    30000     300    0    0    0     0       0          0
  eth1:     100       1    0    0    0     0          0         0       50       1    0    0    0     0       0          0
";
        let (lo, net) = parse_net_dev(text);
        assert_eq!(
            lo,
            NetCounters {
                rx_bytes: 120,
                rx_packets: 2,
                tx_bytes: 120,
                tx_packets: 2
            }
        );
        assert_eq!(
            net,
            NetCounters {
                rx_bytes: 500100,
                rx_packets: 401,
                tx_bytes: 30050,
                tx_packets: 301
            }
        );
    }

    #[test]
    fn cgroup_files_parse() {
        assert_eq!(
            keyed("usage_usec 1500\nuser_usec 1000\n", "usage_usec"),
            Some(1500)
        );
        assert_eq!(
            keyed("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n", "oom_kill"),
            Some(1)
        );
        assert_eq!(keyed("max 7\n", "max"), Some(7));
        assert_eq!(limit_value("max\n"), None);
        assert_eq!(limit_value("67108864\n"), Some(67108864));
        assert_eq!(
            parse_io_stat("8:0 rbytes=100 wbytes=20 rios=1 wios=1\n8:16 rbytes=5 wbytes=1\n"),
            (105, 21)
        );
        let psi = "some avg10=12.50 avg60=3.00 avg300=0.50 total=100\nfull avg10=1.00 avg60=0 avg300=0 total=5\n";
        assert_eq!(parse_pressure(psi), Some(12.5));
    }

    #[test]
    fn proc_sampling_counts_the_descendants() {
        // A child of this test stands for a sandbox's app: its memory and threads count.
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let me = std::process::id() as i32;
        // Sampled mid-exec, the child has no memory to show yet: wait until it sleeps.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::read_to_string(format!("/proc/{}/stat", child.id()))
            .ok()
            .and_then(|s| processes::StatFields::parse(&s))
            .is_none_or(|f| f.state != "S" || f.rss_pages == 0)
        {
            assert!(std::time::Instant::now() < deadline, "sleep never started");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let stats = sample("x", me, None).unwrap();
        assert!(processes::descendants(me).contains(&child.id()));
        assert!(stats.memory_bytes > 0 && stats.pids > 0, "{stats:?}");
        assert_eq!(stats.source, "proc");
        let _ = child.kill();
        let _ = child.wait();
    }
}
