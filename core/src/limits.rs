//! Resource limits of a sandbox, applied through cgroup v2.
//!
//! Sizes are written like `512M`, `1.5G` or `65536` (bytes; K, M, G, T are powers of 1024);
//! a CPU cap like `150%` or `1.5` (cores). A CPU cap wastes idle cores, so the default way to
//! tame CPU is a weight (`cpu_weight`, 1-10000, default 100); a cap is only set on request.

use serde::{Deserialize, Serialize};

/// The smallest memory limit accepted: below it even a shell cannot start.
pub const MIN_MEMORY: u64 = 8 * 1024 * 1024;

/// cgroup v2's default CPU period, in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;

/// Limits, each unset when `None` (no limit). Limits set on the command line override the
/// profile's, one by one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// memory.max, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// memory.high (throttling before the hard limit), bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_high: Option<u64>,
    /// memory.swap.max, bytes; follows `memory` when unset (so swap cannot dodge the limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_swap: Option<u64>,
    /// cpu.max as a share of one core in percent (150 = one and a half cores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<u32>,
    /// cpu.weight, 1-10000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_weight: Option<u32>,
    /// pids.max.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
    /// io.weight, 1-10000 (where the io controller is delegated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_weight: Option<u32>,
}

/// Why a limit was refused. Messages name the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error(
        "`{0}` is not a size: use a number of bytes, or one ending in K, M, G or T (512M, 1.5G)"
    )]
    Size(String),
    #[error("memory limit {0} is under the minimum of 8M (nothing can start in less)")]
    MemoryTooSmall(String),
    #[error(
        "`{0}` is not a CPU share: use a percentage of one core (150%) or a number of cores (1.5)"
    )]
    Cpu(String),
    #[error("CPU cap {value} is more than this machine's {cores} core(s) ({max}%)")]
    CpuAboveCores { value: String, cores: u32, max: u32 },
    #[error("CPU cap {0} is zero: use at least 1%")]
    CpuZero(String),
    #[error("{what} {value} is outside 1-10000")]
    Weight { what: &'static str, value: String },
    #[error("process limit {0} would not even let the app start: use at least 1")]
    PidsZero(String),
    #[error("`{0}` is not a number of processes")]
    Pids(String),
}

/// Parses a size: `65536`, `512K`, `512M`, `1.5G`, `2T` (binary multiples; a trailing `B` or
/// `iB` is allowed).
pub fn parse_size(text: &str) -> Result<u64, LimitError> {
    let err = || LimitError::Size(text.to_owned());
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (number, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c.to_ascii_uppercase()),
        _ => (t, ' '),
    };
    let factor: u64 = match unit {
        ' ' => 1,
        'K' => 1 << 10,
        'M' => 1 << 20,
        'G' => 1 << 30,
        'T' => 1 << 40,
        _ => return Err(err()),
    };
    let value: f64 = number.trim().parse().map_err(|_| err())?;
    if !value.is_finite() || value < 0.0 {
        return Err(err());
    }
    let bytes = value * factor as f64;
    if bytes > u64::MAX as f64 {
        return Err(err());
    }
    Ok(bytes as u64)
}

/// A size for people: `512M`, `1.5G`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("T", 1 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ];
    for (unit, factor) in UNITS {
        if bytes >= factor {
            let value = bytes as f64 / factor as f64;
            return if (value - value.round()).abs() < 0.05 {
                format!("{}{unit}", value.round() as u64)
            } else {
                format!("{value:.1}{unit}")
            };
        }
    }
    bytes.to_string()
}

/// A size written so that [`parse_size`] reads back exactly the same number of bytes: the
/// largest unit that divides it (`512M`, `3G`), else plain bytes. For files (profiles), where
/// [`format_size`]'s rounding would change the user's value.
pub fn format_size_exact(bytes: u64) -> String {
    for (unit, factor) in [
        ("T", 1u64 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ] {
        if bytes >= factor && bytes.is_multiple_of(factor) {
            return format!("{}{unit}", bytes / factor);
        }
    }
    bytes.to_string()
}

/// Parses a memory limit (a size of at least [`MIN_MEMORY`]).
pub fn parse_memory(text: &str) -> Result<u64, LimitError> {
    let bytes = parse_size(text)?;
    if bytes < MIN_MEMORY {
        return Err(LimitError::MemoryTooSmall(text.trim().to_owned()));
    }
    Ok(bytes)
}

/// Parses a CPU cap: `150%` or `1.5` cores, as a percentage of one core.
pub fn parse_cpu(text: &str) -> Result<u32, LimitError> {
    let err = || LimitError::Cpu(text.to_owned());
    let t = text.trim();
    let percent = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map_err(|_| err())?,
        None => t.parse::<f64>().map_err(|_| err())? * 100.0,
    };
    if !percent.is_finite() || !(0.0..=1_000_000.0).contains(&percent) {
        return Err(err());
    }
    let percent = percent.round() as u32;
    if percent == 0 {
        return Err(LimitError::CpuZero(t.to_owned()));
    }
    Ok(percent)
}

/// Checks a CPU cap against the number of cores.
pub fn check_cpu(percent: u32, cores: u32) -> Result<(), LimitError> {
    let max = cores.max(1) * 100;
    if percent > max {
        return Err(LimitError::CpuAboveCores {
            value: format!("{percent}%"),
            cores,
            max,
        });
    }
    Ok(())
}

/// Parses a weight (1-10000).
pub fn parse_weight(text: &str, what: &'static str) -> Result<u32, LimitError> {
    let err = || LimitError::Weight {
        what,
        value: text.trim().to_owned(),
    };
    let value: u32 = text.trim().parse().map_err(|_| err())?;
    if !(1..=10000).contains(&value) {
        return Err(err());
    }
    Ok(value)
}

/// Parses a process limit (at least 1).
pub fn parse_pids(text: &str) -> Result<u64, LimitError> {
    let value: u64 = text
        .trim()
        .parse()
        .map_err(|_| LimitError::Pids(text.trim().to_owned()))?;
    if value == 0 {
        return Err(LimitError::PidsZero(text.trim().to_owned()));
    }
    Ok(value)
}

impl Limits {
    /// Whether any limit is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// These limits with every one set in `over` replaced.
    pub fn overridden_by(self, over: &Limits) -> Limits {
        Limits {
            memory: over.memory.or(self.memory),
            memory_high: over.memory_high.or(self.memory_high),
            memory_swap: over.memory_swap.or(self.memory_swap),
            cpu_percent: over.cpu_percent.or(self.cpu_percent),
            cpu_weight: over.cpu_weight.or(self.cpu_weight),
            pids: over.pids.or(self.pids),
            io_weight: over.io_weight.or(self.io_weight),
        }
    }

    /// The cgroup v2 files and values these limits write. `memory.swap.max` follows
    /// `memory.max` unless set, and `memory.oom.group` makes an OOM kill the whole sandbox.
    pub fn cgroup_files(&self) -> Vec<(&'static str, String)> {
        let mut files = vec![("memory.oom.group", "1".to_owned())];
        if let Some(m) = self.memory {
            files.push(("memory.max", m.to_string()));
        }
        if let Some(h) = self.memory_high {
            files.push(("memory.high", h.to_string()));
        }
        // With a memory limit and no swap setting, swap is closed: otherwise the app could
        // dodge its limit by swapping.
        match (self.memory_swap, self.memory) {
            (Some(s), _) => files.push(("memory.swap.max", s.to_string())),
            (None, Some(_)) => files.push(("memory.swap.max", "0".to_owned())),
            (None, None) => {}
        }
        if let Some(p) = self.cpu_percent {
            let quota = CPU_PERIOD_US * u64::from(p) / 100;
            files.push(("cpu.max", format!("{quota} {CPU_PERIOD_US}")));
        }
        if let Some(w) = self.cpu_weight {
            files.push(("cpu.weight", w.to_string()));
        }
        if let Some(p) = self.pids {
            files.push(("pids.max", p.to_string()));
        }
        if let Some(w) = self.io_weight {
            files.push(("io.weight", format!("default {w}")));
        }
        files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("65536").unwrap(), 65536);
        assert_eq!(parse_size("512K").unwrap(), 512 << 10);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("2t").unwrap(), 2 << 40);
        for bad in ["12Q", "", "M", "-1M", "1.2.3G", "NaN"] {
            let err = parse_size(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("`{bad}`")), "{err}");
        }
        assert_eq!(format_size(512 << 20), "512M");
        assert_eq!(format_size(3 << 29), "1.5G");
        assert_eq!(format_size(100), "100");
        for exact in [512 << 20, 3 << 29, 1_000_000_000, (1 << 40) * 7, 4096, 1] {
            assert_eq!(parse_size(&format_size_exact(exact)).unwrap(), exact);
        }
        assert_eq!(format_size_exact(3 << 29), "1536M");
        assert_eq!(format_size_exact(1_000_000_000), "1000000000");
    }

    #[test]
    fn memory_has_a_floor() {
        assert_eq!(parse_memory("64M").unwrap(), 64 << 20);
        let err = parse_memory("1M").unwrap_err();
        assert_eq!(err, LimitError::MemoryTooSmall("1M".into()));
        assert!(err.to_string().contains("1M") && err.to_string().contains("minimum"));
    }

    #[test]
    fn cpu_caps_parse_and_are_checked_against_cores() {
        assert_eq!(parse_cpu("150%").unwrap(), 150);
        assert_eq!(parse_cpu("1.5").unwrap(), 150);
        assert_eq!(parse_cpu("50 %").unwrap(), 50);
        assert!(matches!(parse_cpu("0%"), Err(LimitError::CpuZero(_))));
        assert!(matches!(parse_cpu("fast"), Err(LimitError::Cpu(_))));
        assert!(check_cpu(200, 2).is_ok());
        let err = check_cpu(300, 2).unwrap_err();
        assert!(
            err.to_string().contains("300%") && err.to_string().contains("2 core"),
            "{err}"
        );
    }

    #[test]
    fn weights_and_pids() {
        assert_eq!(parse_weight("50", "CPU weight").unwrap(), 50);
        let err = parse_weight("0", "CPU weight").unwrap_err();
        assert_eq!(err.to_string(), "CPU weight 0 is outside 1-10000");
        assert!(parse_weight("10001", "io weight").is_err());
        assert_eq!(parse_pids("256").unwrap(), 256);
        assert!(
            parse_pids("0")
                .unwrap_err()
                .to_string()
                .contains("process limit 0")
        );
        assert!(parse_pids("many").is_err());
    }

    #[test]
    fn cgroup_files_close_swap_and_group_ooms() {
        let limits = Limits {
            memory: Some(50 << 20),
            cpu_percent: Some(150),
            pids: Some(64),
            ..Default::default()
        };
        let files = limits.cgroup_files();
        assert!(files.contains(&("memory.oom.group", "1".into())));
        assert!(files.contains(&("memory.max", (50u64 << 20).to_string())));
        assert!(files.contains(&("memory.swap.max", "0".into())));
        assert!(files.contains(&("cpu.max", "150000 100000".into())));
        assert!(files.contains(&("pids.max", "64".into())));
        let weighted = Limits {
            cpu_weight: Some(50),
            io_weight: Some(10),
            ..Default::default()
        };
        let files = weighted.cgroup_files();
        assert!(files.contains(&("cpu.weight", "50".into())));
        assert!(files.contains(&("io.weight", "default 10".into())));
        assert!(!files.iter().any(|(f, _)| *f == "memory.swap.max"));
    }

    #[test]
    fn command_line_overrides_one_by_one() {
        let profile = Limits {
            memory: Some(1 << 30),
            pids: Some(100),
            ..Default::default()
        };
        let cli = Limits {
            memory: Some(512 << 20),
            ..Default::default()
        };
        let merged = profile.overridden_by(&cli);
        assert_eq!(merged.memory, Some(512 << 20));
        assert_eq!(merged.pids, Some(100));
        assert!(Limits::default().is_empty() && !merged.is_empty());
    }
}
