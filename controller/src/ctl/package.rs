//! Publishing a package: hash the file, describe it (how it is installed,
//! detected, health-checked and backed up), upload the content, then add it
//! as a TUF targets entry signed with the targets (or a delegated) key,
//! which the controller never holds.

use crate::client::AdminClient;
use crate::ctl::trust;
use anyhow::{Context, Result, bail};
use flotte_protocol::api::ReleaseView;
use flotte_protocol::tuf::{self, release::Platform};
use flotte_protocol::{
    ContentHasher, DetectRule, HealthCheck, HealthSpec, InstallerKind, ReleaseMetadata, SecretKey, Timestamp,
};
use std::io::Read;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Everything a release says besides its name, version and bytes. All of it
/// is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseSpec {
    pub installer: InstallerKind,
    pub health: Option<HealthSpec>,
    pub detect: Option<DetectRule>,
    pub backup_paths: Vec<String>,
}

impl Default for ReleaseSpec {
    /// An archive with no checks beyond the installer's own.
    fn default() -> Self {
        ReleaseSpec { installer: InstallerKind::Archive, health: None, detect: None, backup_paths: Vec::new() }
    }
}

/// The `flottectl package publish` flags that make a [`ReleaseSpec`].
#[derive(Debug, Clone, clap::Args)]
pub struct SpecArgs {
    /// How agents install it: archive (tar.gz unpacked and switched with a
    /// symlink), script (an archive with install/uninstall/check hooks) or
    /// dpkg (a .deb).
    #[arg(long, default_value = "archive", value_name = "KIND")]
    pub installer: InstallerKind,
    /// Health check: run this command (split like a shell would, but run
    /// without one); healthy if it exits with --health-exit. A relative
    /// program path (`bin/app`) is taken inside the installed package.
    #[arg(long, value_name = "COMMAND", group = "health_check")]
    pub health_cmd: Option<String>,
    /// The exit code --health-cmd must return.
    #[arg(long, value_name = "CODE", default_value_t = 0, requires = "health_cmd")]
    pub health_exit: i32,
    /// Health check: something must accept TCP connections on this local port.
    #[arg(long, value_name = "PORT", group = "health_check")]
    pub health_tcp: Option<u16>,
    /// Health check: this file must exist (relative: inside the package).
    #[arg(long, value_name = "PATH", group = "health_check")]
    pub health_file: Option<String>,
    /// Health check: GET of this http://localhost URL must answer 2xx.
    #[arg(long, value_name = "URL", group = "health_check")]
    pub health_http: Option<String>,
    /// How long the health check must keep passing after the switch before
    /// the install is committed (e.g. 30s, 5m; whole seconds).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, requires = "health_check")]
    pub probation: Option<Duration>,
    /// Time between health-check runs during probation [default: 5s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, requires = "health_check")]
    pub health_interval: Option<Duration>,
    /// Longest one health-check run may take [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, requires = "health_check")]
    pub health_timeout: Option<Duration>,
    /// Detection: this file must exist after the install (relative: inside
    /// the package); "installed but not detected" rolls back.
    #[arg(long, value_name = "PATH")]
    pub detect_file: Option<String>,
    /// Detection: --detect-file must hold exactly this (e.g. the version).
    #[arg(long, value_name = "TEXT", requires = "detect_file")]
    pub detect_content: Option<String>,
    /// An absolute path (configuration, data) to save before the install
    /// and restore on rollback. Repeat for several.
    #[arg(long = "backup", value_name = "PATH")]
    pub backup_paths: Vec<String>,
}

impl SpecArgs {
    /// The spec these flags describe, checked like an agent will check it.
    pub fn to_spec(&self) -> Result<ReleaseSpec> {
        let check = if let Some(cmd) = &self.health_cmd {
            Some(HealthCheck::Command { argv: split_command_line(cmd)?, expect_exit: self.health_exit })
        } else if let Some(port) = self.health_tcp {
            Some(HealthCheck::Tcp { port })
        } else if let Some(path) = &self.health_file {
            Some(HealthCheck::FileExists { path: path.clone() })
        } else {
            self.health_http.as_ref().map(|url| HealthCheck::Http { url: url.clone() })
        };
        let secs = |what: &str, d: Option<Duration>| -> Result<u32> {
            let d = d.unwrap_or_default();
            if d.subsec_nanos() != 0 {
                bail!("--{what} must be whole seconds, not {}", humantime::format_duration(d));
            }
            u32::try_from(d.as_secs()).with_context(|| format!("--{what} is too long"))
        };
        let health = match check {
            Some(check) => Some(HealthSpec {
                check,
                probation_secs: secs("probation", self.probation)?,
                interval_secs: secs("health-interval", self.health_interval)?,
                timeout_secs: secs("health-timeout", self.health_timeout)?,
            }),
            None => None,
        };
        let detect = self.detect_file.as_ref().map(|path| match &self.detect_content {
            Some(content) => DetectRule::FileContent { path: path.clone(), content: content.clone() },
            None => DetectRule::FileExists { path: path.clone() },
        });
        Ok(ReleaseSpec { installer: self.installer, health, detect, backup_paths: self.backup_paths.clone() })
    }
}

/// Splits a command line into words: whitespace separates, single quotes
/// keep everything literally, double quotes keep whitespace, a backslash
/// escapes the next character outside single quotes.
pub fn split_command_line(line: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(word.take()),
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => bail!("unterminated ' in {line:?}"),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => w.push(chars.next().context("trailing backslash")?),
                        Some(c) => w.push(c),
                        None => bail!("unterminated \" in {line:?}"),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).push(chars.next().context("trailing backslash")?),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    if words.is_empty() {
        bail!("the health command is empty");
    }
    Ok(words)
}

/// Hashes `path` in one streaming pass and describes it as `name@version`
/// installed as `spec` says. Refuses a spec an agent would refuse.
pub fn describe(path: &Path, name: &str, version: &str, spec: &ReleaseSpec) -> Result<ReleaseMetadata> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot open package {}", path.display()))?;
    let mut hasher = ContentHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let (sha256, size) = hasher.finish();
    let now = Timestamp::from_system_time(SystemTime::now());
    let metadata = ReleaseMetadata {
        health: spec.health.clone(),
        detect: spec.detect.clone(),
        backup_paths: spec.backup_paths.clone(),
        ..ReleaseMetadata::new(name, version, sha256, size, spec.installer, now)
    };
    metadata.validate()?;
    metadata.validate_spec()?;
    Ok(metadata)
}

/// Signs, uploads and publishes `path` as an archive `name@version` in the
/// top-level targets role.
pub fn publish(client: &AdminClient, key: &SecretKey, path: &Path, name: &str, version: &str) -> Result<ReleaseView> {
    publish_with(client, key, path, name, version, &ReleaseSpec::default())
}

/// Signs, uploads and publishes `path` as `name@version` with `spec` in the
/// top-level targets role.
pub fn publish_with(
    client: &AdminClient,
    key: &SecretKey,
    path: &Path,
    name: &str,
    version: &str,
    spec: &ReleaseSpec,
) -> Result<ReleaseView> {
    publish_as(client, key, tuf::TARGETS, path, name, version, spec, &Platform::default())
}

/// Signs, uploads and publishes `path` as `name@version` with `spec` for
/// `platform`, as targets role `role` (signed with `key`).
#[allow(clippy::too_many_arguments)]
pub fn publish_as(
    client: &AdminClient,
    key: &SecretKey,
    role: &str,
    path: &Path,
    name: &str,
    version: &str,
    spec: &ReleaseSpec,
    platform: &Platform,
) -> Result<ReleaseView> {
    let metadata = describe(path, name, version, spec)?;
    client.upload_content(&metadata.sha256, path)?;
    let uploaded = trust::publish_release(client, key, role, &metadata, platform)?;
    uploaded.releases.into_iter().find(|r| r.name == name && r.version == version).with_context(|| {
        format!("the controller accepted {role} v{} but did not add {name}@{version}", uploaded.version)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        spec: SpecArgs,
    }

    fn spec(args: &[&str]) -> Result<ReleaseSpec> {
        let cli = Cli::try_parse_from(std::iter::once("publish").chain(args.iter().copied()))?;
        cli.spec.to_spec()
    }

    #[test]
    fn command_lines_split_like_a_shell_without_running_one() {
        assert_eq!(split_command_line("bin/app --check").unwrap(), ["bin/app", "--check"]);
        assert_eq!(split_command_line(r#"sh -c 'test -e "$X"'"#).unwrap(), ["sh", "-c", r#"test -e "$X""#]);
        assert_eq!(split_command_line(r#"a "b c" d\ e"#).unwrap(), ["a", "b c", "d e"]);
        assert!(split_command_line("  ").is_err());
        assert!(split_command_line("sh -c 'oops").is_err());
    }

    #[test]
    fn publish_flags_become_a_signed_spec() {
        let s = spec(&[
            "--installer",
            "script",
            "--health-cmd",
            "bin/hello --check",
            "--probation",
            "30s",
            "--detect-file",
            "VERSION",
            "--detect-content",
            "2.0",
            "--backup",
            "/etc/hello",
            "--backup",
            "/var/lib/hello",
        ])
        .unwrap();
        assert_eq!(s.installer, InstallerKind::Script);
        let health = s.health.unwrap();
        assert_eq!(
            health.check,
            HealthCheck::Command { argv: vec!["bin/hello".into(), "--check".into()], expect_exit: 0 }
        );
        assert_eq!((health.probation_secs, health.interval_secs), (30, 0));
        assert_eq!(s.detect, Some(DetectRule::FileContent { path: "VERSION".into(), content: "2.0".into() }));
        assert_eq!(s.backup_paths, ["/etc/hello", "/var/lib/hello"]);
        assert_eq!(spec(&[]).unwrap(), ReleaseSpec::default());
    }

    #[test]
    fn contradictory_or_incomplete_flags_are_refused() {
        assert!(spec(&["--health-tcp", "80", "--health-file", "x"]).is_err(), "one check at a time");
        assert!(spec(&["--probation", "30s"]).is_err(), "probation of nothing");
        assert!(spec(&["--health-tcp", "80", "--probation", "1.5s"]).is_err(), "whole seconds");
        assert!(spec(&["--installer", "rpm"]).is_err());
    }

    #[test]
    fn a_spec_an_agent_would_refuse_is_refused_at_publish() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.tar.gz");
        std::fs::write(&file, b"x").unwrap();
        let bad = ReleaseSpec { backup_paths: vec!["relative".into()], ..ReleaseSpec::default() };
        let err = describe(&file, "app", "1.0", &bad).unwrap_err().to_string();
        assert!(err.contains("backup path"), "{err}");
        let remote = ReleaseSpec {
            health: Some(HealthSpec {
                check: HealthCheck::Http { url: "http://example.org/".into() },
                probation_secs: 0,
                interval_secs: 0,
                timeout_secs: 0,
            }),
            ..ReleaseSpec::default()
        };
        assert!(describe(&file, "app", "1.0", &remote).is_err());
    }
}
