//! The download bandwidth limit (`download_bandwidth_limit` in agent.toml).
//!
//! [`Throttle`] is pure: it is told how many bytes arrived and when, and
//! answers how long to pause before reading more. Pausing the reader is
//! enough to slow the sender: QUIC flow control stops granting credit, so
//! the controller's stream waits instead of the agent buffering.
//!
//! Guarantees: over any interval, the bytes accepted are at most
//! `rate × interval + burst`, where the burst is a quarter second's worth of
//! the rate; an idle period earns no more than that burst.

use std::fmt;
use std::time::{Duration, Instant};

/// The credit an idle reader may save up, in time at the configured rate.
const BURST: Duration = Duration::from_millis(250);

/// A bandwidth in bytes per second, always above zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate(u64);

impl Rate {
    /// 1 KiB/s.
    pub const KIB_PER_SECOND: Rate = Rate(1024);

    pub fn bytes_per_second(self) -> u64 {
        self.0
    }

    /// Parses `"10 MiB/s"`, `"500KB/s"`, `"20 Mbit/s"`, `"1.5 GiB/s"`: a
    /// number, an optional space, a byte or bit unit, and `/s`.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let explain = || format!("{text:?} is not a bandwidth like \"10 MiB/s\" or \"20 Mbit/s\"");
        let per_second = text.trim().strip_suffix("/s").ok_or_else(explain)?;
        let split = per_second.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(explain)?;
        let (number, unit) = per_second.split_at(split);
        let number: f64 = number.parse().map_err(|_| explain())?;
        let bytes_per_unit = match unit.trim() {
            "B" => 1.0,
            "KB" | "kB" => 1e3,
            "MB" => 1e6,
            "GB" => 1e9,
            "KiB" => 1024.0,
            "MiB" => 1024.0 * 1024.0,
            "GiB" => 1024.0 * 1024.0 * 1024.0,
            "kbit" | "Kbit" => 1e3 / 8.0,
            "Mbit" => 1e6 / 8.0,
            "Gbit" => 1e9 / 8.0,
            _ => return Err(explain()),
        };
        let rate = (number * bytes_per_unit).floor();
        if !(1.0..=u64::MAX as f64).contains(&rate) {
            return Err(format!("{text:?} must be at least 1 B/s"));
        }
        Ok(Rate(rate as u64))
    }
}

impl Rate {
    /// Any measured rate (also below 1 B/s) in the units [`Rate`] displays in.
    pub fn describe(bytes_per_second: f64) -> String {
        const UNITS: [&str; 4] = ["B/s", "KiB/s", "MiB/s", "GiB/s"];
        let mut value = bytes_per_second.max(0.0);
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        if value.fract() == 0.0 { format!("{value} {}", UNITS[unit]) } else { format!("{value:.1} {}", UNITS[unit]) }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&Rate::describe(self.0 as f64))
    }
}

/// Paces one download to a [`Rate`].
#[derive(Debug, Clone)]
pub struct Throttle {
    rate: Rate,
    /// When the bytes accepted so far will have "drained" at the rate.
    drained_at: Option<Instant>,
}

impl Throttle {
    pub fn new(rate: Rate) -> Self {
        Throttle { rate, drained_at: None }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Accounts for `bytes` that arrived at `now` and returns how long the
    /// reader must pause before reading more (zero while within the burst).
    pub fn pause_after(&mut self, bytes: u64, now: Instant) -> Duration {
        let cost = Duration::from_secs_f64(bytes as f64 / self.rate.0 as f64);
        // An idle reader's credit is capped at the burst.
        let earliest = now.checked_sub(BURST).unwrap_or(now);
        let start = self.drained_at.map_or(earliest, |t| t.max(earliest));
        let drained_at = start + cost;
        self.drained_at = Some(drained_at);
        drained_at.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn bandwidths_are_read_in_byte_and_bit_units() {
        let cases = [
            ("10 MiB/s", 10 * MIB),
            ("500KB/s", 500_000),
            ("20 Mbit/s", 2_500_000),
            ("1.5 GiB/s", 3 * 512 * MIB),
            ("1 B/s", 1),
        ];
        for (text, bytes) in cases {
            assert_eq!(Rate::parse(text).map(Rate::bytes_per_second), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn nonsense_and_zero_bandwidths_are_refused_with_an_example() {
        for text in ["10 MiB", "fast/s", "0 MiB/s", "0.1 B/s", "-1 MiB/s", "10 parsecs/s", "/s"] {
            let err = Rate::parse(text).unwrap_err();
            assert!(err.contains(text), "{text}: {err}");
        }
    }

    #[test]
    fn rates_display_in_binary_units() {
        assert_eq!(Rate(10 * MIB).to_string(), "10 MiB/s");
        assert_eq!(Rate(1536).to_string(), "1.5 KiB/s");
        assert_eq!(Rate(100).to_string(), "100 B/s");
    }

    /// Reads `total` bytes in 64 KiB chunks as fast as the throttle allows
    /// and returns the simulated time it took.
    fn simulated_download(rate: Rate, total: u64, start: Instant) -> Duration {
        let mut throttle = Throttle::new(rate);
        let mut now = start;
        let mut remaining = total;
        while remaining > 0 {
            let chunk = remaining.min(64 * 1024);
            remaining -= chunk;
            now += throttle.pause_after(chunk, now);
        }
        now - start
    }

    #[test]
    fn a_long_download_averages_the_configured_rate() {
        let start = Instant::now() + Duration::from_secs(10);
        let took = simulated_download(Rate(MIB), 10 * MIB, start);
        // 10 MiB at 1 MiB/s, less at most the quarter-second burst.
        assert!(took >= Duration::from_millis(9_750) && took <= Duration::from_secs(10), "{took:?}");
    }

    #[test]
    fn idling_earns_no_more_than_the_burst() {
        let start = Instant::now() + Duration::from_secs(10);
        let mut throttle = Throttle::new(Rate(MIB));
        assert_eq!(throttle.pause_after(MIB / 8, start), Duration::ZERO, "an eighth of a second fits the burst");
        // After an hour of silence, a second's worth still costs 0.75 s.
        let later = start + Duration::from_secs(3600);
        let pause = throttle.pause_after(MIB, later);
        assert_eq!(pause, Duration::from_millis(750));
    }
}
