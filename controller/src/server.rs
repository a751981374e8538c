//! One running controller: open the store, load the CA, bind the QUIC
//! endpoint and the HTTPS API, serve until shutdown.

use crate::api;
use crate::config::ControllerConfig;
use crate::content::ContentStore;
use crate::content::cache::ChunkCache;
use crate::datadir::DataDir;
use crate::error::ControllerError;
use crate::hub::Hub;
use crate::pki::{self, Ca};
use crate::quic;
use crate::store::Store;
use flotte_protocol::Timestamp;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;
use tracing::{info, warn};

/// Everything a request or session handler may use. Built once at start.
pub struct Services {
    pub config: ControllerConfig,
    pub store: Store,
    pub content: ContentStore,
    /// Chunks of `content` in memory, shared by all content streams.
    pub content_cache: ChunkCache,
    pub hub: Hub,
    /// Signs agent certificates at enrollment.
    pub ca: Ca,
    /// Tells the rollout driver that a rollout has news.
    pub rollouts: crate::rollout::driver::Nudge,
    /// The online TUF keys (timestamp, snapshot); the only TUF keys here.
    pub tuf_keys: crate::tuf::online::OnlineKeys,
}

impl Services {
    /// The wall clock, read only by the shells (handlers and sessions).
    pub fn now(&self) -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }
}

/// The bound sockets of a started controller.
pub struct Bound {
    pub api_addr: SocketAddr,
    pub quic_addr: SocketAddr,
}

/// Binds the QUIC endpoint with the data directory's stateless-reset key.
///
/// Because the key (and the connection-id key derived from it) survives
/// restarts, a restarted controller can tell agents
/// at once that their old connection is gone (a stateless reset), instead of
/// leaving them to wait out the idle timeout before reconnecting.
fn bind_quic(dir: &DataDir, config: &ControllerConfig) -> Result<quinn::Endpoint, ControllerError> {
    let addr = config.quic_addr();
    let socket = std::net::UdpSocket::bind(addr)
        .map_err(ControllerError::io("cannot bind QUIC endpoint on", addr.to_string()))?;
    match quic::transport::size_socket_buffers(&socket) {
        Ok(granted) if granted < quic::transport::MIN_SOCKET_BUFFER => warn!(
            granted,
            wanted = quic::transport::SOCKET_BUFFER,
            "the QUIC socket's receive buffer is smaller than wanted, so bursts from many agents may be dropped; \
             raise the kernel's cap: sysctl -w net.core.rmem_max={0} net.core.wmem_max={0}",
            quic::transport::SOCKET_BUFFER
        ),
        Ok(_) => {}
        Err(e) => warn!(error = %e, "cannot size the QUIC socket's buffers"),
    }
    let secret = dir.reset_key()?;
    let reset_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
    let mut endpoint_config = quinn::EndpointConfig::new(Arc::new(reset_key));
    // Connection ids carry a keyed check; the restarted endpoint must accept
    // its predecessor's ids, or it drops their packets instead of resetting.
    let cid_key = flotte_protocol::Sha256Digest::of(&[&secret[..], b"connection-id"].concat()).0;
    let cid_key = u64::from_le_bytes(cid_key[..8].try_into().unwrap_or_default());
    endpoint_config.cid_generator(move || Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key)));
    endpoint_config.min_reset_interval(quic::transport::MIN_RESET_INTERVAL);
    quinn::Endpoint::new(endpoint_config, Some(pki::quic_server_config(dir)?), socket, Arc::new(quinn::TokioRuntime))
        .map_err(ControllerError::io("cannot start QUIC endpoint on", addr.to_string()))
}

/// Starts the controller in `dir` and runs until `shutdown` resolves.
/// `on_bound` is called once both sockets are bound (tests and the lab use
/// it to learn port numbers when they asked for port 0).
pub async fn run(
    dir: DataDir,
    config: ControllerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(&Bound),
) -> Result<(), ControllerError> {
    dir.ensure_initialized()?;
    let store = Store::open(&dir.database())?;
    let (nudge, news) = crate::rollout::driver::channel();
    let services = Arc::new(Services {
        rollouts: nudge,
        store,
        content: ContentStore::new(dir.content()),
        content_cache: ChunkCache::new(ContentStore::new(dir.content()), config.content_cache_size),
        hub: Hub::new(),
        ca: Ca::load(&dir)?,
        config: config.clone(),
        tuf_keys: crate::tuf::online::OnlineKeys::load_or_create(&dir)?,
    });
    // Finishes an online-key rotation that a crash interrupted.
    crate::tuf::repository::adopt_online_keys(&services)?;

    let endpoint = bind_quic(&dir, &config)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(ControllerError::io("cannot bind API listener on", config.listen.to_string()))?;
    let bound = Bound {
        api_addr: listener.local_addr().map_err(ControllerError::io("cannot read address of", "API listener"))?,
        quic_addr: endpoint.local_addr().map_err(ControllerError::io("cannot read address of", "QUIC endpoint"))?,
    };
    info!(api = %bound.api_addr, quic = %bound.quic_addr, data = %dir.root().display(), "controller listening");
    on_bound(&bound);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tls = Arc::new(pki::https_server_config(&dir)?);
    let router = api::router(services.clone(), bound.quic_addr.port());
    let mut api_stop = stop_rx.clone();
    let api_task = tokio::spawn(api::serve::serve(listener, tls, router, async move {
        let _ = api_stop.changed().await;
    }));
    let mut driver_stop = stop_rx.clone();
    let driver_task = tokio::spawn(crate::rollout::driver::run(services.clone(), news, async move {
        let _ = driver_stop.changed().await;
    }));
    let mut tuf_stop = stop_rx.clone();
    let tuf_task = tokio::spawn(crate::tuf::repository::run_timer(services.clone(), async move {
        let _ = tuf_stop.changed().await;
    }));
    let mut quic_stop = stop_rx;
    let quic_task = tokio::spawn(quic::serve(endpoint.clone(), services, async move {
        let _ = quic_stop.changed().await;
    }));
    shutdown.await;
    info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = api_task.await;
    let _ = quic_task.await;
    let _ = driver_task.await;
    let _ = tuf_task.await;
    endpoint.wait_idle().await;
    Ok(())
}
