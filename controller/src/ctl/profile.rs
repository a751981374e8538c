//! flottectl's connection profile: a TOML file (`url`, `token`, `ca`),
//! overridden field by field by `FLOTTE_URL`, `FLOTTE_TOKEN` and
//! `FLOTTE_CA` or flags. `flotte-controller init` writes one.

use crate::client::AdminClient;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How to reach and authenticate to one controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// e.g. `https://ctl.example.org:7443`
    pub url: String,
    /// The admin token.
    pub token: String,
    /// The controller's CA certificate (PEM).
    pub ca: PathBuf,
}

impl Profile {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read flottectl config {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid flottectl config {}", path.display()))
    }

    /// Writes the profile with mode 0600 (it holds a credential).
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        crate::datadir::write_atomic(path, toml::to_string(self)?.as_bytes(), 0o600)?;
        Ok(())
    }

    /// `$XDG_CONFIG_HOME/flotte/flottectl.toml`, else `~/.config/flotte/flottectl.toml`.
    pub fn default_path() -> PathBuf {
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .unwrap_or_else(|| PathBuf::from("."));
        base.join("flotte").join("flottectl.toml")
    }

    pub fn client(&self) -> Result<AdminClient> {
        let ca =
            std::fs::read(&self.ca).with_context(|| format!("cannot read CA certificate {}", self.ca.display()))?;
        Ok(AdminClient::new(&self.url, Some(self.token.clone()), &ca)?)
    }
}

/// Builds the effective profile: the file (if any) overridden by explicit values.
pub fn resolve(
    file: Option<&Path>,
    url: Option<String>,
    token: Option<String>,
    ca: Option<PathBuf>,
) -> Result<Profile> {
    let default = Profile::default_path();
    let path = file.unwrap_or(&default);
    let from_file = if path.exists() { Some(Profile::load(path)?) } else { None };
    let missing = |what: &str, env: &str| {
        anyhow::anyhow!(
            "no controller {what}: set {env}, pass --{what}, or write {} (flotte-controller init does)",
            path.display()
        )
    };
    Ok(Profile {
        url: url.or_else(|| from_file.as_ref().map(|p| p.url.clone())).ok_or_else(|| missing("url", "FLOTTE_URL"))?,
        token: token
            .or_else(|| from_file.as_ref().map(|p| p.token.clone()))
            .ok_or_else(|| missing("token", "FLOTTE_TOKEN"))?,
        ca: ca.or_else(|| from_file.as_ref().map(|p| p.ca.clone())).ok_or_else(|| missing("ca", "FLOTTE_CA"))?,
    })
}
