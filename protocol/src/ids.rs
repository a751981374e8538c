//! Identifiers and scalar types shared by every message.
//!
//! `Timestamp` is a plain value: nothing in this crate reads the clock. The
//! shells pass `now` in.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An agent's identity, assigned by the controller at enrollment. The
/// controller derives it from the client certificate of a connection, never
/// from a message field.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AgentId(pub String);

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One assignment of one release to one agent. Delivering the same id twice
/// must install once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AssignmentId(pub u64);

impl fmt::Display for AssignmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A point in time, in milliseconds since the Unix epoch (UTC).
///
/// On the binary wire it is an integer; in human-readable formats (the admin
/// API's JSON) it is an RFC 3339 string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The epoch itself.
    pub const EPOCH: Timestamp = Timestamp(0);

    pub const fn from_unix_millis(ms: u64) -> Self {
        Timestamp(ms)
    }

    pub const fn as_unix_millis(self) -> u64 {
        self.0
    }

    /// Converts a `SystemTime` that the shell read; times before the epoch
    /// clamp to the epoch.
    pub fn from_system_time(t: SystemTime) -> Self {
        let ms = t.duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        Timestamp(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }

    /// `self + d`, saturating.
    pub fn saturating_add(self, d: Duration) -> Self {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// RFC 3339 in UTC with millisecond precision, e.g. `2026-11-29T08:00:00.000Z`.
    pub fn to_rfc3339(self) -> String {
        humantime::format_rfc3339_millis(self.to_system_time()).to_string()
    }

    /// Parses an RFC 3339 UTC timestamp (`Z` suffix).
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        humantime::parse_rfc3339_weak(s).ok().map(Self::from_system_time)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() { s.serialize_str(&self.to_rfc3339()) } else { s.serialize_u64(self.0) }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            Timestamp::parse_rfc3339(&s)
                .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not an RFC 3339 timestamp")))
        } else {
            u64::deserialize(d).map(Timestamp)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_render_as_rfc3339_and_parse_back() {
        let t = Timestamp::from_unix_millis(1_795_939_200_123);
        assert_eq!(t.to_rfc3339(), "2026-11-29T08:00:00.123Z");
        assert_eq!(Timestamp::parse_rfc3339("2026-11-29T08:00:00.123Z"), Some(t));
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"2026-11-29T08:00:00.123Z\"");
    }

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_unix_millis(10);
        assert_eq!(t.saturating_since(Timestamp::from_unix_millis(20)), Duration::ZERO);
        assert_eq!(
            Timestamp::from_unix_millis(u64::MAX).saturating_add(Duration::from_secs(1)).as_unix_millis(),
            u64::MAX
        );
    }
}
