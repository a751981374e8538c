//! Bad releases: each is refused by the agent *before* any install step,
//! with a clear message, and the previously installed version stays active.
//!
//! Most of these play a compromised controller (its database, its admin
//! token and its online TUF keys stolen), because an honest one refuses bad
//! metadata at upload: the agent must not rely on that.

use anyhow::{Context, Result};
use flotte_controller::ctl::trust::Rotation;
use flotte_controller::ctl::{keys, package, sample, trust};
use flotte_controller::lab::harness::AgentProcess;
use flotte_protocol::api::TufRoleView;
use flotte_protocol::messages::{FailureClass, InstallState};
use flotte_protocol::tuf::metadata::Envelope;
use flotte_protocol::tuf::release::{Platform, target_entry, target_name};
use flotte_protocol::tuf::repo::{self, Ed25519Signer};
use flotte_protocol::tuf::{self, expiry};
use flotte_protocol::{SecretKey, Timestamp};
use flotte_tests::{Lab, failure_message};
use rusqlite::params;
use serde_json::{Value, json};
use std::time::{Duration, SystemTime};

/// A lab with one agent that already runs hello@1.0.0.
fn lab_with_v1() -> Result<(Lab, Vec<AgentProcess>, SecretKey)> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let agents = lab.agents(1)?;
    lab.publish(&key, "hello", "1.0.0")?;
    lab.wait_done(lab.deploy_all("hello", "1.0.0")?)?;
    assert_eq!(agents[0].active_version("hello").as_deref(), Some("1.0.0"));
    Ok((lab, agents, key))
}

/// Deploys `version`, waits, and checks the agent refused it on
/// verification grounds while 1.0.0 stayed active. Returns the message.
fn refused(lab: &Lab, agent: &AgentProcess, version: &str) -> Result<String> {
    let message = refused_keeping(lab, agent, version, "1.0.0")?;
    assert!(!agent.root.join("packages/hello").join(version).exists(), "nothing of {version} was staged");
    Ok(message)
}

fn refused_keeping(lab: &Lab, agent: &AgentProcess, version: &str, active: &str) -> Result<String> {
    let done = lab.wait_done(lab.deploy_all("hello", version)?)?;
    let a = &done[0];
    assert!(
        matches!(a.state, Some(InstallState::Failed { class: FailureClass::Verification, .. })),
        "expected a verification failure, got {:?}",
        a.state
    );
    assert_eq!(a.active_version.as_deref(), Some(active), "the report names the version still active");
    assert_eq!(agent.active_version("hello").as_deref(), Some(active), "the old version stays active on disk");
    let states: Vec<&str> =
        lab.reports(agent)?.iter().filter(|r| r.assignment == a.id).map(|r| r.state.name()).collect();
    assert!(!states.contains(&"installing"), "refused before any install step: {states:?}");
    Ok(failure_message(a))
}

fn content_path(lab: &Lab, version: &str) -> Result<std::path::PathBuf> {
    let release = lab.client.releases()?.into_iter().find(|r| r.version == version).expect("published");
    Ok(lab.controller.data_dir.join("content").join(release.sha256.to_hex()))
}

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// What a thief holds after copying the controller's data directory: the
/// database and the online snapshot and timestamp keys. Writes go straight
/// into the running controller's database, which serves them to agents.
struct Stolen {
    db: rusqlite::Connection,
    timestamp: Ed25519Signer,
    snapshot: Ed25519Signer,
}

impl Stolen {
    fn from(lab: &Lab) -> Result<Self> {
        let key = |name: &str| -> Result<Ed25519Signer> {
            let text = std::fs::read_to_string(lab.controller.data_dir.join(name))?;
            Ok(trust::signer(&SecretKey::from_file_contents(&text)?))
        };
        Ok(Stolen {
            db: rusqlite::Connection::open(lab.database())?,
            timestamp: key("tuf-timestamp.key")?,
            snapshot: key("tuf-snapshot.key")?,
        })
    }

    fn file(&self, file: &str) -> Result<Vec<u8>> {
        Ok(self.db.query_row("SELECT bytes FROM tuf_metadata WHERE file = ?1", [file], |r| r.get(0))?)
    }

    fn signed(&self, file: &str) -> Result<Value> {
        Ok(Envelope::parse("x", &self.file(file)?, tuf::MAX_TARGETS_LEN)?.signed)
    }

    /// Stores `bytes` as `role`'s metadata, as the controller would.
    fn put(&self, role: &str, bytes: &[u8]) -> Result<()> {
        let signed = Envelope::parse(role, bytes, tuf::MAX_TARGETS_LEN)?.signed;
        let version = signed["version"].as_i64().context("version")?;
        let expires = expiry::parse(signed["expires"].as_str().context("expires")?).context("expires")?;
        self.db.execute(
            "INSERT INTO tuf_metadata (file, role, version, expires, bytes) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (file) DO UPDATE SET version = ?3, expires = ?4, bytes = ?5",
            params![format!("{role}.json"), role, version, expires.as_unix_millis() as i64, bytes],
        )?;
        Ok(())
    }

    /// Signs a new snapshot (listing every stored targets role) and
    /// timestamp with the stolen online keys.
    fn resign_online(&self) -> Result<()> {
        let roles: Vec<(String, u64)> = {
            let mut stmt = self.db.prepare(
                "SELECT role, version FROM tuf_metadata WHERE role NOT IN ('root', 'snapshot', 'timestamp')",
            )?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?.collect::<Result<_, _>>()?
        };
        let listed: Vec<(&str, u64)> = roles.iter().map(|(r, v)| (r.as_str(), *v)).collect();
        let expires = now().saturating_add(Duration::from_secs(3600));
        let snapshot_version = self.signed("snapshot.json")?["version"].as_u64().context("version")? + 1;
        let snapshot = repo::sign(&repo::snapshot(snapshot_version, expires, &listed), &[&self.snapshot])?;
        let timestamp_version = self.signed("timestamp.json")?["version"].as_u64().context("version")? + 1;
        let ts = repo::timestamp(timestamp_version, expires, snapshot_version, Some(&snapshot));
        self.put("snapshot", &snapshot)?;
        self.put("timestamp", &repo::sign(&ts, &[&self.timestamp])?)?;
        Ok(())
    }

    /// Adds `name@version` (content `bytes`, already uploaded) to the
    /// catalogue so that a rollout of it can be created.
    fn add_release(&self, name: &str, version: &str, bytes: &[u8]) -> Result<()> {
        self.db.execute(
            "INSERT INTO releases (name, version, sha256, size, installer, signed_by, published_at)
             VALUES (?1, ?2, ?3, ?4, 'archive', 'targets', 0)",
            params![name, version, flotte_protocol::Sha256Digest::of(bytes).to_hex(), bytes.len() as i64],
        )?;
        Ok(())
    }
}

/// The release `hello@version` built from `path`, as a targets entry.
fn entry_for(path: &std::path::Path, version: &str) -> Result<Value> {
    let release = package::describe(path, "hello", version, &package::ReleaseSpec::default())?;
    Ok(target_entry(&release, &Platform::default()))
}

/// `targets.json` as stored, with `edit` applied, re-signed by `signers`
/// at the next version.
fn edited_targets(stolen: &Stolen, signers: &[&Ed25519Signer], edit: impl FnOnce(&mut Value)) -> Result<Vec<u8>> {
    let mut signed = stolen.signed("targets.json")?;
    edit(&mut signed);
    signed["version"] = json!(signed["version"].as_u64().context("version")? + 1);
    Ok(repo::sign(&signed, signers)?)
}

#[test]
fn a_package_with_one_flipped_byte_is_refused() -> Result<()> {
    let (lab, agents, key) = lab_with_v1()?;
    lab.publish(&key, "hello", "2.0.0")?;
    let blob = content_path(&lab, "2.0.0")?;
    let mut bytes = std::fs::read(&blob)?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&blob, bytes)?;

    let message = refused(&lab, &agents[0], "2.0.0")?;
    assert!(message.contains("sha256"), "{message}");
    Ok(())
}

#[test]
fn content_shorter_than_its_signed_size_is_refused() -> Result<()> {
    let (lab, agents, key) = lab_with_v1()?;
    lab.publish(&key, "hello", "2.0.0")?;
    let blob = content_path(&lab, "2.0.0")?;
    let bytes = std::fs::read(&blob)?;
    std::fs::write(&blob, &bytes[..bytes.len() - 10])?;

    let done = lab.wait_done(lab.deploy_all("hello", "2.0.0")?)?;

    let message = failure_message(&done[0]);
    assert!(message.contains("size"), "{message}");
    assert_eq!(done[0].active_version.as_deref(), Some("1.0.0"));
    assert_eq!(agents[0].active_version("hello").as_deref(), Some("1.0.0"));
    Ok(())
}

#[test]
fn wrong_target_platform_is_refused() -> Result<()> {
    let (lab, agents, key) = lab_with_v1()?;
    let path = sample::build(lab.dir.path(), "hello", "2.0.0", 0)?;
    let other_os = Platform { os: Some("windows".into()), arch: None };
    let spec = package::ReleaseSpec::default();
    package::publish_as(&lab.client, &key, "targets", &path, "hello", "2.0.0", &spec, &other_os)?;

    let message = refused(&lab, &agents[0], "2.0.0")?;
    assert!(message.contains("built for windows/any"), "{message}");
    Ok(())
}

#[test]
fn downgrade_refused_until_the_targets_key_signs_a_rollback_authorisation() -> Result<()> {
    let (lab, agents, key) = lab_with_v1()?;
    lab.publish(&key, "hello", "2.0.0")?;
    lab.wait_done(lab.deploy_all("hello", "2.0.0")?)?;

    // The controller sends the agent back to 1.0.0, correctly signed but
    // older than what runs: refused before any install step.
    let message = refused_keeping(&lab, &agents[0], "1.0.0", "2.0.0")?;
    assert!(message.contains("refusing to downgrade hello from the active 2.0.0 to 1.0.0"), "{message}");
    assert!(message.contains("flottectl package allow-rollback hello 1.0.0 --up-to 2.0.0"), "{message}");

    // Whoever holds the controller's data directory cannot authorise it:
    // the online keys do not sign targets.
    let stolen = Stolen::from(&lab)?;
    let forged = edited_targets(&stolen, &[&stolen.timestamp, &stolen.snapshot], |t| {
        t["targets"][target_name("hello", "1.0.0")]["custom"]["rollback_up_to"] = json!("2.0.0");
    })?;
    let original = stolen.file("targets.json")?;
    stolen.put("targets", &forged)?;
    stolen.resign_online()?;
    let message = refused_keeping(&lab, &agents[0], "1.0.0", "2.0.0")?;
    assert!(message.contains("targets") && message.contains("signatures"), "{message}");
    stolen.put("targets", &original)?;
    stolen.resign_online()?;

    // The admin signs the authorisation with the targets key: now it installs.
    lab.allow_rollback(&key, "hello", "1.0.0", "2.0.0")?;
    let done = lab.wait_done(lab.deploy_all("hello", "1.0.0")?)?;
    assert_eq!(done[0].state, Some(InstallState::Succeeded), "{}", failure_message(&done[0]));
    assert_eq!(agents[0].active_version("hello").as_deref(), Some("1.0.0"));
    Ok(())
}

#[test]
fn targets_signed_by_a_key_not_in_root_are_refused_by_controller_and_agent() -> Result<()> {
    let (lab, agents, _) = lab_with_v1()?;
    let stranger = lab.untrusted_key()?;
    let path = sample::build(lab.dir.path(), "hello", "2.0.0", 0)?;

    // The honest controller refuses the upload.
    let err = package::publish(&lab.client, &stranger, &path, "hello", "2.0.0").unwrap_err().to_string();
    assert!(err.contains("targets") && err.contains("signatures"), "{err}");

    // A compromised one serves it anyway; the agent refuses it.
    let stolen = Stolen::from(&lab)?;
    let entry = entry_for(&path, "2.0.0")?;
    let bytes = edited_targets(&stolen, &[&trust::signer(&stranger)], |t| {
        t["targets"][target_name("hello", "2.0.0")] = entry;
    })?;
    stolen.put("targets", &bytes)?;
    stolen.resign_online()?;
    stolen.add_release("hello", "2.0.0", &std::fs::read(&path)?)?;

    let message = refused(&lab, &agents[0], "2.0.0")?;
    assert!(message.contains("targets") && message.contains("0 of the required 1"), "{message}");
    Ok(())
}

#[test]
fn a_stolen_data_directory_cannot_make_an_agent_install_anything_new() -> Result<()> {
    let (lab, agents, _) = lab_with_v1()?;
    // The thief has the database, the admin token and the online keys. It
    // uploads its own package and lists it in targets, signed with every
    // key it holds.
    let stolen = Stolen::from(&lab)?;
    std::fs::create_dir_all(lab.dir.path().join("evil"))?;
    let evil = sample::build(&lab.dir.path().join("evil"), "hello", "6.6.6", 0)?;
    let release = package::describe(&evil, "hello", "6.6.6", &package::ReleaseSpec::default())?;
    lab.client.upload_content(&release.sha256, &evil)?;
    let entry = entry_for(&evil, "6.6.6")?;
    let bytes = edited_targets(&stolen, &[&stolen.timestamp, &stolen.snapshot], |t| {
        t["targets"][target_name("hello", "6.6.6")] = entry;
    })?;
    stolen.put("targets", &bytes)?;
    stolen.resign_online()?;
    stolen.add_release("hello", "6.6.6", &std::fs::read(&evil)?)?;

    let message = refused(&lab, &agents[0], "6.6.6")?;
    assert!(message.contains("targets") && message.contains("signatures"), "{message}");
    Ok(())
}

#[test]
fn a_delegated_role_publishes_its_own_packages_and_nothing_else() -> Result<()> {
    let (lab, agents, targets_key) = lab_with_v1()?;
    let team = lab.untrusted_key()?;
    trust::delegate(&lab.client, &targets_key, "team-x", &["team-x/*".into()], &[team.public_key()], 1)?;

    // Its own package: accepted by the controller and installed by agents.
    let path = sample::build(lab.dir.path(), "team-x", "1.0", 0)?;
    let spec = package::ReleaseSpec::default();
    let view = package::publish_as(&lab.client, &team, "team-x", &path, "team-x", "1.0", &spec, &Platform::default())?;
    assert_eq!(view.signed_by, "team-x");
    let request = flotte_protocol::api::DeployRequest {
        name: "team-x".into(),
        version: "1.0".into(),
        target: flotte_protocol::api::Target::All,
    };
    let done = lab.wait_done(lab.client.deploy(&request)?.id)?;
    assert_eq!(done[0].state, Some(InstallState::Succeeded), "{}", failure_message(&done[0]));
    assert_eq!(agents[0].active_version("team-x").as_deref(), Some("1.0"));

    // Another package: the controller refuses the upload…
    let hello = sample::build(lab.dir.path(), "hello", "2.0.0", 0)?;
    let err = package::publish_as(&lab.client, &team, "team-x", &hello, "hello", "2.0.0", &spec, &Platform::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not cover"), "{err}");

    // …and a compromised controller that serves it anyway gets it refused
    // by the agent: team-x is never asked about hello/*.
    let stolen = Stolen::from(&lab)?;
    let mut signed = stolen.signed("team-x.json")?;
    signed["targets"][target_name("hello", "2.0.0")] = entry_for(&hello, "2.0.0")?;
    signed["version"] = json!(signed["version"].as_u64().context("version")? + 1);
    stolen.put("team-x", &repo::sign(&signed, &[&trust::signer(&team)])?)?;
    stolen.resign_online()?;
    lab.client.upload_content(&flotte_protocol::Sha256Digest::of(&std::fs::read(&hello)?), &hello)?;
    stolen.add_release("hello", "2.0.0", &std::fs::read(&hello)?)?;

    let message = refused(&lab, &agents[0], "2.0.0")?;
    assert!(message.contains("no trusted targets role lists hello/2.0.0"), "{message}");
    Ok(())
}

#[test]
fn metadata_rolled_back_while_the_agent_was_down_is_refused_after_its_restart() -> Result<()> {
    let (lab, mut agents, key) = lab_with_v1()?;
    let stolen = Stolen::from(&lab)?;
    let old: Vec<(String, Vec<u8>)> = ["targets", "snapshot", "timestamp"]
        .iter()
        .map(|role| Ok((role.to_string(), stolen.file(&format!("{role}.json"))?)))
        .collect::<Result<_>>()?;
    lab.publish(&key, "hello", "2.0.0")?;
    let done = lab.wait_done(lab.deploy_all("hello", "2.0.0")?)?;
    assert_eq!(done[0].state, Some(InstallState::Succeeded));

    agents[0].stop();
    for (role, bytes) in &old {
        stolen.put(role, bytes)?;
    }
    agents[0].start()?;
    // hello@1.0.0 is listed by the old targets: only the rollback check stops it.
    let message = refused_keeping(&lab, &agents[0], "1.0.0", "2.0.0")?;
    assert!(message.contains("timestamp") && message.contains("rollback"), "{message}");
    Ok(())
}

#[test]
fn agents_follow_a_root_rotation_to_two_of_three_keys() -> Result<()> {
    let (lab, agents, key) = lab_with_v1()?;
    let dir = lab.dir.path().join("new-root-keys");
    std::fs::create_dir_all(&dir)?;
    let mut new_keys: Vec<SecretKey> =
        (1..=3).map(|i| Ok(keys::generate(&dir.join(format!("root-{i}.key")))?.0)).collect::<Result<_>>()?;
    let publics: Vec<_> = new_keys.iter().map(SecretKey::public_key).collect();

    // Without the old root's signature the rotation is refused.
    let err = trust::rotate(&lab.client, Rotation::root_keys(&publics, 2), &new_keys[..2]).unwrap_err().to_string();
    assert!(err.contains("root v2") && err.contains("signatures"), "{err}");
    // Only one of the new keys: below the new threshold.
    let err = trust::rotate(&lab.client, Rotation::root_keys(&publics, 2), &[lab.root_key()?, new_keys.remove(0)]);
    assert!(err.unwrap_err().to_string().contains("1 of the required 2"));
    let view = trust::rotate(
        &lab.client,
        Rotation::root_keys(&publics, 2),
        &[lab.root_key()?, new_keys.remove(0), new_keys.remove(0)],
    )?;
    assert_eq!(view.version, 2);

    lab.publish(&key, "hello", "2.0.0")?;
    let done = lab.wait_done(lab.deploy_all("hello", "2.0.0")?)?;
    assert_eq!(done[0].state, Some(InstallState::Succeeded), "{}", failure_message(&done[0]));
    assert_eq!(agents[0].active_version("hello").as_deref(), Some("2.0.0"));
    let pinned = std::fs::read(agents[0].state_dir.join("tuf/root.json"))?;
    assert_eq!(
        Envelope::parse("root", &pinned, tuf::MAX_ROOT_LEN)?.signed["version"],
        2,
        "the agent trusts root v2 now"
    );
    Ok(())
}

#[test]
fn after_a_theft_the_online_keys_are_rotated_and_agents_refuse_what_the_stolen_ones_sign() -> Result<()> {
    let (mut lab, agents, key) = lab_with_v1()?;
    let stolen = Stolen::from(&lab)?;
    let before = lab.client.tuf_online_keys()?;

    // The admin signs root v2 naming the controller's next online keys.
    let root = lab.root_key()?;
    let root_public = [root.public_key()];
    let rotation = Rotation { new_online_keys: true, ..Rotation::root_keys(&root_public, 1) };
    trust::rotate(&lab.client, rotation, &[root])?;
    let after = lab.client.tuf_online_keys()?;
    assert_ne!(after.timestamp, before.timestamp);
    assert_ne!(after.snapshot, before.snapshot);

    // The agent follows the rotation: a new release installs.
    lab.publish(&key, "hello", "2.0.0")?;
    let done = lab.wait_done(lab.deploy_all("hello", "2.0.0")?)?;
    assert_eq!(done[0].state, Some(InstallState::Succeeded), "{}", failure_message(&done[0]));

    // The controller restarts with the new keys, and their secrets are the only ones it keeps.
    lab.controller.kill();
    lab.controller.start()?;
    lab.client = lab.controller.client()?;
    assert_eq!(lab.client.tuf_online_keys()?, after);
    let files: Vec<String> = std::fs::read_dir(&lab.controller.data_dir)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .filter(|n: &Result<String>| n.as_ref().map_or(true, |n| n.starts_with("tuf-")))
        .collect::<Result<_>>()?;
    assert_eq!(files.len(), 2, "{files:?}");

    // The thief signs a fresher snapshot and timestamp with the old keys: refused.
    lab.publish(&key, "hello", "2.1.0")?;
    stolen.resign_online()?;
    let message = refused_keeping(&lab, &agents[0], "2.1.0", "2.0.0")?;
    assert!(message.contains("timestamp") && message.contains("signatures"), "{message}");
    Ok(())
}

#[test]
fn trust_status_warns_before_an_offline_role_expires_and_resign_renews_it() -> Result<()> {
    let lab = Lab::start()?;
    // Targets signed with the real targets key, but for ten days only.
    let bytes = lab.client.tuf_metadata("targets.json")?.context("targets")?;
    let mut signed = Envelope::parse("targets", &bytes, tuf::MAX_TARGETS_LEN)?.signed;
    signed["version"] = json!(2);
    signed["expires"] = json!(expiry::format(now().saturating_add(Duration::from_secs(10 * 86_400 - 60))));
    lab.client.upload_role("targets", &repo::sign(&signed, &[&trust::signer(&lab.trusted_key()?)])?)?;

    let out = lab.flottectl(&["trust", "status"])?;
    let text = String::from_utf8(out.stdout)?;
    assert_eq!(out.status.code(), Some(3), "a warning needs attention: {text}");
    assert!(text.contains("warning: targets v2 expires in 10 days"), "{text}");
    assert!(text.contains("flottectl trust resign targets --key KEY"), "{text}");
    let roles: Vec<TufRoleView> = serde_json::from_slice(&lab.flottectl(&["--json", "trust", "status"])?.stdout)?;
    let flagged: Vec<(&str, bool)> = roles.iter().map(|r| (r.role.as_str(), r.warning.is_some())).collect();
    assert_eq!(flagged, [("root", false), ("targets", true), ("snapshot", false), ("timestamp", false)]);

    let key = lab.trust.targets_key.to_string_lossy().into_owned();
    let resigned = lab.flottectl(&["trust", "resign", "targets", "--key", &key])?;
    assert!(resigned.status.success(), "{}", String::from_utf8_lossy(&resigned.stderr));
    let out = lab.flottectl(&["--json", "trust", "status"])?;
    assert_eq!(out.status.code(), Some(0));
    let roles: Vec<TufRoleView> = serde_json::from_slice(&out.stdout)?;
    let targets = roles.iter().find(|r| r.role == "targets").context("targets")?;
    assert_eq!((targets.version, targets.warning.as_deref()), (3, None));
    Ok(())
}

#[test]
fn metadata_longer_than_its_role_allows_is_refused_over_quic_before_it_is_read() -> Result<()> {
    let (lab, agents, key) = lab_with_v1()?;
    lab.publish(&key, "hello", "2.0.0")?;
    // A correctly signed timestamp, padded to 1 MiB: a timestamp may be 16 KiB.
    let stolen = Stolen::from(&lab)?;
    let mut signed = stolen.signed("timestamp.json")?;
    signed["version"] = json!(signed["version"].as_u64().context("version")? + 1);
    signed["padding"] = json!("x".repeat(1 << 20));
    stolen.put("timestamp", &repo::sign(&signed, &[&stolen.timestamp])?)?;

    let message = refused_keeping(&lab, &agents[0], "2.0.0", "1.0.0")?;
    assert!(message.contains("timestamp.json is") && message.contains("16384-byte limit"), "{message}");
    Ok(())
}

#[test]
fn recent_versions_of_snapshot_and_targets_stay_served_by_their_versioned_names() -> Result<()> {
    let lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let file = |name: &str| lab.client.tuf_metadata(name);
    let version = |bytes: &[u8]| -> Result<u64> {
        Envelope::parse("x", bytes, tuf::MAX_TARGETS_LEN)?.signed["version"].as_u64().context("version")
    };
    let root: Value = serde_json::from_slice(&file("root.json")?.context("root")?)?;
    assert_eq!(root["signed"]["consistent_snapshot"], json!(true), "trust init asks for consistent snapshots");
    assert_eq!(file("1.targets.json")?, file("targets.json")?);

    // Eight publishes: targets v2 to v9, each with its snapshot.
    for patch in 0..8 {
        lab.publish(&key, "hello", &format!("1.0.{patch}"))?;
    }
    let current = file("targets.json")?.context("targets")?;
    assert_eq!(version(&current)?, 9);
    assert_eq!(file("9.targets.json")?.as_deref(), Some(current.as_slice()));
    let older = file("2.targets.json")?.context("a client told of v2 mid-update still gets v2")?;
    assert_eq!(version(&older)?, 2);
    assert_eq!(file("1.targets.json")?, None, "versions older than the 8 kept are dropped");
    let snapshot = version(&file("snapshot.json")?.context("snapshot")?)?;
    let previous = file(&format!("{}.snapshot.json", snapshot - 1))?.context("the previous snapshot")?;
    assert_eq!(version(&previous)?, snapshot - 1);
    Ok(())
}

#[test]
fn enrollment_refuses_a_trust_root_that_does_not_verify_and_writes_nothing() -> Result<()> {
    let lab = Lab::start()?;
    let token = lab.client.create_enrollment_token(Duration::from_secs(600))?.token;
    let agent = AgentProcess::new(&lab.bins, lab.dir.path(), "pinned-01");
    let mut root = std::fs::read(&lab.trust.root)?;
    // Flip one hex digit of the signature: the root no longer verifies.
    let at = root.windows(7).position(|w| w == b"\"sig\":\"").context("no signature")? + 7;
    root[at] = if root[at] == b'0' { b'1' } else { b'0' };
    let tampered = lab.path("tampered-root.json");
    std::fs::write(&tampered, &root)?;

    let out = agent.enroll_with_root(&lab.controller, &token, &tampered)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "enrolled with a tampered root");
    assert!(stderr.contains("TUF root") && stderr.contains("root v1"), "{stderr}");
    assert!(!agent.state_dir.join("enrollment.toml").exists());
    assert!(lab.client.agents()?.is_empty(), "the token was not even spent");

    let out = agent.enroll_with_root(&lab.controller, &token, &lab.trust.root)?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(agent.state_dir.join("tuf/root.json"))?, std::fs::read(&lab.trust.root)?);
    Ok(())
}

#[test]
fn the_controller_refuses_metadata_that_does_not_verify_or_goes_back() -> Result<()> {
    let lab = Lab::start()?;
    let key = lab.trusted_key()?;
    lab.publish(&key, "hello", "1.0.0")?;
    let status = |r: Result<flotte_protocol::api::TufUploadView, _>| match r {
        Err(flotte_controller::client::ClientError::Api { status, body }) => (status, body.error),
        other => panic!("expected a refusal, got {other:?}"),
    };

    // targets v1 again (the store has v2): a rollback.
    let v1 = repo::sign(
        &repo::targets(1, now().saturating_add(Duration::from_secs(3600)), Default::default(), &[]),
        &[&trust::signer(&key)],
    )?;
    let (code, error) = status(lab.client.upload_role("targets", &v1));
    assert_eq!(code, 422);
    assert!(error.contains("rollback"), "{error}");

    // A root that skips a version.
    let current = lab.client.tuf_metadata("root.json")?.context("root")?;
    let mut signed = Envelope::parse("root", &current, tuf::MAX_ROOT_LEN)?.signed;
    signed["version"] = json!(3);
    let skipping = repo::sign(&signed, &[&trust::signer(&lab.root_key()?)])?;
    let (code, error) = status(lab.client.upload_root(&skipping));
    assert_eq!(code, 422);
    assert!(error.contains("root v3") && error.contains("v2"), "{error}");

    // An expired targets role.
    let expired = repo::sign(
        &repo::targets(9, Timestamp::from_unix_millis(1_000), Default::default(), &[]),
        &[&trust::signer(&key)],
    )?;
    let (code, error) = status(lab.client.upload_role("targets", &expired));
    assert_eq!(code, 422);
    assert!(error.contains("expired"), "{error}");

    // A second `trust init` is refused before any key is written.
    let err = trust::init(&lab.client, &lab.path("again"), 1, 1).unwrap_err().to_string();
    assert!(err.contains("already has a TUF root"), "{err}");
    assert!(!lab.path("again").exists());

    // Nothing of it was stored: the repository still serves targets v2.
    let served = lab.client.tuf_metadata("targets.json")?.context("targets")?;
    assert_eq!(Envelope::parse("targets", &served, tuf::MAX_TARGETS_LEN)?.signed["version"], 2);
    Ok(())
}
