//! What an admin asks for when creating a rollout, and the rules that make
//! a request valid. Parsing and validation are pure: a bad spec is an error
//! value naming the problem, never a half-created rollout.

use super::window::{self, Window, WindowError};
use flotte_protocol::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// One entry of a wave list: an absolute number of agents or a share of the
/// fleet. Wave sizes are **cumulative**: `1,5%,25%,100%` means "one canary,
/// then 5% of the fleet in total, then 25%, then everyone".
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaveSize {
    Count(u64),
    /// Percent of the fleet, 0 < p ≤ 100.
    Percent(f64),
}

impl WaveSize {
    /// How many agents of a fleet of `fleet` this entry reaches, cumulatively.
    ///
    /// Percentages round *up*: `5%` of 10 agents is one agent, not zero, so a
    /// wave an admin asked for is never silently empty while agents remain.
    pub fn reach(self, fleet: u64) -> u64 {
        match self {
            WaveSize::Count(n) => n.min(fleet),
            WaveSize::Percent(p) => {
                let exact = (p / 100.0) * fleet as f64;
                // Guard against 14.000000000000002 → 15.
                let rounded = (exact - 1e-9).ceil().max(0.0);
                (rounded as u64).min(fleet)
            }
        }
    }
}

impl fmt::Display for WaveSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaveSize::Count(n) => write!(f, "{n}"),
            WaveSize::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// A limit on failures: a number of agents or a share of those that reported.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureLimit {
    /// Halt when more than this many agents failed.
    Count(u64),
    /// Halt when more than this percent of the counted agents failed.
    Percent(f64),
}

/// What an agent that stops talking counts as once its silence deadline
/// passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SilencePolicy {
    /// It counts against the failure threshold.
    Failed,
    /// It leaves the denominator: neither success nor failure.
    Skipped,
}

/// Whether a finished wave leads to the next one by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Advance {
    Automatic,
    /// Each next wave waits for `flottectl rollout approve`.
    Manual,
}

/// Whether the rollout installs by itself or lets end users choose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Required: an agent installs as soon as it is assigned (inside the
    /// window).
    #[default]
    Push,
    /// Available: an assigned agent puts the release in its catalog and the
    /// end user decides (`flotte install`). With a `deadline` it becomes
    /// required then, and the agent installs it by itself.
    Pull { deadline: Option<Timestamp> },
}

impl Mode {
    /// `push` or `pull`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Push => "push",
            Mode::Pull { .. } => "pull",
        }
    }

    pub fn deadline(self) -> Option<Timestamp> {
        match self {
            Mode::Pull { deadline } => deadline,
            Mode::Push => None,
        }
    }

    /// Whether an assignment made at `now` leaves the choice to the end user.
    pub fn is_optional_at(self, now: Timestamp) -> bool {
        match self {
            Mode::Push => false,
            Mode::Pull { deadline } => deadline.is_none_or(|d| now < d),
        }
    }
}

/// A push rollout's notice and deferral budget: agents tell their users,
/// wait `notice`, and let them postpone `count` times by `defer_by` each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deferral {
    pub count: u32,
    pub notice: Duration,
    pub defer_by: Duration,
}

impl Deferral {
    /// The latest an agent installs after receiving the assignment.
    pub fn longest_delay(&self) -> Duration {
        self.notice + self.defer_by * self.count
    }
}

/// The policy of one rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutPolicy {
    /// Cumulative wave sizes; the last must reach the whole fleet.
    pub waves: Vec<WaveSize>,
    /// Share (percent) of a wave's counted agents that must have succeeded
    /// before the rollout moves on.
    pub success_threshold: f64,
    pub failure_limit: FailureLimit,
    /// How long a wave's successes must stay green before the next wave.
    pub soak: Duration,
    /// An assigned agent silent for this long counts by `silence_policy`.
    pub silence_deadline: Duration,
    pub silence_policy: SilencePolicy,
    pub advance: Advance,
    /// Waves start only while this window is open (`None`: any time).
    #[serde(default)]
    pub window: Option<Window>,
    /// Push (required) or pull (available, optionally until a deadline).
    #[serde(default)]
    pub mode: Mode,
    /// For push: tell users first and let them defer.
    #[serde(default)]
    pub deferral: Option<Deferral>,
}

/// Why a policy was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    #[error("a rollout needs at least one wave")]
    NoWaves,
    #[error("wave {index} ({size}) is not a valid size: {reason}")]
    BadWave { index: usize, size: String, reason: &'static str },
    #[error("waves must not shrink: wave {index} ({size}) is smaller than the wave before it ({previous})")]
    Shrinking { index: usize, size: String, previous: String },
    #[error("the last wave is {last}; it must be 100% so that the rollout reaches every targeted agent")]
    IncompleteLastWave { last: String },
    #[error("success threshold {0}% is out of range; use a value above 0 and at most 100")]
    SuccessThreshold(f64),
    #[error("failure limit {0}% is out of range; use a value from 0 to 100")]
    FailurePercent(f64),
    #[error("cannot parse wave {0:?}; write a count like 1 or a percentage like 25%")]
    Unparsable(String),
    #[error(transparent)]
    Window(#[from] WindowError),
    #[error("deferrals apply to push rollouts; a pull rollout's users choose when to install anyway")]
    DeferralsInPull,
    #[error(
        "the silence deadline ({silence}) is shorter than the notice plus every deferral ({delay}): agents whose \
         users defer would count as silent; give --silence of at least {delay}"
    )]
    SilenceShorterThanDeferrals { silence: String, delay: String },
}

/// Parses `1,5%,25%,100%`.
pub fn parse_waves(spec: &str) -> Result<Vec<WaveSize>, PolicyError> {
    spec.split(',')
        .map(str::trim)
        .map(|part| {
            let bad = || PolicyError::Unparsable(part.to_string());
            match part.strip_suffix('%') {
                Some(p) => p.trim().parse::<f64>().map(WaveSize::Percent).map_err(|_| bad()),
                None => part.parse::<u64>().map(WaveSize::Count).map_err(|_| bad()),
            }
        })
        .collect()
}

/// Parses a failure limit: `3` (agents) or `2%`.
pub fn parse_failure_limit(spec: &str) -> Result<FailureLimit, PolicyError> {
    let spec = spec.trim();
    match spec.strip_suffix('%') {
        Some(p) => p.trim().parse().map(FailureLimit::Percent).map_err(|_| PolicyError::Unparsable(spec.into())),
        None => spec.parse().map(FailureLimit::Count).map_err(|_| PolicyError::Unparsable(spec.into())),
    }
}

impl RolloutPolicy {
    /// One wave of everyone.
    pub fn big_bang() -> Self {
        RolloutPolicy {
            waves: vec![WaveSize::Percent(100.0)],
            success_threshold: 100.0,
            failure_limit: FailureLimit::Percent(100.0),
            soak: Duration::ZERO,
            silence_deadline: Duration::from_secs(24 * 3600),
            silence_policy: SilencePolicy::Failed,
            advance: Advance::Automatic,
            window: None,
            mode: Mode::Push,
            deferral: None,
        }
    }

    /// Checks the rules every policy must follow.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let last = self.waves.last().ok_or(PolicyError::NoWaves)?;
        let mut previous: Option<WaveSize> = None;
        for (i, &w) in self.waves.iter().enumerate() {
            let index = i + 1;
            match w {
                WaveSize::Count(0) => {
                    return Err(PolicyError::BadWave {
                        index,
                        size: w.to_string(),
                        reason: "a wave needs at least one agent",
                    });
                }
                WaveSize::Percent(p) if !(p > 0.0 && p <= 100.0) => {
                    return Err(PolicyError::BadWave {
                        index,
                        size: w.to_string(),
                        reason: "percentages must be above 0 and at most 100",
                    });
                }
                _ => {}
            }
            if let Some(prev) = previous {
                let shrinks = match (prev, w) {
                    (WaveSize::Count(a), WaveSize::Count(b)) => b < a,
                    (WaveSize::Percent(a), WaveSize::Percent(b)) => b < a,
                    // A count after a percentage (or the reverse) depends on the
                    // fleet size; `reach` keeps the cumulative sizes monotonic.
                    _ => false,
                };
                if shrinks {
                    return Err(PolicyError::Shrinking { index, size: w.to_string(), previous: prev.to_string() });
                }
            }
            previous = Some(w);
        }
        if !matches!(last, WaveSize::Percent(p) if *p >= 100.0) {
            return Err(PolicyError::IncompleteLastWave { last: last.to_string() });
        }
        if !(self.success_threshold > 0.0 && self.success_threshold <= 100.0) {
            return Err(PolicyError::SuccessThreshold(self.success_threshold));
        }
        if let FailureLimit::Percent(p) = self.failure_limit
            && !(0.0..=100.0).contains(&p)
        {
            return Err(PolicyError::FailurePercent(p));
        }
        if let Some(w) = &self.window {
            window::check(w)?;
        }
        if let Some(d) = &self.deferral {
            if matches!(self.mode, Mode::Pull { .. }) {
                return Err(PolicyError::DeferralsInPull);
            }
            if self.silence_deadline < d.longest_delay() {
                return Err(PolicyError::SilenceShorterThanDeferrals {
                    silence: humantime::format_duration(self.silence_deadline).to_string(),
                    delay: humantime::format_duration(d.longest_delay()).to_string(),
                });
            }
        }
        Ok(())
    }

    /// Cumulative agent counts after each wave, for a fleet of `fleet`,
    /// never decreasing.
    pub fn cumulative_reach(&self, fleet: u64) -> Vec<u64> {
        let mut reached = 0;
        self.waves
            .iter()
            .map(|w| {
                reached = reached.max(w.reach(fleet));
                reached
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(waves: &str) -> RolloutPolicy {
        RolloutPolicy { waves: parse_waves(waves).unwrap(), ..RolloutPolicy::big_bang() }
    }

    #[test]
    fn wave_lists_reach_cumulative_counts() {
        // (fleet, waves, cumulative reach)
        let table: &[(u64, &str, &[u64])] = &[
            (1000, "1,5%,25%,100%", &[1, 50, 250, 1000]),
            (10, "1,5%,25%,100%", &[1, 1, 3, 10]),
            (3, "1,5%,25%,100%", &[1, 1, 1, 3]),
            (0, "1,5%,25%,100%", &[0, 0, 0, 0]),
            (7, "10,100%", &[7, 7]),
            (100, "14%,100%", &[14, 100]),
            (10_000, "1,5%,25%,100%", &[1, 500, 2500, 10_000]),
        ];
        for (fleet, waves, expected) in table {
            assert_eq!(policy(waves).cumulative_reach(*fleet), *expected, "{waves} of {fleet}");
        }
    }

    #[test]
    fn specs_that_do_not_add_up_are_refused_with_the_reason() {
        let table: &[(&str, &str)] = &[
            ("1,5%,25%", "must be 100%"),
            ("1,50%,25%,100%", "must not shrink"),
            ("0,100%", "at least one agent"),
            ("1,150%", "at most 100"),
            ("1,-5%,100%", "above 0"),
            ("5,3,100%", "must not shrink"),
        ];
        for (waves, reason) in table {
            let err = policy(waves).validate().unwrap_err().to_string();
            assert!(err.contains(reason), "{waves}: {err}");
        }
        assert!(matches!(parse_waves("1,five%"), Err(PolicyError::Unparsable(_))));
        assert_eq!(policy("1,5%,25%,100%").validate(), Ok(()));
    }

    #[test]
    fn thresholds_out_of_range_are_refused() {
        let mut p = RolloutPolicy::big_bang();
        p.success_threshold = 0.0;
        assert_eq!(p.validate(), Err(PolicyError::SuccessThreshold(0.0)));
        p.success_threshold = 101.0;
        assert_eq!(p.validate(), Err(PolicyError::SuccessThreshold(101.0)));
        p.success_threshold = 95.0;
        p.failure_limit = FailureLimit::Percent(120.0);
        assert_eq!(p.validate(), Err(PolicyError::FailurePercent(120.0)));
        assert_eq!(parse_failure_limit("2%"), Ok(FailureLimit::Percent(2.0)));
        assert_eq!(parse_failure_limit("3"), Ok(FailureLimit::Count(3)));
    }

    #[test]
    fn deferrals_are_for_push_and_must_fit_in_the_silence_deadline() {
        let hour = Duration::from_secs(3600);
        let deferral = Deferral { count: 2, notice: hour / 4, defer_by: hour };
        let mut p = RolloutPolicy { deferral: Some(deferral), silence_deadline: 3 * hour, ..RolloutPolicy::big_bang() };
        assert_eq!(p.validate(), Ok(()));
        p.silence_deadline = 2 * hour;
        let err = p.validate().unwrap_err().to_string();
        assert!(err.contains("at least 2h 15m"), "{err}");
        p.silence_deadline = 3 * hour;
        p.mode = Mode::Pull { deadline: None };
        assert_eq!(p.validate(), Err(PolicyError::DeferralsInPull));
    }
}
