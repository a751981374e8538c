//! One connection to the controller: the handshake and the control stream.
//!
//! Guarantees:
//! - [`Session::open`] returns only after `Hello` was answered with a
//!   `Welcome` whose protocol version this agent speaks; `Refused` becomes
//!   [`AgentError::Refused`] carrying the controller's reason.
//! - [`Session::next`] is cancel-safe (a reader task owns the receive side),
//!   so it can sit in a `select!` without losing half-read frames.
//! - Every write is bounded in time, so a controller that stops reading
//!   cannot stall the agent.

use crate::error::{AgentError, Result};
use crate::quic;
use crate::wire;
use flotte_protocol::PROTOCOL_VERSION;
use flotte_protocol::messages::{AgentMessage, ControllerMessage, Hello, Welcome};
use quinn::{Connection, Endpoint, RecvStream, SendStream, VarInt};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::timeout;

/// How long the controller has to answer `Hello`.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one control message may take to be accepted by the controller.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long closing waits for the close to reach the controller.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// The oldest protocol version this agent speaks.
pub use flotte_protocol::MIN_PROTOCOL_VERSION;

/// A live, welcomed connection.
#[derive(Debug)]
pub struct Session {
    endpoint: Endpoint,
    connection: Connection,
    send: SendStream,
    /// Fed by the reader task; an `Err` is the last item.
    incoming: mpsc::Receiver<Result<ControllerMessage>>,
    /// The controller's answer to `Hello`.
    pub welcome: Welcome,
}

impl Session {
    /// Connects, opens the control stream, sends `hello` and waits for `Welcome`.
    pub async fn open(config: quinn::ClientConfig, host: String, port: u16, hello: Hello) -> Result<Session> {
        let (endpoint, connection) = quic::connect(&config, &host, port).await?;
        Self::handshake(endpoint, connection, hello).await
    }

    /// Opens the control stream on an established `connection` (made
    /// through `endpoint`), sends `hello` and waits for `Welcome`. The
    /// fleet simulator connects many agents through one shared endpoint.
    pub async fn handshake(endpoint: Endpoint, connection: Connection, hello: Hello) -> Result<Session> {
        let (mut send, mut recv) = connection
            .open_bi()
            .await
            .map_err(|e| AgentError::Stream { stream: "control", reason: format!("cannot open: {e}") })?;
        wire::write_frame(&mut send, &AgentMessage::Hello(hello), "control").await?;
        let answer = timeout(WELCOME_TIMEOUT, wire::read_frame::<ControllerMessage>(&mut recv, "control"))
            .await
            .map_err(|_| AgentError::Timeout { what: "Welcome" })??;
        let welcome = match answer {
            ControllerMessage::Welcome(w) => w,
            ControllerMessage::Refused { reason } => return Err(AgentError::Refused { reason }),
            other => return Err(AgentError::Unexpected { expected: "Welcome", got: kind(&other).into() }),
        };
        if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&welcome.protocol_version) {
            connection.close(VarInt::from_u32(0), b"unsupported protocol version");
            return Err(AgentError::Unexpected {
                expected: "a protocol version this agent speaks",
                got: welcome.protocol_version.to_string(),
            });
        }
        let (tx, incoming) = mpsc::channel(64);
        tokio::spawn(read_loop(recv, tx));
        Ok(Session { endpoint, connection, send, incoming, welcome })
    }

    /// The next controller message, or the error that ended the stream.
    pub async fn next(&mut self) -> Result<ControllerMessage> {
        match self.incoming.recv().await {
            Some(item) => item,
            None => Err(AgentError::Stream { stream: "control", reason: "reader stopped".into() }),
        }
    }

    /// Sends one message on the control stream.
    pub async fn send(&mut self, message: &AgentMessage) -> Result<()> {
        timeout(WRITE_TIMEOUT, wire::write_frame(&mut self.send, message, "control"))
            .await
            .map_err(|_| AgentError::Timeout { what: "the controller to accept a control message" })?
    }

    /// The connection, for content streams.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Closes the connection with code 0 (no error) and waits briefly for
    /// the close to reach the controller.
    pub async fn close(self, reason: &str) {
        self.connection.close(VarInt::from_u32(0), reason.as_bytes());
        let _ = timeout(CLOSE_TIMEOUT, self.endpoint.wait_idle()).await;
    }

    /// Gives up a broken session without waiting: closes with code 1 so a
    /// half-alive connection (e.g. a controller that stopped reading) does
    /// not linger behind the next one.
    pub fn abandon(self, reason: &str) {
        self.connection.close(VarInt::from_u32(1), reason.as_bytes());
    }
}

async fn read_loop(mut recv: RecvStream, tx: mpsc::Sender<Result<ControllerMessage>>) {
    loop {
        let item = wire::read_frame::<ControllerMessage>(&mut recv, "control").await;
        let failed = item.is_err();
        if tx.send(item).await.is_err() || failed {
            return;
        }
    }
}

/// A message's variant name, for errors and logs.
pub fn kind(message: &ControllerMessage) -> &'static str {
    match message {
        ControllerMessage::Welcome(_) => "Welcome",
        ControllerMessage::Refused { .. } => "Refused",
        ControllerMessage::Assign(_) => "Assign",
        ControllerMessage::Cancel { .. } => "Cancel",
        ControllerMessage::Ack { .. } => "Ack",
        ControllerMessage::Offer(_) => "Offer",
    }
}
