//! Handshake admission: how much handshake work the controller takes on at
//! once, so that a reconnect storm (a whole fleet after a controller
//! restart) or a flood of handshakes from one network finishes instead of
//! collapsing, and finishes as fast as the CPU allows.
//!
//! Without a limit every incoming connection starts a handshake at once.
//! On a busy controller each then takes longer than the agents wait for it
//! (`flotte_agent::quic::CONNECT_TIMEOUT`); they give up and try again,
//! and the controller spends its CPU on handshakes nobody waits for any
//! more. With a limit, the controller works on a bounded number at once.
//! Attempts beyond it wait their turn in a bounded waiting room, where they
//! cost a buffered datagram and no cryptography. Only when the room is full,
//! or an attempt has waited [`MAX_WAIT`], is it turned away, and its agent
//! comes back after its jittered backoff. Refusing at once instead leaves the
//! CPU idle while refused agents sit out backoffs that grow to 30 s
//! (measured: `flotte-bench scale`, docs/BENCHMARKS.md).
//!
//! Guarantees:
//! - At most `max_handshakes` handshakes are in flight ([`Admission::admit`]
//!   hands out a [`Slot`] per handshake, released when it is dropped).
//! - At most [`WAITING_PER_SLOT`] × `max_handshakes` attempts wait, in
//!   arrival order ([`WaitingRoom`]); none waits longer than [`MAX_WAIT`], so
//!   its handshake can still finish before the agent gives up.
//! - Beyond that, a connection attempt is refused at once (QUIC
//!   `CONNECTION_REFUSED`, no cryptography spent).
//! - From half the limit on, a client whose address QUIC has not validated
//!   yet is first asked to prove it (a stateless retry), so spoofed
//!   addresses can neither fill the slots nor the waiting room.
//! - A handshake not finished within [`HANDSHAKE_TIMEOUT`] of the attempt's
//!   arrival is abandoned: by then the agent has given up on it.
//!
//! [`decide`] is the pure rule, [`WaitingRoom`] the pure queue (time is
//! passed in); [`Admission`] counts slots.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Longest the controller works on one attempt, from its arrival: the
/// agents' connect timeout.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest an attempt waits for a slot. Half the agents' connect timeout,
/// so the handshake has the other half.
pub const MAX_WAIT: Duration = Duration::from_secs(5);

/// Attempts that may wait, per handshake slot.
pub const WAITING_PER_SLOT: usize = 16;

/// What to do with one incoming connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Start the handshake.
    Accept,
    /// Ask the client to prove its address first (stateless retry).
    Retry,
    /// Keep it in the waiting room until a slot is free.
    Wait,
    /// Turn it away now; it comes back after its backoff.
    Refuse,
}

/// The rule: `in_flight` handshakes are running, `waiting` attempts wait
/// for a slot, and QUIC has (or has not) `validated` the client's address.
/// Attempts are served in arrival order: nobody overtakes the waiting room.
pub fn decide(in_flight: usize, waiting: usize, max_handshakes: usize, validated: bool) -> Verdict {
    let busy = in_flight + waiting;
    if !validated && busy >= max_handshakes / 2 {
        Verdict::Retry
    } else if busy < max_handshakes {
        Verdict::Accept
    } else if waiting < WAITING_PER_SLOT * max_handshakes {
        Verdict::Wait
    } else {
        Verdict::Refuse
    }
}

/// Handshakes in flight, against a limit.
#[derive(Debug, Clone)]
pub struct Admission {
    in_flight: Arc<AtomicUsize>,
    freed: Arc<Notify>,
    max_handshakes: usize,
}

/// One admitted handshake; the slot is free again when this is dropped.
#[derive(Debug)]
pub struct Slot {
    in_flight: Arc<AtomicUsize>,
    freed: Arc<Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.freed.notify_one();
    }
}

impl Admission {
    pub fn new(max_handshakes: usize) -> Self {
        Admission {
            in_flight: Arc::new(AtomicUsize::new(0)),
            freed: Arc::new(Notify::new()),
            max_handshakes: max_handshakes.max(1),
        }
    }

    /// The verdict on one attempt while `waiting` others wait: a slot if it
    /// is accepted, otherwise what to do with it instead.
    pub fn admit(&self, validated: bool, waiting: usize) -> Result<Slot, Verdict> {
        // Only the accept loop admits, so reading then adding does not race
        // with another admission; releases only make room.
        match decide(self.in_flight(), waiting, self.max_handshakes, validated) {
            Verdict::Accept => Ok(self.take()),
            other => Err(other),
        }
    }

    /// A slot for the attempt at the head of the waiting room, if one is free.
    pub fn slot_for_waiting(&self) -> Option<Slot> {
        (self.in_flight() < self.max_handshakes).then(|| self.take())
    }

    /// Resolves after a slot has been released (at once if one was
    /// released since the last call).
    pub async fn freed(&self) {
        self.freed.notified().await
    }

    /// Handshakes in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    fn take(&self) -> Slot {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Slot { in_flight: Arc::clone(&self.in_flight), freed: Arc::clone(&self.freed) }
    }
}

/// Attempts waiting for a handshake slot, oldest first, each with its
/// arrival time. Pure: every method that depends on time takes `now`.
#[derive(Debug)]
pub struct WaitingRoom<T> {
    queue: VecDeque<(Instant, T)>,
    max_wait: Duration,
}

impl<T> WaitingRoom<T> {
    pub fn new(max_wait: Duration) -> Self {
        WaitingRoom { queue: VecDeque::new(), max_wait }
    }

    /// Lets `attempt`, arrived at `arrived`, wait behind the others.
    pub fn enter(&mut self, arrived: Instant, attempt: T) {
        self.queue.push_back((arrived, attempt));
    }

    /// The attempts that have waited longer than the limit at `now`, oldest first.
    pub fn expired(&mut self, now: Instant) -> Vec<T> {
        let mut expired = Vec::new();
        while self.queue.front().is_some_and(|(arrived, _)| now.saturating_duration_since(*arrived) > self.max_wait) {
            expired.extend(self.queue.pop_front().map(|(_, attempt)| attempt));
        }
        expired
    }

    /// The oldest attempt and its arrival time.
    pub fn leave(&mut self) -> Option<(Instant, T)> {
        self.queue.pop_front()
    }

    /// When the oldest attempt will have waited too long.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.queue.front().map(|(arrived, _)| *arrived + self.max_wait)
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Verdict::{Accept, Refuse, Retry, Wait};

    #[test]
    fn attempts_are_accepted_then_address_checked_then_kept_waiting_then_refused() {
        // (in flight, waiting, validated address, verdict) with a limit of 8.
        let table = [
            (0, 0, false, Accept),
            (3, 0, false, Accept),
            (4, 0, false, Retry),
            (4, 0, true, Accept),
            (7, 0, true, Accept),
            (8, 0, true, Wait),
            (8, 0, false, Retry),
            (8, 127, true, Wait),
            (8, 128, true, Refuse),
            (100, 128, true, Refuse),
        ];
        for (in_flight, waiting, validated, verdict) in table {
            assert_eq!(
                decide(in_flight, waiting, 8, validated),
                verdict,
                "{in_flight} in flight, {waiting} waiting, validated {validated}"
            );
        }
    }

    #[test]
    fn nobody_overtakes_the_waiting_room() {
        assert_eq!(decide(7, 1, 8, true), Wait, "a free slot goes to the attempt that waited");
        assert_eq!(decide(6, 1, 8, true), Accept);
    }

    #[test]
    fn a_slot_is_held_until_its_handshake_ends() {
        let admission = Admission::new(2);
        let a = admission.admit(true, 0).expect("a first slot");
        let b = admission.admit(true, 0).expect("a second slot");
        assert_eq!(admission.admit(true, 0).err(), Some(Wait), "both slots are taken");
        assert!(admission.slot_for_waiting().is_none());
        assert_eq!(admission.in_flight(), 2);
        drop(a);
        let c = admission.slot_for_waiting();
        assert!(c.is_some(), "a finished handshake frees its slot for the waiting room");
        drop((b, c));
        assert_eq!(admission.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_released_slot_wakes_the_accept_loop() {
        let admission = Admission::new(1);
        drop(admission.admit(true, 0));
        tokio::time::timeout(Duration::from_secs(5), admission.freed())
            .await
            .expect("the release was signalled, even before anyone listened");
    }

    #[test]
    fn a_limit_of_zero_still_admits_one() {
        let admission = Admission::new(0);
        let _slot = admission.admit(true, 0).expect("one slot");
        assert_eq!(admission.admit(true, WAITING_PER_SLOT - 1).err(), Some(Wait), "and a room for one slot");
        assert_eq!(admission.admit(true, WAITING_PER_SLOT).err(), Some(Refuse));
    }

    #[test]
    fn the_waiting_room_serves_in_arrival_order_and_turns_away_who_waited_too_long() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut room = WaitingRoom::new(Duration::from_secs(5));
        room.enter(at(0), "a");
        room.enter(at(1000), "b");
        room.enter(at(2000), "c");
        assert_eq!(room.next_expiry(), Some(at(5000)));
        assert!(room.expired(at(5000)).is_empty(), "exactly the limit is not too long");
        assert_eq!(room.expired(at(6001)), vec!["a", "b"]);
        assert_eq!(room.next_expiry(), Some(at(7000)));
        assert_eq!(room.leave(), Some((at(2000), "c")));
        assert!(room.is_empty());
        assert_eq!(room.next_expiry(), None);
    }
}
