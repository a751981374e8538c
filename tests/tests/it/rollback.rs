//! Automatic rollback: a health check, a detection rule or a script hook
//! says the new version is bad, and the agent puts the old one back by
//! itself (restoring backed-up paths), or quarantines the package when even
//! that fails.

use anyhow::Result;
use flotte_protocol::messages::{FailureClass, InstallState};
use flotte_protocol::{DetectRule, InstallerKind};
use flotte_tests::packages::{self, Hooks};
use flotte_tests::{Lab, ReleaseSpec, active_content, failure_message, make_unhealthy, sample_health};
use std::process::Command;

#[test]
fn health_fail_auto_rollback() -> Result<()> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let agents = lab.agents(2)?;
    lab.publish(&key, "hello", "1.0.0")?;
    lab.wait_done(lab.deploy_all("hello", "1.0.0")?)?;
    make_unhealthy(&agents[1])?;
    lab.publish_spec(&key, "hello", "2.0.0", &sample_health(1))?;

    let deployment = lab.deploy_all("hello", "2.0.0")?;
    lab.wait_done(deployment)?;

    let healthy = lab.assignment(deployment, &agents[0])?;
    assert_eq!(healthy.state, Some(InstallState::Succeeded));
    assert_eq!(agents[0].active_version("hello").as_deref(), Some("2.0.0"));

    let broken = lab.assignment(deployment, &agents[1])?;
    assert!(
        matches!(broken.state, Some(InstallState::RolledBack { class: FailureClass::Health, .. })),
        "{:?}",
        broken.state
    );
    let message = failure_message(&broken);
    assert!(
        message.contains("health check of hello@2.0.0 failed") && message.contains("hello.unhealthy exists"),
        "{message}"
    );
    assert_eq!(broken.active_version.as_deref(), Some("1.0.0"), "the report names the version running again");
    assert_eq!(agents[1].active_version("hello").as_deref(), Some("1.0.0"));
    assert_eq!(active_content(&agents[1], "hello").as_deref(), Some("1.0.0"));
    let states: Vec<&str> = lab.reports(&agents[1])?.iter().map(|r| r.state.name()).collect();
    assert!(states.ends_with(&["installing", "health_checking", "rolling_back", "rolled_back"]), "{states:?}");
    Ok(())
}

#[test]
fn installed_but_not_detected_rolls_back_as_its_own_failure() -> Result<()> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let agents = lab.agents(1)?;
    lab.publish(&key, "hello", "1.0.0")?;
    lab.wait_done(lab.deploy_all("hello", "1.0.0")?)?;
    let spec = ReleaseSpec {
        detect: Some(DetectRule::FileContent { path: "VERSION".into(), content: "2.0.1".into() }),
        ..ReleaseSpec::default()
    };
    lab.publish_spec(&key, "hello", "2.0.0", &spec)?;

    let done = lab.wait_done(lab.deploy_all("hello", "2.0.0")?)?;

    assert!(
        matches!(done[0].state, Some(InstallState::RolledBack { class: FailureClass::Detection, .. })),
        "{:?}",
        done[0].state
    );
    assert!(failure_message(&done[0]).contains("installed but not detected"), "{}", failure_message(&done[0]));
    assert_eq!(agents[0].active_version("hello").as_deref(), Some("1.0.0"));
    Ok(())
}

#[test]
fn a_failed_script_install_rolls_back_and_restores_the_backed_up_config() -> Result<()> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let agents = lab.agents(1)?;
    let conf = lab.path("etc/app.conf");
    std::fs::create_dir_all(conf.parent().unwrap())?;
    let conf_s = conf.display().to_string();
    let v1 = packages::script(
        lab.dir.path(),
        "app",
        "1.0.0",
        &Hooks { install: &format!("[ -e {conf_s} ] || echo v1 > {conf_s}"), ..Hooks::default() },
    )?;
    let script = ReleaseSpec { installer: InstallerKind::Script, ..ReleaseSpec::default() };
    lab.publish_file(&key, &v1, "app", "1.0.0", &script)?;
    lab.wait_done(lab.deploy_all("app", "1.0.0")?)?;
    std::fs::write(&conf, "edited by the admin\n")?;

    // 2.0.0 rewrites the config, then its check hook fails.
    let v2 = packages::script(
        lab.dir.path(),
        "app",
        "2.0.0",
        &Hooks { install: &format!("echo v2 > {conf_s}"), check: "echo 'not ready' >&2; exit 3", ..Hooks::default() },
    )?;
    let with_backup = ReleaseSpec { backup_paths: vec![conf_s.clone()], ..script };
    lab.publish_file(&key, &v2, "app", "2.0.0", &with_backup)?;
    let done = lab.wait_done(lab.deploy_all("app", "2.0.0")?)?;

    assert!(
        matches!(done[0].state, Some(InstallState::RolledBack { class: FailureClass::Health, .. })),
        "{:?}",
        done[0].state
    );
    let message = failure_message(&done[0]);
    assert!(message.contains("check hook") && message.contains("not ready"), "the hook's output tail: {message}");
    assert_eq!(std::fs::read_to_string(&conf)?, "edited by the admin\n", "the backup was restored");
    assert_eq!(agents[0].active_version("app").as_deref(), Some("1.0.0"));
    assert_eq!(done[0].active_version.as_deref(), Some("1.0.0"));
    Ok(())
}

#[test]
fn a_failed_rollback_quarantines_the_package_until_an_admin_clears_it() -> Result<()> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let agents = lab.agents(1)?;
    let script = ReleaseSpec { installer: InstallerKind::Script, ..ReleaseSpec::default() };
    let v1 = packages::script(lab.dir.path(), "app", "1.0.0", &Hooks::default())?;
    lab.publish_file(&key, &v1, "app", "1.0.0", &script)?;
    lab.wait_done(lab.deploy_all("app", "1.0.0")?)?;
    let broken = Hooks { check: "exit 1", rollback: Some("echo 'cannot undo' >&2; exit 1"), ..Hooks::default() };
    let v2 = packages::script(lab.dir.path(), "app", "2.0.0", &broken)?;
    lab.publish_file(&key, &v2, "app", "2.0.0", &script)?;

    let deployment = lab.deploy_all("app", "2.0.0")?;
    let done = lab.wait_done(deployment)?;
    lab.close(deployment)?;

    assert!(matches!(done[0].state, Some(InstallState::RollbackFailed { .. })), "{:?}", done[0].state);
    let message = failure_message(&done[0]);
    assert!(message.contains("rolling back to 1.0.0 failed") && message.contains("cannot undo"), "{message}");

    // The next push of the package is refused before anything is fetched.
    let v3 = packages::script(lab.dir.path(), "app", "3.0.0", &Hooks::default())?;
    lab.publish_file(&key, &v3, "app", "3.0.0", &script)?;
    let refused = lab.wait_done(lab.deploy_all("app", "3.0.0")?)?;
    assert!(
        matches!(refused[0].state, Some(InstallState::Failed { class: FailureClass::Preflight, .. })),
        "{:?}",
        refused[0].state
    );
    assert!(
        failure_message(&refused[0]).contains("flotte-agent quarantine clear app"),
        "{}",
        failure_message(&refused[0])
    );
    let fetched = lab
        .reports(&agents[0])?
        .iter()
        .filter(|r| r.assignment == refused[0].id && r.state.name() == "downloading")
        .count();
    assert_eq!(fetched, 0, "nothing downloaded for a quarantined package");

    let cli = |args: &[&str]| -> Result<String> {
        let out = Command::new(&lab.bins.agent).args(args).arg("--state-dir").arg(&agents[0].state_dir).output()?;
        anyhow::ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    assert!(cli(&["quarantine", "list"])?.contains("cannot undo"));
    assert!(cli(&["quarantine", "clear", "app"])?.contains("no longer quarantined"));
    assert!(cli(&["quarantine", "list"])?.contains("no package is quarantined"));
    Ok(())
}
