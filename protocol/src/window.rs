//! Maintenance windows: `sat,sun 00:00-06:00 Europe/Paris` — the days and
//! local hours in which a rollout may start waves (controller) and in which
//! an agent may carry out a required install that fell due by a deadline
//! (agent), in an IANA time zone or at a fixed UTC offset (`+01:00`, `Z`;
//! UTC when none is given). It lives in the protocol crate because both
//! sides evaluate it and it travels in [`crate::messages::Offer`].
//!
//! Guarantees:
//! - A window that can never open (no days, or an empty time range) or names
//!   a zone the tz database does not know is refused when parsed, with the
//!   reason.
//! - A range whose end is not after its start crosses midnight:
//!   `fri 22:00-06:00` is open from Friday 22:00 to Saturday 06:00.
//! - Local times follow the zone's daylight-saving rules: an opening is the
//!   instant the zone's clocks read the start time on that day. A time that
//!   falls in a spring-forward gap moves forward by the gap (02:30 becomes
//!   03:30); one that happens twice in the autumn is the first. A window can
//!   therefore be an hour shorter or longer on those nights, as its clock
//!   times say.
//! - Every question takes the time as an argument. The one thing read from
//!   outside is the tz database, immutable reference data: named zones come
//!   from the system's (`/usr/share/zoneinfo`, Debian package `tzdata`)
//!   through jiff, which caches them. This is the protocol crate's single,
//!   deliberate exception to "no files" (see ARCHITECTURE.md). The host's
//!   own zone is never read here: [`Window::parse_in_zone`] takes it as an
//!   argument (the agent passes jiff's system zone).
//! - A window without a zone or offset means UTC, everywhere the window
//!   value is read (rollout windows included); "the host's local time" is
//!   resolved once, when the agent reads its config, into a named zone.

use crate::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::{Offset, TimeZone};
use serde::{Deserialize, Serialize};
use std::fmt;

const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Days and local hours in which waves may start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Monday first.
    pub days: [bool; 7],
    /// Minutes after local midnight.
    pub start: u16,
    /// Minutes after local midnight; at or before `start`: the next day.
    pub end: u16,
    /// Local time minus UTC, in minutes; used when `zone` is `None`.
    pub offset: i16,
    /// An IANA zone name such as `Europe/Paris`; wins over `offset`.
    #[serde(default)]
    pub zone: Option<String>,
}

/// Why a window was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("cannot parse window {0:?}; write days and hours like `sat,sun 00:00-06:00 Europe/Paris`")]
    Syntax(String),
    #[error("unknown day {0:?}; use mon, tue, wed, thu, fri, sat, sun, ranges like mon-fri, or daily")]
    Day(String),
    #[error("bad time {0:?}; use HH:MM from 00:00 to 24:00")]
    Time(String),
    #[error("bad UTC offset {0:?}; use +HH:MM, -HH:MM or Z")]
    Offset(String),
    #[error("unknown time zone {zone:?} ({reason}); use an IANA name like Europe/Paris or an offset like +01:00")]
    Zone { zone: String, reason: String },
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

/// Whether the last word of a window names a zone rather than an offset.
fn looks_like_offset(s: &str) -> bool {
    s == "Z" || s.starts_with("UTC") || s.starts_with('+') || s.starts_with('-')
}

fn named_zone(name: &str) -> Result<TimeZone, WindowError> {
    TimeZone::get(name).map_err(|e| WindowError::Zone { zone: name.into(), reason: e.to_string() })
}

impl std::str::FromStr for Window {
    type Err = WindowError;

    /// `DAYS HH:MM-HH:MM [ZONE | OFFSET]`; DAYS is `daily` or a comma list of
    /// days and day ranges (`mon-fri,sun`).
    fn from_str(spec: &str) -> Result<Self, WindowError> {
        let parts: Vec<&str> = spec.split_whitespace().collect();
        let (days_part, hours, off, zone) = match parts.as_slice() {
            [d, h] => (*d, *h, 0, None),
            [d, h, o] if looks_like_offset(o) => (*d, *h, offset(o)?, None),
            [d, h, z] => {
                named_zone(z)?;
                (*d, *h, 0, Some(z.to_string()))
            }
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
        Ok(Window { days, start: start % 1440, end, offset: off, zone })
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days: Vec<&str> = NAMES.iter().zip(self.days).filter(|(_, on)| *on).map(|(n, _)| *n).collect();
        let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        write!(f, "{} {}-{} ", days.join(","), hm(self.start), hm(self.end))?;
        match &self.zone {
            Some(zone) => f.write_str(zone),
            None => {
                let (sign, off) = if self.offset < 0 { ('-', -self.offset) } else { ('+', self.offset) };
                write!(f, "{sign}{:02}:{:02}", off / 60, off % 60)
            }
        }
    }
}

impl Window {
    /// The zone local times are read in. A named zone that was valid when
    /// the window was parsed but is gone from the tz database now (tzdata
    /// removed) is read as UTC, loudly.
    fn time_zone(&self) -> TimeZone {
        match &self.zone {
            Some(name) => named_zone(name).unwrap_or_else(|e| {
                tracing::error!(error = %e, "maintenance window evaluated in UTC");
                TimeZone::UTC
            }),
            None => Offset::from_seconds(i32::from(self.offset) * 60).map(TimeZone::fixed).unwrap_or(TimeZone::UTC),
        }
    }

    /// The instant the zone's clocks read `minutes` after midnight of `date`
    /// (24:00 is the next midnight).
    fn instant(tz: &TimeZone, date: Date, minutes: u16) -> Option<i64> {
        let (date, minutes) = if minutes >= 1440 { (date.tomorrow().ok()?, minutes - 1440) } else { (date, minutes) };
        let local: DateTime = date.at((minutes / 60) as i8, (minutes % 60) as i8, 0, 0);
        tz.to_ambiguous_timestamp(local).compatible().ok().map(|t| t.as_millisecond())
    }

    /// The opening that starts on local `date`, as UTC milliseconds
    /// `[open, close)`, if the window opens that day.
    fn opening(&self, tz: &TimeZone, date: Date) -> Option<(i64, i64)> {
        if !self.days[date.weekday().to_monday_zero_offset() as usize] {
            return None;
        }
        let end = if self.end > self.start { self.end } else { self.end + 1440 };
        Some((Self::instant(tz, date, self.start)?, Self::instant(tz, date, end)?))
    }

    /// The local date at `t` and the instant itself in milliseconds.
    fn local_date(tz: &TimeZone, t: Timestamp) -> Option<(Date, i64)> {
        let ms = i64::try_from(t.as_unix_millis()).ok()?;
        let at = jiff::Timestamp::from_millisecond(ms).ok()?;
        Some((tz.to_datetime(at).date(), ms))
    }

    /// Whether waves may start at `t`.
    pub fn is_open(&self, t: Timestamp) -> bool {
        let tz = self.time_zone();
        let Some((today, now)) = Self::local_date(&tz, t) else { return false };
        // An opening yesterday may still be running (ranges cross midnight).
        [today.yesterday().ok(), Some(today)]
            .into_iter()
            .flatten()
            .filter_map(|d| self.opening(&tz, d))
            .any(|(open, close)| open <= now && now < close)
    }

    /// The next time at or after `t` at which the window is open.
    pub fn next_open(&self, t: Timestamp) -> Timestamp {
        if self.is_open(t) {
            return t;
        }
        let tz = self.time_zone();
        let Some((today, now)) = Self::local_date(&tz, t) else { return t };
        // Parsing guarantees at least one day, so an opening is within 8 days.
        let next = std::iter::successors(Some(today), |d| d.tomorrow().ok())
            .take(9)
            .filter_map(|d| self.opening(&tz, d))
            .map(|(open, _)| open)
            .find(|&open| open > now);
        let ms = next.unwrap_or(now + 7 * 86_400_000);
        Timestamp::from_unix_millis(u64::try_from(ms).unwrap_or(0))
    }
}

impl Window {
    /// Parses `spec` like [`str::parse`], except that a window given
    /// without a zone or offset is read in `local`, the host's time zone
    /// (the agent's `maintenance_window`). The window keeps the zone's IANA
    /// name, so it travels and prints like one written with it. A local zone
    /// without a usable name (a fixed offset, an unnamed `/etc/localtime`,
    /// UTC without tzdata) is kept as its offset if it has no
    /// daylight-saving rules, and refused otherwise.
    /// Rollout windows are parsed with [`str::parse`]: no zone there means UTC.
    pub fn parse_in_zone(spec: &str, local: &TimeZone) -> Result<Window, WindowError> {
        let mut window: Window = spec.parse()?;
        if spec.split_whitespace().count() == 2 {
            // A name the tz database cannot resolve (no tzdata) is no use later.
            match local.iana_name().filter(|name| named_zone(name).is_ok()) {
                Some(name) => window.zone = Some(name.to_string()),
                None => {
                    let offset = local.to_fixed_offset().map_err(|_| WindowError::Zone {
                        zone: "local".into(),
                        reason: "the host's time zone has no IANA name; name one".into(),
                    })?;
                    window.offset = i16::try_from(offset.seconds() / 60).unwrap_or(0);
                }
            }
        }
        Ok(window)
    }

    /// The earliest time at or after `t` at which every one of `windows` is
    /// open (`t` itself for none), or `None` if they do not overlap within
    /// two weeks (so never, as windows repeat weekly).
    pub fn next_open_all(windows: &[Window], t: Timestamp) -> Option<Timestamp> {
        let horizon = t.saturating_add(std::time::Duration::from_secs(15 * 86_400));
        let mut at = t;
        // Each round moves `at` to some window's next opening, never past
        // the earliest common one; there are few openings in two weeks.
        for _ in 0..256 {
            if at > horizon {
                return None;
            }
            if windows.iter().all(|w| w.is_open(at)) {
                return Some(at);
            }
            for w in windows {
                at = w.next_open(at);
            }
        }
        None
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
    fn named_zones_follow_their_daylight_saving_rules() {
        let paris = "sat,sun 00:00-06:00 Europe/Paris";
        let table: &[(&str, &str, bool)] = &[
            // Winter: +01:00, so Saturday midnight is Friday 23:00 UTC.
            (paris, "2026-12-04T22:59:59Z", false),
            (paris, "2026-12-04T23:00:00Z", true),
            (paris, "2026-12-05T04:59:59Z", true),
            (paris, "2026-12-05T05:00:00Z", false),
            // Summer: +02:00.
            (paris, "2026-07-03T22:00:00Z", true),
            (paris, "2026-07-04T03:59:59Z", true),
            (paris, "2026-07-04T04:00:00Z", false),
            ("mon-fri 09:00-17:00 America/New_York", "2026-12-07T14:00:00Z", true),
            ("mon-fri 09:00-17:00 America/New_York", "2026-07-06T13:00:00Z", true),
            ("mon-fri 09:00-17:00 America/New_York", "2026-07-06T12:59:00Z", false),
        ];
        for (spec, at, open) in table {
            let w: Window = spec.parse().unwrap();
            assert_eq!(w.is_open(t(at)), *open, "{spec} at {at}");
        }
    }

    #[test]
    fn openings_on_clock_change_nights_follow_the_local_clock() {
        let table: &[(&str, &str, &str)] = &[
            // 2026-03-29 02:30 does not exist in Paris: it is 03:30 CEST.
            ("sun 02:30-04:00 Europe/Paris", "2026-03-28T12:00:00Z", "2026-03-29T01:30:00Z"),
            // 2026-10-25 02:30 happens twice: the first, still CEST.
            ("sun 02:30-05:00 Europe/Paris", "2026-10-24T12:00:00Z", "2026-10-25T00:30:00Z"),
            // The weekend window opens an hour earlier in UTC in summer.
            ("sat,sun 00:00-06:00 Europe/Paris", "2026-07-01T12:00:00Z", "2026-07-03T22:00:00Z"),
        ];
        for (spec, at, next) in table {
            let w: Window = spec.parse().unwrap();
            assert_eq!(w.next_open(t(at)), t(next), "{spec} after {at}");
        }
        let w: Window = "sat,sun 00:00-06:00 Europe/Paris".parse().unwrap();
        assert_eq!(w.to_string(), "sat,sun 00:00-06:00 Europe/Paris");
        assert_eq!(w.to_string().parse::<Window>(), Ok(w));
    }

    #[test]
    fn windows_that_never_open_or_do_not_parse_are_refused() {
        let table: &[(&str, &str)] = &[
            ("sat 06:00-06:00", "never opens"),
            ("sat,sun 00:00-24:00 +01:00", ""),
            ("caturday 00:00-06:00", "unknown day"),
            ("sat 25:00-06:00", "bad time"),
            ("sat 00:00-06:00 +25:00", "bad UTC offset"),
            ("sat 00:00-06:00 Europe/Atlantis", "unknown time zone"),
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

    #[test]
    fn a_window_without_a_zone_can_be_read_in_the_local_zone() {
        let paris = TimeZone::get("Europe/Paris").unwrap();
        let w = Window::parse_in_zone("sat,sun 00:00-06:00", &paris).unwrap();
        assert_eq!(w.to_string(), "sat,sun 00:00-06:00 Europe/Paris");
        // A zone or offset that is given wins over the local zone.
        let w = Window::parse_in_zone("sat 00:00-06:00 +03:00", &paris).unwrap();
        assert_eq!(w.to_string(), "sat 00:00-06:00 +03:00");
        let w = Window::parse_in_zone("sat 00:00-06:00 America/New_York", &paris).unwrap();
        assert_eq!(w.zone.as_deref(), Some("America/New_York"));
        // A local zone without a name but with a fixed offset keeps the offset.
        let fixed = TimeZone::fixed(jiff::tz::offset(-5));
        let w = Window::parse_in_zone("sat 00:00-06:00", &fixed).unwrap();
        assert_eq!(w.to_string(), "sat 00:00-06:00 -05:00");
        assert!(Window::parse_in_zone("sat 06:00-06:00", &paris).is_err());
        // Without the local zone, no zone still means UTC (rollout windows).
        assert_eq!("sat 00:00-06:00".parse::<Window>().unwrap().to_string(), "sat 00:00-06:00 +00:00");
    }

    #[test]
    fn several_windows_open_together_at_their_first_common_instant() {
        let table: &[(&[&str], &str, Option<&str>)] = &[
            (&[], "2026-12-04T15:00:00Z", Some("2026-12-04T15:00:00Z")),
            (&["sat,sun 00:00-06:00"], "2026-12-04T15:00:00Z", Some("2026-12-05T00:00:00Z")),
            // The agent's weekend nights and the rollout's early mornings.
            (&["sat,sun 00:00-06:00", "daily 04:00-08:00"], "2026-12-04T15:00:00Z", Some("2026-12-05T04:00:00Z")),
            // Both open now: now.
            (&["sat,sun 00:00-06:00", "daily 04:00-08:00"], "2026-12-05T05:00:00Z", Some("2026-12-05T05:00:00Z")),
            // Saturday only, and Sunday only: never together.
            (&["sat 00:00-06:00", "sun 00:00-06:00"], "2026-12-04T15:00:00Z", None),
        ];
        for (specs, at, expected) in table {
            let windows: Vec<Window> = specs.iter().map(|s| s.parse().unwrap()).collect();
            assert_eq!(Window::next_open_all(&windows, t(at)), expected.map(t), "{specs:?} after {at}");
        }
    }
}
