//! Reconnect delays: exponential backoff with full jitter.
//!
//! Guarantees: the n-th delay is uniformly drawn from `[0, min(cap, base·2ⁿ)]`,
//! so it never exceeds the cap, and a fleet that lost its controller at the
//! same instant does not come back in lockstep. Pure: the seed is passed in.

use std::time::Duration;

/// First ceiling.
pub const BASE: Duration = Duration::from_millis(200);
/// Largest ceiling.
pub const CAP: Duration = Duration::from_secs(30);

/// Delay generator for one reconnect loop.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// Failed attempts since the last success; sets the ceiling.
    attempt: u32,
    /// xorshift64 state; never zero.
    rng: u64,
}

impl Backoff {
    /// A generator seeded with any value (zero is replaced).
    pub fn new(seed: u64) -> Self {
        Backoff { attempt: 0, rng: seed | 1 }
    }

    /// A seed that differs between hosts and restarts: clock nanoseconds
    /// xor the process id.
    pub fn seed_from_environment() -> u64 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        nanos ^ (u64::from(std::process::id()) << 32 | u64::from(std::process::id()))
    }

    /// The ceiling of the next delay.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt).unwrap_or(u32::MAX);
        BASE.checked_mul(factor).map_or(CAP, |d| d.min(CAP))
    }

    /// The delay before the next attempt; raises the ceiling for the one after.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling().as_millis() as u64;
        self.attempt = self.attempt.saturating_add(1);
        Duration::from_millis(self.next_random() % (ceiling + 1))
    }

    /// Called after a successful connection: the next failure starts small again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_from_200ms_up_to_30s() {
        let mut b = Backoff::new(42);
        let mut ceilings = vec![];
        for _ in 0..12 {
            ceilings.push(b.ceiling().as_millis());
            let d = b.next_delay();
            assert!(d <= CAP);
        }
        assert_eq!(&ceilings[..5], &[200, 400, 800, 1600, 3200]);
        assert_eq!(*ceilings.last().unwrap(), 30_000);
        b.reset();
        assert_eq!(b.ceiling(), BASE);
    }

    #[test]
    fn delays_are_jittered_within_the_ceiling() {
        let mut b = Backoff::new(7);
        let delays: Vec<_> = (0..200).map(|_| b.next_delay()).collect();
        assert!(delays.iter().all(|d| *d <= CAP));
        let late = &delays[100..];
        assert!(late.iter().any(|d| *d != late[0]), "no jitter");
        assert!(late.iter().any(|d| *d < CAP / 2), "jitter is not full");
    }
}
