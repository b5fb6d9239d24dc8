//! Time series of one sandbox, made from the helper's samples: CPU %, memory, processes,
//! network rates and pressure, kept for an hour, with gaps where samples are missing.

use std::collections::VecDeque;

use hutch_core::protocol::SandboxStats;

/// How long points are kept (the longest graph window).
pub const KEEP_MS: u64 = 60 * 60 * 1000;
/// Two samples further apart than this leave a gap in the graphs.
pub const GAP_MS: u64 = 3_500;

/// One point of the graphs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Milliseconds since the Unix epoch (the helper's sample time).
    pub at_ms: u64,
    /// CPU use in percent of one core (200 = two cores busy).
    pub cpu_percent: f64,
    pub memory_bytes: f64,
    pub memory_limit: Option<f64>,
    pub processes: f64,
    /// Bytes per second.
    pub rx_rate: f64,
    pub tx_rate: f64,
    /// Pressure "some avg10" in percent: cpu, memory, io.
    pub pressure: Option<[f64; 3]>,
}

/// The points of one sandbox, oldest first.
#[derive(Debug, Clone, Default)]
pub struct History {
    points: VecDeque<Point>,
    last: Option<SandboxStats>,
}

impl History {
    /// Adds a sample. Rates need the previous sample: the first sample gives no point.
    pub fn push(&mut self, s: &SandboxStats) {
        if let Some(prev) = &self.last
            && s.at_ms > prev.at_ms
        {
            let dt = (s.at_ms - prev.at_ms) as f64 / 1000.0;
            let rate = |now: u64, before: u64| now.saturating_sub(before) as f64 / dt;
            self.points.push_back(Point {
                at_ms: s.at_ms,
                cpu_percent: s.cpu_usage_usec.saturating_sub(prev.cpu_usage_usec) as f64
                    / (dt * 1e6)
                    * 100.0,
                memory_bytes: s.memory_bytes as f64,
                memory_limit: s.memory_limit.map(|l| l as f64),
                processes: s.pids as f64,
                rx_rate: rate(s.net.rx_bytes, prev.net.rx_bytes),
                tx_rate: rate(s.net.tx_bytes, prev.net.tx_bytes),
                pressure: s.pressure,
            });
        }
        if self.last.as_ref().is_none_or(|p| s.at_ms > p.at_ms) {
            self.last = Some(s.clone());
        }
        while self
            .points
            .front()
            .is_some_and(|p| p.at_ms + KEEP_MS < s.at_ms)
        {
            self.points.pop_front();
        }
    }

    pub fn points(&self) -> &VecDeque<Point> {
        &self.points
    }

    pub fn latest(&self) -> Option<&Point> {
        self.points.back()
    }

    /// The last raw sample.
    pub fn last_sample(&self) -> Option<&SandboxStats> {
        self.last.as_ref()
    }

    /// Runs of `value` over points since `since_ms`, split where samples are missing;
    /// x is seconds relative to `now_ms` (negative: in the past).
    pub fn segments(
        &self,
        since_ms: u64,
        now_ms: u64,
        value: impl Fn(&Point) -> Option<f64>,
    ) -> Vec<Vec<[f64; 2]>> {
        let mut out: Vec<Vec<[f64; 2]>> = Vec::new();
        let mut prev: Option<u64> = None;
        for p in self.points.iter().filter(|p| p.at_ms >= since_ms) {
            let Some(v) = value(p) else {
                prev = None;
                continue;
            };
            let x = (p.at_ms as f64 - now_ms as f64) / 1000.0;
            match (prev, out.last_mut()) {
                (Some(t), Some(run)) if p.at_ms - t <= GAP_MS => run.push([x, v]),
                _ => out.push(vec![[x, v]]),
            }
            prev = Some(p.at_ms);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn sample(at_ms: u64, cpu_usec: u64, memory: u64) -> SandboxStats {
        SandboxStats {
            id: "a".into(),
            at_ms,
            net: Default::default(),
            loopback: Default::default(),
            source: "cgroup".into(),
            cpu_usage_usec: cpu_usec,
            memory_bytes: memory,
            memory_peak: None,
            memory_limit: Some(1 << 30),
            pids: 3,
            pids_limit: None,
            oom_kills: 0,
            pids_limit_hits: 0,
            io_read_bytes: None,
            io_write_bytes: None,
            pressure: None,
            cpu_throttled: None,
        }
    }

    #[test]
    fn rates_come_from_consecutive_samples() {
        let mut h = History::default();
        h.push(&sample(1_000, 0, 100));
        assert!(h.points().is_empty(), "one sample makes no rate");
        let mut s = sample(2_000, 500_000, 200);
        s.net.rx_bytes = 4096;
        h.push(&s);
        let p = h.latest().unwrap();
        assert!((p.cpu_percent - 50.0).abs() < 1e-9);
        assert_eq!(p.rx_rate, 4096.0);
        assert_eq!(p.memory_bytes, 200.0);
        // An old or repeated sample changes nothing.
        h.push(&sample(1_500, 0, 0));
        assert_eq!(h.points().len(), 1);
    }

    #[test]
    fn missing_samples_leave_gaps_and_old_points_go() {
        let mut h = History::default();
        for t in [0, 1, 2, 3, 10, 11, 12] {
            h.push(&sample(t * 1000, t * 100_000, 0));
        }
        let runs = h.segments(0, 12_000, |p| Some(p.cpu_percent));
        let lens: Vec<usize> = runs.iter().map(Vec::len).collect();
        assert_eq!(lens, [3, 3], "{runs:?}");
        assert_eq!(runs[1].last().unwrap()[0], 0.0);
        assert_eq!(runs[0][0][0], -11.0);
        h.push(&sample(KEEP_MS + 11_500, 0, 0));
        assert_eq!(h.points().len(), 2, "points older than an hour are dropped");
    }
}
