//! The QUIC channel: who may connect, what happens to garbage, and
//! resuming a download after the controller restarts.

use crate::quic_raw::{self, Identity};
use anyhow::Result;
use flotte_protocol::messages::InstallState;
use flotte_tests::{DEADLINE, Lab, wait_for};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

#[test]
fn a_client_without_an_enrolled_certificate_is_refused_at_the_handshake() -> Result<()> {
    let lab = Lab::start()?;
    let (addr, ca) = (lab.controller.quic_addr, lab.controller.ca_path());
    let rt = runtime();

    let foreign = Identity::from_foreign_ca()?;
    let with_foreign_cert = rt.block_on(quic_raw::connect(addr, &ca, Some(&foreign)));
    let without_cert = rt.block_on(quic_raw::connect(addr, &ca, None));

    assert!(rt.block_on(quic_raw::is_refused(with_foreign_cert)), "a certificate from another CA was accepted");
    assert!(rt.block_on(quic_raw::is_refused(without_cert)), "a client without a certificate was accepted");
    let log = std::fs::read_to_string(lab.controller.log_path())?;
    assert!(log.contains("QUIC handshake refused"), "the controller logs the refusal");
    Ok(())
}

#[test]
fn connection_flood_is_turned_away_beyond_the_handshake_limit_and_agents_still_get_their_work() -> Result<()> {
    let mut lab = Lab::start_with_config("max_handshakes = 4\n")?;
    let key = lab.trusted_key()?;
    let agents = lab.agents(1)?;
    lab.publish(&key, "hello", "1.0.0")?;
    let (addr, ca) = (lab.controller.quic_addr, lab.controller.ca_path());

    // 300 handshakes at once, without a certificate: each costs the
    // controller its share of the TLS work until it is turned down.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let outcomes = rt.block_on(async {
        let mut attempts = tokio::task::JoinSet::new();
        for _ in 0..300 {
            let ca = ca.clone();
            attempts.spawn(async move { quic_raw::connect(addr, &ca, None).await });
        }
        attempts.join_all().await
    });
    let refused_at_once = outcomes
        .iter()
        .filter(|o| {
            o.as_ref().err().and_then(|e| e.downcast_ref::<quinn::ConnectionError>()).is_some_and(|e| {
                matches!(e, quinn::ConnectionError::ConnectionClosed(c)
                    if c.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED)
            })
        })
        .count();
    assert!(refused_at_once > 0, "more than 4 at once were never turned away");
    assert!(refused_at_once < outcomes.len(), "no attempt got a handshake at all");

    // The enrolled agent is served throughout.
    let done = lab.wait_done(lab.deploy_all("hello", "1.0.0")?)?;
    assert_eq!(done[0].state, Some(InstallState::Succeeded));
    assert_eq!(agents[0].active_version("hello").as_deref(), Some("1.0.0"));
    Ok(())
}

#[test]
fn a_malformed_frame_closes_that_connection_and_nothing_else() -> Result<()> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let agents = lab.agents(2)?;
    let identity = Identity::from_agent_state(&agents[0].state_dir)?;
    let rt = runtime();

    let closed = rt.block_on(async {
        let connection =
            quic_raw::connect(lab.controller.quic_addr, &lab.controller.ca_path(), Some(&identity)).await?;
        let (mut send, mut recv) = connection.open_bi().await?;
        // A length prefix of 4 GiB, then garbage.
        send.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).await?;
        let mut buf = [0u8; 1];
        let read = recv.read_exact(&mut buf).await;
        anyhow::Ok(read.is_err())
    })?;

    assert!(closed, "the controller answered a garbage Hello");
    lab.publish(&key, "hello", "1.0.0")?;
    let done = lab.wait_done(lab.deploy_all("hello", "1.0.0")?)?;
    // Both agents install: the garbage connection borrowed agent-01's
    // identity, and agent-01 reconnects after that connection is dropped.
    assert!(done.iter().all(|a| a.state == Some(InstallState::Succeeded)), "{done:?}");
    for agent in &agents {
        assert_eq!(agent.active_version("hello").as_deref(), Some("1.0.0"), "{}", agent.name);
    }
    Ok(())
}

#[test]
fn a_download_resumes_from_its_offset_after_the_controller_restarts() -> Result<()> {
    // 2 MiB/s pacing and an 8 MiB package: the transfer takes about 4 s,
    // so there is time to kill the controller in the middle of it.
    let mut lab = Lab::start_with_config("content_rate_limit = 2097152\n")?;
    let key = lab.trusted_key()?;
    let agents = lab.agents(1)?;
    lab.publish_padded(&key, "hello", "1.0.0", 8 << 20)?;
    let deployment = lab.deploy_all("hello", "1.0.0")?;
    let downloads = agents[0].state_dir.join("downloads");
    wait_for("a partial download of at least 1 MiB", DEADLINE, || {
        let partial = std::fs::read_dir(&downloads).ok().into_iter().flatten().flatten().any(|e| {
            e.file_name().to_string_lossy().ends_with(".part") && e.metadata().is_ok_and(|m| m.len() >= 1 << 20)
        });
        Ok(partial.then_some(()))
    })?;

    lab.controller.kill();
    lab.controller.start()?;

    let done = lab.wait_done(deployment)?;
    assert_eq!(done[0].state, Some(InstallState::Succeeded), "{:?}", done[0].state);
    assert_eq!(agents[0].active_version("hello").as_deref(), Some("1.0.0"));
    let resumed_from: Vec<u64> = lab
        .reports(&agents[0])?
        .iter()
        .filter_map(|r| match r.state {
            InstallState::Downloading { offset, .. } => Some(offset),
            _ => None,
        })
        .collect();
    assert_eq!(resumed_from.first(), Some(&0), "the first attempt starts at 0");
    assert!(resumed_from.iter().skip(1).any(|o| *o >= 1 << 20), "a later attempt resumed mid-file: {resumed_from:?}");
    Ok(())
}

#[test]
fn an_agent_with_a_bandwidth_limit_downloads_no_faster_than_it() -> Result<()> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let agent = lab.agent_with(|_| "download_bandwidth_limit = \"1 MiB/s\"\n".into())?;
    let package = lab.publish_padded(&key, "hello", "1.0.0", 2 << 20)?;
    let size = std::fs::metadata(&package)?.len();
    assert!(size >= 2 << 20, "the padding does not compress away: {size} bytes");

    let started = std::time::Instant::now();
    let done = lab.wait_done(lab.deploy_all("hello", "1.0.0")?)?;
    let took = started.elapsed();

    assert_eq!(done[0].state, Some(InstallState::Succeeded), "{:?}", done[0].state);
    assert_eq!(agent.active_version("hello").as_deref(), Some("1.0.0"));
    // A lower bound only: at 1 MiB/s with a quarter second of burst, the
    // download alone needs (size - 0.25 MiB) / 1 MiB/s.
    let floor = std::time::Duration::from_secs_f64((size as f64 - 262_144.0) / 1_048_576.0);
    assert!(took >= floor, "{size} bytes arrived in {took:?}, faster than 1 MiB/s allows ({floor:?})");
    Ok(())
}
