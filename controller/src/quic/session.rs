//! One agent connection: identify the agent by its certificate, exchange
//! `Hello`/`Welcome`, then push assignments and store reports until the
//! connection ends.
//!
//! Guarantees:
//! - The agent id comes from the certificate fingerprint, never from a
//!   message. A certificate from our CA that no enrolled agent holds is
//!   refused.
//! - A report is acknowledged only after the store has it durably.
//! - Every pending assignment is (re)sent at the start of each connection,
//!   so agents that were offline receive it when they return. While the
//!   session runs, new assignments arrive in its hub mailbox as they were
//!   committed (no store query); a wake-up without them reads the store.
//!   Each assignment is sent at most once per session.
//! - Both sides speak the newest protocol version they share
//!   ([`flotte_protocol::negotiate`]). Offers of pull rollouts go only to
//!   agents speaking [`OFFERS_SINCE`] or later; an older agent never sees
//!   them (it has no catalog to put them in), and gets a push with notice
//!   as a plain `Assign`.
//! - The offers of an aborted rollout are no longer delivered; agents that
//!   hold them get `Cancel` for each, so nobody installs them any more.

use super::frames;
use crate::hub::Mailbox;
use crate::pki::fingerprint;
use crate::server::Services;
use crate::store::AgentRecord;
use crate::store::Delivery;
use flotte_protocol::messages::{AgentMessage, ControllerMessage, OFFERS_SINCE, Welcome};
use flotte_protocol::{AssignmentId, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, Timestamp, negotiate};
use rustls::pki_types::CertificateDer;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// Application close codes.
pub mod close {
    use quinn::VarInt;
    pub const UNKNOWN_AGENT: VarInt = VarInt::from_u32(0x10);
    pub const PROTOCOL: VarInt = VarInt::from_u32(0x11);
    pub const INCOMPATIBLE: VarInt = VarInt::from_u32(0x12);
}

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// What one session has told its agent: each assignment is delivered, and
/// then withdrawn, at most once per session.
#[derive(Default)]
struct Sent {
    delivered: HashSet<AssignmentId>,
    withdrawn: HashSet<AssignmentId>,
}

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// Runs one connection to completion.
pub async fn run(connection: quinn::Connection, services: Arc<Services>) {
    let Some(agent) = identify(&connection, &services) else {
        connection.close(close::UNKNOWN_AGENT, b"certificate does not belong to an enrolled agent");
        return;
    };
    let remote = connection.remote_address();
    info!(agent = %agent.id, %remote, "agent connected");
    let registration = services.hub.register(&agent.id, connection.clone());
    if let Err(e) = converse(&connection, &agent, &services, &registration.mailbox).await {
        // An agent that stops or restarts closes with code 0: not an error.
        let clean_close = matches!(
            connection.close_reason(),
            Some(quinn::ConnectionError::ApplicationClosed(ref c)) if c.error_code == quinn::VarInt::from_u32(0)
        );
        if clean_close {
            info!(agent = %agent.id, "agent closed the connection");
        } else {
            warn!(agent = %agent.id, error = %e, "session ended with an error");
        }
    }
    services.hub.unregister(&agent.id, registration.token);
    let _ = services.store.touch_agent(&agent.id, now());
    info!(agent = %agent.id, "agent disconnected");
}

fn identify(connection: &quinn::Connection, services: &Services) -> Option<AgentRecord> {
    let identity = connection.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    let leaf = chain.first()?;
    services.store.agent_by_fingerprint(&fingerprint(leaf)).ok().flatten()
}

async fn converse(
    connection: &quinn::Connection,
    agent: &AgentRecord,
    services: &Arc<Services>,
    mailbox: &Mailbox,
) -> anyhow::Result<()> {
    let (mut send, mut recv) = tokio::time::timeout(HELLO_TIMEOUT, connection.accept_bi()).await??;
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, frames::read::<AgentMessage>(&mut recv, "control")).await?? {
        Some(AgentMessage::Hello(hello)) => hello,
        _ => {
            connection.close(close::PROTOCOL, b"expected Hello");
            anyhow::bail!("first control message was not Hello");
        }
    };
    let Some(version) = negotiate(hello.min_protocol_version, hello.protocol_version) else {
        let reason = format!(
            "agent speaks protocol {}..={}, controller speaks {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION}; upgrade the older side",
            hello.min_protocol_version, hello.protocol_version
        );
        frames::write(&mut send, &ControllerMessage::Refused { reason: reason.clone() }).await?;
        let _ = send.finish();
        connection.close(close::INCOMPATIBLE, reason.as_bytes());
        anyhow::bail!(reason);
    };
    // Changed facts (os, arch…) may now match a dynamic rollout target.
    // Unchanged, the agent is already in every rollout it matches: targets
    // are resolved over every enrolled agent, connected or not, when a
    // rollout is created, and again whenever facts or tags change. So a
    // reconnect storm costs no rollout work.
    if services.store.agent_connected(&agent.id, &hello, now())?
        && let Err(e) = crate::rollout::driver::join_matching(services, &agent.id, now())
    {
        tracing::warn!(agent = %agent.id, error = %e, "cannot join matching rollouts");
    }
    let welcome = Welcome { protocol_version: version, agent_id: agent.id.clone(), server_time: now() };
    frames::write(&mut send, &ControllerMessage::Welcome(welcome)).await?;

    // Reading happens in its own task: a frame read must never be cancelled
    // half-way by another branch of the select below. Messages are boxed:
    // the channel allocates a block of 32 slots up front, which at
    // `AgentMessage`'s inline size is several KiB per idle agent.
    let (messages_tx, mut messages) = mpsc::channel::<anyhow::Result<Box<AgentMessage>>>(16);
    tokio::spawn(async move {
        loop {
            let message = frames::read::<AgentMessage>(&mut recv, "control").await;
            let done = !matches!(message, Ok(Some(_)));
            let _ = messages_tx
                .send(
                    message
                        .map_err(Into::into)
                        .and_then(|m| m.map(Box::new).ok_or_else(|| anyhow::anyhow!("control stream finished"))),
                )
                .await;
            if done {
                break;
            }
        }
    });

    let mut sent = Sent::default();
    push_pending(&mut send, agent, services, version, &mut sent).await?;
    loop {
        tokio::select! {
            message = messages.recv() => {
                let Some(message) = message else { return Ok(()) };
                handle_message(*message?, &mut send, agent, services).await?;
            }
            () = mailbox.ready() => {
                let mail = mailbox.take();
                for delivery in mail.deliveries {
                    deliver(&mut send, agent, version, &mut sent, delivery).await?;
                }
                if mail.look_at_store {
                    push_pending(&mut send, agent, services, version, &mut sent).await?;
                }
            }
            stream = connection.accept_bi() => {
                let (content_send, content_recv) = stream?;
                let (services, id) = (services.clone(), agent.id.clone());
                tokio::spawn(async move {
                    if let Err(e) = super::content::serve(id.clone(), content_send, content_recv, services).await {
                        info!(agent = %id, error = %e, "content stream ended early");
                    }
                });
            }
        }
    }
}

async fn handle_message(
    message: AgentMessage,
    send: &mut quinn::SendStream,
    agent: &AgentRecord,
    services: &Services,
) -> anyhow::Result<()> {
    match message {
        AgentMessage::Hello(_) => anyhow::bail!("second Hello on one connection"),
        AgentMessage::Inventory(inventory) => {
            if services.store.update_inventory(&agent.id, &inventory)? {
                crate::rollout::driver::join_matching(services, &agent.id, now())?;
            }
        }
        AgentMessage::Report(report) => {
            let outcome = services.store.record_report(&agent.id, &report, now())?;
            if outcome == crate::store::ReportOutcome::Stored
                && let Some(rollout) = services.store.rollout_of_assignment(report.assignment.0)?
            {
                services.rollouts.rollout(rollout);
            }
            info!(agent = %agent.id, seq = report.seq, assignment = %report.assignment, state = report.state.name(), ?outcome, "report");
            // Duplicates are acked too: the agent resends until it hears an ack.
            frames::write(send, &ControllerMessage::Ack { seq: report.seq }).await?;
        }
    }
    Ok(())
}

async fn push_pending(
    send: &mut quinn::SendStream,
    agent: &AgentRecord,
    services: &Services,
    version: u16,
    sent: &mut Sent,
) -> anyhow::Result<()> {
    for delivery in services.store.pending_deliveries(&agent.id)? {
        deliver(send, agent, version, sent, delivery).await?;
    }
    if version >= OFFERS_SINCE {
        for id in services.store.withdrawn_offers(&agent.id)? {
            if sent.withdrawn.insert(id) {
                info!(agent = %agent.id, assignment = %id, "withdrawing the offer of an aborted rollout");
                frames::write(send, &ControllerMessage::Cancel { assignment: id }).await?;
            }
        }
    }
    Ok(())
}

/// Sends one delivery in the form the agent's protocol version takes,
/// unless this session sent it already, or withdrew it already (an offer
/// whose rollout was aborted between its commit and its mail).
async fn deliver(
    send: &mut quinn::SendStream,
    agent: &AgentRecord,
    version: u16,
    sent: &mut Sent,
    delivery: Delivery,
) -> anyhow::Result<()> {
    let id = delivery.id();
    if sent.withdrawn.contains(&id) {
        return Ok(());
    }
    let message = match delivery {
        Delivery::Assign(assignment) => ControllerMessage::Assign(assignment),
        Delivery::Offer(offer) if version >= OFFERS_SINCE => ControllerMessage::Offer(offer),
        // A version-1 agent cannot tell its users or let them defer, but
        // a push is required all the same.
        Delivery::Offer(offer) if offer.notice_secs.is_some() => {
            ControllerMessage::Assign(flotte_protocol::messages::Assignment {
                id,
                release: offer.release,
                issued_at: offer.issued_at,
            })
        }
        Delivery::Offer(_) => return Ok(()),
    };
    if sent.delivered.insert(id) {
        info!(agent = %agent.id, assignment = %id, kind = session_kind(&message), "delivering");
        frames::write(send, &message).await?;
    }
    Ok(())
}

fn session_kind(message: &ControllerMessage) -> &'static str {
    match message {
        ControllerMessage::Offer(_) => "offer",
        _ => "assignment",
    }
}
