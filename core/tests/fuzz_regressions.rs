//! Replays every input in `fuzz/regressions/TARGET/` (inputs the fuzzers found, and seeds)
//! through the property its fuzz target checks.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            panic!("{} breaks the {target} property", path.display());
        }
        n += 1;
    }
    n
}

#[test]
fn fuzz_regressions_hold() {
    use hutch_core::checks::*;
    assert!(replay("frame_decode", frame_stream) >= 3);
    assert!(replay("request_parse", request_json) >= 2);
    assert!(replay("profile_parse", profile_text) >= 3);
    assert!(replay("desktop_parse", desktop_text) >= 3);
}
