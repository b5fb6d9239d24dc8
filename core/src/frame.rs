//! Length-prefixed JSON frames: a 4-byte big-endian length, then that many bytes of UTF-8 JSON.
//!
//! The length is checked against [`MAX_FRAME_LEN`] as soon as the 4 header bytes are known, so an
//! oversized frame is refused without reading (or allocating for) its body.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The largest frame body either side accepts (1 MiB).
pub const MAX_FRAME_LEN: usize = 1024 * 1024;

/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

/// What can go wrong while encoding or decoding a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes is larger than the maximum of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("empty frame (length 0)")]
    Empty,
    #[error("frame is not valid JSON for this message: {0}")]
    Json(serde_json::Error),
}

// Not `#[from]`: the message above already shows the cause, so it is not also a `source()`
// (error chains would print it twice).
impl From<serde_json::Error> for FrameError {
    fn from(e: serde_json::Error) -> Self {
        Self::Json(e)
    }
}

/// Encodes `msg` as one frame (header and body).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let body = serde_json::to_vec(msg)?;
    if body.len() > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len: body.len(),
            max: MAX_FRAME_LEN,
        });
    }
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    // The check above bounds the length well below u32::MAX.
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes one frame body (without its header) into a message.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    Ok(serde_json::from_slice(body)?)
}

/// Accumulates bytes read from a stream and splits them into frame bodies.
#[derive(Debug, Default)]
pub struct FrameBuffer {
    buf: Vec<u8>,
}

impl FrameBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes as they arrive.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered but not yet returned as a frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The length announced by the buffered header, checked against the maximum.
    fn announced_len(&self) -> Result<Option<usize>, FrameError> {
        let Some(header) = self.buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*header) as usize;
        if len > MAX_FRAME_LEN {
            return Err(FrameError::TooLarge {
                len,
                max: MAX_FRAME_LEN,
            });
        }
        if len == 0 {
            return Err(FrameError::Empty);
        }
        Ok(Some(len))
    }

    /// Takes the next complete frame body, if one is buffered.
    ///
    /// An oversized or empty length is an error as soon as its header is buffered.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let Some(len) = self.announced_len()? else {
            return Ok(None);
        };
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let body = self.buf[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.buf.drain(..HEADER_LEN + len);
        Ok(Some(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{PROTOCOL_VERSION, Request};

    #[test]
    fn round_trip_through_buffer_in_pieces() {
        let hello = Request::Hello {
            protocol: PROTOCOL_VERSION,
            client: "test".into(),
        };
        let frame = encode(&hello).unwrap();
        let mut buf = FrameBuffer::new();
        for byte in &frame[..frame.len() - 1] {
            buf.push(std::slice::from_ref(byte));
            assert!(buf.next_frame().unwrap().is_none());
        }
        buf.push(&frame[frame.len() - 1..]);
        let body = buf.next_frame().unwrap().expect("a whole frame");
        assert_eq!(decode::<Request>(&body).unwrap(), hello);
        assert_eq!(buf.pending(), 0);
    }

    #[test]
    fn two_frames_in_one_read() {
        let mut bytes = encode(&Request::List).unwrap();
        bytes.extend(encode(&Request::Doctor).unwrap());
        let mut buf = FrameBuffer::new();
        buf.push(&bytes);
        assert_eq!(
            decode::<Request>(&buf.next_frame().unwrap().unwrap()).unwrap(),
            Request::List
        );
        assert_eq!(
            decode::<Request>(&buf.next_frame().unwrap().unwrap()).unwrap(),
            Request::Doctor
        );
        assert!(buf.next_frame().unwrap().is_none());
    }

    #[test]
    fn oversized_header_is_refused_before_the_body_arrives() {
        let mut buf = FrameBuffer::new();
        buf.push(&u32::MAX.to_be_bytes());
        match buf.next_frame() {
            Err(FrameError::TooLarge { len, max }) => {
                assert_eq!(len, u32::MAX as usize);
                assert_eq!(max, MAX_FRAME_LEN);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn empty_frame_is_an_error() {
        let mut buf = FrameBuffer::new();
        buf.push(&0u32.to_be_bytes());
        assert!(matches!(buf.next_frame(), Err(FrameError::Empty)));
    }

    #[test]
    fn invalid_utf8_and_wrong_types_are_json_errors() {
        assert!(matches!(
            decode::<Request>(&[0xff, 0xfe, 0x80]),
            Err(FrameError::Json(_))
        ));
        assert!(matches!(
            decode::<Request>(br#"{"type":"hello","protocol":"one","client":"x"}"#),
            Err(FrameError::Json(_))
        ));
        let err = decode::<Request>(br#"{"type":"format_disk"}"#).unwrap_err();
        assert!(err.to_string().contains("format_disk"), "{err}");
    }

    #[test]
    fn encode_refuses_a_body_over_the_maximum() {
        let big = "x".repeat(MAX_FRAME_LEN + 1);
        assert!(matches!(encode(&big), Err(FrameError::TooLarge { .. })));
    }
}
