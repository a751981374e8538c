//! Pull rollouts with real agents and the real `flotte` CLI on the agent's
//! local socket: a user installs an offered release (and removes it), a
//! caller the pull policy does not name is refused and nothing changes, and
//! a deadline makes the agent install by itself, even while the controller
//! is down.
//!
//! The tests run `flotte` as the unprivileged user `nobody` when they run
//! as root (root may always install), so the policy is what decides.

use anyhow::{Context, Result};
use flotte_protocol::Timestamp;
use flotte_protocol::api::{RolloutRequest, RolloutView};
use flotte_tests::{AgentProcess, DEADLINE, Lab, wait_for};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

fn pull_request(version: &str, deadline: Option<Timestamp>) -> RolloutRequest {
    RolloutRequest {
        mode: Some("pull".into()),
        deadline,
        notes: Some("Says hello.\nNow in colour.".into()),
        ..flotte_tests::strict_rollout(version, "100%")
    }
}

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// The unprivileged user `flotte` runs as: `nobody` under root, else whoever
/// runs the tests.
struct User {
    name: String,
    /// Switch to this uid/gid (only when running as root).
    switch: Option<(u32, u32)>,
}

fn test_user() -> Result<User> {
    let euid = std::fs::metadata("/proc/self")?.uid();
    if euid == 0 {
        return Ok(User { name: "nobody".into(), switch: Some((65534, 65534)) });
    }
    let name = std::env::var("USER").context("USER is not set")?;
    Ok(User { name, switch: None })
}

/// Makes the lab's directory reachable by `nobody`, so it can connect to the
/// agent's socket (which is 0666 itself).
fn open_lab_dir(lab: &Lab) -> Result<()> {
    std::fs::set_permissions(lab.dir.path(), std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Runs `flotte ARGS --socket <agent's>` as `user`.
fn flotte(lab: &Lab, agent: &AgentProcess, user: &User, args: &[&str]) -> Result<Output> {
    let exe = lab.bins.agent.with_file_name("flotte");
    let mut command = Command::new(exe);
    command.args(args).arg("--socket").arg(&agent.socket).env_remove("FLOTTE_SOCKET");
    if let Some((uid, gid)) = user.switch {
        command.uid(uid).gid(gid);
    }
    command.output().context("cannot run flotte")
}

fn json(output: &Output) -> Result<serde_json::Value> {
    serde_json::from_slice(&output.stdout)
        .with_context(|| format!("not JSON: {} / {}", stdout(output), String::from_utf8_lossy(&output.stderr)))
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn wait_phase(lab: &Lab, id: u64, phase: &str) -> Result<RolloutView> {
    wait_for(&format!("rollout {id} to be {phase}"), DEADLINE, || {
        let r = lab.client.rollout(id)?;
        Ok((r.phase == phase).then_some(r))
    })
}

/// Who the agent's `[pull]` policy lets install, besides root.
enum Policy {
    /// Only root: the default policy.
    RootOnly,
    /// The test user too.
    TestUser,
}

/// A lab with one agent under `policy`, its directory readable by the test
/// user, and `hello@1.0.0` published.
fn lab_with_hello(policy: Policy) -> Result<(Lab, AgentProcess, User)> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let user = test_user()?;
    let config = match policy {
        Policy::RootOnly => String::new(),
        Policy::TestUser => format!("[pull]\ninstall_users = [{:?}]\n", user.name),
    };
    let agent = lab.agent_with(|_| config)?;
    open_lab_dir(&lab)?;
    lab.publish(&key, "hello", "1.0.0")?;
    Ok((lab, agent, user))
}

#[test]
fn a_user_installs_an_offered_release_with_flotte_and_the_rollout_counts_it() -> Result<()> {
    let (lab, agent, user) = lab_with_hello(Policy::TestUser)?;

    let created = lab.client.create_rollout(&pull_request("1.0.0", None))?;
    assert_eq!(created.mode, "pull");
    lab.wait_report(&agent, created.id, "offered")?;
    let offered = wait_phase(&lab, created.id, "completed")?;
    assert_eq!((offered.waves[0].offered, offered.waves[0].succeeded), (1, 0), "the rollout did not wait for the user");
    assert_eq!(agent.active_version("hello"), None, "an offer installs nothing by itself");

    let list = flotte(&lab, &agent, &user, &["list", "--json"])?;
    assert!(list.status.success(), "{}", stderr(&list));
    let list = json(&list)?;
    assert_eq!(list["available"][0]["name"], "hello");
    assert_eq!(list["available"][0]["version"], "1.0.0");
    assert_eq!(list["available"][0]["notes"], "Says hello.\nNow in colour.");
    assert_eq!(list["installed"], serde_json::json!([]));

    let install = flotte(&lab, &agent, &user, &["install", "hello"])?;
    assert!(install.status.success(), "{} {}", stdout(&install), stderr(&install));
    assert!(stdout(&install).contains("hello 1.0.0: succeeded"), "{}", stdout(&install));
    assert_eq!(agent.active_version("hello").as_deref(), Some("1.0.0"));
    assert_eq!(flotte_tests::active_content(&agent, "hello").as_deref(), Some("1.0.0"));

    // The install reported under the offer's assignment, like a push.
    let done = lab.wait_assignment(created.id, &agent)?;
    assert_eq!(done.state.as_ref().map(|s| s.name()), Some("succeeded"));
    let view = lab.client.rollout(created.id)?;
    assert_eq!((view.waves[0].offered, view.waves[0].succeeded), (0, 1), "{view:?}");
    let states: Vec<&str> = lab.reports(&agent)?.iter().map(|r| r.state.name()).collect();
    assert_eq!(states.first(), Some(&"offered"));
    assert_eq!(states.last(), Some(&"succeeded"));
    assert!(states.contains(&"verifying") && states.contains(&"installing"), "the verified path: {states:?}");

    let list = json(&flotte(&lab, &agent, &user, &["list", "--json"])?)?;
    assert_eq!(list["available"], serde_json::json!([]));
    assert_eq!(list["installed"], serde_json::json!([{ "name": "hello", "version": "1.0.0", "pulled": true }]));
    let status = flotte(&lab, &agent, &user, &["status"])?;
    assert!(stdout(&status).contains("hello 1.0.0: succeeded"), "{}", stdout(&status));

    // What the user installed, the user may remove.
    let remove = flotte(&lab, &agent, &user, &["remove", "hello"])?;
    assert!(remove.status.success(), "{}", stderr(&remove));
    assert_eq!(agent.active_version("hello"), None);
    let again = flotte(&lab, &agent, &user, &["install", "hello"])?;
    assert_eq!(again.status.code(), Some(3), "nothing is offered any more: {}", stderr(&again));
    Ok(())
}

#[test]
fn a_caller_the_policy_does_not_name_is_refused_and_nothing_changes() -> Result<()> {
    let (lab, agent, user) = lab_with_hello(Policy::RootOnly)?;
    let created = lab.client.create_rollout(&pull_request("1.0.0", None))?;
    lab.wait_report(&agent, created.id, "offered")?;

    let install = flotte(&lab, &agent, &user, &["install", "hello"])?;
    assert_eq!(install.status.code(), Some(4), "{}", stderr(&install));
    assert!(stderr(&install).contains(&format!("{} (uid", user.name)), "{}", stderr(&install));
    assert!(stderr(&install).contains("may not install"), "{}", stderr(&install));
    let remove = flotte(&lab, &agent, &user, &["remove", "hello"])?;
    assert_eq!(remove.status.code(), Some(4), "{}", stderr(&remove));

    // Nothing changed: not installed, still offered, still listed.
    assert_eq!(agent.active_version("hello"), None);
    let a = lab.assignment(created.id, &agent)?;
    assert_eq!(a.state.as_ref().map(|s| s.name()), Some("offered"));
    let list = flotte(&lab, &agent, &user, &["list", "--json"])?;
    assert!(list.status.success(), "reading is open to everyone: {}", stderr(&list));
    assert_eq!(json(&list)?["available"][0]["name"], "hello");

    // A frame announcing 4 GiB is refused without being read; the agent
    // goes on serving.
    {
        use std::io::{Read as _, Write as _};
        let mut raw = std::os::unix::net::UnixStream::connect(&agent.socket)?;
        raw.write_all(&u32::MAX.to_be_bytes())?;
        raw.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut rest = Vec::new();
        let _ = raw.read_to_end(&mut rest);
        assert!(rest.is_empty(), "no answer to an oversized frame");
    }
    let unknown = flotte(&lab, &agent, &user, &["install", "nothing-like-it"])?;
    assert_eq!(unknown.status.code(), Some(4), "the policy is checked before the catalog");
    let status = flotte(&lab, &agent, &user, &["status", "--json"])?;
    assert!(status.status.success(), "{}", stderr(&status));
    assert_eq!(json(&status)?["connected"], true);
    Ok(())
}

#[test]
fn at_the_deadline_the_agent_installs_by_itself_even_with_the_controller_down() -> Result<()> {
    let (mut lab, agent, user) = lab_with_hello(Policy::RootOnly)?;
    let deadline = now().saturating_add(Duration::from_secs(12));
    let created = lab.client.create_rollout(&pull_request("1.0.0", Some(deadline)))?;
    assert_eq!(created.deadline, Some(deadline));
    lab.wait_report(&agent, created.id, "offered")?;
    assert_eq!(lab.client.rollout(created.id)?.stage.as_deref(), Some("awaiting_deadline"));
    let status = flotte(&lab, &agent, &user, &["status"])?;
    let told = stdout(&status);
    assert!(
        told.contains("hello 1.0.0 will be installed at") && told.contains("(required from"),
        "users are told: {told}"
    );

    // The agent fetches the content of an offer with a deadline ahead of
    // time (white box: its download file is complete), so that it can keep
    // the deadline offline. Then the controller goes away.
    let release = lab.client.releases()?.pop().context("published")?;
    let download = agent.state_dir.join("downloads").join(format!("{}.part", release.sha256.to_hex()));
    wait_for("the content to be downloaded ahead of the deadline", DEADLINE, || {
        Ok(std::fs::metadata(&download).ok().filter(|m| m.len() == release.size))
    })?;
    assert!(now() < deadline, "the test machine is too slow for a 12 s deadline; nothing was checked");
    lab.controller.kill();
    wait_for("the agent to install at the deadline", DEADLINE, || {
        Ok(agent.active_version("hello").filter(|v| v == "1.0.0"))
    })?;
    assert!(now() >= deadline);

    lab.controller.start()?;
    lab.client = lab.controller.client()?;
    let done = wait_phase(&lab, created.id, "completed")?;
    assert_eq!((done.waves[0].succeeded, done.waves[0].offered), (1, 0));
    let reports = lab.reports(&agent)?;
    let received = reports.iter().find(|r| r.state.name() == "received").context("a received report")?;
    assert!(received.at >= deadline, "the install began at the deadline ({}), not before ({})", deadline, received.at);
    Ok(())
}

#[test]
fn a_user_told_of_a_push_defers_it_once_and_the_rollout_shows_it() -> Result<()> {
    let (lab, agent, user) = lab_with_hello(Policy::TestUser)?;
    let push = RolloutRequest {
        mode: Some("push".into()),
        notes: None,
        deferrals: Some(1),
        notice_seconds: Some(3600),
        defer_seconds: Some(3600),
        silence_seconds: 3 * 3600,
        ..pull_request("1.0.0", None)
    };
    let created = lab.client.create_rollout(&push)?;
    assert_eq!((created.mode.as_str(), created.deferrals), ("push", 1));
    lab.wait_report(&agent, created.id, "offered")?;

    // The user is told what will change and when, and how to defer.
    let status = flotte(&lab, &agent, &user, &["status"])?;
    assert!(stdout(&status).contains("hello 1.0.0 will be installed at"), "{}", stdout(&status));
    assert!(stdout(&status).contains("`flotte defer hello` (1 left)"), "{}", stdout(&status));

    let defer = flotte(&lab, &agent, &user, &["defer", "hello", "--json"])?;
    assert!(defer.status.success(), "{}", stderr(&defer));
    assert_eq!(json(&defer)?["remaining"], 0);
    let deferred = lab.wait_report(&agent, created.id, "deferred")?;
    assert!(
        matches!(deferred.state, flotte_protocol::messages::InstallState::Deferred { remaining: 0, .. }),
        "{deferred:?}"
    );
    let view = wait_for("the rollout to count the deferral", DEADLINE, || {
        let r = lab.client.rollout(created.id)?;
        Ok((r.waves[0].deferred == 1).then_some(r))
    })?;
    assert_eq!(view.phase, "running", "a deferred install is still pending");
    let again = flotte(&lab, &agent, &user, &["defer", "hello"])?;
    assert_eq!(again.status.code(), Some(5), "{}", stderr(&again));
    assert!(stderr(&again).contains("deferrals are used up"), "{}", stderr(&again));
    assert_eq!(agent.active_version("hello"), None, "nothing installed while deferred");

    // The user may still take it now; it is required, so not theirs to remove.
    let install = flotte(&lab, &agent, &user, &["install", "hello"])?;
    assert!(install.status.success(), "{}", stderr(&install));
    assert_eq!(agent.active_version("hello").as_deref(), Some("1.0.0"));
    let done = wait_phase(&lab, created.id, "completed")?;
    assert_eq!((done.waves[0].succeeded, done.waves[0].deferred), (1, 0));
    let remove = flotte(&lab, &agent, &user, &["remove", "hello"])?;
    assert_eq!(remove.status.code(), Some(4), "{}", stderr(&remove));
    assert_eq!(agent.active_version("hello").as_deref(), Some("1.0.0"));
    Ok(())
}

#[test]
fn aborting_a_pull_rollout_withdraws_its_offers() -> Result<()> {
    let (lab, agent, user) = lab_with_hello(Policy::TestUser)?;
    let deadline = now().saturating_add(Duration::from_secs(3600));
    let created = lab.client.create_rollout(&pull_request("1.0.0", Some(deadline)))?;
    lab.wait_report(&agent, created.id, "offered")?;

    lab.client.rollout_command(created.id, "abort")?;
    let failed = lab.wait_report(&agent, created.id, "failed")?;
    let message = failed.state.failure().map(|(_, m)| m.to_string()).unwrap_or_default();
    assert!(message.contains("withdrawn"), "{message}");
    let list = json(&flotte(&lab, &agent, &user, &["list", "--json"])?)?;
    assert_eq!(list["available"], serde_json::json!([]), "nothing left to install");
    let install = flotte(&lab, &agent, &user, &["install", "hello"])?;
    assert_eq!(install.status.code(), Some(3), "{}", stderr(&install));
    assert_eq!(agent.active_version("hello"), None);
    Ok(())
}
