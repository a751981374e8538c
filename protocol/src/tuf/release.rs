//! Flotte releases as TUF targets: each release `name@version` is the target
//! `name/version`, whose `length` and `sha256` are the package bytes and
//! whose `custom` object carries the rest of the [`ReleaseMetadata`] (installer
//! kind, health check, detection rule, backup paths) plus the platform the
//! release is meant for (`os`, `arch`, both optional).
//!
//! Guarantees:
//! - [`verified_release`] is the only way from TUF metadata to a
//!   [`VerifiedRelease`], and it refuses a target whose `custom` release
//!   disagrees with the signed length, the signed SHA-256 or the target name,
//!   or whose platform is not the caller's.
//! - A target name is a delegation path: a role delegated `team-x/*` can sign
//!   every version of package `team-x` and nothing else.
//! - A signed rollback authorisation (`rollback_up_to` in `custom`) travels
//!   with the [`VerifiedRelease`], so an agent can let this older release
//!   replace a newer one only on the word of the role that signed it (see
//!   [`crate::version::check_downgrade`]).

use crate::digest::Sha256Digest;
use crate::error::VerifyError;
use crate::release::ReleaseMetadata;
use crate::signing::VerifiedRelease;
use crate::tuf::TargetFile;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The TUF target name of `name@version`.
pub fn target_name(name: &str, version: &str) -> String {
    format!("{name}/{version}")
}

/// The platform a release is built for; `None` fields match any host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// `std::env::consts::OS` of the hosts it is for, e.g. `linux`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    /// `std::env::consts::ARCH` of the hosts it is for, e.g. `x86_64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
}

impl Platform {
    /// The platform this build runs on.
    pub fn this_host() -> Platform {
        Platform { os: Some(std::env::consts::OS.into()), arch: Some(std::env::consts::ARCH.into()) }
    }

    /// Whether a release for `self` may be installed on `host`.
    pub fn admits(&self, host: &Platform) -> bool {
        let fits = |want: &Option<String>, have: &Option<String>| want.is_none() || want == have;
        fits(&self.os, &host.os) && fits(&self.arch, &host.arch)
    }
}

/// The `custom` object of a release's targets entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseCustom {
    #[serde(flatten)]
    pub release: ReleaseMetadata,
    #[serde(flatten)]
    pub platform: Platform,
    /// The signed rollback authorisation: this release may replace active
    /// versions up to and including this one. Without it, agents refuse to
    /// install it over any newer version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_up_to: Option<String>,
}

/// The `custom` value for `release` built for `platform`.
pub fn custom(release: &ReleaseMetadata, platform: &Platform) -> Value {
    let custom = ReleaseCustom { release: release.clone(), platform: platform.clone(), rollback_up_to: None };
    serde_json::to_value(custom).unwrap_or(Value::Null)
}

/// Adds a rollback authorisation to the targets entry `entry` of the
/// release `name`: it may then replace active versions up to and including
/// `up_to`. Refused unless `up_to` is a valid version newer than the
/// release's own (anything else would authorise nothing).
pub fn authorise_rollback(name: &str, entry: &mut Value, up_to: &str) -> Result<(), VerifyError> {
    let file: TargetFile = serde_json::from_value(entry.clone())
        .map_err(|e| VerifyError::Target { target: name.to_string(), reason: format!("is malformed: {e}") })?;
    let mut custom = read_release(name, &file)?;
    crate::release::validate_name("version", up_to)?;
    if crate::version::compare(up_to, &custom.release.version) != std::cmp::Ordering::Greater {
        return Err(VerifyError::Target {
            target: name.to_string(),
            reason: format!(
                "cannot be authorised to replace versions up to {up_to}: that is not newer than {}",
                custom.release.version
            ),
        });
    }
    custom.rollback_up_to = Some(up_to.to_string());
    entry["custom"] = serde_json::to_value(custom).unwrap_or(Value::Null);
    Ok(())
}

/// The whole targets entry of `release`: its signed length and SHA-256 and
/// the `custom` object.
pub fn target_entry(release: &ReleaseMetadata, platform: &Platform) -> Value {
    serde_json::json!({
        "length": release.size,
        "hashes": {"sha256": release.sha256.to_hex()},
        "custom": custom(release, platform),
    })
}

/// Reads the release a targets entry describes, without deciding trust:
/// for the controller's catalogue and for tests. Agents use
/// [`verified_release`].
pub fn read_release(name: &str, file: &TargetFile) -> Result<ReleaseCustom, VerifyError> {
    let bad = |reason: String| VerifyError::Target { target: name.to_string(), reason };
    let custom = file.custom.clone().ok_or_else(|| bad("has no custom release fields".into()))?;
    let custom: ReleaseCustom =
        serde_json::from_value(custom).map_err(|e| bad(format!("custom release fields are malformed: {e}")))?;
    let release = &custom.release;
    release.validate()?;
    if let Some(up_to) = &custom.rollback_up_to {
        crate::release::validate_name("version", up_to)?;
    }
    if target_name(&release.name, &release.version) != name {
        return Err(bad(format!("custom fields describe {}, not this target", release.label())));
    }
    if release.size != file.length {
        return Err(bad(format!("custom size {} differs from the signed length {}", release.size, file.length)));
    }
    let signed_sha: Option<Sha256Digest> = file.hashes.get("sha256").and_then(|h| h.parse().ok());
    if signed_sha != Some(release.sha256) {
        return Err(bad(format!("custom sha256 {} differs from the signed sha256", release.sha256)));
    }
    Ok(custom)
}

/// The release a *verified* targets entry describes, for a host running
/// `host`. `role` is the TUF role whose signatures vouched for the entry.
pub fn verified_release(
    name: &str,
    file: &TargetFile,
    role: &str,
    host: &Platform,
) -> Result<VerifiedRelease, VerifyError> {
    let ReleaseCustom { release, platform, rollback_up_to } = read_release(name, file)?;
    if !platform.admits(host) {
        return Err(VerifyError::Target {
            target: name.to_string(),
            reason: format!(
                "is built for {}/{}, this host is {}/{}",
                platform.os.as_deref().unwrap_or("any"),
                platform.arch.as_deref().unwrap_or("any"),
                host.os.as_deref().unwrap_or("?"),
                host.arch.as_deref().unwrap_or("?"),
            ),
        });
    }
    Ok(VerifiedRelease::new(release, role.to_string(), rollback_up_to))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Timestamp;
    use crate::release::InstallerKind;

    fn release() -> ReleaseMetadata {
        let created_at = Timestamp::from_unix_millis(1_000);
        ReleaseMetadata {
            backup_paths: vec!["/etc/app".into()],
            ..ReleaseMetadata::new("app", "1.2.0", Sha256Digest::of(b"content"), 7, InstallerKind::Script, created_at)
        }
    }

    fn file(entry: Value) -> TargetFile {
        serde_json::from_value(entry).unwrap()
    }

    fn linux() -> Platform {
        Platform { os: Some("linux".into()), arch: Some("x86_64".into()) }
    }

    #[test]
    fn a_release_round_trips_through_its_targets_entry() {
        let entry = file(target_entry(&release(), &Platform::default()));
        let verified = verified_release("app/1.2.0", &entry, "targets", &linux()).unwrap();
        assert_eq!(verified.metadata(), &release());
        assert_eq!(verified.role(), "targets");
    }

    #[test]
    fn custom_fields_that_contradict_the_signed_entry_are_refused() {
        let mut entry = file(target_entry(&release(), &Platform::default()));
        entry.length = 8;
        let err = verified_release("app/1.2.0", &entry, "targets", &linux()).unwrap_err().to_string();
        assert!(err.contains("signed length"), "{err}");

        let mut entry = file(target_entry(&release(), &Platform::default()));
        entry.hashes.insert("sha256".into(), Sha256Digest::of(b"other").to_hex());
        let err = verified_release("app/1.2.0", &entry, "targets", &linux()).unwrap_err().to_string();
        assert!(err.contains("sha256"), "{err}");

        let entry = file(target_entry(&release(), &Platform::default()));
        let err = verified_release("app/9.9.9", &entry, "targets", &linux()).unwrap_err().to_string();
        assert!(err.contains("not this target"), "{err}");
    }

    #[test]
    fn an_entry_without_release_fields_is_refused() {
        let entry = file(serde_json::json!({"length": 7, "hashes": {"sha256": Sha256Digest::of(b"content").to_hex()}}));
        assert!(matches!(verified_release("app/1.2.0", &entry, "targets", &linux()), Err(VerifyError::Target { .. })));
    }

    #[test]
    fn a_release_for_another_platform_is_refused() {
        let windows = Platform { os: Some("windows".into()), arch: None };
        let entry = file(target_entry(&release(), &windows));
        let err = verified_release("app/1.2.0", &entry, "targets", &linux()).unwrap_err().to_string();
        assert!(err.contains("windows"), "{err}");
        let entry = file(target_entry(&release(), &linux()));
        assert!(verified_release("app/1.2.0", &entry, "targets", &linux()).is_ok());
    }

    #[test]
    fn a_signed_rollback_authorisation_travels_with_the_verified_release() {
        let mut entry = target_entry(&release(), &Platform::default());
        let plain = verified_release("app/1.2.0", &file(entry.clone()), "targets", &linux()).unwrap();
        assert_eq!(plain.rollback_up_to(), None);
        assert!(plain.may_replace("2.0.0").is_err(), "no authorisation, no downgrade");

        authorise_rollback("app/1.2.0", &mut entry, "2.0.0").unwrap();
        let authorised = verified_release("app/1.2.0", &file(entry), "targets", &linux()).unwrap();
        assert_eq!(authorised.metadata(), &release(), "the release itself is unchanged");
        assert_eq!(authorised.rollback_up_to(), Some("2.0.0"));
        assert_eq!(authorised.may_replace("2.0.0"), Ok(()));
        assert!(authorised.may_replace("2.1.0").is_err(), "only up to the signed ceiling");
    }

    #[test]
    fn an_authorisation_that_would_authorise_nothing_or_names_a_bad_version_is_refused() {
        let mut entry = target_entry(&release(), &Platform::default());
        for bad in ["1.2.0", "1.0", "../2.0"] {
            assert!(authorise_rollback("app/1.2.0", &mut entry, bad).is_err(), "{bad}");
        }
        entry["custom"]["rollback_up_to"] = Value::String("2.0/../x".into());
        assert!(verified_release("app/1.2.0", &file(entry), "targets", &linux()).is_err());
    }
}
