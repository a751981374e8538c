//! The Flotte controller: the server agents connect to, its storage, its
//! admin API, and the client library `flottectl` is built on.
//!
//! # Layout
//! - [`config`]: the controller's typed configuration (`controller.toml` + flags).
//! - [`datadir`]: what lives in the data directory, and `init`.
//! - [`pki`]: the controller's own CA, its server certificate, agent certificates,
//!   and the TLS configurations built from them.
//! - [`store`]: SQLite storage with migrations; the only authoritative state.
//! - [`content`]: content-addressed package storage on disk.
//! - [`secrets`]: random tokens and their stored hashes.
//! - [`hub`]: which agents are connected right now, and how to wake their sessions.
//! - [`quic`]: the QUIC endpoint: one session per agent connection, content streams.
//! - [`rollout`]: the pure rollout engine (waves, thresholds, soak, halts).
//! - [`tuf`]: the controller as a TUF repository (online roles, uploads, re-signing).
//! - [`api`]: the HTTPS/JSON admin and enrollment API.
//! - [`service`]: sd_notify (READY, WATCHDOG, STOPPING) for systemd.
//! - [`server`]: wires the above into one running controller.
//! - [`client`]: a blocking admin-API client, used by `flottectl`, the lab and tests.
//! - [`ctl`]: the `flottectl` commands.
//! - [`lab`]: real controller and agent processes on loopback: the lab and the test harness.
//! - [`error`]: the error enum of this crate.

pub mod api;
pub mod client;
pub mod config;
pub mod content;
pub mod ctl;
pub mod datadir;
pub mod error;
pub mod hub;
pub mod lab;
pub mod pki;
pub mod quic;
pub mod rollout;
pub mod secrets;
pub mod server;
pub mod service;
pub mod store;
pub mod tuf;

pub use error::ControllerError;
