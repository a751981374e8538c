//! The controller's config file outside its data directory, as the Debian
//! package uses it: `init --config FILE` writes FILE (with `data_dir`) when it
//! does not exist, `run --config FILE` finds the data directory through it,
//! and an existing FILE (a conffile) is read, never rewritten.

use anyhow::{Context, Result, ensure};
use flotte_controller::lab::harness::Binaries;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn init_and_run_with_a_config_file_outside_the_data_directory() -> Result<()> {
    let bins = Binaries::locate()?;
    let dir = tempfile::tempdir()?;
    let (config, data) = (dir.path().join("etc/controller.toml"), dir.path().join("data"));
    std::fs::create_dir_all(config.parent().context("parent")?)?;
    let init = Command::new(&bins.controller)
        .args(["init", "--listen", "127.0.0.1:0", "--hostname", "localhost", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .arg("--admin-config")
        .arg(dir.path().join("flottectl.toml"))
        .output()?;
    ensure!(init.status.success(), "init failed: {}", String::from_utf8_lossy(&init.stderr));
    assert!(String::from_utf8_lossy(&init.stdout).contains("run --config"));
    let text = std::fs::read_to_string(&config)?;
    assert!(text.contains(&format!("data_dir = \"{}\"", data.display())), "{text}");
    assert!(!data.join("controller.toml").exists(), "one config file, not two");

    // `run --config` alone finds the data directory through the file.
    let mut child = Command::new(&bins.controller)
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
    let _ = child.kill();
    let _ = child.wait();
    let ready: serde_json::Value =
        serde_json::from_str(line.trim()).with_context(|| format!("ready line: {line:?}"))?;
    assert!(ready["api"].as_str().is_some_and(|a| a.starts_with("127.0.0.1:")), "{ready}");

    // A second init on the same data directory refuses; the file is untouched.
    let again = Command::new(&bins.controller).args(["init", "--config"]).arg(&config).output()?;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already initialized"));
    assert_eq!(std::fs::read_to_string(&config)?, text);
    Ok(())
}

#[test]
fn an_unknown_key_in_the_controller_config_names_key_and_line() -> Result<()> {
    let bins = Binaries::locate()?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("controller.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nlisten_port = 7443\n")?;
    let out = Command::new(&bins.controller).args(["run", "--config"]).arg(&config).output()?;
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(said.contains("listen_port") && said.contains("line 2"), "{said}");
    Ok(())
}
