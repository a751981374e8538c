//! A small tmpfs mounted for one test (a disk that fills up), unmounted
//! when the guard drops.

use anyhow::{Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs; unmounted (lazily, so a straggling process cannot
/// block it) on drop.
pub struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `"1m"`) on `dir`, creating it. Fails
    /// where mounting is not allowed (no root, no CAP_SYS_ADMIN).
    pub fn mount(dir: &Path, size: &str) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"])
            .arg(dir)
            .output()?;
        if !output.status.success() {
            bail!("mount -t tmpfs on {} failed: {}", dir.display(), String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(Tmpfs { dir: dir.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}
