//! Which agents are connected to this controller right now, and how to
//! reach their sessions.
//!
//! The hub is a cache of live sessions, not state: who is assigned what lives
//! in the store. Each session has a [`Mailbox`]. A rollout step that created
//! assignments drops each one, as it goes to the agent, into that agent's
//! mailbox ([`Hub::deliver`]), so a wave reaches N sessions without N store
//! queries; anything else only asks a session to look at the store again
//! ([`Hub::wake`]). Mail is sent after the store committed what it carries,
//! and a session reads the store when it starts, so mail that finds no
//! session (or a session that just ended) costs latency, never correctness.

use crate::store::Delivery;
use flotte_protocol::AgentId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// A registered session; dropping it does not unregister (call
/// [`Hub::unregister`] with its token).
pub struct Registration {
    pub mailbox: Arc<Mailbox>,
    pub token: u64,
}

/// What the hub hands one session: deliveries, and whether to look at the
/// store. Empty, it holds no heap memory (an idle agent costs its
/// session a few words here).
#[derive(Default)]
pub struct Mailbox {
    ready: Notify,
    mail: Mutex<Mail>,
}

/// The contents of a [`Mailbox`] since it was last emptied.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Mail {
    /// New assignments, as they go to the agent, oldest first.
    pub deliveries: Vec<Delivery>,
    /// Something changed that only the store can say (an aborted rollout's
    /// withdrawn offers, a wake-up of unknown cause): read it.
    pub look_at_store: bool,
}

impl Mailbox {
    fn mail(&self) -> MutexGuard<'_, Mail> {
        self.mail.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn post(&self, write: impl FnOnce(&mut Mail)) {
        write(&mut self.mail());
        self.ready.notify_one();
    }

    /// Waits until mail may have arrived since the last [`Mailbox::take`]
    /// (cancel-safe: a notification that finds no waiter is kept).
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Empties the mailbox.
    pub fn take(&self) -> Mail {
        std::mem::take(&mut *self.mail())
    }
}

struct Session {
    mailbox: Arc<Mailbox>,
    token: u64,
    /// `None` only for sessions registered by unit tests.
    connection: Option<quinn::Connection>,
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

    fn sessions(&self) -> MutexGuard<'_, HashMap<AgentId, Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a session. An older session of the same agent (a
    /// reconnect that beat the idle timeout) is closed.
    pub fn register(&self, agent: &AgentId, connection: quinn::Connection) -> Registration {
        self.register_session(agent, Some(connection))
    }

    fn register_session(&self, agent: &AgentId, connection: Option<quinn::Connection>) -> Registration {
        let token = self.next_token.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mailbox = Arc::new(Mailbox::default());
        let old = self.sessions().insert(agent.clone(), Session { mailbox: mailbox.clone(), token, connection });
        if let Some(old) = old.and_then(|s| s.connection) {
            old.close(quinn::VarInt::from_u32(0), b"superseded by a newer connection");
        }
        Registration { mailbox, token }
    }

    /// Removes the session if it is still the one registered under `token`.
    pub fn unregister(&self, agent: &AgentId, token: u64) {
        let mut sessions = self.sessions();
        if sessions.get(agent).is_some_and(|s| s.token == token) {
            sessions.remove(agent);
        }
    }

    /// Hands each committed delivery to its agent's session, if it has one.
    pub fn deliver<'a>(&self, deliveries: impl IntoIterator<Item = &'a (AgentId, Delivery)>) {
        let sessions = self.sessions();
        for (agent, delivery) in deliveries {
            if let Some(s) = sessions.get(agent) {
                s.mailbox.post(|mail| mail.deliveries.push(delivery.clone()));
            }
        }
    }

    /// Tells the agent's session, if any, to look at the store.
    pub fn wake(&self, agent: &AgentId) {
        if let Some(s) = self.sessions().get(agent) {
            s.mailbox.post(|mail| mail.look_at_store = true);
        }
    }

    pub fn is_online(&self, agent: &AgentId) -> bool {
        self.sessions().contains_key(agent)
    }

    pub fn online_count(&self) -> usize {
        self.sessions().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotte_protocol::messages::Assignment;
    use flotte_protocol::{AssignmentId, ReleaseRef, Timestamp};

    fn agent(id: &str) -> AgentId {
        AgentId(id.into())
    }

    fn assign(id: u64) -> Delivery {
        let release = ReleaseRef { name: "app".into(), version: "1.0".into() };
        Delivery::Assign(Assignment { id: AssignmentId(id), release, issued_at: Timestamp::from_unix_millis(0) })
    }

    impl Hub {
        fn register_detached(&self, agent: &AgentId) -> Registration {
            self.register_session(agent, None)
        }
    }

    #[tokio::test]
    async fn a_delivery_reaches_the_registered_session_in_its_mail() {
        let hub = Hub::new();
        let a = hub.register_detached(&agent("a"));
        hub.deliver(&[(agent("a"), assign(1)), (agent("a"), assign(2)), (agent("b"), assign(3))]);
        tokio::time::timeout(std::time::Duration::from_secs(5), a.mailbox.ready()).await.unwrap();
        assert_eq!(a.mailbox.take(), Mail { deliveries: vec![assign(1), assign(2)], look_at_store: false });
        assert_eq!(a.mailbox.take(), Mail::default(), "taking empties the mailbox");
    }

    #[test]
    fn a_wake_up_asks_the_session_to_look_at_the_store() {
        let hub = Hub::new();
        let a = hub.register_detached(&agent("a"));
        hub.wake(&agent("a"));
        hub.wake(&agent("nobody"));
        assert_eq!(a.mailbox.take(), Mail { deliveries: vec![], look_at_store: true });
    }

    #[test]
    fn mail_goes_to_the_newest_session_of_an_agent_only() {
        let hub = Hub::new();
        let old = hub.register_detached(&agent("a"));
        let new = hub.register_detached(&agent("a"));
        hub.unregister(&agent("a"), old.token);
        assert!(hub.is_online(&agent("a")), "the old session's end leaves the new one registered");
        hub.deliver(&[(agent("a"), assign(1))]);
        assert_eq!(old.mailbox.take(), Mail::default());
        assert_eq!(new.mailbox.take().deliveries, vec![assign(1)]);
        hub.unregister(&agent("a"), new.token);
        hub.deliver(&[(agent("a"), assign(2))]);
        assert_eq!(new.mailbox.take(), Mail::default(), "an unregistered session gets no more mail");
    }
}
