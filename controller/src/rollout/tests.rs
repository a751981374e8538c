//! The rollout policy, specified as tables over the pure engine. Time is a
//! number; 10,000 agents run through four waves in one test, with no
//! sockets and no clock.

use super::engine::{Dispatch, Joining, Outcome, Phase, Rollout, Stage};
use super::spec::{Advance, FailureLimit, Mode, RolloutPolicy, SilencePolicy, WaveSize, parse_waves};
use flotte_protocol::{AgentId, Timestamp};
use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

fn at(minutes: u64) -> Timestamp {
    Timestamp::from_unix_millis(1_000_000_000 + minutes * 60_000)
}

fn agent(i: usize) -> AgentId {
    AgentId(format!("agt-{i:05}"))
}

fn policy(waves: &str) -> RolloutPolicy {
    RolloutPolicy {
        waves: parse_waves(waves).unwrap(),
        success_threshold: 95.0,
        failure_limit: FailureLimit::Percent(2.0),
        soak: Duration::ZERO,
        silence_deadline: HOUR,
        silence_policy: SilencePolicy::Failed,
        advance: Advance::Automatic,
        window: None,
        mode: Mode::Push,
        deferral: None,
    }
}

/// Drives one rollout and remembers what it dispatched.
struct Sim {
    rollout: Rollout,
    now: Timestamp,
    /// agent → wave it was assigned in; asserting no agent is assigned twice.
    assigned: BTreeMap<AgentId, usize>,
    log: Vec<Dispatch>,
}

impl Sim {
    fn new(policy: RolloutPolicy, fleet: usize) -> Self {
        Sim::starting(policy, fleet, at(0))
    }

    /// A rollout created and due at `start`.
    fn starting(policy: RolloutPolicy, fleet: usize, start: Timestamp) -> Self {
        Sim::from(Rollout::new(42, policy, (0..fleet).map(agent), start), start)
    }

    /// A rollout due now over `fleet` agents, where the agents of each range
    /// are in the named group.
    fn grouped(policy: RolloutPolicy, fleet: usize, groups: &[(Range<usize>, &str)]) -> Self {
        let joining = (0..fleet).map(|i| Joining { agent: agent(i), groups: groups_of(i, groups) });
        Sim::from(Rollout::new(42, policy, joining, at(0)), at(0))
    }

    fn from(rollout: Rollout, start: Timestamp) -> Self {
        let mut sim = Sim { rollout, now: start, assigned: BTreeMap::new(), log: vec![] };
        sim.tick(0);
        sim
    }

    fn drain(&mut self) {
        while let Some(d) = self.rollout.poll_dispatch() {
            if let Dispatch::Assign { agent, wave } = &d {
                assert!(self.assigned.insert(agent.clone(), *wave).is_none(), "{agent} assigned twice");
            }
            self.log.push(d);
        }
    }

    /// Advances the clock by `minutes`, firing every timer on the way.
    fn tick(&mut self, minutes: u64) {
        let end = self.now.saturating_add(MINUTE * minutes as u32);
        while let Some(t) = self.rollout.poll_timeout().filter(|t| *t <= end) {
            self.now = self.now.max(t);
            self.rollout.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
        self.rollout.handle_timeout(self.now);
        self.drain();
    }

    fn report(&mut self, a: &AgentId, outcome: Outcome) {
        self.rollout.handle_report(self.now, a, outcome);
        self.drain();
    }

    /// Agents assigned in `wave`, in a stable order.
    fn wave(&self, wave: usize) -> Vec<AgentId> {
        self.assigned.iter().filter(|(_, w)| **w == wave).map(|(a, _)| a.clone()).collect()
    }

    /// Reports `failures` failures then successes for the rest of `wave`.
    fn finish_wave(&mut self, wave: usize, failures: usize) {
        for (i, a) in self.wave(wave).into_iter().enumerate() {
            self.report(&a, if i < failures { Outcome::Failed } else { Outcome::Succeeded });
        }
    }

    fn wave_sizes(&self) -> Vec<u64> {
        self.rollout.wave_tallies().iter().map(|t| t.assigned).collect()
    }

    /// Lets every wave succeed, one after the other, until the rollout
    /// completes.
    fn succeed_to_the_end(&mut self) {
        while let Phase::Running { wave, stage: Stage::Deploying } = *self.rollout.phase() {
            self.finish_wave(wave, 0);
        }
        assert_eq!(self.rollout.phase(), &Phase::Completed);
    }
}

/// The groups agent `i` is in.
fn groups_of(i: usize, groups: &[(Range<usize>, &str)]) -> Vec<String> {
    groups.iter().filter(|(range, _)| range.contains(&i)).map(|(_, g)| g.to_string()).collect()
}

#[test]
fn ten_thousand_agents_go_through_four_waves_in_one_test() {
    let mut sim = Sim::new(policy("1,5%,25%,100%"), 10_000);
    for wave in 0..4 {
        assert!(
            matches!(sim.rollout.phase(), Phase::Running { wave: w, .. } if *w == wave),
            "{:?}",
            sim.rollout.phase()
        );
        sim.finish_wave(wave, 0);
    }
    assert_eq!(sim.rollout.phase(), &Phase::Completed);
    assert_eq!(sim.wave_sizes(), [1, 499, 2000, 7500]);
    assert_eq!(sim.assigned.len(), 10_000);
    assert_eq!(sim.log.iter().filter(|d| matches!(d, Dispatch::WaveStarted { .. })).count(), 4, "no wave starts twice");
}

#[test]
fn the_failure_limit_halts_the_rollout_and_nothing_more_is_assigned() {
    // (fleet, waves, failure limit, failures per wave before the halt, wave that halts)
    let table: &[(usize, &str, FailureLimit, &[usize], usize)] = &[
        // The canary fails: 1 of 1 is more than 2%.
        (100, "1,25%,100%", FailureLimit::Percent(2.0), &[1], 0),
        // 2 of 25 assigned fail (8%) in the second wave.
        (100, "1,25%,100%", FailureLimit::Percent(2.0), &[0, 2], 1),
        // A count limit: the third failure crosses "more than 2".
        (100, "10%,100%", FailureLimit::Count(2), &[0, 3], 1),
    ];
    for (fleet, waves, limit, failures, halting_wave) in table {
        let mut sim = Sim::new(RolloutPolicy { failure_limit: *limit, ..policy(waves) }, *fleet);
        for (wave, f) in failures.iter().enumerate() {
            sim.finish_wave(wave, *f);
        }
        let assigned_at_halt = sim.assigned.len();
        assert!(
            matches!(sim.rollout.phase(), Phase::Halted { wave, .. } if wave == halting_wave),
            "{waves} {limit:?}: {:?}",
            sim.rollout.phase()
        );
        sim.tick(600);
        assert_eq!(sim.assigned.len(), assigned_at_halt, "a halted rollout assigns nobody");
        assert!(sim.log.iter().any(|d| matches!(d, Dispatch::Halted { reason } if reason.contains("failed"))));
    }
}

#[test]
fn exactly_at_the_failure_limit_is_not_over_it() {
    // 1 of 50 is 2%: not more than 2%, so the rollout goes on.
    let mut sim = Sim::new(policy("50%,100%"), 100);
    sim.finish_wave(0, 1);
    assert!(matches!(sim.rollout.phase(), Phase::Running { wave: 1, .. }), "{:?}", sim.rollout.phase());
}

#[test]
fn offline_and_silent_agents_count_as_the_policy_says() {
    // Wave 0 has 10 agents; 1 never reports (offline at wave start, or silent mid-install).
    // (silence policy, failure limit, expected phase name after the deadline)
    let table: &[(SilencePolicy, FailureLimit, &str)] = &[
        (SilencePolicy::Failed, FailureLimit::Percent(5.0), "halted"), // 1 of 10 = 10% > 5%
        (SilencePolicy::Failed, FailureLimit::Percent(20.0), "running"),
        (SilencePolicy::Skipped, FailureLimit::Percent(5.0), "running"),
    ];
    for (silence, limit, expected) in table {
        // Manual advancement keeps wave 1 from starting, so only wave 0 is in play.
        let p = RolloutPolicy {
            silence_policy: *silence,
            failure_limit: *limit,
            success_threshold: 90.0,
            advance: Advance::Manual,
            ..policy("10%,100%")
        };
        let mut sim = Sim::new(p, 100);
        let wave0 = sim.wave(0);
        let (silent, rest) = wave0.split_first().unwrap();
        sim.report(silent, Outcome::Progress); // started, then went quiet
        for a in rest {
            sim.report(a, Outcome::Succeeded);
        }
        // 9 of 10 succeeded: 90% passes when the silent one is skipped or still pending.
        let before_deadline = sim.rollout.phase().name();
        sim.tick(61);
        assert_eq!(sim.rollout.phase().name(), *expected, "{silence:?} {limit:?} (before deadline: {before_deadline})");
    }
}

#[test]
fn a_silent_agent_that_reports_later_counts_by_its_final_state() {
    let p = RolloutPolicy { failure_limit: FailureLimit::Count(0), ..policy("1,100%") };
    let mut sim = Sim::new(p, 10);
    let canary = sim.wave(0)[0].clone();
    sim.tick(30);
    assert_eq!(sim.rollout.wave_tallies()[0].pending, 1);
    sim.tick(31); // past the one-hour deadline: silent counts as failed → halt
    assert_eq!(sim.rollout.phase().name(), "halted");
    assert_eq!(sim.rollout.total().silent, 1);
    sim.report(&canary, Outcome::Succeeded);
    assert_eq!(sim.rollout.total().silent, 0);
    assert_eq!(sim.rollout.total().succeeded, 1, "it counts once, as a success");
    sim.rollout.resume(sim.now).unwrap();
    sim.drain();
    assert!(matches!(sim.rollout.phase(), Phase::Running { wave: 1, .. }), "{:?}", sim.rollout.phase());
}

#[test]
fn a_retried_agent_counts_once_by_its_final_state() {
    let p = RolloutPolicy { failure_limit: FailureLimit::Count(5), ..policy("10%,100%") };
    let mut sim = Sim::new(p, 100);
    let first = sim.wave(0)[0].clone();
    sim.report(&first, Outcome::Failed);
    assert_eq!(sim.rollout.total().failed, 1);
    sim.report(&first, Outcome::Progress); // an admin retried it
    sim.report(&first, Outcome::Succeeded);
    let t = sim.rollout.total();
    assert_eq!((t.failed, t.succeeded, t.assigned), (0, 1, 10));
}

#[test]
fn waves_smaller_than_one_agent_pass_at_once() {
    // 3 agents: 1, then 5% and 25% of 3 round up to 1 — already reached.
    let mut sim = Sim::new(policy("1,5%,25%,100%"), 3);
    sim.finish_wave(0, 0);
    assert!(matches!(sim.rollout.phase(), Phase::Running { wave: 3, .. }), "{:?}", sim.rollout.phase());
    assert_eq!(sim.wave_sizes(), [1, 0, 0, 2]);
    sim.finish_wave(3, 0);
    assert_eq!(sim.rollout.phase(), &Phase::Completed);
}

#[test]
fn agents_that_enroll_mid_rollout_join_the_next_wave_or_at_once_in_the_last() {
    let mut sim = Sim::new(policy("10%,50%,100%"), 100);
    sim.rollout.add_agent(sim.now, agent(500)); // during wave 0
    sim.drain();
    assert!(!sim.assigned.contains_key(&agent(500)), "not assigned mid-wave");
    sim.finish_wave(0, 0);
    // Wave 1 targets 50% of the 101 agents now known: 51 in total.
    assert_eq!(sim.assigned.len(), 51);
    sim.finish_wave(1, 0);
    sim.rollout.add_agent(sim.now, agent(501)); // during the last wave
    sim.drain();
    assert_eq!(sim.assigned.get(&agent(501)), Some(&2), "joins the running last wave at once");
    sim.finish_wave(2, 0);
    assert_eq!(sim.rollout.phase(), &Phase::Completed);
    sim.rollout.add_agent(sim.now, agent(502)); // after completion
    sim.drain();
    assert_eq!(sim.assigned.get(&agent(502)), Some(&2), "a dynamic target keeps growing after completion");
    assert!(sim.assigned.contains_key(&agent(500)));
}

#[test]
fn a_soak_holds_the_next_wave_and_failures_during_it_still_count() {
    let p = RolloutPolicy { soak: 30 * MINUTE, failure_limit: FailureLimit::Count(0), ..policy("1,100%") };
    let mut sim = Sim::new(p.clone(), 10);
    sim.finish_wave(0, 0);
    assert!(matches!(sim.rollout.phase(), Phase::Running { wave: 0, stage: Stage::Soaking { .. } }));
    sim.tick(29);
    assert_eq!(sim.assigned.len(), 1, "still soaking");
    sim.tick(1);
    assert_eq!(sim.assigned.len(), 10, "soak over: the next wave starts");

    // The canary's health turns red during the soak: it halts instead.
    let mut sim = Sim::new(p, 10);
    sim.finish_wave(0, 0);
    sim.tick(10);
    let canary = sim.wave(0)[0].clone();
    sim.report(&canary, Outcome::Failed);
    sim.tick(60);
    assert_eq!(sim.rollout.phase().name(), "halted");
    assert_eq!(sim.assigned.len(), 1);
}

#[test]
fn manual_advancement_waits_for_approval_and_refuses_what_makes_no_sense() {
    let p = RolloutPolicy { advance: Advance::Manual, ..policy("1,100%") };
    let mut sim = Sim::new(p, 10);
    sim.finish_wave(0, 0);
    assert!(matches!(sim.rollout.phase(), Phase::Running { wave: 0, stage: Stage::AwaitingApproval }));
    sim.tick(24 * 60);
    assert_eq!(sim.assigned.len(), 1, "nothing moves without approval");
    sim.rollout.approve(sim.now).unwrap();
    sim.drain();
    assert_eq!(sim.assigned.len(), 10);
    assert!(sim.rollout.approve(sim.now).is_err(), "the last wave is not awaiting approval");
    sim.finish_wave(1, 0);
    assert_eq!(sim.rollout.phase(), &Phase::Completed);
    let err = sim.rollout.approve(sim.now).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot approve a rollout that is completed; only a wave awaiting approval can be approved"
    );
    assert!(sim.rollout.resume(sim.now).is_err());
    assert!(sim.rollout.abort().is_err());
}

#[test]
fn a_scheduled_rollout_assigns_nothing_before_its_start() {
    let mut rollout = Rollout::new(1, policy("100%"), (0..5).map(agent), at(60));
    rollout.handle_timeout(at(59));
    assert_eq!(rollout.poll_dispatch(), None);
    assert_eq!(rollout.poll_timeout(), Some(at(60)));
    rollout.handle_timeout(at(60));
    assert!(matches!(rollout.poll_dispatch(), Some(Dispatch::WaveStarted { wave: 0, agents: 5 })));
}

#[test]
fn pause_stops_new_waves_and_resume_continues() {
    let mut sim = Sim::new(RolloutPolicy { soak: 10 * MINUTE, ..policy("1,100%") }, 10);
    sim.rollout.pause().unwrap();
    sim.finish_wave(0, 0);
    sim.tick(60);
    assert_eq!(sim.assigned.len(), 1, "paused");
    sim.rollout.resume(sim.now).unwrap();
    sim.drain();
    sim.tick(10);
    assert_eq!(sim.assigned.len(), 10);
}

#[test]
fn a_rollout_restored_from_its_serialized_form_continues_exactly() {
    let mut sim = Sim::new(policy("1,5%,25%,100%"), 1000);
    sim.finish_wave(0, 0);
    let half: Vec<_> = sim.wave(1).into_iter().take(25).collect();
    for a in &half {
        sim.report(a, Outcome::Succeeded);
    }
    let json = serde_json::to_string(&sim.rollout).unwrap();
    let restored: Rollout = serde_json::from_str(&json).unwrap();
    assert_eq!(restored, sim.rollout);
    sim.rollout = restored;
    for a in sim.wave(1).into_iter().skip(25) {
        sim.report(&a, Outcome::Succeeded);
    }
    assert!(matches!(sim.rollout.phase(), Phase::Running { wave: 2, .. }));
    assert_eq!(sim.log.iter().filter(|d| matches!(d, Dispatch::WaveStarted { wave: 2, .. })).count(), 1);
}

fn utc(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

#[test]
fn a_weekend_rollout_starts_waves_only_inside_its_maintenance_window() {
    // Created on Friday 16:00 local (UTC+1); the window is Saturday and
    // Sunday 00:00-06:00 local, i.e. from Friday 23:00 UTC.
    let window = "sat,sun 00:00-06:00 +01:00".parse().unwrap();
    let p =
        RolloutPolicy { soak: 30 * MINUTE, silence_deadline: 48 * HOUR, window: Some(window), ..policy("1,50%,100%") };
    let mut sim = Sim::starting(p, 10, utc("2026-12-04T15:00:00Z"));
    let outside = |opens: &str| Phase::Running { wave: 0, stage: Stage::OutsideWindow { opens: utc(opens) } };

    // (minutes to advance, waves to finish now, phase afterwards, cumulative wave sizes)
    assert_eq!(sim.rollout.phase(), &outside("2026-12-04T23:00:00Z"), "nothing before the window");
    sim.tick(8 * 60); // Saturday 00:00 local: the canary goes out.
    assert_eq!(sim.wave_sizes(), [1, 0, 0]);
    sim.finish_wave(0, 0);
    sim.tick(30); // soaked at 00:30 local: the second wave goes out.
    assert_eq!(sim.wave_sizes(), [1, 4, 0]);
    sim.tick(5 * 60); // 05:30 local
    sim.finish_wave(1, 0);
    sim.tick(30); // soaked at 06:00 local, when the window closes: wait for Sunday.
    let sunday = Stage::OutsideWindow { opens: utc("2026-12-05T23:00:00Z") };
    assert_eq!(sim.rollout.phase(), &Phase::Running { wave: 2, stage: sunday });
    assert_eq!(sim.wave_sizes(), [1, 4, 0], "no wave starts outside the window");
    assert_eq!(sim.rollout.poll_timeout(), Some(utc("2026-12-05T23:00:00Z")));
    sim.rollout.add_agent(sim.now, agent(99)); // enrolls while the last wave waits
    sim.drain();
    assert_eq!(sim.wave_sizes(), [1, 4, 0], "a late agent waits for the window too");
    sim.tick(18 * 60); // Sunday 00:00 local
    assert_eq!(sim.wave_sizes(), [1, 4, 6]);
    sim.finish_wave(2, 0);
    sim.tick(30);
    assert_eq!(sim.rollout.phase(), &Phase::Completed);
    let waits = sim.log.iter().filter(|d| matches!(d, Dispatch::OutsideWindow { .. })).count();
    assert_eq!(waits, 2, "the start and the third wave waited");
}

#[test]
fn a_halt_while_waiting_for_the_window_resumes_into_the_wave_not_past_it() {
    let window = "sat 00:00-06:00".parse().unwrap();
    let p = RolloutPolicy {
        soak: HOUR,
        failure_limit: FailureLimit::Count(0),
        window: Some(window),
        ..policy("1,50%,100%")
    };
    let mut sim = Sim::starting(p, 10, utc("2026-12-05T05:00:00Z"));
    let canary = sim.wave(0).pop().expect("the canary went out inside the window");
    sim.report(&canary, Outcome::Succeeded);
    sim.tick(60); // soaked at 06:00: the second wave waits for next Saturday
    assert!(
        matches!(sim.rollout.phase(), Phase::Running { wave: 1, stage: Stage::OutsideWindow { .. } }),
        "{:?}",
        sim.rollout.phase()
    );
    sim.report(&canary, Outcome::Failed); // its health turned red: halt
    assert!(matches!(sim.rollout.phase(), Phase::Halted { wave: 1, .. }));
    sim.report(&canary, Outcome::Succeeded); // it recovered
    sim.rollout.resume(sim.now).unwrap(); // and an admin resumes
    sim.drain();
    assert!(matches!(sim.rollout.phase(), Phase::Running { wave: 1, stage: Stage::OutsideWindow { .. } }));
    assert_eq!(sim.wave_sizes(), [1, 0, 0], "the waiting wave did not pass empty");
}

// ---- pull rollouts ----

fn pull(waves: &str, deadline: Option<Timestamp>) -> RolloutPolicy {
    RolloutPolicy { mode: Mode::Pull { deadline }, ..policy(waves) }
}

#[test]
fn a_pull_rollout_offers_wave_by_wave_without_waiting_for_users() {
    let mut sim = Sim::new(pull("1,50%,100%", None), 10);
    // Every wave goes out at once: offers nobody took leave the denominator.
    assert_eq!(sim.rollout.phase(), &Phase::Completed);
    assert_eq!(sim.wave_sizes(), [1, 4, 5]);
    let total = sim.rollout.total();
    assert_eq!((total.offered, total.pending, total.succeeded), (10, 0, 0));
    // Offered agents have no silence clock: a day later nothing is silent.
    sim.tick(24 * 60);
    assert_eq!(sim.rollout.total().silent, 0);
    assert_eq!(sim.rollout.poll_timeout(), None);
}

#[test]
fn installs_users_choose_count_like_push_installs() {
    // (what the users of wave 0's 10 agents do, phase after)
    let p = RolloutPolicy { advance: Advance::Manual, ..pull("10%,100%", None) };
    let table: &[(&[Outcome], &str)] = &[
        // Nobody chose: the wave passes (nothing to judge) and waits for approval.
        (&[], "awaiting_approval"),
        // One user installs and succeeds.
        (&[Outcome::Succeeded], "awaiting_approval"),
        // One user's install is under way: the wave passed when its offers
        // went out, and an install under way does not take that back.
        (&[Outcome::Progress], "awaiting_approval"),
        // One user's install fails: 1 of 1 counted is more than 2%.
        (&[Outcome::Failed], "halted"),
    ];
    for (outcomes, expected) in table {
        let mut sim = Sim::new(p.clone(), 100);
        let wave0 = sim.wave(0);
        for a in &wave0 {
            sim.report(a, Outcome::Offered);
        }
        for (a, outcome) in wave0.iter().zip(outcomes.iter()) {
            sim.report(a, Outcome::Progress);
            sim.report(a, *outcome);
        }
        let got = match sim.rollout.phase() {
            Phase::Running { stage: Stage::AwaitingApproval, .. } => "awaiting_approval",
            Phase::Running { stage: Stage::Deploying, .. } => "deploying",
            other => other.name(),
        };
        assert_eq!(got, *expected, "{outcomes:?}");
        let t = sim.rollout.wave_tallies()[0];
        assert_eq!(t.offered + t.pending + t.succeeded + t.failed, 10, "every agent counts once: {t:?}");
    }
}

#[test]
fn at_the_deadline_offers_become_required_and_the_push_rules_decide() {
    let deadline = at(120);
    let mut sim = Sim::new(pull("1,100%", Some(deadline)), 10);
    // All offered; the last wave waits for the deadline instead of completing.
    assert_eq!(sim.rollout.phase(), &Phase::Running { wave: 1, stage: Stage::AwaitingDeadline { at: deadline } });
    assert!(sim.log.contains(&Dispatch::AwaitingDeadline { at: deadline }));
    let early = sim.wave(1)[0].clone();
    sim.report(&early, Outcome::Progress);
    sim.report(&early, Outcome::Succeeded); // one user installed before the deadline
    sim.tick(119);
    assert_eq!(sim.rollout.total().offered, 9);

    sim.tick(1); // the deadline
    let t = sim.rollout.total();
    assert_eq!((t.offered, t.pending, t.succeeded), (0, 9, 1), "offers are now pending installs");
    assert_eq!(sim.rollout.phase(), &Phase::Running { wave: 1, stage: Stage::Deploying });
    // The agents install by themselves; the rollout completes on their reports.
    for a in sim.assigned.keys().cloned().collect::<Vec<_>>() {
        if a != early {
            sim.report(&a, Outcome::Succeeded);
        }
    }
    assert_eq!(sim.rollout.phase(), &Phase::Completed);
}

#[test]
fn agents_silent_past_the_deadline_count_by_the_silence_policy() {
    let deadline = at(60);
    let p = RolloutPolicy { failure_limit: FailureLimit::Count(0), ..pull("100%", Some(deadline)) };
    let mut sim = Sim::new(p, 3);
    sim.tick(60 + 59);
    assert_eq!(sim.rollout.phase().name(), "running", "silence counts from the deadline, not from the offer");
    sim.tick(1);
    assert_eq!(sim.rollout.total().silent, 3);
    assert_eq!(sim.rollout.phase().name(), "halted");
}

#[test]
fn an_agent_joining_after_the_deadline_is_assigned_as_required() {
    let deadline = at(60);
    let mut sim = Sim::new(pull("100%", Some(deadline)), 2);
    sim.tick(61);
    sim.rollout.add_agent(sim.now, agent(99));
    sim.drain();
    let t = sim.rollout.total();
    assert_eq!((t.assigned, t.offered, t.pending), (3, 0, 3));
    // Its "offered" report (the agent stores the offer, then installs it at
    // once) keeps it pending.
    sim.report(&agent(99), Outcome::Offered);
    assert_eq!(sim.rollout.total().pending, 3);
}

#[test]
fn a_paused_pull_rollout_still_escalates_at_its_deadline() {
    let deadline = at(30);
    let mut sim = Sim::new(pull("100%", Some(deadline)), 4);
    sim.rollout.pause().unwrap();
    sim.tick(31);
    assert_eq!(sim.rollout.total().pending, 4, "the agents install by themselves whatever the controller does");
    sim.rollout.resume(sim.now).unwrap();
    sim.drain();
    assert!(matches!(sim.rollout.phase(), Phase::Running { stage: Stage::Deploying, .. }), "{:?}", sim.rollout.phase());
}

#[test]
fn an_agent_waiting_for_its_window_is_not_silent_until_the_window_plus_the_silence_deadline() {
    let p = RolloutPolicy { silence_deadline: HOUR, ..policy("100%") };
    let mut sim = Sim::new(p, 2);
    let (waiting, quiet) = (agent(0), agent(1));
    sim.report(&waiting, Outcome::Progress);
    sim.report(&quiet, Outcome::Progress);
    // Its window opens in 5 hours; the silence deadline is one hour.
    let opens = sim.now.saturating_add(5 * HOUR);
    sim.report(&waiting, Outcome::WaitingUntil(opens));
    sim.tick(4 * 60);
    let t = sim.rollout.total();
    assert_eq!((t.pending, t.silent), (1, 1), "the quiet agent is silent, the waiting one is not");
    // An hour after the opening without a word, it is silent too.
    sim.tick(2 * 60 + 1);
    assert_eq!(sim.rollout.total().silent, 2);
}

#[test]
fn a_deferred_install_stays_pending_and_counts_once() {
    let p = RolloutPolicy {
        deferral: Some(super::spec::Deferral { count: 1, notice: MINUTE, defer_by: HOUR }),
        silence_deadline: 3 * HOUR,
        ..policy("100%")
    };
    let mut sim = Sim::new(p, 2);
    let (a, b) = (agent(0), agent(1));
    sim.report(&a, Outcome::Offered);
    sim.report(&a, Outcome::Deferred);
    let t = sim.rollout.total();
    assert_eq!((t.pending, t.deferred, t.offered), (1, 1, 0), "push offers are pending, not optional");
    sim.report(&b, Outcome::Succeeded);
    assert_eq!(sim.rollout.phase().name(), "running", "the wave waits for the deferred agent");
    // The silence deadline covers the notice and the deferrals: two hours later it is not silent.
    sim.tick(120);
    assert_eq!(sim.rollout.total().silent, 0);
    sim.report(&a, Outcome::Progress);
    sim.report(&a, Outcome::Succeeded);
    let t = sim.rollout.total();
    assert_eq!((t.succeeded, t.deferred, t.pending), (2, 0, 0));
    assert_eq!(sim.rollout.phase(), &Phase::Completed);
}

// ---- named-group waves ----

#[test]
fn group_waves_take_their_whole_group_and_shares_count_over_every_member() {
    type Row<'a> = (usize, &'a [(Range<usize>, &'a str)], &'a str, &'a [u64]);
    // (fleet, groups, waves, agents assigned per wave)
    let table: &[Row] = &[
        // The 5 pilots, then others up to a quarter of the fleet, then everyone.
        (100, &[(0..5, "pilot")], "tag:pilot,25%,100%", &[5, 20, 75]),
        // The pilots are more than a quarter already: the 25% wave is empty.
        (100, &[(0..30, "pilot")], "tag:pilot,25%,100%", &[30, 0, 70]),
        // Rings, one after the other.
        (20, &[(0..2, "pilot"), (2..10, "ring1")], "tag:pilot,tag:ring1,100%", &[2, 8, 10]),
        // An agent in two groups goes with the first of their waves.
        (10, &[(0..3, "pilot"), (2..5, "ring1")], "tag:pilot,tag:ring1,100%", &[3, 2, 5]),
        // A canary by cohort order, never a pilot: the pilots wait for their wave.
        (100, &[(0..5, "pilot")], "1,tag:pilot,100%", &[1, 5, 94]),
        // A share before a group's wave leaves the group for its wave…
        (100, &[(0..50, "ring1")], "10%,tag:ring1,100%", &[10, 50, 40]),
        // …and falls short rather than take them early.
        (100, &[(0..95, "ring1")], "10%,tag:ring1,100%", &[5, 95, 0]),
        // Nobody in the group (the tag is on agents outside the target): an
        // empty wave passes at once, like a wave smaller than one agent.
        (10, &[], "tag:pilot,50%,100%", &[0, 5, 5]),
        // At scale.
        (10_000, &[(0..50, "pilot")], "tag:pilot,5%,25%,100%", &[50, 450, 2000, 7500]),
    ];
    for (fleet, groups, waves, sizes) in table {
        let mut sim = Sim::grouped(policy(waves), *fleet, groups);
        sim.succeed_to_the_end();
        assert_eq!(sim.wave_sizes(), *sizes, "{waves}");
        assert_eq!(sim.assigned.len(), *fleet, "{waves}: everyone, once");
        let policy = sim.rollout.policy().clone();
        for (wave, size) in policy.waves.iter().enumerate() {
            let later: Vec<&str> = policy.waves[wave + 1..].iter().filter_map(WaveSize::group).collect();
            for a in sim.wave(wave) {
                let in_group = |g: &str| sim.rollout.groups_of(&a).iter().any(|x| x == g);
                match size {
                    WaveSize::Group(g) => assert!(in_group(g), "{waves}: {a} is not in {g}"),
                    _ => assert!(!later.iter().any(|g| in_group(g)), "{waves}: {a} went out before its group"),
                }
            }
            if let WaveSize::Group(g) = size {
                let left = sim.assigned.iter().filter(|(a, w)| **w > wave && sim.rollout.groups_of(a).contains(g));
                assert_eq!(left.count(), 0, "{waves}: wave {wave} left members of {g} behind");
            }
        }
    }
}

#[test]
fn a_group_wave_is_judged_by_its_own_members() {
    // 4 pilots of 100; 95% must succeed, more than 2% failed halts.
    // (what the pilots report, phase afterwards, agents assigned)
    let table: &[(&[Outcome], &str, usize)] = &[
        (&[Outcome::Succeeded; 4], "wave 2 of 3", 25),
        // 3 of 4 is 75%: the wave waits for the last pilot.
        (&[Outcome::Succeeded, Outcome::Succeeded, Outcome::Succeeded, Outcome::Progress], "wave 1 of 3", 4),
        // 1 of 4 failed is 25%, more than 2%: halt before anyone else.
        (&[Outcome::Failed, Outcome::Succeeded, Outcome::Succeeded, Outcome::Succeeded], "halted", 4),
    ];
    for (outcomes, expected, assigned) in table {
        let mut sim = Sim::grouped(policy("tag:pilot,25%,100%"), 100, &[(10..14, "pilot")]);
        assert_eq!(sim.log[0], Dispatch::WaveStarted { wave: 0, agents: 4 });
        for (a, outcome) in sim.wave(0).iter().zip(outcomes.iter()) {
            sim.report(a, *outcome);
        }
        let got = match sim.rollout.phase() {
            Phase::Running { wave, .. } => format!("wave {} of 3", wave + 1),
            other => other.name().to_string(),
        };
        assert_eq!((got.as_str(), sim.assigned.len()), (*expected, *assigned), "{outcomes:?}");
    }
}

#[test]
fn group_membership_is_read_when_a_member_joins() {
    let joins =
        |i: usize, groups: &[&str]| Joining { agent: agent(i), groups: groups.iter().map(|g| g.to_string()).collect() };
    let p = RolloutPolicy { advance: Advance::Manual, ..policy("1,tag:pilot,100%") };
    let mut sim = Sim::grouped(p, 10, &[(0..2, "pilot")]);
    // Only the groups the waves name are kept.
    sim.rollout.add_agent(sim.now, joins(100, &["pilot", "lab"]));
    assert_eq!(sim.rollout.groups_of(&agent(100)), ["pilot"]);
    // Joining again (tagged once more, say) changes nothing: membership is
    // what it was when the member joined.
    sim.rollout.add_agent(sim.now, joins(0, &[]));
    assert_eq!(sim.rollout.groups_of(&agent(0)), ["pilot"]);

    sim.finish_wave(0, 0);
    sim.rollout.approve(sim.now).unwrap();
    sim.drain();
    assert_eq!(sim.wave(1), [agent(0), agent(1), agent(100)], "a pilot that joined before its wave goes with it");
    // A pilot that joins once its wave is out is an ordinary member: the
    // last wave takes it.
    sim.rollout.add_agent(sim.now, joins(101, &["pilot"]));
    sim.drain();
    assert!(!sim.assigned.contains_key(&agent(101)), "not assigned mid-wave");
    sim.finish_wave(1, 0);
    sim.rollout.approve(sim.now).unwrap();
    sim.drain();
    assert_eq!(sim.assigned.get(&agent(101)), Some(&2));
    assert_eq!(sim.wave_sizes(), [1, 3, 8]);
}

#[test]
fn a_rollout_stored_before_group_waves_existed_loads_and_goes_on() {
    // Stored by a controller of 2026-11-29, before members had groups.
    let stored = r#"{"id":1,"policy":{"waves":[{"percent":100.0}],"success_threshold":100.0,"failure_limit":{"percent":100.0},"soak":{"secs":0,"nanos":0},"silence_deadline":{"secs":86400,"nanos":0},"silence_policy":"failed","advance":"automatic","window":null},"phase":"completed","members":{"agt-050151f6ec8d0814":{"key":16624143529135692086,"wave":0,"status":"succeeded","heard_at":"2026-11-29T10:08:27.741Z"},"agt-228123f4f708c1bb":{"key":15471246752093206630,"wave":0,"status":"succeeded","heard_at":"2026-11-29T10:08:27.769Z"},"agt-39d17f57334094b2":{"key":1046678722899251854,"wave":0,"status":"succeeded","heard_at":"2026-11-29T10:08:27.797Z"},"agt-a7264d65beb48547":{"key":15304711032466971112,"wave":0,"status":"succeeded","heard_at":"2026-11-29T10:08:27.777Z"},"agt-cb001e511d564311":{"key":12333999300778328643,"wave":0,"status":"succeeded","heard_at":"2026-11-29T10:08:27.767Z"}},"waves":[{"assigned":5,"pending":0,"succeeded":5,"failed":0,"silent":0}],"silence":[]}"#;
    let mut rollout: Rollout = serde_json::from_str(stored).unwrap();
    assert_eq!((rollout.phase(), rollout.fleet()), (&Phase::Completed, 5));
    assert!(rollout.members().all(|a| rollout.groups_of(a).is_empty()));
    rollout.add_agent(at(0), agent(1));
    assert_eq!(rollout.poll_dispatch(), Some(Dispatch::Assign { agent: agent(1), wave: 0 }));
    // Members in no group add nothing to the stored state.
    assert!(!serde_json::to_string(&rollout).unwrap().contains("groups"));
}

#[test]
fn a_grouped_rollout_restored_from_its_serialized_form_keeps_its_groups() {
    let p = RolloutPolicy { advance: Advance::Manual, ..policy("1,tag:pilot,100%") };
    let mut sim = Sim::grouped(p, 50, &[(0..5, "pilot")]);
    sim.finish_wave(0, 0);
    let restored: Rollout = serde_json::from_str(&serde_json::to_string(&sim.rollout).unwrap()).unwrap();
    assert_eq!(restored, sim.rollout);
    sim.rollout = restored;
    sim.rollout.approve(sim.now).unwrap();
    sim.drain();
    assert_eq!(sim.wave(1), (0..5).map(agent).collect::<Vec<_>>(), "the pilots, as before the restart");
}
