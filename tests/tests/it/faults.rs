//! Faults on the host and in packages, through the whole path (publish,
//! deploy, download, verify, install): a full disk, duplicate deliveries,
//! hostile archives, a failing dpkg maintainer script, a hanging hook.
//! After each, which version is active on disk and what the controller was
//! told are both checked.

use anyhow::{Context, Result};
use flotte_protocol::InstallerKind;
use flotte_protocol::messages::{FailureClass, InstallState};
use flotte_tests::packages::{self, Archive, Hooks};
use flotte_tests::tmpfs::Tmpfs;
use flotte_tests::{DEADLINE, Lab, ReleaseSpec, active_content, failure_message, leftovers, wait_for};
use std::process::Command;

#[test]
fn enospc_during_stage() -> Result<()> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    // The first agent's install root is a 1 MiB disk.
    // Mounting needs root, as CI has; without it this test fails rather than
    // pretending to have checked anything.
    let disk = Tmpfs::mount(&lab.path("agent-01/root"), "1m")
        .context("enospc_during_stage mounts a 1 MiB tmpfs and needs root")?;
    let agents = lab.agents(1)?;
    assert_eq!(agents[0].root, disk.path());
    lab.publish(&key, "hello", "1.0.0")?;
    lab.wait_done(lab.deploy_all("hello", "1.0.0")?)?;
    lab.publish_padded(&key, "hello", "2.0.0", 3 << 20)?;

    let done = lab.wait_done(lab.deploy_all("hello", "2.0.0")?)?;

    let a = &done[0];
    assert!(matches!(a.state, Some(InstallState::Failed { class: FailureClass::Install, .. })), "{:?}", a.state);
    let message = failure_message(a);
    assert!(message.contains("No space left on device"), "a clear error: {message}");
    assert!(message.contains("gave up after 3 retries"), "retried as transient: {message}");
    assert_eq!(a.active_version.as_deref(), Some("1.0.0"));
    assert_eq!(agents[0].active_version("hello").as_deref(), Some("1.0.0"), "old version untouched");
    assert_eq!(active_content(&agents[0], "hello").as_deref(), Some("1.0.0"));
    assert_eq!(leftovers(&agents[0], "hello"), Vec::<String>::new(), "the half-extracted tree is gone");
    assert!(!agents[0].root.join("packages/hello/2.0.0").exists());
    Ok(())
}

#[test]
fn duplicate_command_idempotent() -> Result<()> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let agents = lab.agents(1)?;
    let root = agents[0].root.display().to_string();
    // The install hook logs each run and waits for a go signal, so the
    // controller can be restarted (and deliver again) mid-install.
    let install = format!(
        "echo \"$FLOTTE_VERSION\" >> {root}/installs.log\n\
         while [ ! -e {root}/go ]; do sleep 0.05; done"
    );
    let v1 = packages::script(lab.dir.path(), "app", "1.0.0", &Hooks { install: &install, ..Hooks::default() })?;
    lab.publish_file(
        &key,
        &v1,
        "app",
        "1.0.0",
        &ReleaseSpec { installer: InstallerKind::Script, ..ReleaseSpec::default() },
    )?;
    let deployment = lab.deploy_all("app", "1.0.0")?;
    wait_for("the install hook to start", DEADLINE, || Ok(agents[0].root.join("installs.log").exists().then_some(())))?;

    // Delivered again while installing: a new connection re-sends it.
    lab.controller.kill();
    lab.controller.start()?;
    flotte_controller::lab::harness::wait_online(&lab.client, 1, DEADLINE)?;
    std::fs::write(agents[0].root.join("go"), "")?;
    let first = lab.wait_assignment(deployment, &agents[0])?;
    assert_eq!(first.state, Some(InstallState::Succeeded));

    // Delivered again after it finished: play a controller that lost the
    // final report, so it re-sends the assignment at the next connection.
    lab.controller.kill();
    let db = rusqlite::Connection::open(lab.database())?;
    db.execute("UPDATE assignments SET terminal = 0, state = NULL WHERE id = ?1", [first.id.0])?;
    drop(db);
    lab.controller.start()?;
    let again = lab.wait_assignment(deployment, &agents[0])?;

    assert_eq!(again.state, Some(InstallState::Succeeded), "the final report is repeated");
    assert_eq!(std::fs::read_to_string(agents[0].root.join("installs.log"))?, "1.0.0\n", "installed once");
    let states: Vec<&str> = lab.reports(&agents[0])?.iter().map(|r| r.state.name()).collect();
    assert_eq!(states.iter().filter(|s| **s == "received").count(), 1, "{states:?}");
    assert_eq!(states.iter().filter(|s| **s == "installing").count(), 1, "{states:?}");
    assert_eq!(states.iter().filter(|s| **s == "succeeded").count(), 2, "{states:?}");
    assert_eq!(agents[0].active_version("app").as_deref(), Some("1.0.0"));
    Ok(())
}

#[test]
fn hostile_archives_are_refused_through_the_full_path() -> Result<()> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let agents = lab.agents(1)?;
    lab.publish(&key, "hello", "1.0.0")?;
    lab.wait_done(lab.deploy_all("hello", "1.0.0")?)?;
    let outside = lab.path("escaped");
    let up = "../".repeat(12);
    let escape = format!("{up}{}", outside.display().to_string().trim_start_matches('/'));
    let cases = [
        ("2.0.1", Archive::new().file("VERSION", b"2.0.1\n", 0o644)?.file(&escape, b"pwned", 0o644)?, "traversal"),
        ("2.0.2", Archive::new().file("/etc/flotte-pwned", b"pwned", 0o644)?, "absolute path"),
        (
            "2.0.3",
            Archive::new().symlink("link", outside.to_str().unwrap())?.file("link/pwned", b"pwned", 0o644)?,
            "write through an escaping symlink",
        ),
        ("2.0.4", Archive::new().hardlink("shadow", "/etc/shadow")?, "hardlink out of the tree"),
        ("2.0.5", Archive::new().raw(tar::EntryType::Char, "dev/null", "", 0o666, b"")?, "device node"),
    ];
    for (version, archive, what) in cases {
        let path = archive.write(lab.dir.path(), &format!("evil-{version}.tar.gz"))?;
        lab.publish_file(&key, &path, "hello", version, &ReleaseSpec::default())?;
        let deployment = lab.deploy_all("hello", version)?;
        let done = lab.wait_done(deployment)?;
        lab.close(deployment)?;
        let a = &done[0];
        assert!(
            matches!(a.state, Some(InstallState::Failed { class: FailureClass::Install, .. })),
            "{what}: {:?}",
            a.state
        );
        assert!(failure_message(a).contains("unsafe archive entry"), "{what}: {}", failure_message(a));
        assert_eq!(a.active_version.as_deref(), Some("1.0.0"), "{what}");
        assert_eq!(agents[0].active_version("hello").as_deref(), Some("1.0.0"), "{what}");
        assert!(!agents[0].root.join("packages/hello").join(version).exists(), "{what}: nothing staged");
    }
    assert!(!outside.exists(), "nothing was written outside the staging directory");
    assert!(!std::path::Path::new("/etc/flotte-pwned").exists());
    assert_eq!(leftovers(&agents[0], "hello"), Vec::<String>::new());
    Ok(())
}

#[test]
fn a_dpkg_package_whose_postinst_fails_is_rolled_back_to_the_cached_deb() -> Result<()> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let agent = lab.agent_with(|a| {
        let dpkg = a.root.parent().unwrap().join("dpkg");
        format!(
            "dpkg_admindir = \"{}\"\ndpkg_instdir = \"{}\"\n",
            dpkg.join("admin").display(),
            dpkg.join("root").display()
        )
    })?;
    let dpkg = agent.root.parent().unwrap().join("dpkg");
    let deb = ReleaseSpec { installer: InstallerKind::Dpkg, ..ReleaseSpec::default() };
    let v1 = packages::deb(lab.dir.path(), "flotte-hello", "1.0", "exit 0")?;
    lab.publish_file(&key, &v1, "flotte-hello", "1.0", &deb)?;
    let first = lab.wait_done(lab.deploy_all("flotte-hello", "1.0")?)?;
    assert_eq!(first[0].state, Some(InstallState::Succeeded), "{}", failure_message(&first[0]));

    let v2 =
        packages::deb(lab.dir.path(), "flotte-hello", "2.0", "echo 'postinst of 2.0 fails on purpose' >&2; exit 1")?;
    lab.publish_file(&key, &v2, "flotte-hello", "2.0", &deb)?;
    let done = lab.wait_done(lab.deploy_all("flotte-hello", "2.0")?)?;

    let a = &done[0];
    assert!(matches!(a.state, Some(InstallState::RolledBack { class: FailureClass::Install, .. })), "{:?}", a.state);
    assert!(
        failure_message(a).contains("postinst of 2.0 fails on purpose"),
        "dpkg's output tail: {}",
        failure_message(a)
    );
    assert_eq!(a.active_version.as_deref(), Some("1.0"));
    let status = Command::new("dpkg-query")
        .arg(format!("--admindir={}", dpkg.join("admin").display()))
        .args(["-W", "-f", "${Status} ${Version}", "flotte-hello"])
        .output()?;
    assert_eq!(String::from_utf8_lossy(&status.stdout), "install ok installed 1.0", "the dpkg database");
    let version = std::fs::read_to_string(dpkg.join("root/usr/share/flotte-hello/VERSION"))?;
    assert_eq!(version.trim(), "1.0", "the files on disk");
    Ok(())
}

/// Whether any process runs with exactly this command line.
fn process_running(argv: &[&str]) -> bool {
    let wanted: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == wanted))
}

#[test]
fn a_script_hook_that_hangs_past_its_timeout_is_killed_and_rolled_back() -> Result<()> {
    let mut lab = Lab::start()?;
    let key = lab.trusted_key()?;
    let agent = lab.agent_with(|_| "hook_timeout = \"2s\"\n".into())?;
    let script = ReleaseSpec { installer: InstallerKind::Script, ..ReleaseSpec::default() };
    let v1 = packages::script(lab.dir.path(), "app", "1.0.0", &Hooks::default())?;
    lab.publish_file(&key, &v1, "app", "1.0.0", &script)?;
    lab.wait_done(lab.deploy_all("app", "1.0.0")?)?;
    let v2 = packages::script(
        lab.dir.path(),
        "app",
        "2.0.0",
        &Hooks { install: "echo starting; exec sleep 4242", ..Hooks::default() },
    )?;
    lab.publish_file(&key, &v2, "app", "2.0.0", &script)?;

    let done = lab.wait_done(lab.deploy_all("app", "2.0.0")?)?;

    let a = &done[0];
    assert!(matches!(a.state, Some(InstallState::RolledBack { class: FailureClass::Install, .. })), "{:?}", a.state);
    let message = failure_message(a);
    assert!(message.contains("timed out after 2s") && message.contains("starting"), "{message}");
    assert_eq!(a.active_version.as_deref(), Some("1.0.0"));
    assert_eq!(agent.active_version("app").as_deref(), Some("1.0.0"));
    assert!(!process_running(&["sleep", "4242"]), "the hung hook was killed");
    Ok(())
}
