//! Handshake admission: how much handshake work the controller takes on at
//! once, so that a reconnect storm (a whole fleet after a controller
//! restart) or a flood of handshakes from one network finishes instead of
//! collapsing.
//!
//! Without a limit every incoming connection starts a handshake at once.
//! On a busy controller each then takes longer than the agents wait for it
//! (`flotte_agent::quic::CONNECT_TIMEOUT`); they give up and try again,
//! and the controller spends its CPU on handshakes nobody waits for any
//! more. With a limit, the controller finishes a bounded number quickly and
//! turns the rest away at once, cheaply, and agents come back after their
//! jittered backoff.
//!
//! Guarantees:
//! - At most `max_handshakes` handshakes are in flight ([`Admission::admit`]
//!   hands out a [`Slot`] per handshake, released when it is dropped).
//! - Beyond that, a connection attempt is refused at once (QUIC
//!   `CONNECTION_REFUSED`, no cryptography spent), never queued.
//! - From half the limit on, a client whose address QUIC has not validated
//!   yet is first asked to prove it (a stateless retry), so spoofed
//!   addresses cannot fill the slots.
//! - A handshake not finished within [`HANDSHAKE_TIMEOUT`] is abandoned: by
//!   then the agent has given up on it.
//!
//! [`decide`] is the pure rule; [`Admission`] counts slots.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Longest the controller works on one handshake: the agents' connect timeout.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What to do with one incoming connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Start the handshake.
    Accept,
    /// Ask the client to prove its address first (stateless retry).
    Retry,
    /// Turn it away now; it comes back after its backoff.
    Refuse,
}

/// The rule: `in_flight` handshakes are running, and QUIC has (or has not)
/// `validated` the client's address.
pub fn decide(in_flight: usize, max_handshakes: usize, validated: bool) -> Verdict {
    if in_flight >= max_handshakes {
        Verdict::Refuse
    } else if !validated && in_flight >= max_handshakes / 2 {
        Verdict::Retry
    } else {
        Verdict::Accept
    }
}

/// Handshakes in flight, against a limit.
#[derive(Debug, Clone)]
pub struct Admission {
    in_flight: Arc<AtomicUsize>,
    max_handshakes: usize,
}

/// One admitted handshake; the slot is free again when this is dropped.
#[derive(Debug)]
pub struct Slot {
    in_flight: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    pub fn new(max_handshakes: usize) -> Self {
        Admission { in_flight: Arc::new(AtomicUsize::new(0)), max_handshakes: max_handshakes.max(1) }
    }

    /// The verdict on one attempt, and a slot if it is accepted.
    pub fn admit(&self, validated: bool) -> (Verdict, Option<Slot>) {
        // Only the accept loop admits, so reading then adding does not race
        // with another admission; releases only make room.
        let verdict = decide(self.in_flight.load(Ordering::Acquire), self.max_handshakes, validated);
        if verdict != Verdict::Accept {
            return (verdict, None);
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        (verdict, Some(Slot { in_flight: Arc::clone(&self.in_flight) }))
    }

    /// Handshakes in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Verdict::{Accept, Refuse, Retry};

    #[test]
    fn attempts_are_accepted_then_address_checked_then_refused_as_handshakes_pile_up() {
        // (in flight, validated address, verdict) with a limit of 8.
        let table = [
            (0, false, Accept),
            (3, false, Accept),
            (4, false, Retry),
            (4, true, Accept),
            (7, true, Accept),
            (8, true, Refuse),
            (8, false, Refuse),
            (100, true, Refuse),
        ];
        for (in_flight, validated, verdict) in table {
            assert_eq!(decide(in_flight, 8, validated), verdict, "{in_flight} in flight, validated {validated}");
        }
    }

    #[test]
    fn a_slot_is_held_until_its_handshake_ends() {
        let admission = Admission::new(2);
        let (first, a) = admission.admit(true);
        let (second, b) = admission.admit(true);
        assert_eq!((first, second), (Accept, Accept));
        assert_eq!(admission.admit(true).0, Refuse, "both slots are taken");
        assert_eq!(admission.in_flight(), 2);
        drop(a);
        assert_eq!(admission.admit(true).0, Accept, "a finished handshake frees its slot");
        drop(b);
    }

    #[test]
    fn a_limit_of_zero_still_admits_one() {
        let admission = Admission::new(0);
        assert_eq!(admission.admit(true).0, Accept);
    }
}
