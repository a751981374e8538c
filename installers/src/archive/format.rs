//! Recognising an artifact's format from its magic bytes, never its name.
//!
//! Guarantee: [`open_tar_stream`] opens the artifact exactly once and returns
//! a reader over that same open file, so the bytes that were checked are the
//! bytes that are extracted. Formats other than tar and gzip-compressed tar
//! are refused with [`InstallError::UnsupportedFormat`] naming what was seen.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::error::InstallError;

/// What the leading bytes of an artifact say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// gzip (`1f 8b`), assumed to wrap a tar stream.
    TarGz,
    /// Plain POSIX or GNU tar (`ustar` at offset 257).
    Tar,
    /// Recognised but not supported yet; the name is for the error message.
    Unsupported(&'static str),
}

/// Classifies the first bytes of a file (at least 262 are needed to see a
/// plain tar header's magic).
pub(crate) fn detect(head: &[u8]) -> Format {
    const USTAR_OFFSET: usize = 257;
    if head.starts_with(&[0x1f, 0x8b]) {
        Format::TarGz
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Format::Unsupported("zstd")
    } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        Format::Unsupported("zip")
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Format::Unsupported("xz")
    } else if head.starts_with(b"BZh") {
        Format::Unsupported("bzip2")
    } else if head.get(USTAR_OFFSET..USTAR_OFFSET + 5) == Some(b"ustar") {
        Format::Tar
    } else {
        Format::Unsupported("unknown")
    }
}

/// Opens `artifact`, checks its format, and returns the decompressed tar
/// byte stream read from that same file handle.
pub(crate) fn open_tar_stream(artifact: &Path) -> Result<Box<dyn Read>, InstallError> {
    let read_err = |source| InstallError::ArchiveRead { path: artifact.to_path_buf(), source };
    let mut file = File::open(artifact).map_err(read_err)?;
    let mut head = [0u8; 512];
    let len = read_up_to(&mut file, &mut head).map_err(read_err)?;
    let format = detect(&head[..len]);
    file.seek(SeekFrom::Start(0)).map_err(read_err)?;
    let reader = BufReader::new(file);
    match format {
        Format::TarGz => Ok(Box::new(MultiGzDecoder::new(reader))),
        Format::Tar => Ok(Box::new(reader)),
        Format::Unsupported(detected) => {
            Err(InstallError::UnsupportedFormat { path: artifact.to_path_buf(), detected })
        }
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_head() -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[257..263].copy_from_slice(b"ustar\0");
        h
    }

    #[test]
    fn formats_are_told_apart_by_magic_bytes() {
        assert_eq!(detect(&[0x1f, 0x8b, 8, 0]), Format::TarGz);
        assert_eq!(detect(&tar_head()), Format::Tar);
        assert_eq!(detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Format::Unsupported("zstd"));
        assert_eq!(detect(b"PK\x03\x04rest"), Format::Unsupported("zip"));
        assert_eq!(detect(b"hello world"), Format::Unsupported("unknown"));
        assert_eq!(detect(b""), Format::Unsupported("unknown"));
    }

    #[test]
    fn unsupported_format_is_named() {
        let dir = tempfile::tempdir().unwrap();
        // The file name claims tar.gz; the bytes say zstd. The bytes win.
        let path = dir.path().join("pkg.tar.gz");
        std::fs::write(&path, [0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3]).unwrap();
        let err = open_tar_stream(&path).err().unwrap();
        assert!(matches!(&err, InstallError::UnsupportedFormat { detected: "zstd", path: p } if *p == path), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("zstd") && msg.contains("comes later"), "{msg}");

        let zip = dir.path().join("pkg.zip");
        std::fs::write(&zip, b"PK\x03\x04\x14\x00").unwrap();
        assert!(matches!(open_tar_stream(&zip), Err(InstallError::UnsupportedFormat { detected: "zip", .. })));
    }

    #[test]
    fn a_plain_tar_is_read_from_its_first_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-extension");
        let head = tar_head();
        std::fs::write(&path, &head).unwrap();
        let mut stream = open_tar_stream(&path).unwrap();
        let mut back = Vec::new();
        stream.read_to_end(&mut back).unwrap();
        assert_eq!(back, head);
    }

    #[test]
    fn a_missing_artifact_is_a_read_error_naming_it() {
        let path = Path::new("/nonexistent/flotte/pkg.tar");
        assert!(matches!(
            open_tar_stream(path),
            Err(InstallError::ArchiveRead { path: p, .. }) if p == path
        ));
    }
}
