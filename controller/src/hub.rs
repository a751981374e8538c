//! Which agents are connected to this controller right now.
//!
//! The hub is a cache of live sessions, not state: who is assigned what lives
//! in the store. Waking a session only tells it to look at the store again,
//! so a lost wake-up costs latency, never correctness (sessions also look
//! when they start).

use flotte_protocol::AgentId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// A registered session; dropping it does not unregister (call
/// [`Hub::unregister`] with its token).
pub struct Registration {
    pub wake: Arc<Notify>,
    pub token: u64,
}

struct Session {
    wake: Arc<Notify>,
    token: u64,
    connection: quinn::Connection,
}

/// Live sessions by agent.
#[derive(Default)]
pub struct Hub {
    sessions: Mutex<HashMap<AgentId, Session>>,
    next_token: std::sync::atomic::AtomicU64,
}

impl Hub {
    pub fn new() -> Self {
        Self::default()
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<AgentId, Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a session. An older session of the same agent (a
    /// reconnect that beat the idle timeout) is closed.
    pub fn register(&self, agent: &AgentId, connection: quinn::Connection) -> Registration {
        let token = self.next_token.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let wake = Arc::new(Notify::new());
        let old = self.sessions().insert(agent.clone(), Session { wake: wake.clone(), token, connection });
        if let Some(old) = old {
            old.connection.close(quinn::VarInt::from_u32(0), b"superseded by a newer connection");
        }
        Registration { wake, token }
    }

    /// Removes the session if it is still the one registered under `token`.
    pub fn unregister(&self, agent: &AgentId, token: u64) {
        let mut sessions = self.sessions();
        if sessions.get(agent).is_some_and(|s| s.token == token) {
            sessions.remove(agent);
        }
    }

    /// Tells the agent's session, if any, to look for new assignments.
    pub fn wake(&self, agent: &AgentId) {
        if let Some(s) = self.sessions().get(agent) {
            s.wake.notify_one();
        }
    }

    pub fn is_online(&self, agent: &AgentId) -> bool {
        self.sessions().contains_key(agent)
    }

    pub fn online_count(&self) -> usize {
        self.sessions().len()
    }
}
