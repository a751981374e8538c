//! Crash hooks for the integration tests.
//!
//! With the `failpoints` cargo feature, [`hit`] aborts the process (as a
//! crash or `kill -9` would: no destructors, no flush, no goodbye to the
//! controller) when its name is listed in the `FLOTTE_FAILPOINT`
//! environment variable (comma-separated, e.g. `after:staged`). Without the
//! feature it compiles to nothing and the variable is never read, so a
//! release build (`cargo build --release -p flotte-agent`) carries no hook.
//!
//! Names used by the agent:
//! - `after:<checkpoint>`: right after a job record with that checkpoint
//!   was journaled (see `JobState::checkpoint`), before anything else;
//! - `rollback:switched`: inside a rollback, after the switch back and
//!   before the backup is restored.

/// The environment variable that arms hooks.
pub const ENV: &str = "FLOTTE_FAILPOINT";

/// Whether this build has crash hooks at all.
pub const ENABLED: bool = cfg!(feature = "failpoints");

/// Aborts the process if `name` is armed.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    use std::sync::OnceLock;
    static ARMED: OnceLock<Vec<String>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| {
        std::env::var(ENV)
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    });
    if armed.iter().any(|a| a == name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}

/// Aborts the process if `name` is armed (never, in this build).
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}
