//! A small, real archive package: a `bin/hello` script and a `VERSION` file,
//! gzip-compressed. The lab and the tests install it.

use anyhow::Result;
use flate2::Compression;
use flate2::write::GzEncoder;
use std::path::{Path, PathBuf};

/// Writes `dir/NAME-VERSION.tar.gz`, padded with `padding` bytes of
/// incompressible data (to make transfers take measurable time).
pub fn build(dir: &Path, name: &str, version: &str, padding: usize) -> Result<PathBuf> {
    let path = dir.join(format!("{name}-{version}.tar.gz"));
    let file = std::fs::File::create(&path)?;
    let mut tar = tar::Builder::new(GzEncoder::new(file, Compression::fast()));
    let script = format!("#!/bin/sh\necho \"{name} {version}\"\n");
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
