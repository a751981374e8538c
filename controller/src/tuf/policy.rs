//! When the controller re-signs its online roles. Pure: the state of the
//! stored snapshot and timestamp and `now` go in, a decision comes out.
//!
//! Guarantees:
//! - A role is re-signed once less than half of its lifetime is left, so an
//!   agent that refreshes at any moment sees metadata valid for at least
//!   half a lifetime, and a controller that misses a few timer ticks still
//!   re-signs long before anything expires.
//! - A new snapshot always comes with a new timestamp (the timestamp lists
//!   the snapshot's hash).

use flotte_protocol::Timestamp;
use std::time::Duration;

/// How long a fresh snapshot stays valid.
pub const SNAPSHOT_LIFETIME: Duration = Duration::from_secs(14 * 24 * 3600);
/// How long a fresh timestamp stays valid: the freeze window against an
/// attacker who can replay but not sign. Re-signed at half life, a served
/// timestamp has at least 36 h left, so an agent whose clock runs a day
/// ahead still accepts it.
pub const TIMESTAMP_LIFETIME: Duration = Duration::from_secs(3 * 24 * 3600);
/// How often the server checks whether something must be re-signed.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(60);

/// Version and expiry of one stored role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed {
    pub version: u64,
    pub expires: Timestamp,
}

/// What the repository holds now, as far as re-signing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnlineState {
    /// The stored snapshot, if any.
    pub snapshot: Option<Signed>,
    /// The stored timestamp, if any.
    pub timestamp: Option<Signed>,
    /// Targets or a delegated role changed (or root did) since the snapshot
    /// was signed.
    pub targets_changed: bool,
}

/// Which online roles to sign now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resign {
    pub snapshot: bool,
    pub timestamp: bool,
}

impl Resign {
    pub fn nothing(self) -> bool {
        !self.snapshot && !self.timestamp
    }
}

/// Decides what must be re-signed at `now`.
pub fn due(state: &OnlineState, now: Timestamp) -> Resign {
    let snapshot = state.targets_changed || stale(state.snapshot, SNAPSHOT_LIFETIME, now);
    let timestamp = snapshot || stale(state.timestamp, TIMESTAMP_LIFETIME, now);
    Resign { snapshot, timestamp }
}

/// Expiry of a role signed at `now`.
pub fn expiry(lifetime: Duration, now: Timestamp) -> Timestamp {
    now.saturating_add(lifetime)
}

fn stale(signed: Option<Signed>, lifetime: Duration, now: Timestamp) -> bool {
    signed.is_none_or(|s| s.expires.saturating_since(now) < lifetime / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn at(hours: u64) -> Timestamp {
        Timestamp::from_unix_millis(1_800_000_000_000).saturating_add(HOUR * hours as u32)
    }

    fn fresh(signed_at: u64) -> OnlineState {
        OnlineState {
            snapshot: Some(Signed { version: 3, expires: expiry(SNAPSHOT_LIFETIME, at(signed_at)) }),
            timestamp: Some(Signed { version: 5, expires: expiry(TIMESTAMP_LIFETIME, at(signed_at)) }),
            targets_changed: false,
        }
    }

    #[test]
    fn nothing_is_signed_while_both_roles_have_more_than_half_their_life() {
        assert!(due(&fresh(0), at(0)).nothing());
        assert!(due(&fresh(0), at(35)).nothing());
    }

    #[test]
    fn the_timestamp_is_resigned_past_half_its_life_and_alone() {
        assert_eq!(due(&fresh(0), at(37)), Resign { snapshot: false, timestamp: true });
    }

    #[test]
    fn the_snapshot_is_resigned_past_half_its_life_with_a_new_timestamp() {
        let mut state = fresh(0);
        state.timestamp = Some(Signed { version: 9, expires: expiry(TIMESTAMP_LIFETIME, at(169)) });
        assert_eq!(due(&state, at(167)), Resign::default());
        assert_eq!(due(&state, at(169)), Resign { snapshot: true, timestamp: true });
    }

    #[test]
    fn changed_targets_or_missing_roles_are_signed_at_once() {
        let changed = OnlineState { targets_changed: true, ..fresh(0) };
        assert_eq!(due(&changed, at(0)), Resign { snapshot: true, timestamp: true });
        let empty = OnlineState { snapshot: None, timestamp: None, targets_changed: false };
        assert_eq!(due(&empty, at(0)), Resign { snapshot: true, timestamp: true });
    }

    #[test]
    fn expired_roles_are_resigned() {
        assert_eq!(due(&fresh(0), at(24 * 30)), Resign { snapshot: true, timestamp: true });
    }
}
