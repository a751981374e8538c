//! What an admin asks for when creating a rollout, and the rules that make
//! a request valid. Parsing and validation are pure: a bad spec is an error
//! value naming the problem, never a half-created rollout.

use super::tags::check_tag;
use super::window::{self, Window, WindowError};
use flotte_protocol::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// One entry of a wave list: an absolute number of agents, a share of the
/// fleet, or a named group. Count and percentage sizes are **cumulative**
/// over every member of the rollout: `1,5%,25%,100%` means "one canary,
/// then 5% of the fleet in total, then 25%, then everyone".
///
/// A **group** wave (`tag:pilot`) takes every member in that group (an agent
/// tagged `pilot` when it joined the rollout) not assigned yet, however
/// many that is. Its members count toward the shares of the waves after it
/// (`tag:pilot,25%` tops the pilots up to a quarter of the fleet), and the
/// count and percentage waves before it leave its members for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaveSize {
    Count(u64),
    /// Percent of the fleet, 0 < p ≤ 100.
    Percent(f64),
    /// Every member in the group (tag) of this name.
    Group(String),
}

impl WaveSize {
    /// How many agents of a fleet of `fleet` this entry reaches, cumulatively;
    /// `None` for a group wave, whose size is its group's.
    ///
    /// Percentages round *up*: `5%` of 10 agents is one agent, not zero, so a
    /// wave an admin asked for is never silently empty while agents remain.
    pub fn reach(&self, fleet: u64) -> Option<u64> {
        match self {
            WaveSize::Count(n) => Some((*n).min(fleet)),
            WaveSize::Percent(p) => {
                let exact = (p / 100.0) * fleet as f64;
                // Guard against 14.000000000000002 → 15.
                let rounded = (exact - 1e-9).ceil().max(0.0);
                Some((rounded as u64).min(fleet))
            }
            WaveSize::Group(_) => None,
        }
    }

    /// The group a group wave names.
    pub fn group(&self) -> Option<&str> {
        match self {
            WaveSize::Group(g) => Some(g),
            _ => None,
        }
    }

    fn is_everyone(&self) -> bool {
        matches!(self, WaveSize::Percent(p) if *p >= 100.0)
    }
}

impl fmt::Display for WaveSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaveSize::Count(n) => write!(f, "{n}"),
            WaveSize::Percent(p) => write!(f, "{p}%"),
            WaveSize::Group(g) => write!(f, "tag:{g}"),
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
    /// Wave sizes (cumulative) and named groups; the last must reach the
    /// whole fleet.
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
    #[error("cannot parse wave {0:?}; write a count like 1, a percentage like 25% or a group like tag:pilot")]
    Unparsable(String),
    #[error("wave {index} (tag:{group}): {problem}")]
    BadGroup { index: usize, group: String, problem: String },
    #[error(
        "wave {index} (tag:{group}) comes after a 100% wave, which already reached every agent; put group waves \
         before it"
    )]
    GroupAfterEveryone { index: usize, group: String },
    #[error("wave {index} repeats tag:{group} of wave {first}, which took the whole group; name each group once")]
    RepeatedGroup { index: usize, group: String, first: usize },
    #[error(
        "wave {index} (tag:{group}) names a group nobody is in: no agent is tagged {group:?}; tag agents with \
         `flottectl agents tag AGENT {group}` or change --waves"
    )]
    UnknownGroup { index: usize, group: String },
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

/// Parses `1,5%,25%,100%` or `tag:pilot,25%,100%`.
pub fn parse_waves(spec: &str) -> Result<Vec<WaveSize>, PolicyError> {
    spec.split(',')
        .map(str::trim)
        .enumerate()
        .map(|(i, part)| {
            let bad = || PolicyError::Unparsable(part.to_string());
            if let Some(group) = part.strip_prefix("tag:") {
                let group = group.trim();
                check_tag(group).map_err(|e| PolicyError::BadGroup {
                    index: i + 1,
                    group: group.to_string(),
                    problem: e.to_string(),
                })?;
                return Ok(WaveSize::Group(group.to_string()));
            }
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
        // The last count or percentage wave, and where each group came first.
        let mut previous: Option<&WaveSize> = None;
        let mut groups: Vec<(&str, usize)> = Vec::new();
        let mut everyone = false;
        for (i, w) in self.waves.iter().enumerate() {
            let index = i + 1;
            let bad = |reason| PolicyError::BadWave { index, size: w.to_string(), reason };
            match w {
                WaveSize::Count(0) => return Err(bad("a wave needs at least one agent")),
                WaveSize::Percent(p) if !(*p > 0.0 && *p <= 100.0) => {
                    return Err(bad("percentages must be above 0 and at most 100"));
                }
                WaveSize::Group(g) => {
                    let group = g.clone();
                    if everyone {
                        return Err(PolicyError::GroupAfterEveryone { index, group });
                    }
                    if let Some((_, first)) = groups.iter().find(|(name, _)| name == g) {
                        return Err(PolicyError::RepeatedGroup { index, group, first: *first });
                    }
                    groups.push((g, index));
                    continue;
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
            everyone |= w.is_everyone();
            previous = Some(w);
        }
        if !last.is_everyone() {
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

    /// Checks that every group a wave names has members somewhere in the
    /// fleet (`known` lists every tag some agent carries), as unknown tag
    /// targets are refused.
    pub fn check_groups(&self, known: &[String]) -> Result<(), PolicyError> {
        for (i, w) in self.waves.iter().enumerate() {
            if let Some(g) = w.group()
                && !known.iter().any(|k| k == g)
            {
                return Err(PolicyError::UnknownGroup { index: i + 1, group: g.to_string() });
            }
        }
        Ok(())
    }

    /// The groups the waves name, in wave order.
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.waves.iter().filter_map(WaveSize::group)
    }

    /// Cumulative agent counts the count and percentage waves reach, for a
    /// fleet of `fleet`, never decreasing. A group wave adds no count of its
    /// own: its entry repeats the reach before it.
    pub fn cumulative_reach(&self, fleet: u64) -> Vec<u64> {
        let mut reached = 0;
        self.waves
            .iter()
            .map(|w| {
                reached = reached.max(w.reach(fleet).unwrap_or(0));
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
            // Group waves add no count of their own; their size is their group's.
            (100, "tag:pilot,25%,100%", &[0, 25, 100]),
            (100, "1,tag:pilot,tag:ring1,100%", &[1, 1, 1, 100]),
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
            ("tag:pilot", "the last wave is tag:pilot; it must be 100%"),
            ("tag:pilot,100%,tag:ring1,100%", "wave 3 (tag:ring1) comes after a 100% wave"),
            ("tag:pilot,25%,tag:pilot,100%", "wave 3 repeats tag:pilot of wave 1"),
            // Groups in between do not hide a shrinking size.
            ("5,tag:pilot,3,100%", "wave 3 (3) is smaller than the wave before it (5)"),
        ];
        for (waves, reason) in table {
            let err = policy(waves).validate().unwrap_err().to_string();
            assert!(err.contains(reason), "{waves}: {err}");
        }
        assert!(matches!(parse_waves("1,five%"), Err(PolicyError::Unparsable(_))));
        assert_eq!(policy("1,5%,25%,100%").validate(), Ok(()));
        assert_eq!(policy("tag:pilot,tag:ring1,25%,100%").validate(), Ok(()));
        assert_eq!(policy("1,tag:pilot,100%").validate(), Ok(()));
    }

    #[test]
    fn group_waves_are_written_tag_colon_name() {
        let group = |g: &str| WaveSize::Group(g.into());
        assert_eq!(
            parse_waves("tag:pilot, 25%,tag:ring-1,100%"),
            Ok(vec![group("pilot"), WaveSize::Percent(25.0), group("ring-1"), WaveSize::Percent(100.0)])
        );
        assert_eq!(group("pilot").to_string(), "tag:pilot", "shown as written");
        // (spec, error) for group names that cannot be tags
        let table: &[(&str, &str)] = &[
            ("tag:Pilot,100%", "wave 1 (tag:Pilot): \"Pilot\" is not a valid tag"),
            ("1,tag:,100%", "wave 2 (tag:): \"\" is not a valid tag"),
            ("pilot,100%", "cannot parse wave \"pilot\"; write a count like 1, a percentage like 25% or a group"),
        ];
        for (spec, error) in table {
            let err = parse_waves(spec).unwrap_err().to_string();
            assert!(err.starts_with(error), "{spec}: {err}");
        }
    }

    #[test]
    fn a_group_nobody_is_in_is_refused_like_an_unknown_tag_target() {
        let known = vec!["lab".to_string(), "pilot".to_string()];
        assert_eq!(policy("tag:pilot,100%").check_groups(&known), Ok(()));
        assert_eq!(policy("1,25%,100%").check_groups(&[]), Ok(()), "no groups, nothing to check");
        let err = policy("tag:pilot,tag:ring1,100%").check_groups(&known).unwrap_err();
        assert_eq!(err, PolicyError::UnknownGroup { index: 2, group: "ring1".into() });
        assert!(err.to_string().contains("no agent is tagged \"ring1\""), "{err}");
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
