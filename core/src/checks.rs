//! Properties that must hold for any input from outside, whatever the bytes: used by the fuzz
//! targets (`fuzz/`) and by the regression tests that replay the inputs the fuzzers found
//! (`fuzz/regressions/`). Each panics when a property is broken.

use std::path::Path;

use crate::desktop::DesktopEntry;
use crate::frame::{FrameBuffer, MAX_FRAME_LEN, decode};
use crate::profile::{Profile, ProfileError};
use crate::protocol::Request;

/// Bytes from a client, cut every `data[0]` bytes as a socket may cut them: the frame buffer
/// never panics nor hands out more than the size limit, and each frame decodes or is refused.
pub fn frame_stream(data: &[u8]) {
    let cut = data.first().map_or(1, |b| usize::from(*b).max(1));
    let mut buf = FrameBuffer::new();
    for chunk in data.chunks(cut) {
        buf.push(chunk);
        loop {
            match buf.next_frame() {
                Ok(Some(body)) => {
                    assert!(body.len() <= MAX_FRAME_LEN);
                    let _ = decode::<Request>(&body);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// Any JSON: parsing a request never panics, and what parses survives a round trip.
pub fn request_json(data: &[u8]) {
    if let Ok(request) = serde_json::from_slice::<Request>(data) {
        let again = serde_json::to_vec(&request).expect("a parsed request serialises");
        let back: Request = serde_json::from_slice(&again).expect("and parses back");
        assert_eq!(back, request);
    }
}

/// Any profile text: parsing never panics, an error names a line of the text, and a profile
/// that parses is written back to TOML that parses to the same profile.
pub fn profile_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Profile::parse("fuzz", Path::new("fuzz.toml"), text) {
        Ok(profile) => {
            let back = Profile::parse("fuzz", Path::new("fuzz.toml"), &profile.to_toml())
                .expect("a profile's own TOML parses");
            assert_eq!(back, profile);
        }
        Err(ProfileError::Invalid { line, .. }) => {
            assert!(line >= 1 && line <= text.lines().count() + 1, "line {line}");
        }
        Err(_) => {}
    }
}

/// Any `.desktop` text: parsing never panics, errors name a line of the text, and an entry
/// that parses expands its Exec for any files, the program first.
pub fn desktop_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match DesktopEntry::parse(text, "/fuzz.desktop") {
        Ok(entry) => {
            let files = ["/a b".to_owned(), "/c".to_owned()];
            for argv in entry.command_lines(&files) {
                assert!(!argv.is_empty() && !argv[0].is_empty(), "{argv:?}");
            }
        }
        Err(e) => assert!(e.line >= 1 && e.line <= text.lines().count().max(1), "{e}"),
    }
}
