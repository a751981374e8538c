//! The agent's local socket: how end users (through the `flotte` CLI) see
//! the catalog and install or remove pull software.
//!
//! - [`wire`]: the requests and answers, in length-prefixed JSON frames
//!   with a size cap checked before any allocation (pure).
//! - [`policy`]: who may do what, from the `[pull]` section of the agent
//!   config and the caller's peer credentials (pure).
//! - [`peer`]: a caller's user name and groups, from its uid (NSS).
//! - [`server`]: the Unix socket listener; it authenticates every
//!   connection by `SO_PEERCRED`, applies the policy, and hands allowed
//!   requests to the agent's event loop.
//!
//! Guarantees: a caller is known only by what the kernel says about the
//! socket's peer, never by what it sends; a frame longer than
//! [`wire::MAX_FRAME`] closes the connection without being read; a refused
//! request changes nothing.

pub mod peer;
pub mod policy;
pub mod server;
pub mod wire;
