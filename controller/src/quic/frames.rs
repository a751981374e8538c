//! Reading and writing protocol frames on quinn streams. Every read is
//! bounded by [`flotte_protocol::frame::MAX_FRAME_LEN`].

use flotte_protocol::FrameError;
use flotte_protocol::frame::{self, HEADER_LEN};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("stream read failed: {0}")]
    Read(#[from] quinn::ReadExactError),
    #[error("stream write failed: {0}")]
    Write(#[from] quinn::WriteError),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// Reads one frame; `Ok(None)` if the peer finished the stream cleanly
/// before a new frame began.
pub async fn read<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    what: &'static str,
) -> Result<Option<T>, StreamError> {
    let mut header = [0u8; HEADER_LEN];
    match recv.read_exact(&mut header).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = frame::frame_len(header)?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await?;
    Ok(Some(frame::decode_exact(what, &body)?))
}

/// Writes one frame.
pub async fn write<T: Serialize>(send: &mut quinn::SendStream, message: &T) -> Result<(), StreamError> {
    send.write_all(&frame::encode(message)?).await?;
    Ok(())
}
