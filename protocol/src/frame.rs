//! Length-prefixed frames: a 4-byte big-endian length, then a postcard
//! payload.
//!
//! The length is checked against [`MAX_FRAME_LEN`] before any buffer is
//! allocated, so a hostile peer cannot make either side allocate more than
//! that. Decoding never panics: truncated, oversized or garbage input is a
//! [`FrameError`].
//!
//! Two ways to decode: [`frame_len`] + [`decode_exact`] for shells that read
//! the header and body separately, and [`FrameDecoder`] for byte streams that
//! arrive in arbitrary chunks.

use crate::error::FrameError;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Size of the length prefix.
pub const HEADER_LEN: usize = 4;

/// Largest payload accepted on any control or content-request stream. Bulk
/// content does not travel in frames, so 1 MiB leaves ample room.
pub const MAX_FRAME_LEN: usize = 1 << 20;

/// Encodes `message` as one frame.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = postcard::to_extend(message, vec![0u8; HEADER_LEN])
        .map_err(|e| FrameError::Malformed { what: "outgoing", reason: e.to_string() })?;
    let len = out.len() - HEADER_LEN;
    let len32 = u32::try_from(len).ok().filter(|_| len <= MAX_FRAME_LEN);
    let len32 = len32.ok_or(FrameError::TooLarge { len, max: MAX_FRAME_LEN })?;
    out[..HEADER_LEN].copy_from_slice(&len32.to_be_bytes());
    Ok(out)
}

/// Reads the payload length from a frame header, refusing oversized frames.
pub fn frame_len(header: [u8; HEADER_LEN]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge { len, max: MAX_FRAME_LEN });
    }
    Ok(len)
}

/// Decodes one complete payload (without header); trailing bytes are an error.
pub fn decode_exact<T: DeserializeOwned>(what: &'static str, payload: &[u8]) -> Result<T, FrameError> {
    let (value, rest) =
        postcard::take_from_bytes(payload).map_err(|e| FrameError::Malformed { what, reason: e.to_string() })?;
    if !rest.is_empty() {
        return Err(FrameError::TrailingBytes { what, extra: rest.len() });
    }
    Ok(value)
}

/// Reassembles frames from a byte stream that arrives in arbitrary chunks.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Returns the next complete message, `Ok(None)` if more bytes are
    /// needed. After an error the stream is unusable and must be closed.
    pub fn next<T: DeserializeOwned>(&mut self, what: &'static str) -> Result<Option<T>, FrameError> {
        let Some(header) = self.buf.first_chunk::<HEADER_LEN>() else { return Ok(None) };
        let len = frame_len(*header)?;
        let Some(payload) = self.buf.get(HEADER_LEN..HEADER_LEN + len) else { return Ok(None) };
        let message = decode_exact(what, payload)?;
        self.buf.drain(..HEADER_LEN + len);
        Ok(Some(message))
    }

    /// Checks that the stream ended on a frame boundary.
    pub fn finish(&self) -> Result<(), FrameError> {
        match self.buf.len() {
            0 => Ok(()),
            got => {
                let expected = self
                    .buf
                    .first_chunk::<HEADER_LEN>()
                    .map_or(HEADER_LEN, |h| HEADER_LEN + u32::from_be_bytes(*h) as usize);
                Err(FrameError::Truncated { expected, got })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{ContentRequest, ControllerMessage};
    use crate::{AssignmentId, Sha256Digest};

    fn sample() -> ControllerMessage {
        ControllerMessage::Cancel { assignment: AssignmentId(7) }
    }

    #[test]
    fn a_frame_decodes_to_the_message_that_was_encoded() {
        let bytes = encode(&sample()).unwrap();
        let mut d = FrameDecoder::new();
        d.push(&bytes);
        assert_eq!(d.next::<ControllerMessage>("control").unwrap(), Some(sample()));
        assert_eq!(d.finish(), Ok(()));
    }

    #[test]
    fn frames_split_at_every_byte_boundary_still_decode() {
        let mut stream = encode(&sample()).unwrap();
        stream.extend(encode(&sample()).unwrap());
        for cut in 0..stream.len() {
            let mut d = FrameDecoder::new();
            let mut got = vec![];
            for part in [&stream[..cut], &stream[cut..]] {
                d.push(part);
                while let Some(m) = d.next::<ControllerMessage>("control").unwrap() {
                    got.push(m);
                }
            }
            assert_eq!(got, vec![sample(), sample()], "cut at {cut}");
        }
    }

    #[test]
    fn an_oversized_length_prefix_is_refused_before_allocation() {
        let mut d = FrameDecoder::new();
        d.push(&u32::MAX.to_be_bytes());
        assert_eq!(
            d.next::<ControllerMessage>("control"),
            Err(FrameError::TooLarge { len: u32::MAX as usize, max: MAX_FRAME_LEN })
        );
    }

    #[test]
    fn a_truncated_stream_is_reported_at_the_end() {
        let bytes = encode(&sample()).unwrap();
        let mut d = FrameDecoder::new();
        d.push(&bytes[..bytes.len() - 1]);
        assert_eq!(d.next::<ControllerMessage>("control"), Ok(None));
        assert!(matches!(d.finish(), Err(FrameError::Truncated { .. })));
    }

    #[test]
    fn garbage_payloads_are_errors_not_panics() {
        // Deterministic pseudo-random payloads of every small length.
        let mut x: u32 = 0x2545_f491;
        for len in 0..512usize {
            let payload: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = decode_exact::<ControllerMessage>("control", &payload);
            let _ = decode_exact::<crate::messages::AgentMessage>("control", &payload);
            let _ = decode_exact::<ContentRequest>("content request", &payload);
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut payload =
            postcard::to_stdvec(&ContentRequest { digest: Sha256Digest::of(b""), offset: 0, length: None }).unwrap();
        payload.push(0);
        assert_eq!(
            decode_exact::<ContentRequest>("content request", &payload),
            Err(FrameError::TrailingBytes { what: "content request", extra: 1 })
        );
    }
}
