//! The controller's configuration, parsed once into [`ControllerConfig`] and
//! passed explicitly. It lives either in the data directory
//! (`DATA/controller.toml`, written by `init`) or in a file named with
//! `--config` (the Debian package's `/etc/flotte/controller.toml`), which
//! may also say where the data directory is. Flags override both.
//! Guarantee: an unknown key or a mistyped value is refused with the key,
//! the file and the line.

use crate::error::ControllerError;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Everything the running controller needs to know besides its data directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerConfig {
    /// Where the controller keeps its state. Only read from a `--config`
    /// file; a config inside the data directory leaves it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// TCP address of the HTTPS API. QUIC listens on the same address over
    /// UDP unless `quic_listen` says otherwise.
    pub listen: SocketAddr,
    /// UDP address of the QUIC endpoint for agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quic_listen: Option<SocketAddr>,
    /// Names and addresses in the server certificate; agents and flottectl
    /// must reach the controller by one of them. `init` issues the
    /// certificate; afterwards this list is a record of what it contains.
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// Largest package accepted for upload, in bytes.
    #[serde(default = "default_max_package_size")]
    pub max_package_size: u64,
    /// Pace each content stream to this many bytes per second (0 = no limit),
    /// to keep a fleet-wide push from saturating the uplink.
    #[serde(default)]
    pub content_rate_limit: u64,
    /// Bytes of package content kept in memory for sending, shared by all
    /// agents fetching the same package (read from disk once per chunk).
    #[serde(default = "default_content_cache_size")]
    pub content_cache_size: u64,
    /// QUIC handshakes worked on at once; up to sixteen times as many further
    /// attempts wait for a slot (at most 5 s), the rest are refused and
    /// agents come back after their backoff (see `quic::admission`), so a
    /// reconnect storm of the whole fleet drains instead of collapsing.
    #[serde(default = "default_max_handshakes")]
    pub max_handshakes: usize,
}

fn default_max_package_size() -> u64 {
    4 << 30
}

fn default_content_cache_size() -> u64 {
    crate::content::cache::DEFAULT_CAPACITY
}

fn default_max_handshakes() -> usize {
    1024
}

impl ControllerConfig {
    /// A config listening on `listen`, known as `hostnames`, with every
    /// other setting at its default (what `init` writes).
    pub fn new(listen: SocketAddr, hostnames: Vec<String>) -> Self {
        ControllerConfig {
            data_dir: None,
            listen,
            quic_listen: None,
            hostnames,
            max_package_size: default_max_package_size(),
            content_rate_limit: 0,
            content_cache_size: default_content_cache_size(),
            max_handshakes: default_max_handshakes(),
        }
    }

    /// The address agents connect to over QUIC.
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_listen.unwrap_or(self.listen)
    }

    pub fn load(path: &Path) -> Result<Self, ControllerError> {
        let text = std::fs::read_to_string(path).map_err(ControllerError::io("cannot read config", path))?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ControllerError> {
        toml::from_str(text).map_err(|e| ControllerError::Config { path: PathBuf::from(path), message: e.to_string() })
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_key_is_refused_with_its_name() {
        let err =
            ControllerConfig::parse("listen = \"127.0.0.1:1\"\nhostnames = []\nlisten_port = 3\n", Path::new("c.toml"))
                .unwrap_err();
        assert!(err.to_string().contains("listen_port"), "{err}");
    }

    #[test]
    fn written_config_reads_back() {
        let c = ControllerConfig {
            data_dir: Some("/srv/flotte".into()),
            max_package_size: 5,
            content_cache_size: 6,
            max_handshakes: 64,
            ..ControllerConfig::new("127.0.0.1:7443".parse().unwrap(), vec!["localhost".into()])
        };
        assert_eq!(ControllerConfig::parse(&c.to_toml(), Path::new("c.toml")).unwrap(), c);
    }

    #[test]
    fn the_packaged_config_file_parses() {
        let text = include_str!("../../packaging/controller/controller.toml");
        let c = ControllerConfig::parse(text, Path::new("controller.toml")).unwrap();
        assert_eq!(c.data_dir.as_deref(), Some(Path::new("/var/lib/flotte-controller")));
        assert!(c.hostnames.is_empty());
        assert_eq!(c.content_cache_size, crate::content::cache::DEFAULT_CAPACITY);
    }
}
