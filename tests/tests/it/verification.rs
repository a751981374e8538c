//! Bad packages: each is refused by the agent *before* any install step,
//! with a clear message, and the previously installed version stays active.
//!
//! Most of these play a compromised controller, because an honest one
//! refuses bad releases at publish time: the agent must not rely on that.

use anyhow::Result;
use flotte_protocol::SignedRelease;
use flotte_protocol::messages::{FailureClass, InstallState};
use flotte_tests::{Lab, failure_message};

/// A lab with one agent that already runs hello@1.0.0.
fn lab_with_v1() -> Result<(Lab, Vec<flotte_controller::lab::harness::AgentProcess>, flotte_protocol::SecretKey)> {
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
fn refused(lab: &Lab, agent: &flotte_controller::lab::harness::AgentProcess, version: &str) -> Result<String> {
    let done = lab.wait_done(lab.deploy_all("hello", version)?)?;
    let a = &done[0];
    assert!(
        matches!(a.state, Some(InstallState::Failed { class: FailureClass::Verification, .. })),
        "expected a verification failure, got {:?}",
        a.state
    );
    assert_eq!(a.active_version.as_deref(), Some("1.0.0"), "the report names the version still active");
    assert_eq!(agent.active_version("hello").as_deref(), Some("1.0.0"), "the old version stays active on disk");
    assert!(!agent.root.join("packages/hello").join(version).exists(), "nothing of {version} was staged");
    let states: Vec<&str> = lab.reports(agent)?.iter().map(|r| r.state.name()).collect();
    assert!(states.iter().filter(|s| **s == "installing").count() == 1, "only 1.0.0 reached an install step");
    Ok(flotte_tests::failure_message(a))
}

fn rewrite_release(lab: &Lab, version: &str, edit: impl FnOnce(&mut SignedRelease)) -> Result<()> {
    let db = rusqlite::Connection::open(lab.database())?;
    let blob: Vec<u8> =
        db.query_row("SELECT signed FROM releases WHERE name = 'hello' AND version = ?1", [version], |r| r.get(0))?;
    let mut release: SignedRelease = postcard::from_bytes(&blob)?;
    edit(&mut release);
    db.execute(
        "UPDATE releases SET signed = ?1 WHERE name = 'hello' AND version = ?2",
        rusqlite::params![postcard::to_stdvec(&release)?, version],
    )?;
    Ok(())
}

fn content_path(lab: &Lab, version: &str) -> Result<std::path::PathBuf> {
    let release = lab.client.releases()?.into_iter().find(|r| r.version == version).expect("published");
    Ok(lab.controller.data_dir.join("content").join(release.sha256.to_hex()))
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
fn a_release_with_a_wrong_signature_is_refused() -> Result<()> {
    let (lab, agents, key) = lab_with_v1()?;
    lab.publish(&key, "hello", "2.0.0")?;
    rewrite_release(&lab, "2.0.0", |r| r.signatures[0].signature[0] ^= 0x01)?;

    let message = refused(&lab, &agents[0], "2.0.0")?;
    assert!(message.contains("does not match"), "{message}");
    Ok(())
}

#[test]
fn a_release_signed_by_a_key_the_agent_was_not_given_is_refused() -> Result<()> {
    let (lab, agents, _) = lab_with_v1()?;
    // Trusted by the controller, but only after this agent enrolled.
    let later_key = lab.trusted_key()?;
    lab.publish(&later_key, "hello", "2.0.0")?;

    let message = refused(&lab, &agents[0], "2.0.0")?;
    assert!(message.contains(&later_key.public_key().key_id().to_string()), "{message}");
    assert!(message.contains("does not trust"), "{message}");
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
