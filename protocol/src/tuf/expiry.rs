//! The `expires` field: `YYYY-MM-DDTHH:MM:SSZ`, UTC, whole seconds — the one
//! format python-tuf reads and writes. Parsing is strict (no offsets, no
//! fractions, real calendar dates), so two clients never disagree on when a
//! file expires. No clock is read here: callers compare with a `now` they
//! were given.

use crate::ids::Timestamp;

const SECS_PER_DAY: i64 = 86_400;

/// Parses `s`; `None` if it is not exactly that format. Dates before 1970
/// clamp to the epoch (they are long expired either way).
pub fn parse(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    // ASCII first: every byte offset below is then a character boundary.
    if !s.is_ascii()
        || b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let digits = &s[from..to];
        digits.bytes().all(|c| c.is_ascii_digit()).then(|| digits.parse().ok()).flatten()
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let secs = days_from_civil(year, month, day) * SECS_PER_DAY + hour * 3600 + minute * 60 + second;
    let ms = u64::try_from(secs).unwrap_or(0).saturating_mul(1000);
    Some(Timestamp::from_unix_millis(ms))
}

/// Formats `t` (rounded down to the second) as `expires` expects.
pub fn format(t: Timestamp) -> String {
    let secs = i64::try_from(t.as_unix_millis() / 1000).unwrap_or(i64::MAX / 2);
    let (days, rem) = (secs.div_euclid(SECS_PER_DAY), secs.rem_euclid(SECS_PER_DAY));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_agrees_with_rfc3339() {
        for s in ["1970-01-01T00:00:00Z", "2000-02-29T23:59:59Z", "2030-01-01T00:00:00Z", "2099-12-31T12:34:56Z"] {
            let t = parse(s).unwrap();
            assert_eq!(format(t), s);
            assert_eq!(Some(t), Timestamp::parse_rfc3339(s));
        }
    }

    #[test]
    fn anything_but_the_exact_format_is_refused() {
        for s in [
            "2030-01-01T00:00:00",
            "2030-01-01T00:00:00.5Z",
            "2030-01-01T00:00:00+00:00",
            "2030-01-01 00:00:00Z",
            "2030-02-30T00:00:00Z",
            "2031-02-29T00:00:00Z",
            "2030-13-01T00:00:00Z",
            "2030-01-01T24:00:00Z",
            "2030-01-01T00:00:60Z",
            "+030-01-01T00:00:00Z",
            "2030-01-01T00:00:é0Z",
            "2030-01-01T00:0é:00",
            "",
        ] {
            assert_eq!(parse(s), None, "{s}");
        }
    }
}
