//! The Flotte agent: enrolls a workstation, keeps a QUIC connection to the
//! controller, and installs the signed releases it is assigned.
//!
//! # Layout
//! Pure cores (no IO, no clock):
//! - [`job`]: one install job as a state machine (`handle` / `poll_action` /
//!   `poll_timeout`): verify, download, stage, preflight, backup, switch,
//!   detect, health probation, commit, rollback; the restart table and the
//!   loop guard (`job::JobState::on_restart`).
//! - [`jobs`]: all known assignments, duplicate detection, one-at-a-time queue.
//! - [`backoff`]: reconnect delays with full jitter.
//!
//! State on disk (everything under [`state_dir`], written through [`durable`]):
//! - [`enrollment`]: who the agent is and which keys it trusts.
//! - [`journal`]: one record per job, written before each side effect.
//! - [`outbox`]: reports until the controller acknowledges them.
//! - [`catalog`]: pull offers for end users, and what they installed.
//! - [`config`]: the settings of `flotte-agent run`.
//!
//! Shells (tokio, network, installers):
//! - [`enroll`]: the HTTPS enrollment exchange.
//! - [`identity`], [`quic`], [`session`], [`wire`]: TLS identity, QUIC client,
//!   Hello/Welcome and the framed control stream.
//! - [`download`]: resumable, size-capped content fetch.
//! - [`install`]: the install steps (stage, preflight, backup, switch,
//!   detect, health check, commit, roll back) through `flotte_installers`.
//! - [`quarantine`]: packages refused until an admin clears them.
//! - [`failpoint`]: crash hooks, compiled only with the `failpoints` feature.
//! - [`inventory`]: host facts for `Hello`.
//! - [`notify`]: desktop notifications before installs users did not ask for.
//! - [`local`]: the local socket for the end-user CLI `flotte` (peer
//!   credentials, pull policy, size-capped frames).
//! - [`runner`]: the event loop tying it together.
//! - [`service`]: the host's service manager behind one trait: registering
//!   the agent as a service, readiness, watchdog, stopping (systemd today).
//! - [`throttle`]: the download bandwidth limit (a pure pacer).
//! - [`slow_retrieval`]: when a download is too slow to go on (a pure guard:
//!   minimum average rate over a sliding window, and a read timeout).
//! - [`verify`], [`tuf_client`], [`tuf_store`]: releases verified through TUF
//!   (metadata over QUIC, the client workflow, the persisted trusted metadata).
//! - [`error`]: the error type of this crate.
//!
//! # Invariants
//! - Nothing is fetched or installed for a release that did not verify in
//!   this process; verified metadata is never read back from disk.
//! - Every file the agent keeps is replaced atomically and fsynced.
//! - Only `main` installs a tracing subscriber.

pub mod backoff;
pub mod catalog;
pub mod config;
pub mod download;
pub mod durable;
pub mod enroll;
pub mod enrollment;
pub mod error;
pub mod failpoint;
pub mod identity;
pub mod install;
pub mod inventory;
pub mod job;
pub mod jobs;
pub mod journal;
pub mod local;
pub mod notify;
pub mod outbox;
pub mod quarantine;
pub mod quic;
pub mod runner;
pub mod service;
pub mod session;
pub mod slow_retrieval;
pub mod state_dir;
pub mod throttle;
pub mod tuf_client;
pub mod tuf_store;
pub mod verify;
pub mod wire;

pub use config::AgentConfig;
pub use error::AgentError;
pub use runner::Agent;
