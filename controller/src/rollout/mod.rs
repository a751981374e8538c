//! Rollouts: which agents get a release, when, and when to stop.
//!
//! All rollout policy lives in [`engine`], a pure state machine; the
//! controller's shell feeds it reports and time and carries out its
//! dispatches. [`spec`] parses and validates what an admin asks for;
//! [`cohort`] makes wave membership a stable, unbiased function of ids
//! (named-group waves take their group first, see [`engine`]).
//! [`targets`] says which agents a rollout reaches (all, hosts, [`tags`],
//! inventory filters); [`rollback`] plans a fleet rollback; [`window`]
//! says when maintenance windows are open.

pub mod cohort;
pub mod driver;
pub mod engine;
pub mod persist;
pub mod rollback;
pub mod spec;
pub mod tags;
pub mod targets;
pub mod window;

#[cfg(test)]
mod tests;

pub use engine::{CommandError, Dispatch, Joining, Outcome, Phase, Rollout, Stage, Tally};
pub use spec::{Advance, FailureLimit, PolicyError, RolloutPolicy, SilencePolicy, WaveSize};
