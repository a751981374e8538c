//! Wave membership: a pure function of a stable hash of (rollout id, agent
//! id). The same agent lands in the same cohort every time the rollout is
//! evaluated (after a restart, on another replica), and cohorts are
//! unbiased by enrollment order or hostname.

use flotte_protocol::{AgentId, Sha256Digest};

/// The agent's position in the rollout's order: lower keys go first.
pub fn cohort_key(rollout: u64, agent: &AgentId) -> u64 {
    let mut input = Vec::with_capacity(8 + agent.0.len());
    input.extend_from_slice(&rollout.to_be_bytes());
    input.extend_from_slice(agent.0.as_bytes());
    let digest = Sha256Digest::of(&input).0;
    u64::from_be_bytes([digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_depend_on_the_rollout() {
        let a = AgentId("agt-1".into());
        assert_eq!(cohort_key(1, &a), cohort_key(1, &a));
        assert_ne!(cohort_key(1, &a), cohort_key(2, &a));
        // Pinned: changing the hash would reshuffle every running rollout.
        assert_eq!(cohort_key(1, &a), 0x2124_dd63_746f_ec88);
    }

    #[test]
    fn a_quarter_of_the_keys_fall_in_the_lowest_quarter() {
        let n = 10_000;
        let low = (0..n).filter(|i| cohort_key(7, &AgentId(format!("agt-{i}"))) < u64::MAX / 4).count();
        assert!((2300..2700).contains(&low), "{low} of {n}: biased cohorts");
    }
}
