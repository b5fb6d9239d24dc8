//! Checks `hutch_core::checks::desktop_text` (see there for the property) on fuzzed input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hutch_core::checks::desktop_text(data));
