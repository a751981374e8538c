//! Verifying the release an assignment names: a TUF update against the
//! controller (metadata over QUIC request streams), then the target
//! `NAME/VERSION` looked up through the verified targets and delegations.
//!
//! Guarantees:
//! - The [`VerifiedRelease`] comes only from a targets entry that passed the
//!   whole client workflow (`tuf_client`): the assignment contributes the
//!   name to look up and nothing else.
//! - Every metadata response is read up to the size limit the workflow
//!   gives for that file and no further; a file not received whole within
//!   [`METADATA_DEADLINE`] (request to last byte) is given up, with an error
//!   naming its role and the deadline.
//! - One update runs at a time, so two jobs never interleave writes to the
//!   persisted metadata.
//! - Without a connection the persisted metadata is used if it is still
//!   valid (a job resumed after a crash, before the agent reconnects).

use crate::tuf_client::{Client, Fetched, METADATA_DEADLINE, MetadataSource, UpdateError, deadline_passed};
use crate::tuf_store::TufStore;
use crate::wire;
use flotte_protocol::messages::{MetadataRequest, MetadataResponse, StreamRequest};
use flotte_protocol::tuf::release::{Platform, target_name, verified_release};
use flotte_protocol::{ReleaseRef, Timestamp, VerifiedRelease, VerifyError};
use quinn::Connection;
use std::sync::{Arc, Mutex};
use tokio::time::timeout;

/// The agent's trusted TUF metadata, shared by the jobs.
#[derive(Clone)]
pub struct Verifier {
    store: Arc<Mutex<TufStore>>,
}

impl Verifier {
    pub fn new(store: TufStore) -> Self {
        Verifier { store: Arc::new(Mutex::new(store)) }
    }

    /// Runs the update (on a blocking thread; metadata is fetched over
    /// `connection` if there is one) and verifies `release` for this host.
    pub async fn verify(
        &self,
        connection: Option<Connection>,
        release: ReleaseRef,
        now: Timestamp,
    ) -> Result<VerifiedRelease, VerifyError> {
        let store = Arc::clone(&self.store);
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let store = store.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let source = QuicSource { handle, connection };
            let mut client = Client { store: &store, source, offline_fallback: true };
            let name = target_name(&release.name, &release.version);
            let (file, role) = client.lookup(&name, now).map_err(to_verify_error)?;
            verified_release(&name, &file, &role, &Platform::this_host())
        })
        .await
        .unwrap_or_else(|e| Err(VerifyError::Unavailable { reason: format!("verification stopped: {e}") }))
    }
}

fn to_verify_error(e: UpdateError) -> VerifyError {
    match e {
        UpdateError::Refused { source, .. } | UpdateError::Tuf(source) => VerifyError::Tuf(source),
        UpdateError::NotFound(target) => VerifyError::NotInTargets { target },
        other => VerifyError::Unavailable { reason: other.to_string() },
    }
}

/// Metadata over request streams of the agent's connection.
struct QuicSource {
    handle: tokio::runtime::Handle,
    connection: Option<Connection>,
}

impl MetadataSource for QuicSource {
    fn fetch(&mut self, file: &str, max: usize) -> Fetched {
        let Some(connection) = &self.connection else { return Fetched::Unavailable("not connected".into()) };
        match self.handle.block_on(timeout(METADATA_DEADLINE, fetch(connection, file, max))) {
            Ok(Ok(found)) => found,
            Ok(Err(reason)) => Fetched::Unavailable(reason),
            Err(_) => Fetched::Unavailable(deadline_passed(file, METADATA_DEADLINE)),
        }
    }
}

/// One metadata request; at most `max` bytes are read. A response longer
/// than `max` is refused before it is read.
async fn fetch(connection: &Connection, file: &str, max: usize) -> Result<Fetched, String> {
    let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
    let request = StreamRequest::Metadata(MetadataRequest { file: file.to_string() });
    wire::write_frame(&mut send, &request, "metadata").await.map_err(|e| e.to_string())?;
    let _ = send.finish();
    match wire::read_frame::<MetadataResponse>(&mut recv, "metadata").await.map_err(|e| e.to_string())? {
        MetadataResponse::NotFound => Ok(Fetched::NotFound),
        MetadataResponse::Ok { length } if length > max as u64 => {
            let _ = recv.stop(quinn::VarInt::from_u32(0));
            Err(format!("{file} is {length} bytes, more than the {max}-byte limit (endless data?)"))
        }
        MetadataResponse::Ok { length } => {
            let bytes = recv.read_to_end(max).await.map_err(|e| format!("{file}: {e}"))?;
            if bytes.len() as u64 != length {
                return Err(format!("{file}: {} bytes received, {length} announced", bytes.len()));
            }
            Ok(Fetched::Found(bytes))
        }
    }
}
