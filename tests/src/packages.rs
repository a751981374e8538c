//! Real packages for the tests, built on the fly: archives with any entry
//! (including hostile ones `tar::Builder` would refuse), script packages
//! with hooks, and `.deb` files built with `dpkg-deb --build`.

use anyhow::{Context, Result, bail};
use flate2::Compression;
use flate2::write::GzEncoder;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use tar::{EntryType, Header};

/// An archive built entry by entry, header bytes written directly.
#[derive(Default)]
pub struct Archive {
    inner: Option<tar::Builder<Vec<u8>>>,
}

impl Archive {
    pub fn new() -> Self {
        Archive { inner: Some(tar::Builder::new(Vec::new())) }
    }

    pub fn file(self, path: &str, data: &[u8], mode: u32) -> Result<Self> {
        self.raw(EntryType::Regular, path, "", mode, data)
    }

    pub fn dir(self, path: &str) -> Result<Self> {
        self.raw(EntryType::Directory, path, "", 0o755, b"")
    }

    pub fn symlink(self, path: &str, target: &str) -> Result<Self> {
        self.raw(EntryType::Symlink, path, target, 0o777, b"")
    }

    pub fn hardlink(self, path: &str, target: &str) -> Result<Self> {
        self.raw(EntryType::Link, path, target, 0o644, b"")
    }

    /// Any entry, `path` and `link` copied byte for byte (no checks at all).
    pub fn raw(mut self, kind: EntryType, path: &str, link: &str, mode: u32, data: &[u8]) -> Result<Self> {
        if path.len() > 100 || link.len() > 100 {
            bail!("test archive names are limited to 100 bytes");
        }
        let mut header = Header::new_gnu();
        {
            let old = header.as_old_mut();
            old.name[..path.len()].copy_from_slice(path.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        header.set_mtime(0);
        header.set_cksum();
        self.inner.as_mut().context("archive already written")?.append(&header, data)?;
        Ok(self)
    }

    /// Writes `dir/file_name` as tar.gz and returns its path.
    pub fn write(mut self, dir: &Path, file_name: &str) -> Result<PathBuf> {
        let tar = self.inner.take().context("archive already written")?.into_inner()?;
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&tar)?;
        let path = dir.join(file_name);
        std::fs::write(&path, gz.finish()?)?;
        Ok(path)
    }
}

/// The hooks of a script package (shell script bodies, without `#!`).
pub struct Hooks<'a> {
    pub install: &'a str,
    pub uninstall: &'a str,
    pub check: &'a str,
    pub rollback: Option<&'a str>,
}

impl Default for Hooks<'_> {
    fn default() -> Self {
        Hooks { install: "exit 0", uninstall: "exit 0", check: "exit 0", rollback: None }
    }
}

/// A script package `dir/NAME-VERSION.tar.gz`: the hooks at the top level
/// and a `VERSION` file.
pub fn script(dir: &Path, name: &str, version: &str, hooks: &Hooks<'_>) -> Result<PathBuf> {
    let hook = |body: &str| format!("#!/bin/sh\nset -e\n{body}\n");
    let mut archive = Archive::new()
        .file("install", hook(hooks.install).as_bytes(), 0o755)?
        .file("uninstall", hook(hooks.uninstall).as_bytes(), 0o755)?
        .file("check", hook(hooks.check).as_bytes(), 0o755)?
        .file("VERSION", format!("{version}\n").as_bytes(), 0o644)?;
    if let Some(rollback) = hooks.rollback {
        archive = archive.file("rollback", hook(rollback).as_bytes(), 0o755)?;
    }
    archive.write(dir, &format!("{name}-{version}.tar.gz"))
}

/// A real `.deb` of `name` `version` (architecture `all`) that installs
/// `/usr/share/NAME/VERSION`, with `postinst` as its maintainer script.
pub fn deb(dir: &Path, name: &str, version: &str, postinst: &str) -> Result<PathBuf> {
    let tree = dir.join(format!("deb-{name}-{version}"));
    let debian = tree.join("DEBIAN");
    std::fs::create_dir_all(&debian)?;
    std::fs::write(
        debian.join("control"),
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: Flotte tests <t@example.invalid>\n\
             Description: a test package\n"
        ),
    )?;
    let script = debian.join("postinst");
    std::fs::write(&script, format!("#!/bin/sh\n{postinst}\n"))?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    let share = tree.join("usr/share").join(name);
    std::fs::create_dir_all(&share)?;
    std::fs::write(share.join("VERSION"), format!("{version}\n"))?;
    let out = dir.join(format!("{name}_{version}_all.deb"));
    let status = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&tree)
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .context("cannot run dpkg-deb")?;
    if !status.success() {
        bail!("dpkg-deb --build failed with {status}");
    }
    Ok(out)
}
