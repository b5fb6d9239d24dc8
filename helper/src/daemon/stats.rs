//! Counters of a running sandbox, read from the live system.
//!
//! Network traffic comes from the sandbox's own network namespace, seen through its pid 1:
//! `/proc/PID/net/dev` (a rootless network figure that does not need cgroups).

use std::time::{SystemTime, UNIX_EPOCH};

use hutch_core::protocol::{NetCounters, SandboxStats};

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

/// One sample of sandbox `id`, whose pid 1 has host pid `init`.
pub fn sample(id: &str, init: i32) -> std::io::Result<SandboxStats> {
    let text = std::fs::read_to_string(format!("/proc/{init}/net/dev"))?;
    let (loopback, net) = parse_net_dev(&text);
    Ok(SandboxStats {
        id: id.to_owned(),
        at_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64,
        net,
        loopback,
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
}
