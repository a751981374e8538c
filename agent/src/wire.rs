//! Framed messages on QUIC streams: a 4-byte header read with `read_exact`,
//! checked with `frame_len`, then exactly that many body bytes.
//!
//! Guarantee: no buffer larger than `flotte_protocol::frame::MAX_FRAME_LEN`
//! is ever allocated for a frame, whatever the peer announces.

use crate::error::{AgentError, Result};
use flotte_protocol::frame::{self, HEADER_LEN};
use quinn::{ReadExactError, RecvStream, SendStream};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Reads one frame of `stream` ("control", "content") and decodes it.
pub async fn read_frame<T: DeserializeOwned>(recv: &mut RecvStream, stream: &'static str) -> Result<T> {
    let mut header = [0u8; HEADER_LEN];
    recv.read_exact(&mut header).await.map_err(|e| read_error(stream, e))?;
    let len = frame::frame_len(header)?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await.map_err(|e| read_error(stream, e))?;
    Ok(frame::decode_exact(stream, &body)?)
}

/// Encodes `message` as one frame and writes it.
pub async fn write_frame<T: Serialize>(send: &mut SendStream, message: &T, stream: &'static str) -> Result<()> {
    let bytes = frame::encode(message)?;
    send.write_all(&bytes).await.map_err(|e| AgentError::Stream { stream, reason: e.to_string() })
}

fn read_error(stream: &'static str, e: ReadExactError) -> AgentError {
    let reason = match e {
        ReadExactError::FinishedEarly(0) => "closed by the controller".to_string(),
        ReadExactError::FinishedEarly(n) => format!("closed by the controller inside a frame ({n} bytes read)"),
        ReadExactError::ReadError(e) => e.to_string(),
    };
    AgentError::Stream { stream, reason }
}
