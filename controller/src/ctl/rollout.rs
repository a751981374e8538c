//! `flottectl rollout …`: create, follow and steer rollouts.
//!
//! `wait` is for pipelines: it exits 0 when the rollout completes, 3 when it
//! halts and 4 when it is aborted. `watch` redraws per-wave progress bars
//! on a terminal and prints one line per change otherwise.

use super::output;
use crate::client::AdminClient;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use flotte_protocol::Timestamp;
use flotte_protocol::api::{RollbackRequest, RollbackView, RolloutRequest, RolloutView, Target};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Exit code of `rollout wait` for a halted rollout.
pub const EXIT_HALTED: u8 = 3;
/// Exit code of `rollout wait` for an aborted rollout.
pub const EXIT_ABORTED: u8 = 4;

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Roll a release out in waves.
    Create(CreateArgs),
    /// All rollouts.
    List,
    /// One rollout with per-wave counts.
    Show { id: u64 },
    /// Stop starting new waves.
    Pause { id: u64 },
    /// Continue a paused rollout, or override a halt.
    Resume { id: u64 },
    /// Let a wave that awaits approval lead to the next.
    Approve { id: u64 },
    /// Stop the rollout for good.
    Abort { id: u64 },
    /// Block until the rollout completes (exit 0), halts (3) or is aborted (4).
    Wait {
        id: u64,
        /// Give up after this long (exit 1).
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<Duration>,
    },
    /// Live per-wave progress until the rollout finishes or halts.
    Watch { id: u64 },
    /// Send every agent that committed the release back to its previous
    /// version, as a new rollout (aborts the original if unfinished).
    Rollback(RollbackArgs),
}

/// `rollout rollback`: each option left out is taken from the original rollout.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The rollout whose release to roll back.
    pub id: u64,
    /// Waves: cumulative counts or percentages and named groups, e.g.
    /// 1,25%,100% or tag:pilot,100%.
    #[arg(long)]
    pub waves: Option<String>,
    /// Percent of a wave that must succeed before the next starts.
    #[arg(long)]
    pub success: Option<f64>,
    /// Halt when more agents fail than this: a count (3) or a percentage (2%).
    #[arg(long)]
    pub max_failures: Option<String>,
    /// How long a passed wave must stay green (e.g. 10m).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub soak: Option<Duration>,
    /// Each next wave waits for `flottectl rollout approve`.
    #[arg(long)]
    pub manual: bool,
}

impl RollbackArgs {
    pub fn request(&self) -> RollbackRequest {
        RollbackRequest {
            waves: self.waves.clone(),
            success_threshold: self.success,
            max_failures: self.max_failures.clone(),
            soak_seconds: self.soak.map(|d| d.as_secs()),
            manual: self.manual.then_some(true),
        }
    }
}

/// What `rollout rollback` prints: the new rollout and who it leaves alone.
pub fn rollback_details(v: &RollbackView) -> String {
    let mut out = details(&v.rollout);
    for s in &v.skipped {
        out.push_str(&format!("  skipped {} ({}): {}\n", s.hostname, s.agent, s.reason));
    }
    out.push_str(&format!("follow it with: flottectl rollout watch {}\n", v.rollout.id));
    out
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// NAME@VERSION of a published release.
    pub release: String,
    /// `all`; `tag:pilot,tag:lab` (agents with any of the tags); a filter
    /// `os=linux,arch=x86_64,hostname=ws-*` (every condition; `*` and `?`
    /// match); or a comma-separated list of agent ids or hostnames. All but
    /// host lists are dynamic: agents that match later join.
    #[arg(long)]
    pub to: String,
    /// Waves: counts or percentages, cumulative over the targeted agents,
    /// and named groups: tag:NAME takes every targeted agent tagged NAME
    /// (when it joined the rollout) that is not assigned yet, e.g.
    /// tag:pilot,25%,100% (the pilots, then others up to 25%, then
    /// everyone). The last wave must be 100%.
    #[arg(long, default_value = RolloutRequest::DEFAULT_WAVES)]
    pub waves: String,
    /// Percent of a wave that must succeed before the next starts.
    #[arg(long, default_value_t = RolloutRequest::DEFAULT_SUCCESS)]
    pub success: f64,
    /// Halt when more agents fail than this: a count (3) or a percentage (2%).
    #[arg(long, default_value = RolloutRequest::DEFAULT_MAX_FAILURES)]
    pub max_failures: String,
    /// How long a passed wave must stay green before the next (e.g. 10m).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub soak: Duration,
    /// An assigned agent silent this long counts as failed (or skipped with --skip-silent).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub silence: Duration,
    /// Silent agents leave the denominator instead of counting as failed.
    #[arg(long)]
    pub skip_silent: bool,
    /// Each next wave waits for `flottectl rollout approve`.
    #[arg(long)]
    pub manual: bool,
    /// Start time, RFC 3339 with an offset, e.g. 2026-12-05T22:00:00+01:00.
    #[arg(long, value_parser = parse_start)]
    pub start: Option<Timestamp>,
    /// Waves start only inside this window: DAYS HH:MM-HH:MM [ZONE|OFFSET],
    /// e.g. "sat,sun 00:00-06:00 Europe/Paris" (IANA zone, with its daylight
    /// saving) or "sat,sun 00:00-06:00 +01:00"; UTC when neither is given.
    #[arg(long)]
    pub window: Option<String>,
    /// push: agents install as soon as they are assigned (required).
    /// pull: the release appears in agents' catalogs and end users install it
    /// with `flotte install` (available).
    #[arg(long, default_value = "push", value_parser = ["push", "pull"])]
    pub mode: String,
    /// With --mode pull: when the release becomes required; agents then
    /// install it by themselves, inside --window if given. RFC 3339.
    #[arg(long, value_parser = parse_start)]
    pub deadline: Option<Timestamp>,
    /// With --mode pull: release notes that `flotte list` shows end users.
    #[arg(long)]
    pub notes: Option<String>,
    /// With --mode push: users may postpone the install this many times
    /// (`flotte defer`); agents tell them first (desktop notification,
    /// `flotte status`) and install --notice after receiving it.
    #[arg(long)]
    pub deferrals: Option<u32>,
    /// With --deferrals: the notice before the install (default 15m).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub notice: Option<Duration>,
    /// With --deferrals: how long one deferral postpones it (default 1h).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub defer_by: Option<Duration>,
}

/// Parses RFC 3339 with `Z` or a `±HH:MM` offset.
pub fn parse_start(s: &str) -> Result<Timestamp, String> {
    let bad = || format!("{s:?} is not an RFC 3339 time like 2026-12-05T22:00:00+01:00");
    let (local, offset_minutes) = match s.len().checked_sub(6).map(|i| s.split_at(i)) {
        Some((local, off)) if off.starts_with(['+', '-']) && off.as_bytes()[3] == b':' => {
            let hours: i64 = off[1..3].parse().map_err(|_| bad())?;
            let minutes: i64 = off[4..6].parse().map_err(|_| bad())?;
            let sign = if off.starts_with('-') { -1 } else { 1 };
            (local.to_string(), sign * (hours * 60 + minutes))
        }
        _ => (s.trim_end_matches('Z').to_string(), 0),
    };
    let utc_as_if = Timestamp::parse_rfc3339(&format!("{local}Z")).ok_or_else(bad)?;
    let ms = utc_as_if.as_unix_millis() as i64 - offset_minutes * 60_000;
    u64::try_from(ms).map(Timestamp::from_unix_millis).map_err(|_| bad())
}

fn release(spec: &str) -> Result<(String, String)> {
    let (name, version) = spec.split_once('@').context("release must be written NAME@VERSION, e.g. app@1.2.0")?;
    Ok((name.to_string(), version.to_string()))
}

/// Parses `--to`: `all`, `tag:NAME,…`, `field=pattern,…` or a host list.
pub fn target(to: &str) -> Target {
    crate::rollout::targets::parse(to)
}

impl CreateArgs {
    pub fn request(&self) -> Result<RolloutRequest> {
        let (name, version) = release(&self.release)?;
        Ok(RolloutRequest {
            name,
            version,
            target: target(&self.to),
            waves: self.waves.clone(),
            success_threshold: self.success,
            max_failures: self.max_failures.clone(),
            soak_seconds: self.soak.as_secs(),
            silence_seconds: self.silence.as_secs(),
            silent_counts_as_failed: !self.skip_silent,
            manual: self.manual,
            start_at: self.start,
            window: self.window.clone(),
            mode: Some(self.mode.clone()),
            deadline: self.deadline,
            notes: self.notes.clone(),
            deferrals: self.deferrals,
            notice_seconds: self.notice.map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX)),
            defer_seconds: self.defer_by.map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX)),
        })
    }
}

/// One line per rollout for `list`.
pub fn table(rollouts: &[RolloutView]) -> String {
    let rows: Vec<Vec<String>> = rollouts
        .iter()
        .map(|r| {
            let t = totals(r);
            vec![
                r.id.to_string(),
                format!("{}@{}", r.name, r.version),
                r.mode.clone(),
                phase_label(r),
                format!("{}/{}", t.1, r.targeted),
                t.2.to_string(),
                r.created_at.to_string(),
            ]
        })
        .collect();
    output::table(&["ID", "RELEASE", "MODE", "PHASE", "SUCCEEDED", "FAILED", "CREATED"], &rows)
}

/// (assigned, succeeded, failed+silent, pending)
fn totals(r: &RolloutView) -> (u64, u64, u64, u64) {
    r.waves
        .iter()
        .fold((0, 0, 0, 0), |(a, s, f, p), w| (a + w.assigned, s + w.succeeded, f + w.failed + w.silent, p + w.pending))
}

fn phase_label(r: &RolloutView) -> String {
    match (&r.wave, &r.stage, &r.reason) {
        (_, _, Some(reason)) => format!("{}: {reason}", r.phase),
        (Some(w), Some(stage), _) => format!("{} (wave {} of {}, {stage})", r.phase, w + 1, r.waves.len()),
        _ => r.phase.clone(),
    }
}

/// The multi-line view for `show` and `watch`.
pub fn details(r: &RolloutView) -> String {
    let mut out = format!("rollout {} of {}@{}: {}\n", r.id, r.name, r.version, phase_label(r));
    if let Some(of) = r.rollback_of {
        out.push_str(&format!("rolls back rollout {of}: each agent returns to the version it ran before\n"));
    }
    if let Some(start) = r.start_at {
        out.push_str(&format!("starts at {start}\n"));
    }
    match (r.mode.as_str(), r.deadline) {
        ("pull", Some(deadline)) => {
            out.push_str(&format!("pull: offered to end users (`flotte install`), required from {deadline}\n"))
        }
        ("pull", None) => out.push_str("pull: offered to end users (`flotte install`), never required\n"),
        _ if r.deferrals > 0 => out.push_str(&format!(
            "push with notice: users are told first and may defer {} times (`flotte defer`)\n",
            r.deferrals
        )),
        _ => {}
    }
    if let Some(window) = &r.window {
        out.push_str(&format!("maintenance window {window}"));
        match r.window_opens {
            Some(opens) => out.push_str(&format!(": closed, the next wave starts at {opens}\n")),
            None => out.push('\n'),
        }
    }
    // Sizes as written (`1`, `25%`, `tag:pilot`), in one aligned column.
    let label = r.waves.iter().map(|w| w.size.len()).max().unwrap_or(0).max(5);
    for (i, w) in r.waves.iter().enumerate() {
        let width = 30usize;
        let done = if w.assigned == 0 { 0 } else { (w.succeeded as usize * width) / w.assigned as usize };
        let bad = if w.assigned == 0 { 0 } else { ((w.failed + w.silent) as usize * width) / w.assigned as usize };
        let bar = format!("{}{}{}", "#".repeat(done), "x".repeat(bad), ".".repeat(width.saturating_sub(done + bad)));
        out.push_str(&format!(
            "  wave {} ({:>label$}) [{bar}] {} assigned: {} succeeded, {} failed, {} silent, {} pending{}\n",
            i + 1,
            w.size,
            w.assigned,
            w.succeeded,
            w.failed,
            w.silent,
            w.pending,
            match (r.mode.as_str(), r.deferrals) {
                ("pull", _) => format!(", {} offered", w.offered),
                (_, 0) => String::new(),
                _ => format!(", {} deferred", w.deferred),
            },
        ));
    }
    out
}

fn finished(r: &RolloutView) -> Option<u8> {
    match r.phase.as_str() {
        "completed" => Some(0),
        "halted" => Some(EXIT_HALTED),
        "aborted" => Some(EXIT_ABORTED),
        _ => None,
    }
}

/// Polls until the rollout is completed, halted or aborted; returns the exit code.
pub fn wait(
    client: &AdminClient,
    id: u64,
    timeout: Option<Duration>,
    mut on_change: impl FnMut(&RolloutView),
) -> Result<u8> {
    let started = Instant::now();
    let mut last = None;
    loop {
        let r = client.rollout(id)?;
        if last.as_ref() != Some(&r) {
            on_change(&r);
        }
        if let Some(code) = finished(&r) {
            return Ok(code);
        }
        last = Some(r);
        if timeout.is_some_and(|t| started.elapsed() > t) {
            bail!(
                "rollout {id} still {} after {}",
                last.map(|r| r.phase).unwrap_or_default(),
                output::duration(started.elapsed())
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `watch`: redraws in place on a terminal.
pub fn watch(client: &AdminClient, id: u64) -> Result<u8> {
    watch_until(client, id, None)
}

/// `watch` that gives up after `timeout`.
pub fn watch_until(client: &AdminClient, id: u64, timeout: Option<Duration>) -> Result<u8> {
    let tty = std::io::stdout().is_terminal();
    let mut drawn_lines = 0;
    wait(client, id, timeout, |r| {
        let text = details(r);
        // print! (not a raw stdout handle) so that test harnesses capture it.
        if tty && drawn_lines > 0 {
            print!("\x1b[{drawn_lines}A\x1b[J");
        }
        print!("{text}");
        let _ = std::io::stdout().flush();
        drawn_lines = text.lines().count();
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use flotte_protocol::api::WaveView;

    #[test]
    fn a_rollout_created_without_options_is_the_api_default_request() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            create: CreateArgs,
        }
        let cli = Cli::try_parse_from(["create", "app@1.2.0", "--to", "all"]).unwrap();
        let expected = RolloutRequest { mode: Some("push".into()), ..RolloutRequest::new("app", "1.2.0", Target::All) };
        assert_eq!(cli.create.request().unwrap(), expected);
    }

    #[test]
    fn start_times_with_offsets_convert_to_utc() {
        let t = parse_start("2026-12-05T22:00:00+01:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-05T21:00:00.000Z");
        assert_eq!(parse_start("2026-12-05T21:00:00Z").unwrap(), t);
        assert_eq!(parse_start("2026-12-05T16:00:00-05:00").unwrap(), t);
        assert!(parse_start("next saturday").is_err());
    }

    #[test]
    fn show_labels_each_wave_as_written_in_one_column() {
        let wave = |size: &str, assigned, succeeded| WaveView {
            size: size.into(),
            assigned,
            pending: assigned - succeeded,
            succeeded,
            failed: 0,
            silent: 0,
            offered: 0,
            deferred: 0,
        };
        let view = RolloutView {
            id: 7,
            name: "hello".into(),
            version: "2.0.0".into(),
            phase: "running".into(),
            wave: Some(1),
            stage: Some("deploying".into()),
            reason: None,
            targeted: 10,
            waves: vec![wave("tag:pilot", 2, 2), wave("25%", 1, 0), wave("100%", 0, 0)],
            created_at: Timestamp::from_unix_millis(0),
            start_at: None,
            rollback_of: None,
            window: None,
            window_opens: None,
            mode: "push".into(),
            deadline: None,
            deferrals: 0,
        };
        let text = details(&view);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "rollout 7 of hello@2.0.0: running (wave 2 of 3, deploying)");
        assert!(lines[1].starts_with("  wave 1 (tag:pilot) [##############################] 2 assigned"), "{text}");
        assert!(lines[2].starts_with("  wave 2 (      25%) ["), "{text}");
        assert!(lines[3].starts_with("  wave 3 (     100%) ["), "{text}");
    }
}
