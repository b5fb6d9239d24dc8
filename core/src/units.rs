//! Sizes, rates and durations as people read them, the same in the CLI and the window: binary
//! units (KiB, MiB: 1024), one decimal above bytes; durations in the two largest units.

/// "320 B", "1.5 MiB", "2.0 GiB" (binary units, said once here for every figure Hutch shows).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A transfer rate: "0 B/s", "1.5 MiB/s".
pub fn rate(bytes_per_second: u64) -> String {
    format!("{}/s", bytes(bytes_per_second))
}

/// A duration in whole seconds: "5 s", "4 min 05 s", "2 h 10 min", "3 d 04 h".
pub fn duration(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min {:02} s", s / 60, s % 60),
        s if s < 86_400 => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
        s => format!("{} d {:02} h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// A duration given in milliseconds, shown as [`duration`] shows its whole seconds.
pub fn duration_ms(ms: u64) -> String {
    duration(ms / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_binary_with_one_decimal() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(1536 << 10), "1.5 MiB");
        assert_eq!(bytes(2 << 30), "2.0 GiB");
        assert_eq!(bytes(u64::MAX), "16384.0 PiB");
        assert_eq!(rate(3 << 20), "3.0 MiB/s");
    }

    #[test]
    fn durations_use_their_two_largest_units() {
        assert_eq!(duration(5), "5 s");
        assert_eq!(duration(245), "4 min 05 s");
        assert_eq!(duration(7800), "2 h 10 min");
        assert_eq!(duration(3 * 86_400 + 4 * 3600), "3 d 04 h");
        assert_eq!(duration_ms(61_999), "1 min 01 s");
    }
}
