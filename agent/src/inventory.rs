//! What the agent tells the controller about its host.
//!
//! Guarantees: collecting an inventory never fails; a value the OS does not
//! provide is reported as `"unknown"` (text) or `0` (numbers), and a package
//! whose state cannot be read is left out rather than guessed. [`digest`]
//! is stable for a host that does not change: the report carries the boot
//! time rather than the uptime, and the digest ignores changes of free disk
//! space below [`DISK_FREE_GRANULARITY`], so the agent does not resend the
//! inventory for every log line written to `/`.

use flotte_installers::Installer;
use flotte_protocol::Timestamp;
use flotte_protocol::digest::{ContentHasher, Sha256Digest};
use flotte_protocol::messages::{Hardware, InstalledPackage, Inventory};
use flotte_protocol::release::validate_name;
use std::path::Path;
use std::process::Command;
use sysinfo::{CpuRefreshKind, DiskRefreshKind, Disks, MemoryRefreshKind, System};

/// Free-space changes smaller than this do not count as an inventory change.
pub const DISK_FREE_GRANULARITY: u64 = 1 << 30;

/// Most bytes of names and versions the dpkg list may carry, so that a
/// `Hello` stays well under the 1 MiB frame limit on any host (a typical
/// desktop needs about a tenth of it). Entries past it are left out.
pub const DPKG_LIST_BUDGET: usize = 512 * 1024;

/// Where systemd-logind keeps one file per user with a session.
const LOGIND_USERS: &str = "/run/systemd/users";

/// What to collect besides the always-present host facts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Also list every installed dpkg package (`report_dpkg_packages`).
    pub dpkg_packages: bool,
}

/// This host's name, as enrollment and the inventory report it: the
/// configured name if there is one, else the OS hostname.
pub fn hostname(configured: Option<&str>) -> String {
    configured.map(str::to_string).or_else(System::host_name).unwrap_or_else(|| "unknown".into())
}

/// The host facts plus the active version of every Flotte-managed package
/// under `install_root` (the archive installer's `<root>/packages/<name>`).
pub fn collect(
    installer: &dyn Installer,
    install_root: &Path,
    configured_hostname: Option<&str>,
    options: Options,
) -> Inventory {
    let unknown = || "unknown".to_string();
    Inventory {
        hostname: hostname(configured_hostname),
        os: System::name().unwrap_or_else(unknown),
        os_version: System::long_os_version().unwrap_or_else(unknown),
        kernel: System::kernel_version().unwrap_or_else(unknown),
        arch: std::env::consts::ARCH.to_string(),
        packages: packages(installer, install_root),
        hardware: hardware(),
        boot_time: match System::boot_time() {
            0 => None,
            secs => Some(Timestamp::from_unix_millis(secs.saturating_mul(1000))),
        },
        users: users(),
        dpkg_packages: options.dpkg_packages.then(dpkg_packages),
    }
}

/// A digest of everything in `inv` that counts as a change (see the module
/// guarantees). Equal inventories have equal digests.
pub fn digest(inv: &Inventory) -> Sha256Digest {
    let mut stable = inv.clone();
    stable.hardware.root_disk_free /= DISK_FREE_GRANULARITY;
    let bytes = serde_json::to_vec(&stable).unwrap_or_default();
    let mut hasher = ContentHasher::new();
    hasher.update(&bytes);
    hasher.finish().0
}

fn hardware() -> Hardware {
    let mut sys = System::new();
    sys.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
    sys.refresh_cpu_list(CpuRefreshKind::nothing());
    let disks = Disks::new_with_refreshed_list_specifics(DiskRefreshKind::nothing().with_storage());
    let root = disks.list().iter().find(|d| d.mount_point() == Path::new("/"));
    Hardware {
        cpu_model: sys.cpus().first().map(|c| c.brand().trim().to_string()).unwrap_or_default(),
        cpu_cores: u32::try_from(sys.cpus().len()).unwrap_or(u32::MAX),
        memory_total: sys.total_memory(),
        root_disk_total: root.map_or(0, |d| d.total_space()),
        root_disk_free: root.map_or(0, |d| d.available_space()),
    }
}

/// Users with a session: logind's view where there is one, else `who`.
fn users() -> Vec<String> {
    let mut users = match std::fs::read_dir(LOGIND_USERS) {
        Ok(entries) => entries
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .filter_map(|text| logind_user(&text))
            .collect(),
        Err(_) => match Command::new("who").output() {
            Ok(out) if out.status.success() => who_users(&String::from_utf8_lossy(&out.stdout)),
            _ => Vec::new(),
        },
    };
    users.sort();
    users.dedup();
    users
}

/// The `NAME=` of a logind user file, unless the user only lingers (has
/// services but no login session) or is logging out.
fn logind_user(text: &str) -> Option<String> {
    let field = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=').map(str::to_string));
    match field("STATE").as_deref() {
        Some("active" | "online") => field("NAME").filter(|n| !n.is_empty()),
        _ => None,
    }
}

/// The first column of `who`'s output.
fn who_users(text: &str) -> Vec<String> {
    text.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect()
}

/// Installed dpkg packages; empty if `dpkg-query` is missing or fails.
fn dpkg_packages() -> Vec<InstalledPackage> {
    let out = Command::new("dpkg-query")
        .args(["--show", "--showformat=${db:Status-Abbrev}\t${Package}\t${Version}\n"])
        .output();
    match out {
        Ok(out) if out.status.success() => {
            within_budget(parse_dpkg_query(&String::from_utf8_lossy(&out.stdout)), DPKG_LIST_BUDGET)
        }
        Ok(out) => {
            tracing::warn!(status = %out.status, "dpkg-query failed; no dpkg package list");
            Vec::new()
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot run dpkg-query; no dpkg package list");
            Vec::new()
        }
    }
}

/// The first entries of `list` whose names and versions fit in `budget` bytes.
fn within_budget(mut list: Vec<InstalledPackage>, budget: usize) -> Vec<InstalledPackage> {
    let mut used = 0;
    let keep = list
        .iter()
        .take_while(|p| {
            used += p.name.len() + p.version.len() + 2;
            used <= budget
        })
        .count();
    if keep < list.len() {
        tracing::warn!(
            total = list.len(),
            reported = keep,
            "dpkg package list too long; reporting only the first part"
        );
        list.truncate(keep);
    }
    list
}

/// Lines `ii \tname\tversion`; only fully installed packages count.
fn parse_dpkg_query(text: &str) -> Vec<InstalledPackage> {
    text.lines()
        .filter_map(|line| {
            let mut cols = line.split('\t');
            let status = cols.next()?;
            let (name, version) = (cols.next()?, cols.next()?);
            (status.trim() == "ii" && !name.is_empty())
                .then(|| InstalledPackage { name: name.to_string(), version: version.to_string() })
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_ignores_small_changes_of_free_space_only() {
        let mut a = Inventory { hostname: "ws".into(), ..Default::default() };
        a.hardware.root_disk_free = 10 * DISK_FREE_GRANULARITY + 5;
        let mut b = a.clone();
        b.hardware.root_disk_free += 1000;
        assert_eq!(digest(&a), digest(&b));
        b.hardware.root_disk_free += DISK_FREE_GRANULARITY;
        assert_ne!(digest(&a), digest(&b));
        let mut c = a.clone();
        c.users = vec!["alice".into()];
        assert_ne!(digest(&a), digest(&c));
    }

    #[test]
    fn logind_files_and_who_output_name_the_logged_in_users() {
        assert_eq!(logind_user("NAME=alice\nSTATE=active\n"), Some("alice".into()));
        assert_eq!(logind_user("STATE=online\nNAME=bob\n"), Some("bob".into()));
        assert_eq!(logind_user("NAME=svc\nSTATE=lingering\n"), None);
        assert_eq!(logind_user("garbage"), None);
        assert_eq!(who_users("alice pts/0 2026-01-01 10:00\nbob tty1 x\n\n"), vec!["alice", "bob"]);
    }

    #[test]
    fn the_dpkg_list_is_cut_to_its_budget() {
        let list: Vec<_> = (0..10).map(|i| InstalledPackage { name: format!("p{i}"), version: "1".into() }).collect();
        assert_eq!(within_budget(list.clone(), 1000).len(), 10);
        assert_eq!(within_budget(list, 15).len(), 3, "5 bytes each");
    }

    #[test]
    fn only_installed_dpkg_packages_are_listed() {
        let text = "ii \tbash\t5.2.15-2\nrc \told\t1.0\nii \tlibc6\t2.36-9\nbroken line\n";
        let names: Vec<_> = parse_dpkg_query(text).into_iter().map(|p| format!("{}={}", p.name, p.version)).collect();
        assert_eq!(names, vec!["bash=5.2.15-2", "libc6=2.36-9"]);
    }
}
