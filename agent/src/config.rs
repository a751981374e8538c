//! The agent's settings, read once at start-up into a typed [`AgentConfig`].
//!
//! Sources, later ones winning: built-in defaults, the optional TOML file
//! (`--config`), command-line flags. Guarantees: an unknown or mistyped key
//! in the file is refused with an error naming the key and the file, and
//! `log_level` is checked to be a valid filter before anything runs.
//! `maintenance_window` is parsed here, once: written without a zone it is
//! read in the host's time zone as it is at start-up (jiff's system zone:
//! `TZ`, else `/etc/localtime`), resolved to that zone's IANA name.

use crate::error::{AgentError, Result};
use crate::local::policy::PullPolicy;
use crate::slow_retrieval::MinRate;
use crate::state_dir::DEFAULT_STATE_DIR;
use crate::throttle::Rate;
use flotte_protocol::window::Window;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default install root of the archive installer.
pub const DEFAULT_INSTALL_ROOT: &str = "/opt/flotte";
/// Default log filter.
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// Default path of the local socket `flotte` talks to.
pub const DEFAULT_SOCKET: &str = "/run/flotte/agent.sock";

/// Everything `flotte-agent run` needs to know, passed explicitly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// Identity, enrollment, journal, outbox and downloads live here.
    pub state_dir: PathBuf,
    /// Where packages are installed (`<root>/packages/<name>/<version>`).
    pub install_root: PathBuf,
    /// A `tracing` filter such as `info` or `flotte_agent=debug`.
    pub log_level: String,
    /// The name this host reports; `None` means the OS hostname. Useful
    /// for labs and containers where several agents share one host.
    pub hostname: Option<String>,
    /// How long a script package's hook may run before it is killed;
    /// `None` keeps the installer's default (10 minutes).
    pub hook_timeout: Option<Duration>,
    /// A separate dpkg database for the dpkg installer; `None` uses the
    /// system's. For labs and tests, so they never touch the host's packages.
    pub dpkg: Option<DpkgDatabase>,
    /// Include every installed dpkg package in the inventory. Off by
    /// default: the list is large and rarely what an admin asks about.
    pub report_dpkg_packages: bool,
    /// How often the agent recollects its inventory and, if its digest
    /// changed, sends it (it always sends it at connect and after installs).
    pub inventory_interval: Duration,
    /// The most download bandwidth the agent takes; `None` is unlimited.
    pub download_bandwidth_limit: Option<Rate>,
    /// The slowest a download may go before it is given up as a slow
    /// retrieval and retried later; never above the bandwidth limit.
    pub download_min_rate: MinRate,
    /// The local socket and who may install through it (`[pull]`).
    pub pull: PullConfig,
    /// When this host accepts required installs (pushes and deadline
    /// installs); outside it they download and verify, then wait. `None`:
    /// any time. Installs a user starts with `flotte install` ignore it.
    pub maintenance_window: Option<Window>,
}

/// The `[pull]` section: the end users' side of the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullConfig {
    /// Where the agent listens for `flotte` (a Unix socket).
    pub socket: PathBuf,
    /// Who may install and remove (everyone may list).
    pub policy: PullPolicy,
}

impl Default for PullConfig {
    fn default() -> Self {
        PullConfig { socket: DEFAULT_SOCKET.into(), policy: PullPolicy::default() }
    }
}

/// Default of [`AgentConfig::inventory_interval`].
pub const DEFAULT_INVENTORY_INTERVAL: Duration = Duration::from_secs(600);

/// A dpkg database other than the system's (`dpkg --admindir --instdir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpkgDatabase {
    /// Created empty if missing.
    pub admindir: PathBuf,
    /// Where package files are unpacked.
    pub instdir: PathBuf,
}

/// Values given on the command line; `None` means "not given".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub state_dir: Option<PathBuf>,
    pub install_root: Option<PathBuf>,
    pub hostname: Option<String>,
    /// `[pull] socket`.
    pub socket: Option<PathBuf>,
}

/// The file format. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    state_dir: Option<PathBuf>,
    install_root: Option<PathBuf>,
    log_level: Option<String>,
    hostname: Option<String>,
    /// A humantime duration, e.g. `"90s"`.
    hook_timeout: Option<String>,
    dpkg_admindir: Option<PathBuf>,
    dpkg_instdir: Option<PathBuf>,
    report_dpkg_packages: Option<bool>,
    /// A humantime duration, e.g. `"10m"`.
    inventory_interval: Option<String>,
    /// A bandwidth, e.g. `"10 MiB/s"` or `"20 Mbit/s"`.
    download_bandwidth_limit: Option<String>,
    /// A bandwidth, e.g. `"1 KiB/s"`.
    download_min_rate: Option<String>,
    /// A humantime duration, e.g. `"60s"`.
    download_min_rate_window: Option<String>,
    /// e.g. `"sat,sun 00:00-06:00"`, optionally with a zone or offset.
    maintenance_window: Option<String>,
    pull: Option<FilePull>,
}

/// `[pull]` in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePull {
    socket: Option<PathBuf>,
    #[serde(default)]
    install_users: Vec<String>,
    #[serde(default)]
    install_groups: Vec<String>,
}

impl AgentConfig {
    /// Reads `file` (if any) and applies `overrides`.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Self> {
        let parsed = match file {
            None => FileConfig::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(AgentError::io("read config file", path))?;
                parse(&text, path)?
            }
        };
        let config = AgentConfig {
            state_dir: overrides.state_dir.or(parsed.state_dir).unwrap_or_else(|| DEFAULT_STATE_DIR.into()),
            install_root: overrides.install_root.or(parsed.install_root).unwrap_or_else(|| DEFAULT_INSTALL_ROOT.into()),
            log_level: parsed.log_level.unwrap_or_else(|| DEFAULT_LOG_LEVEL.into()),
            hostname: overrides.hostname.or(parsed.hostname).filter(|h| !h.trim().is_empty()),
            hook_timeout: parsed
                .hook_timeout
                .as_deref()
                .map(|text| parse_duration("hook_timeout", text))
                .transpose()?,
            report_dpkg_packages: parsed.report_dpkg_packages.unwrap_or(false),
            inventory_interval: parsed
                .inventory_interval
                .as_deref()
                .map(|text| parse_duration("inventory_interval", text))
                .transpose()?
                .unwrap_or(DEFAULT_INVENTORY_INTERVAL),
            download_bandwidth_limit: parsed
                .download_bandwidth_limit
                .as_deref()
                .map(|text| {
                    Rate::parse(text)
                        .map_err(|reason| AgentError::ConfigValue { key: "download_bandwidth_limit", reason })
                })
                .transpose()?,
            download_min_rate: MinRate {
                rate: parsed
                    .download_min_rate
                    .as_deref()
                    .map(|text| {
                        Rate::parse(text).map_err(|reason| AgentError::ConfigValue { key: "download_min_rate", reason })
                    })
                    .transpose()?
                    .unwrap_or(MinRate::DEFAULT.rate),
                window: parsed
                    .download_min_rate_window
                    .as_deref()
                    .map(|text| parse_duration("download_min_rate_window", text))
                    .transpose()?
                    .unwrap_or(MinRate::DEFAULT.window),
            },
            maintenance_window: parsed
                .maintenance_window
                .as_deref()
                .map(|spec| parse_window(spec, &jiff::tz::TimeZone::system()))
                .transpose()?,
            pull: {
                let file = parsed.pull.unwrap_or_default();
                if file.socket.as_ref().is_some_and(|p| !p.is_absolute()) {
                    return Err(AgentError::ConfigValue {
                        key: "pull.socket",
                        reason: "must be an absolute path, e.g. /run/flotte/agent.sock".into(),
                    });
                }
                PullConfig {
                    socket: overrides.socket.or(file.socket).unwrap_or_else(|| DEFAULT_SOCKET.into()),
                    policy: PullPolicy { install_users: file.install_users, install_groups: file.install_groups },
                }
            },
            dpkg: match (parsed.dpkg_admindir, parsed.dpkg_instdir) {
                (None, None) => None,
                (Some(admindir), Some(instdir)) => Some(DpkgDatabase { admindir, instdir }),
                _ => {
                    return Err(AgentError::ConfigValue {
                        key: "dpkg_admindir",
                        reason: "dpkg_admindir and dpkg_instdir are set together or not at all".into(),
                    });
                }
            },
        };
        check_rates(config.download_bandwidth_limit, config.download_min_rate.rate)?;
        tracing_subscriber::EnvFilter::try_new(&config.log_level)
            .map_err(|e| AgentError::LogLevel { value: config.log_level.clone(), reason: e.to_string() })?;
        Ok(config)
    }
}

/// A bandwidth limit below the minimum rate would make the agent give up
/// its own throttled downloads as slow retrievals, every time.
fn check_rates(limit: Option<Rate>, min: Rate) -> Result<()> {
    match limit {
        Some(limit) if limit.bytes_per_second() < min.bytes_per_second() => Err(AgentError::ConfigValue {
            key: "download_bandwidth_limit",
            reason: format!(
                "{limit} is below download_min_rate ({min}), so every throttled download would be given up \
                 as too slow; raise the limit or lower download_min_rate"
            ),
        }),
        _ => Ok(()),
    }
}

fn parse_duration(key: &'static str, text: &str) -> Result<Duration> {
    match humantime::parse_duration(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(AgentError::ConfigValue { key, reason: "must be longer than zero".into() }),
        Err(e) => Err(AgentError::ConfigValue { key, reason: format!("{text:?} is not a duration like 90s: {e}") }),
    }
}

/// `maintenance_window`, read in `local` unless it names a zone or offset.
fn parse_window(spec: &str, local: &jiff::tz::TimeZone) -> Result<Window> {
    let key = "maintenance_window";
    let window =
        Window::parse_in_zone(spec, local).map_err(|e| AgentError::ConfigValue { key, reason: e.to_string() })?;
    flotte_protocol::window::check(&window).map_err(|e| AgentError::ConfigValue { key, reason: e.to_string() })?;
    Ok(window)
}

fn parse(text: &str, path: &Path) -> Result<FileConfig> {
    toml::from_str(text).map_err(|e| AgentError::ConfigParse { path: path.to_path_buf(), source: Box::new(e) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str, overrides: Overrides) -> Result<AgentConfig> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, text).unwrap();
        AgentConfig::load(Some(&path), overrides)
    }

    #[test]
    fn defaults_apply_without_a_file() {
        let c = AgentConfig::load(None, Overrides::default()).unwrap();
        assert_eq!(c.state_dir, Path::new(DEFAULT_STATE_DIR));
        assert_eq!(c.install_root, Path::new(DEFAULT_INSTALL_ROOT));
        assert_eq!(c.log_level, "info");
        assert!(!c.report_dpkg_packages);
        assert_eq!(c.inventory_interval, DEFAULT_INVENTORY_INTERVAL);
        assert_eq!(c.download_bandwidth_limit, None);
        assert_eq!(c.download_min_rate, MinRate::DEFAULT);
        assert_eq!(c.maintenance_window, None);
    }

    #[test]
    fn a_maintenance_window_is_read_in_the_local_zone_unless_it_names_one() {
        let paris = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
        let table = [
            ("sat,sun 00:00-06:00", "sat,sun 00:00-06:00 Europe/Paris"),
            ("sat,sun 00:00-06:00 Asia/Tokyo", "sat,sun 00:00-06:00 Asia/Tokyo"),
            ("mon-fri 22:00-05:00 +02:00", "mon,tue,wed,thu,fri 22:00-05:00 +02:00"),
        ];
        for (spec, expected) in table {
            assert_eq!(parse_window(spec, &paris).unwrap().to_string(), expected, "{spec}");
        }
        let c = load_text("maintenance_window = \"daily 01:00-02:00 UTC\"\n", Overrides::default()).unwrap();
        assert_eq!(
            c.maintenance_window.map(|w| w.to_string()).as_deref(),
            Some("mon,tue,wed,thu,fri,sat,sun 01:00-02:00 +00:00")
        );
        // Without a zone, the host's zone (whatever it is here) is kept by name or offset.
        let c = load_text("maintenance_window = \"sat 00:00-06:00\"\n", Overrides::default()).unwrap();
        assert!(c.maintenance_window.is_some());
    }

    #[test]
    fn a_bad_maintenance_window_is_refused_by_key() {
        for bad in
            ["weekends", "sat 06:00-06:00", "caturday 00:00-06:00", "sat 00:00-06:00 Mars/Olympus", "sat 25:00-26:00"]
        {
            let err = load_text(&format!("maintenance_window = \"{bad}\"\n"), Overrides::default()).unwrap_err();
            assert!(matches!(err, AgentError::ConfigValue { key: "maintenance_window", .. }), "{bad}: {err}");
            assert!(err.to_string().contains("maintenance_window"), "{bad}: {err}");
        }
        let err = load_text("maintenance_window = 6\n", Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("maintenance_window"), "{err}");
    }

    #[test]
    fn a_download_bandwidth_limit_is_read_and_checked() {
        let c = load_text("download_bandwidth_limit = \"20 Mbit/s\"\n", Overrides::default()).unwrap();
        assert_eq!(c.download_bandwidth_limit.map(Rate::bytes_per_second), Some(2_500_000));
        let err = load_text("download_bandwidth_limit = \"fast\"\n", Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("download_bandwidth_limit"), "{err}");
    }

    #[test]
    fn the_minimum_download_rate_and_its_window_are_read_and_checked() {
        let text = "download_min_rate = \"64 KiB/s\"\ndownload_min_rate_window = \"2s\"\n";
        let c = load_text(text, Overrides::default()).unwrap();
        assert_eq!(c.download_min_rate.rate.bytes_per_second(), 64 * 1024);
        assert_eq!(c.download_min_rate.window, Duration::from_secs(2));
        for (bad, key) in [
            ("download_min_rate = \"slow\"\n", "download_min_rate"),
            ("download_min_rate = \"0 B/s\"\n", "download_min_rate"),
            ("download_min_rate_window = \"0s\"\n", "download_min_rate_window"),
        ] {
            let err = load_text(bad, Overrides::default()).unwrap_err();
            assert!(matches!(err, AgentError::ConfigValue { key: k, .. } if k == key), "{bad}: {err}");
        }
    }

    #[test]
    fn a_bandwidth_limit_below_the_minimum_rate_is_refused_rather_than_aborting_every_download() {
        let text = "download_bandwidth_limit = \"512 B/s\"\n";
        let err = load_text(text, Overrides::default()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, AgentError::ConfigValue { key: "download_bandwidth_limit", .. }), "{err}");
        assert!(msg.contains("512 B/s is below download_min_rate (1 KiB/s)"), "{msg}");
        let lowered = "download_bandwidth_limit = \"512 B/s\"\ndownload_min_rate = \"256 B/s\"\n";
        let c = load_text(lowered, Overrides::default()).unwrap();
        assert_eq!(c.download_bandwidth_limit.map(Rate::bytes_per_second), Some(512));
        let equal = "download_bandwidth_limit = \"1 KiB/s\"\n";
        assert!(load_text(equal, Overrides::default()).is_ok());
    }

    #[test]
    fn flags_override_the_file() {
        let text = "state_dir = \"/s\"\ninstall_root = \"/r\"\nlog_level = \"debug\"\n";
        let c = load_text(text, Overrides { state_dir: Some("/flag".into()), ..Overrides::default() }).unwrap();
        assert_eq!(c.state_dir, Path::new("/flag"));
        assert_eq!(c.install_root, Path::new("/r"));
        assert_eq!(c.log_level, "debug");
    }

    #[test]
    fn an_unknown_key_is_refused_by_name() {
        let err = load_text("state_dir = \"/s\"\ninstal_root = \"/r\"\n", Overrides::default()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, AgentError::ConfigParse { .. }));
        assert!(msg.contains("instal_root") && msg.contains("agent.toml"), "{msg}");
    }

    #[test]
    fn installer_settings_are_read_and_checked() {
        let text = "hook_timeout = \"3s\"\ndpkg_admindir = \"/a\"\ndpkg_instdir = \"/i\"\n";
        let c = load_text(text, Overrides::default()).unwrap();
        assert_eq!(c.hook_timeout, Some(Duration::from_secs(3)));
        assert_eq!(c.dpkg, Some(DpkgDatabase { admindir: "/a".into(), instdir: "/i".into() }));
        for bad in ["hook_timeout = \"soon\"\n", "hook_timeout = \"0s\"\n", "dpkg_admindir = \"/a\"\n"] {
            let err = load_text(bad, Overrides::default()).unwrap_err();
            assert!(matches!(err, AgentError::ConfigValue { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn a_wrong_type_is_refused_with_key_and_line() {
        let err =
            load_text("log_level = \"info\"\nreport_dpkg_packages = \"yes\"\n", Overrides::default()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("report_dpkg_packages") && msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn the_pull_section_sets_the_socket_and_who_may_install() {
        let c = AgentConfig::load(None, Overrides::default()).unwrap();
        assert_eq!(c.pull, PullConfig::default());
        assert_eq!(c.pull.socket, Path::new(DEFAULT_SOCKET));
        let text = "[pull]\nsocket = \"/tmp/x.sock\"\ninstall_users = [\"alice\"]\ninstall_groups = [\"staff\"]\n";
        let c = load_text(text, Overrides::default()).unwrap();
        assert_eq!(c.pull.socket, Path::new("/tmp/x.sock"));
        assert_eq!(c.pull.policy.install_users, ["alice"]);
        assert_eq!(c.pull.policy.install_groups, ["staff"]);
        let err = load_text("[pull]\ninstall_user = [\"alice\"]\n", Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("install_user"), "{err}");
        let err = load_text("[pull]\nsocket = \"agent.sock\"\n", Overrides::default()).unwrap_err();
        assert!(matches!(err, AgentError::ConfigValue { key: "pull.socket", .. }), "{err}");
    }

    #[test]
    fn a_bad_log_level_is_refused() {
        let err = load_text("log_level = \"=[\"\n", Overrides::default()).unwrap_err();
        assert!(matches!(err, AgentError::LogLevel { .. }), "{err}");
    }
}
