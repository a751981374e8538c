//! Rollouts: which agents get a release, when, and when to stop.
//!
//! All rollout policy lives in [`engine`], a pure state machine; the
//! controller's shell feeds it reports and time and carries out its
//! dispatches. [`spec`] parses and validates what an admin asks for;
//! [`cohort`] makes wave membership a stable, unbiased function of ids.

pub mod cohort;
pub mod driver;
pub mod engine;
pub mod persist;
pub mod spec;

#[cfg(test)]
mod tests;

pub use engine::{CommandError, Dispatch, Outcome, Phase, Rollout, Stage, Tally};
pub use spec::{Advance, FailureLimit, PolicyError, RolloutPolicy, SilencePolicy, WaveSize};
