//! Running an installer for a job: stage, then activate, on a blocking thread.
//!
//! Guarantee: the result always says which version is active afterwards —
//! the new one after success, the one still active after a failure (the
//! installer's answer, or the job's baseline if even that cannot be read).

use crate::job::JobEvent;
use flotte_installers::{Installer, Package};
use std::path::Path;

/// Stages and activates `name`@`version` from the verified file `artifact`.
pub fn install(
    installer: &dyn Installer,
    name: &str,
    version: &str,
    artifact: &Path,
    active_before: Option<String>,
) -> JobEvent {
    let package = Package { name, version, artifact };
    match installer.stage(&package).and_then(|staged| installer.activate(staged)) {
        Ok(activation) => {
            JobEvent::Installed { active_after: installer.active_version(name).unwrap_or(Some(activation.active)) }
        }
        Err(e) => JobEvent::InstallFailed {
            message: e.to_string(),
            active_now: installer.active_version(name).unwrap_or(active_before),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotte_installers::ArchiveInstaller;

    fn tarball(dir: &Path, file: &str, contents: &[u8]) -> std::path::PathBuf {
        let path = dir.join(format!("{file}.tar"));
        let mut builder = tar::Builder::new(std::fs::File::create(&path).unwrap());
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, file, contents).unwrap();
        builder.finish().unwrap();
        path
    }

    #[test]
    fn a_failed_install_reports_the_version_that_stays_active() {
        let dir = tempfile::tempdir().unwrap();
        let installer = ArchiveInstaller::new(dir.path().join("root"));
        let good = tarball(dir.path(), "bin", b"v1");
        assert_eq!(
            install(&installer, "app", "1.0", &good, None),
            JobEvent::Installed { active_after: Some("1.0".into()) }
        );
        let garbage = dir.path().join("garbage");
        std::fs::write(&garbage, b"not an archive at all").unwrap();
        match install(&installer, "app", "2.0", &garbage, Some("1.0".into())) {
            JobEvent::InstallFailed { active_now, .. } => assert_eq!(active_now.as_deref(), Some("1.0")),
            other => panic!("{other:?}"),
        }
    }
}
