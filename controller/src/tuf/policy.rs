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
//! - Roles signed offline (root, targets, delegated roles), which the
//!   controller cannot re-sign, are flagged from [`OFFLINE_WARNING`] before
//!   they expire ([`expiring`]), so an admin hears of it while agents still
//!   trust them.

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

/// How long before an offline-signed role expires the controller starts
/// warning (in its log, daily, and in `flottectl trust status`).
pub const OFFLINE_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);
/// How often the log repeats the warning about one role.
pub const WARNING_REPEAT: Duration = Duration::from_secs(24 * 3600);

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

/// An offline-signed role that expires within [`OFFLINE_WARNING`] of `now`
/// (or has expired).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiring {
    pub role: String,
    pub signed: Signed,
    /// Time left; zero once expired.
    pub left: Duration,
}

impl Expiring {
    /// What to tell the admin: what happens, and the command that helps.
    pub fn advice(&self) -> String {
        let fix = if self.role == flotte_protocol::tuf::ROOT {
            "sign the next root with `flottectl trust rotate` (the same keys may be given again)".to_string()
        } else {
            format!("re-sign it offline with `flottectl trust resign {} --key KEY`", self.role)
        };
        let when = if self.left.is_zero() {
            "has expired: agents refuse every update until it is re-signed".to_string()
        } else {
            format!("expires in {} days; agents refuse every update once it has", self.left.as_secs().div_ceil(86_400))
        };
        format!("{} v{} {when}; {fix}", self.role, self.signed.version)
    }
}

/// The offline-signed `roles` (root, targets, delegated roles, each with
/// its stored version and expiry) that expire within [`OFFLINE_WARNING`].
pub fn expiring(roles: &[(String, Signed)], now: Timestamp) -> Vec<Expiring> {
    roles
        .iter()
        .filter_map(|(role, signed)| {
            let left = signed.expires.saturating_since(now);
            (left < OFFLINE_WARNING).then(|| Expiring { role: role.clone(), signed: *signed, left })
        })
        .collect()
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

    #[test]
    fn offline_roles_are_flagged_from_thirty_days_before_they_expire() {
        let day = 24 * HOUR;
        let role = |name: &str, days: u32| {
            (name.to_string(), Signed { version: 2, expires: at(0).saturating_add(day * days) })
        };
        let roles = [role("root", 200), role("targets", 29), role("team-x", 31)];
        let flagged = expiring(&roles, at(0));
        assert_eq!(flagged.len(), 1, "{flagged:?}");
        assert_eq!((flagged[0].role.as_str(), flagged[0].left), ("targets", day * 29));
        let advice = flagged[0].advice();
        assert!(advice.contains("targets v2 expires in 29 days"), "{advice}");
        assert!(advice.contains("flottectl trust resign targets --key KEY"), "{advice}");

        let later = expiring(&roles, at(24 * 200));
        let root = later.iter().find(|e| e.role == "root").expect("root flagged once expired");
        assert!(root.left.is_zero());
        assert!(root.advice().contains("has expired") && root.advice().contains("trust rotate"), "{}", root.advice());
    }
}
