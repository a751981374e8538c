//! The admin CLI behaves like a Unix tool where scripts depend on it.

use anyhow::Result;
use flotte_tests::Lab;

#[test]
fn a_reader_that_goes_away_ends_flottectl_quietly_instead_of_a_panic() -> Result<()> {
    use std::os::unix::process::ExitStatusExt as _;
    let lab = Lab::start()?;
    // stdout is a pipe whose reading end is already closed, like `| head`
    // after it has read its lines.
    let (reader, writer) = std::io::pipe()?;
    drop(reader);
    let out = std::process::Command::new(lab.bins.agent.with_file_name("flottectl"))
        .arg("--config")
        .arg(&lab.controller.admin_config)
        .arg("--url")
        .arg(format!("https://{}", lab.controller.api_addr))
        .args(["agents", "list"])
        .stdout(writer)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
    Ok(())
}
