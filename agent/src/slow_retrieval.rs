//! The slow-retrieval guard of a content download (TUF's "slow retrieval
//! attack": a controller, or anyone on the path who can only delay packets,
//! drips bytes to hold a job forever).
//!
//! [`RateGuard`] is pure: it is told how many bytes arrived and when
//! ([`RateGuard::record`]), and answers when the transfer must be given up
//! if nothing more arrives ([`RateGuard::deadline`]) and whether it is too
//! slow at a given instant ([`RateGuard::check`]). Two rules, whichever
//! fires first:
//! - **Per read:** no byte for [`READ_TIMEOUT`] (a stalled stream).
//! - **Minimum average rate** ([`MinRate`], `download_min_rate` over
//!   `download_min_rate_window` in agent.toml): once a whole window has
//!   passed since the request (the grace period, which covers the round
//!   trips before the first byte), the bytes of the last window must average
//!   at least the rate. This is old python-tuf's `MIN_AVERAGE_DOWNLOAD_SPEED`
//!   over a sliding window, so a transfer that started fast and then slowed
//!   to a drip is given up too.
//!
//! Guarantees:
//! - A sender that keeps every window's average at or above the rate and
//!   never pauses for [`READ_TIMEOUT`] is never given up.
//! - One that falls below is given up at most a window and one bucket
//!   ([`BUCKETS`] to a window) after it fell below: the window is counted
//!   in whole buckets, leniently.
//! - [`RateGuard::check`] fails exactly when `now` has reached
//!   [`RateGuard::deadline`], so a reader that waits until the deadline and
//!   checks never spins.
//! - Memory is bounded: at most [`BUCKETS`] + 1 buckets are kept.

use crate::throttle::Rate;
use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

/// Longest wait for the next byte, whatever the rate rule says.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Buckets a window is counted in.
pub const BUCKETS: u32 = 20;

/// The slowest average a download may keep up, over `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinRate {
    pub rate: Rate,
    pub window: Duration,
}

impl MinRate {
    /// 1 KiB/s over a minute: far below any working link (a 100 MiB package
    /// at that rate takes 28 hours), far above a drip of one byte every few
    /// seconds, and a minute rides out a short outage or a congestion stall.
    pub const DEFAULT: MinRate = MinRate { rate: Rate::KIB_PER_SECOND, window: Duration::from_secs(60) };
}

impl Default for MinRate {
    fn default() -> Self {
        MinRate::DEFAULT
    }
}

/// Why a transfer was given up. Its text starts with "slow retrieval".
#[derive(Debug, Clone, PartialEq)]
pub enum TooSlow {
    /// No byte for [`READ_TIMEOUT`].
    Stalled { silent: Duration },
    /// The last window averaged less than the minimum.
    BelowMinimum { seen_bytes_per_second: f64, min: MinRate },
}

impl fmt::Display for TooSlow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TooSlow::Stalled { silent } => {
                write!(f, "slow retrieval: no data for {}", humantime::format_duration(round_ms(*silent)))
            }
            TooSlow::BelowMinimum { seen_bytes_per_second, min } => write!(
                f,
                "slow retrieval: {} over the last {}, below the minimum of {} (download_min_rate)",
                Rate::describe(*seen_bytes_per_second),
                humantime::format_duration(min.window),
                min.rate,
            ),
        }
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// Watches one transfer, from the moment its request is sent.
#[derive(Debug, Clone)]
pub struct RateGuard {
    min: MinRate,
    started: Instant,
    /// `window / BUCKETS`, at least a nanosecond.
    bucket: Duration,
    /// (bucket index since `started`, bytes), oldest first, none empty.
    buckets: VecDeque<(u64, u64)>,
    /// When the last byte (or the request) was seen.
    last_progress: Instant,
}

impl RateGuard {
    pub fn new(min: MinRate, now: Instant) -> Self {
        let bucket = (min.window / BUCKETS).max(Duration::from_nanos(1));
        RateGuard { min, started: now, bucket, buckets: VecDeque::new(), last_progress: now }
    }

    /// Accounts for `bytes` that arrived at `now`.
    pub fn record(&mut self, bytes: u64, now: Instant) {
        if bytes == 0 {
            return;
        }
        self.last_progress = self.last_progress.max(now);
        let index = self.index(now);
        match self.buckets.back_mut() {
            Some((last, sum)) if *last >= index => *sum += bytes,
            _ => self.buckets.push_back((index, bytes)),
        }
        // Buckets that left the window for good.
        while self.buckets.front().is_some_and(|&(i, _)| i + u64::from(BUCKETS) < index) {
            self.buckets.pop_front();
        }
    }

    /// The instant at which the transfer is too slow if no byte arrives
    /// before it.
    pub fn deadline(&self) -> Instant {
        self.stall_deadline().min(self.rate_deadline())
    }

    /// `Err` once `now` reached [`RateGuard::deadline`], naming the rule.
    pub fn check(&self, now: Instant) -> Result<(), TooSlow> {
        if now < self.deadline() {
            return Ok(());
        }
        if now >= self.stall_deadline() {
            return Err(TooSlow::Stalled { silent: now.saturating_duration_since(self.last_progress) });
        }
        let seen = self.bytes_in_window(now) as f64 / self.min.window.as_secs_f64();
        Err(TooSlow::BelowMinimum { seen_bytes_per_second: seen, min: self.min })
    }

    fn stall_deadline(&self) -> Instant {
        self.last_progress + READ_TIMEOUT
    }

    /// The first instant after the grace period at which, without more
    /// bytes, the counted window holds less than the minimum.
    fn rate_deadline(&self) -> Instant {
        let needed = self.min.rate.bytes_per_second() as f64 * self.min.window.as_secs_f64();
        let grace_end = self.started + self.min.window;
        let mut remaining: u64 = self.buckets.iter().map(|&(_, b)| b).sum();
        // Bucket `i` is counted until the index passes `i + BUCKETS`.
        let mut at = grace_end;
        for &(index, bytes) in &self.buckets {
            if (remaining as f64) < needed {
                break;
            }
            remaining -= bytes;
            at = self.bucket_start(index + u64::from(BUCKETS) + 1);
        }
        at.max(grace_end)
    }

    fn bytes_in_window(&self, now: Instant) -> u64 {
        let index = self.index(now);
        self.buckets.iter().filter(|&&(i, _)| i + u64::from(BUCKETS) >= index).map(|&(_, b)| b).sum()
    }

    fn index(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.started);
        (elapsed.as_nanos() / self.bucket.as_nanos()) as u64
    }

    fn bucket_start(&self, index: u64) -> Instant {
        let nanos = self.bucket.as_nanos().saturating_mul(u128::from(index));
        self.started + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;

    fn min(rate_kib: u64, window_secs: u64) -> MinRate {
        MinRate { rate: Rate::parse(&format!("{rate_kib} KiB/s")).unwrap(), window: Duration::from_secs(window_secs) }
    }

    /// Feeds `bytes_per_tick` every `tick` until the guard gives up or
    /// `limit` passes; returns when it gave up (time since the start) and why.
    fn run(
        guard: &mut RateGuard,
        start: Instant,
        tick: Duration,
        bytes_per_tick: u64,
        limit: Duration,
    ) -> Option<(Duration, TooSlow)> {
        let mut now = start;
        while now - start < limit {
            let next = now + tick;
            if guard.deadline() <= next {
                let at = guard.deadline().max(now);
                return guard.check(at).err().map(|e| (at - start, e));
            }
            now = next;
            guard.record(bytes_per_tick, now);
            if let Err(e) = guard.check(now) {
                return Some((now - start, e));
            }
        }
        None
    }

    #[test]
    fn a_transfer_at_the_minimum_rate_or_above_is_never_given_up() {
        let start = Instant::now();
        // 64 KiB/s over 2 s, fed 1 KiB every 15 ms (about 66.7 KiB/s) for ten minutes.
        let mut guard = RateGuard::new(min(64, 2), start);
        let gave_up = run(&mut guard, start, Duration::from_millis(15), KIB, Duration::from_secs(600));
        assert_eq!(gave_up, None);
    }

    #[test]
    fn a_drip_is_given_up_after_the_grace_window_naming_rate_minimum_and_window() {
        let start = Instant::now();
        let mut guard = RateGuard::new(MinRate::DEFAULT, start);
        // One byte every 10 s: the threats table's slow retrieval.
        let (at, why) = run(&mut guard, start, Duration::from_secs(10), 1, Duration::from_secs(3600)).unwrap();
        assert!(at >= Duration::from_secs(60) && at <= Duration::from_secs(63), "{at:?}");
        let text = why.to_string();
        assert!(matches!(why, TooSlow::BelowMinimum { .. }), "{why:?}");
        assert!(text.starts_with("slow retrieval: "), "{text}");
        assert!(text.contains("0.1 B/s over the last 1m") && text.contains("minimum of 1 KiB/s"), "{text}");
    }

    #[test]
    fn nothing_is_given_up_during_the_grace_window_even_without_bytes() {
        let start = Instant::now();
        let guard = RateGuard::new(min(64, 2), start);
        assert_eq!(guard.check(start + Duration::from_millis(1999)), Ok(()));
        assert_eq!(guard.deadline(), start + Duration::from_secs(2));
        assert!(matches!(guard.check(start + Duration::from_secs(2)), Err(TooSlow::BelowMinimum { .. })));
    }

    #[test]
    fn a_fast_start_that_slows_to_a_drip_is_given_up_about_a_window_later() {
        let start = Instant::now();
        let mut guard = RateGuard::new(min(64, 2), start);
        // 10 MiB in the first second, then nothing.
        guard.record(10 * 1024 * KIB, start + Duration::from_secs(1));
        let deadline = guard.deadline();
        let since_burst = deadline - (start + Duration::from_secs(1));
        assert!(since_burst >= Duration::from_secs(2) && since_burst <= Duration::from_millis(2100), "{since_burst:?}");
        assert_eq!(guard.check(deadline - Duration::from_millis(1)), Ok(()));
        let Err(TooSlow::BelowMinimum { seen_bytes_per_second, .. }) = guard.check(deadline) else {
            panic!("the rate rule fires at its deadline")
        };
        assert_eq!(seen_bytes_per_second, 0.0);
    }

    #[test]
    fn a_stall_is_given_up_after_the_read_timeout_even_with_a_long_window() {
        let start = Instant::now();
        let mut guard =
            RateGuard::new(MinRate { rate: Rate::KIB_PER_SECOND, window: Duration::from_secs(3600) }, start);
        guard.record(100 * 1024 * KIB, start + Duration::from_secs(1));
        assert_eq!(guard.deadline(), start + Duration::from_secs(1) + READ_TIMEOUT);
        let why = guard.check(guard.deadline()).unwrap_err();
        assert_eq!(why, TooSlow::Stalled { silent: READ_TIMEOUT });
        assert_eq!(why.to_string(), "slow retrieval: no data for 1m");
    }

    #[test]
    fn check_fails_exactly_from_the_deadline_on() {
        let start = Instant::now();
        let mut guard = RateGuard::new(min(1, 10), start);
        for (at_ms, bytes) in [(500, 20_000), (4_000, 1_000), (11_000, 20_000)] {
            guard.record(bytes, start + Duration::from_millis(at_ms));
        }
        let deadline = guard.deadline();
        // The last 20 000 bytes (at 11 s) keep the window above 10 KiB until they leave it.
        assert_eq!(deadline, start + Duration::from_millis(21_500));
        assert_eq!(guard.check(deadline - Duration::from_nanos(1)), Ok(()));
        assert!(guard.check(deadline).is_err());
    }

    #[test]
    fn memory_stays_bounded_however_many_reads() {
        let start = Instant::now();
        let mut guard = RateGuard::new(min(1, 1), start);
        for ms in 0..100_000 {
            guard.record(100, start + Duration::from_millis(ms));
        }
        assert!(guard.buckets.len() <= BUCKETS as usize + 1, "{}", guard.buckets.len());
    }
}
