//! Serving one request stream: a [`StreamRequest`] in; for content a
//! [`ContentResponse`] and the requested byte range out, for TUF metadata a
//! [`MetadataResponse`] and the file.
//!
//! An agent may fetch only content of a release assigned to it. Ranges make
//! downloads resumable: after a reconnect the agent asks from its offset.
//! TUF metadata is public within the fleet: any enrolled agent may read it.

use super::frames::{self, StreamError};
use crate::server::Services;
use flotte_protocol::AgentId;
use flotte_protocol::messages::{ContentRequest, ContentResponse, MetadataResponse, StreamRequest};
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, warn};

pub async fn serve(
    agent: AgentId,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    services: Arc<Services>,
) -> Result<(), StreamError> {
    let Some(request) = frames::read::<StreamRequest>(&mut recv, "stream request").await? else { return Ok(()) };
    match request {
        StreamRequest::Content(request) => serve_content(agent, send, request, services).await,
        StreamRequest::Metadata(request) => {
            let bytes = crate::tuf::repository::file(&services.store, &request.file).ok().flatten();
            debug!(%agent, file = %request.file, found = bytes.is_some(), "serving TUF metadata");
            match bytes {
                Some(bytes) => {
                    frames::write(&mut send, &MetadataResponse::Ok { length: bytes.len() as u64 }).await?;
                    send.write_all(&bytes).await?;
                }
                None => frames::write(&mut send, &MetadataResponse::NotFound).await?,
            }
            finish(send)
        }
    }
}

async fn serve_content(
    agent: AgentId,
    mut send: quinn::SendStream,
    request: ContentRequest,
    services: Arc<Services>,
) -> Result<(), StreamError> {
    let allowed = services.store.agent_may_fetch(&agent, &request.digest).unwrap_or(false);
    let size = services.content.size(&request.digest).filter(|_| allowed);
    let Some(total_size) = size else {
        frames::write(&mut send, &ContentResponse::NotFound).await?;
        return finish(send);
    };
    if request.offset > total_size {
        frames::write(&mut send, &ContentResponse::BadRange { total_size }).await?;
        return finish(send);
    }
    let length = request.length.unwrap_or(u64::MAX).min(total_size - request.offset);
    debug!(%agent, digest = %request.digest, offset = request.offset, length, "serving content");
    frames::write(&mut send, &ContentResponse::Ok { total_size, offset: request.offset, length }).await?;

    // Each piece is a refcounted slice of a chunk in the content cache;
    // quinn keeps it until the agent acknowledges it, so the streams of a
    // push share one copy of the content instead of buffering their own.
    let rate = services.config.content_rate_limit;
    let started = tokio::time::Instant::now();
    let mut sent = 0u64;
    while sent < length {
        let offset = request.offset + sent;
        let piece = match services.content_cache.read(&request.digest, total_size, offset, length - sent).await {
            Ok(piece) if !piece.is_empty() => piece,
            // The agent sees a short stream and retries from its offset.
            Ok(_) => break,
            Err(e) => {
                warn!(digest = %request.digest, offset, error = %e, "cannot read stored content");
                break;
            }
        };
        sent += piece.len() as u64;
        send.write_chunk(piece).await?;
        if rate > 0 {
            tokio::time::sleep_until(started + Duration::from_secs_f64(sent as f64 / rate as f64)).await;
        }
    }
    finish(send)
}

fn finish(mut send: quinn::SendStream) -> Result<(), StreamError> {
    // Finishing a stream the peer already reset is not an error worth reporting.
    let _ = send.finish();
    Ok(())
}
