//! What the agent tells the controller about its host.
//!
//! Guarantee: collecting an inventory never fails; a value the OS does not
//! provide is reported as `"unknown"`, and a package whose state cannot be
//! read is left out rather than guessed.

use flotte_installers::Installer;
use flotte_protocol::messages::{InstalledPackage, Inventory};
use flotte_protocol::release::validate_name;
use std::path::Path;
use sysinfo::System;

/// This host's name, as enrollment and the inventory report it: the
/// configured name if there is one, else the OS hostname.
pub fn hostname(configured: Option<&str>) -> String {
    configured.map(str::to_string).or_else(System::host_name).unwrap_or_else(|| "unknown".into())
}

/// The host facts plus the active version of every Flotte-managed package
/// under `install_root` (the archive installer's `<root>/packages/<name>`).
pub fn collect(installer: &dyn Installer, install_root: &Path, configured_hostname: Option<&str>) -> Inventory {
    let unknown = || "unknown".to_string();
    Inventory {
        hostname: hostname(configured_hostname),
        os: System::name().unwrap_or_else(unknown),
        os_version: System::long_os_version().unwrap_or_else(unknown),
        kernel: System::kernel_version().unwrap_or_else(unknown),
        arch: std::env::consts::ARCH.to_string(),
        packages: packages(installer, install_root),
    }
}

fn packages(installer: &dyn Installer, install_root: &Path) -> Vec<InstalledPackage> {
    let dir = install_root.join("packages");
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| validate_name("package name", name).is_ok())
        .collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|name| match installer.active_version(&name) {
            Ok(Some(version)) => Some(InstalledPackage { name, version }),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(package = %name, error = %e, "cannot read the active version");
                None
            }
        })
        .collect()
}
