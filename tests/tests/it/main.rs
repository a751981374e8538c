//! Integration tests: a real controller and real agents, as separate
//! processes, over loopback QUIC and HTTPS. One test binary, one module per
//! area. Build the binaries first: `cargo build --workspace`.

mod agent_faults;
mod agent_window;
mod auth;
mod bench_smoke;
mod cli;
mod controller_config;
mod crash;
mod delivery;
mod faults;
mod inventory;
mod lab;
mod packaging;
mod pull;
mod quic_raw;
mod rollback;
mod rollouts;
mod service;
mod slow_retrieval;
mod transport;
mod tuf_interop;
mod verification;
