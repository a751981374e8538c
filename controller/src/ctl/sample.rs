//! A small, real archive package: a `bin/hello` script and a `VERSION` file,
//! gzip-compressed. The lab and the tests install it.
//!
//! `bin/hello --check` is its health check: it fails when the host has the
//! marker file [`UNHEALTHY_MARKER`] in the agent's install root (found
//! relative to the script, four levels up from
//! `<root>/packages/<name>/current/bin/hello`). The lab uses it to make one
//! agent's health check fail.

use anyhow::Result;
use flate2::Compression;
use flate2::write::GzEncoder;
use std::path::{Path, PathBuf};

/// The file in an install root that makes `bin/hello --check` fail there.
pub const UNHEALTHY_MARKER: &str = "hello.unhealthy";

/// The health-check command of the sample package, for `--health-cmd`.
pub const HEALTH_COMMAND: &str = "bin/hello --check";

/// Writes `dir/NAME-VERSION.tar.gz`, padded with `padding` bytes of
/// incompressible data (to make transfers take measurable time).
pub fn build(dir: &Path, name: &str, version: &str, padding: usize) -> Result<PathBuf> {
    let path = dir.join(format!("{name}-{version}.tar.gz"));
    let file = std::fs::File::create(&path)?;
    let mut tar = tar::Builder::new(GzEncoder::new(file, Compression::fast()));
    let script = format!(
        "#!/bin/sh\n\
         if [ \"$1\" = --check ]; then\n\
         \troot=\"$(cd \"$(dirname \"$0\")/../../../..\" && pwd)\" || exit 2\n\
         \tif [ -e \"$root/{UNHEALTHY_MARKER}\" ]; then echo \"{name} {version}: $root/{UNHEALTHY_MARKER} exists\"; exit 1; fi\n\
         \techo \"{name} {version}: healthy\"; exit 0\n\
         fi\n\
         echo \"{name} {version}\"\n"
    );
    append(&mut tar, "bin/hello", script.as_bytes(), 0o755)?;
    append(&mut tar, "VERSION", format!("{version}\n").as_bytes(), 0o644)?;
    if padding > 0 {
        // xorshift noise: gzip cannot shrink it, so the archive really is this big.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let noise: Vec<u8> = (0..padding)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        append(&mut tar, "share/padding.bin", &noise, 0o644)?;
    }
    tar.into_inner()?.finish()?.sync_all()?;
    Ok(path)
}

fn append<W: std::io::Write>(tar: &mut tar::Builder<W>, path: &str, data: &[u8], mode: u32) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mtime(0);
    tar.append_data(&mut header, path, data)?;
    Ok(())
}
