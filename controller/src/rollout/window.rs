//! Maintenance windows, shared with the agent (which honours a rollout's
//! window when a pull offer's deadline makes it required): see
//! [`flotte_protocol::window`].

pub use flotte_protocol::window::{Window, WindowError, check};
