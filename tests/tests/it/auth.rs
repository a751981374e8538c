//! Who may do what: admin tokens on the API, one-time enrollment tokens.

use anyhow::Result;
use flotte_controller::client::AdminClient;
use flotte_controller::lab::harness::AgentProcess;
use flotte_protocol::api::{DeployRequest, Target};
use flotte_tests::Lab;
use std::time::Duration;

#[test]
fn an_admin_request_without_a_valid_token_gets_401_and_changes_nothing() -> Result<()> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    lab.agents(1)?;
    lab.publish(&key, "hello", "1.0.0")?;
    let ca = std::fs::read(lab.controller.ca_path())?;
    let url = format!("https://{}", lab.controller.api_addr);
    let request = DeployRequest { name: "hello".into(), version: "1.0.0".into(), target: Target::All };

    for token in [None, Some("fat_not-a-real-token".to_string())] {
        let anonymous = AdminClient::new(&url, token, &ca)?;
        let err = anonymous.deploy(&request).unwrap_err();
        assert_eq!(err.status(), Some(401), "{err}");
        assert!(err.to_string().contains("admin token"), "{err}");
        assert_eq!(anonymous.agents().unwrap_err().status(), Some(401));
        assert_eq!(anonymous.create_enrollment_token(Duration::from_secs(60)).unwrap_err().status(), Some(401));
    }
    assert!(lab.client.assignments()?.is_empty(), "no deployment was created");
    Ok(())
}

#[test]
fn an_enrollment_token_works_only_once() -> Result<()> {
    let lab = Lab::start()?;
    let token = lab.client.create_enrollment_token(Duration::from_secs(600))?.token;
    let first = AgentProcess::new(&lab.bins, lab.dir.path(), "agent-a");
    let second = AgentProcess::new(&lab.bins, lab.dir.path(), "agent-b");

    let accepted = first.enroll(&lab.controller, &token)?;
    let refused = second.enroll(&lab.controller, &token)?;

    assert!(accepted.status.success(), "first use: {}", String::from_utf8_lossy(&accepted.stderr));
    assert!(!refused.status.success(), "second use must fail");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("already used"), "{stderr}");
    assert!(!second.state_dir.join("identity/agent.crt").exists(), "no identity was stored");
    let enrolled: Vec<String> = lab.client.agents()?.into_iter().map(|a| a.hostname).collect();
    assert_eq!(enrolled, ["agent-a"]);
    Ok(())
}

#[test]
fn an_unknown_enrollment_token_is_refused() -> Result<()> {
    let lab = Lab::start()?;
    let agent = AgentProcess::new(&lab.bins, lab.dir.path(), "agent-a");
    let refused = agent.enroll(&lab.controller, "fet_made-up")?;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("unknown enrollment token"), "{stderr}");
    Ok(())
}
