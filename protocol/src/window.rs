//! Maintenance windows: `sat,sun 00:00-06:00 +01:00` — the days and local
//! hours in which a rollout may start waves (controller) and in which an
//! agent may carry out a required install that fell due by a deadline
//! (agent), at a fixed UTC offset. It lives in the protocol crate because
//! both sides evaluate it and it travels in [`crate::messages::Offer`].
//! Pure: every question takes the time as an argument.
//!
//! Guarantees:
//! - A window that can never open (no days, or an empty time range) is
//!   refused when parsed, with the reason.
//! - A range whose end is not after its start crosses midnight:
//!   `fri 22:00-06:00` is open from Friday 22:00 to Saturday 06:00.
//! - Offsets are fixed (`+01:00`, `-05:00`, `Z`). IANA zones (and so
//!   daylight-saving changes) would need a tz database crate; not yet.

use crate::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

const DAY_MS: i64 = 86_400_000;
const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Days and local hours in which waves may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Monday first.
    pub days: [bool; 7],
    /// Minutes after local midnight.
    pub start: u16,
    /// Minutes after local midnight; at or before `start`: the next day.
    pub end: u16,
    /// Local time minus UTC, in minutes.
    pub offset: i16,
}

/// Why a window was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("cannot parse window {0:?}; write days and hours like `sat,sun 00:00-06:00 +01:00`")]
    Syntax(String),
    #[error("unknown day {0:?}; use mon, tue, wed, thu, fri, sat, sun, ranges like mon-fri, or daily")]
    Day(String),
    #[error("bad time {0:?}; use HH:MM from 00:00 to 24:00")]
    Time(String),
    #[error("bad UTC offset {0:?}; use +HH:MM, -HH:MM or Z")]
    Offset(String),
    #[error("the window {0} never opens: its start and end are the same time")]
    NeverOpens(String),
}

fn day(name: &str) -> Result<usize, WindowError> {
    NAMES.iter().position(|d| *d == name).ok_or_else(|| WindowError::Day(name.into()))
}

fn minutes(s: &str) -> Result<u16, WindowError> {
    let bad = || WindowError::Time(s.into());
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 24 || m > 59 || (h == 24 && m > 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

fn offset(s: &str) -> Result<i16, WindowError> {
    let bad = || WindowError::Offset(s.into());
    let s = s.strip_prefix("UTC").unwrap_or(s);
    if s == "Z" || s.is_empty() {
        return Ok(0);
    }
    let sign = match s.as_bytes().first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return Err(bad()),
    };
    let m = minutes(&s[1..]).map_err(|_| bad())?;
    if m > 14 * 60 {
        return Err(bad());
    }
    Ok(sign * m as i16)
}

impl std::str::FromStr for Window {
    type Err = WindowError;

    /// `DAYS HH:MM-HH:MM [OFFSET]`; DAYS is `daily` or a comma list of days
    /// and day ranges (`mon-fri,sun`).
    fn from_str(spec: &str) -> Result<Self, WindowError> {
        let parts: Vec<&str> = spec.split_whitespace().collect();
        let (days_part, hours, off) = match parts.as_slice() {
            [d, h] => (*d, *h, 0),
            [d, h, o] => (*d, *h, offset(o)?),
            _ => return Err(WindowError::Syntax(spec.into())),
        };
        let mut days = [false; 7];
        for item in days_part.to_lowercase().split(',') {
            match item.split_once('-') {
                _ if item == "daily" => days = [true; 7],
                Some((a, b)) => {
                    let (a, b) = (day(a)?, day(b)?);
                    let mut d = a;
                    loop {
                        days[d] = true;
                        if d == b {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                }
                None => days[day(item)?] = true,
            }
        }
        let (start, end) = hours.split_once('-').ok_or_else(|| WindowError::Syntax(spec.into()))?;
        let (start, end) = (minutes(start)?, minutes(end)?);
        if start == end {
            return Err(WindowError::NeverOpens(spec.into()));
        }
        Ok(Window { days, start: start % 1440, end, offset: off })
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days: Vec<&str> = NAMES.iter().zip(self.days).filter(|(_, on)| *on).map(|(n, _)| *n).collect();
        let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        let (sign, off) = if self.offset < 0 { ('-', -self.offset) } else { ('+', self.offset) };
        write!(f, "{} {}-{} {sign}{:02}:{:02}", days.join(","), hm(self.start), hm(self.end), off / 60, off % 60)
    }
}

impl Window {
    /// Local milliseconds since the epoch.
    fn local(&self, t: Timestamp) -> i64 {
        t.as_unix_millis() as i64 + i64::from(self.offset) * 60_000
    }

    /// Length of one opening, in minutes.
    fn length(&self) -> i64 {
        let (s, e) = (i64::from(self.start), i64::from(self.end));
        if e > s { e - s } else { e + 1440 - s }
    }

    /// Local ms of the opening on local day `d` (days since the epoch).
    fn opening(&self, d: i64) -> i64 {
        d * DAY_MS + i64::from(self.start) * 60_000
    }

    fn opens_on(&self, d: i64) -> bool {
        // 1970-01-01 was a Thursday (index 3, Monday first).
        self.days[(d + 3).rem_euclid(7) as usize]
    }

    /// Whether waves may start at `t`.
    pub fn is_open(&self, t: Timestamp) -> bool {
        let local = self.local(t);
        let today = local.div_euclid(DAY_MS);
        // An opening yesterday may still be running (ranges cross midnight).
        [today - 1, today].into_iter().any(|d| {
            let open = self.opening(d);
            self.opens_on(d) && open <= local && local < open + self.length() * 60_000
        })
    }

    /// The next time at or after `t` at which the window is open.
    pub fn next_open(&self, t: Timestamp) -> Timestamp {
        if self.is_open(t) {
            return t;
        }
        let local = self.local(t);
        let today = local.div_euclid(DAY_MS);
        let next = (today..=today + 7)
            .map(|d| self.opening(d))
            .find(|&open| open > local && self.opens_on(open.div_euclid(DAY_MS)));
        // Parsing guarantees at least one day, so an opening is within a week.
        let local_next = next.unwrap_or(local + 7 * DAY_MS);
        let utc = local_next - i64::from(self.offset) * 60_000;
        Timestamp::from_unix_millis(u64::try_from(utc).unwrap_or(0))
    }
}

/// Checks that a window opens on at least one day.
pub fn check(w: &Window) -> Result<(), WindowError> {
    if w.days.iter().any(|d| *d) { Ok(()) } else { Err(WindowError::NeverOpens(w.to_string())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// UTC time from RFC 3339.
    fn t(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn windows_are_open_on_their_days_and_hours_in_their_offset() {
        // 2026-12-05 is a Saturday.
        let table: &[(&str, &str, bool)] = &[
            ("sat,sun 00:00-06:00", "2026-12-05T00:00:00Z", true),
            ("sat,sun 00:00-06:00", "2026-12-05T05:59:59Z", true),
            ("sat,sun 00:00-06:00", "2026-12-05T06:00:00Z", false),
            ("sat,sun 00:00-06:00", "2026-12-04T23:59:59Z", false),
            ("sat,sun 00:00-06:00", "2026-12-06T03:00:00Z", true),
            ("sat,sun 00:00-06:00", "2026-12-07T03:00:00Z", false),
            // +01:00: Saturday 00:00 local is Friday 23:00 UTC.
            ("sat,sun 00:00-06:00 +01:00", "2026-12-04T23:00:00Z", true),
            ("sat,sun 00:00-06:00 +01:00", "2026-12-05T05:30:00Z", false),
            // Across midnight: Friday 22:00 to Saturday 06:00.
            ("fri 22:00-06:00", "2026-12-04T21:59:00Z", false),
            ("fri 22:00-06:00", "2026-12-04T22:00:00Z", true),
            ("fri 22:00-06:00", "2026-12-05T05:00:00Z", true),
            ("fri 22:00-06:00", "2026-12-05T22:30:00Z", false),
            ("mon-fri 09:00-17:00 -05:00", "2026-12-07T14:00:00Z", true),
            ("mon-fri 09:00-17:00 -05:00", "2026-12-05T14:00:00Z", false),
            ("daily 00:00-24:00", "2026-12-05T12:00:00Z", true),
        ];
        for (spec, at, open) in table {
            let w: Window = spec.parse().unwrap();
            assert_eq!(w.is_open(t(at)), *open, "{spec} at {at}");
        }
    }

    #[test]
    fn a_closed_window_says_when_it_next_opens() {
        let table: &[(&str, &str, &str)] = &[
            // Friday afternoon: the weekend window opens at Saturday midnight.
            ("sat,sun 00:00-06:00", "2026-12-04T15:00:00Z", "2026-12-05T00:00:00Z"),
            // Saturday after the window: Sunday's opening.
            ("sat,sun 00:00-06:00", "2026-12-05T06:00:00Z", "2026-12-06T00:00:00Z"),
            // Sunday after the window: next Saturday.
            ("sat,sun 00:00-06:00", "2026-12-06T07:00:00Z", "2026-12-12T00:00:00Z"),
            ("sat,sun 00:00-06:00 +01:00", "2026-12-04T15:00:00Z", "2026-12-04T23:00:00Z"),
            // Open now: now.
            ("sat,sun 00:00-06:00", "2026-12-05T01:00:00Z", "2026-12-05T01:00:00Z"),
        ];
        for (spec, at, next) in table {
            let w: Window = spec.parse().unwrap();
            assert_eq!(w.next_open(t(at)), t(next), "{spec} after {at}");
        }
    }

    #[test]
    fn windows_that_never_open_or_do_not_parse_are_refused() {
        let table: &[(&str, &str)] = &[
            ("sat 06:00-06:00", "never opens"),
            ("sat,sun 00:00-24:00 +01:00", ""),
            ("caturday 00:00-06:00", "unknown day"),
            ("sat 25:00-06:00", "bad time"),
            ("sat 00:00-06:00 CET", "bad UTC offset"),
            ("sat", "cannot parse"),
        ];
        for (spec, reason) in table {
            match spec.parse::<Window>() {
                Ok(w) if reason.is_empty() => assert_eq!(check(&w), Ok(())),
                Ok(w) => panic!("{spec} parsed as {w}"),
                Err(e) => assert!(!reason.is_empty() && e.to_string().contains(reason), "{spec}: {e}"),
            }
        }
        let w: Window = "sat,sun 00:00-06:00 +01:00".parse().unwrap();
        assert_eq!(w.to_string(), "sat,sun 00:00-06:00 +01:00");
    }
}
