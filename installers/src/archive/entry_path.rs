//! Deciding whether an entry's path or link target stays inside the staging
//! root.
//!
//! Guarantees:
//! - [`normalize`] only returns relative paths made of plain components (no
//!   `..`, no root, no `.`, no Windows drive or backslash), so joining the
//!   result onto the staging root can never name anything outside it.
//! - [`symlink_target_is_inside`] accepts a symlink only if its target is
//!   relative and, read lexically from the link's directory, never climbs
//!   above the root.
//! - [`resolved_symlink_is_inside`] re-checks a link after extraction while
//!   *following* the links it passes through, which catches escapes built from
//!   several links that each look harmless alone (`a/l -> ..`, `b -> a/l/..`).

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Most symlinks followed while resolving one link (Linux uses 40 too).
const MAX_SYMLINK_HOPS: usize = 40;

/// Turns an archive path into a relative path of plain components.
/// The empty path means the staging root itself (e.g. an entry `./`).
pub(crate) fn normalize(raw: &[u8]) -> Result<PathBuf, &'static str> {
    check_bytes(raw)?;
    if raw.starts_with(b"/") {
        return Err("absolute path");
    }
    let mut out = PathBuf::new();
    for part in raw.split(|&b| b == b'/') {
        if out.as_os_str().is_empty() && is_drive_prefix(part) {
            return Err("Windows drive prefix");
        }
        match part {
            b"" | b"." => {}
            b".." => return Err("parent directory component '..'"),
            name => out.push(OsStr::from_bytes(name)),
        }
    }
    Ok(out)
}

/// Lexical check of a symlink `link` (normalized, relative to the root)
/// pointing at `target` (raw bytes from the archive).
pub(crate) fn symlink_target_is_inside(link: &Path, target: &[u8]) -> Result<(), &'static str> {
    check_bytes(target)?;
    if target.starts_with(b"/") {
        return Err("symlink target is absolute");
    }
    // Depth of the directory holding the link, below the root.
    let mut depth = link.components().count().saturating_sub(1);
    for part in target.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return Err("symlink target escapes the package root"),
            },
            _ => depth += 1,
        }
    }
    Ok(())
}

/// Resolves the symlink at `root/link` as the kernel would, following any
/// symlinks met on the way (all of which must be inside `root`), and checks
/// that the walk never leaves `root`. Components that do not exist are
/// resolved lexically. `Ok(Err(reason))` means the link escapes.
pub(crate) fn resolved_symlink_is_inside(root: &Path, link: &Path) -> io::Result<Result<(), &'static str>> {
    let mut here: Vec<OsString> =
        link.parent().map(|p| p.iter().map(OsStr::to_os_string).collect()).unwrap_or_default();
    let mut pending: Vec<OsString> = Vec::new(); // reversed: next component last
    push_target(&mut pending, &fs::read_link(root.join(link))?);
    let mut hops = 1;
    while let Some(part) = pending.pop() {
        match part.as_bytes() {
            b"" | b"." => {}
            b".." => {
                if here.pop().is_none() {
                    return Ok(Err("symlink resolves outside the package root"));
                }
            }
            _ => {
                here.push(part);
                let path: PathBuf =
                    std::iter::once(root.as_os_str()).chain(here.iter().map(OsString::as_os_str)).collect();
                let is_link = match fs::symlink_metadata(&path) {
                    Ok(m) => m.file_type().is_symlink(),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                    Err(e) => return Err(e),
                };
                if is_link {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Ok(Err("too many levels of symlinks"));
                    }
                    let target = fs::read_link(&path)?;
                    if target.has_root() {
                        return Ok(Err("symlink target is absolute"));
                    }
                    here.pop();
                    push_target(&mut pending, &target);
                }
            }
        }
    }
    Ok(Ok(()))
}

/// Pushes `target`'s components onto the reversed work list.
fn push_target(pending: &mut Vec<OsString>, target: &Path) {
    let parts = target.as_os_str().as_bytes().split(|&b| b == b'/');
    let parts: Vec<OsString> = parts.map(|p| OsStr::from_bytes(p).to_os_string()).collect();
    pending.extend(parts.into_iter().rev());
}

/// Rules shared by entry paths and link targets.
fn check_bytes(raw: &[u8]) -> Result<(), &'static str> {
    if raw.is_empty() {
        return Err("empty path");
    }
    if raw.contains(&0) {
        return Err("NUL byte in path");
    }
    if raw.contains(&b'\\') {
        return Err("backslash in path (Windows separator)");
    }
    Ok(())
}

/// `C:`, `c:foo` as the first real component: a Windows drive prefix.
fn is_drive_prefix(first: &[u8]) -> bool {
    first.len() >= 2 && first[0].is_ascii_alphabetic() && first[1] == b':'
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn plain_relative_paths_are_kept_and_dots_are_dropped() {
        assert_eq!(normalize(b"a/b/c").unwrap(), Path::new("a/b/c"));
        assert_eq!(normalize(b"./a//b/./").unwrap(), Path::new("a/b"));
        assert_eq!(normalize(b"./").unwrap(), Path::new(""));
        assert_eq!(normalize(b"dir/a:b").unwrap(), Path::new("dir/a:b"));
    }

    #[test]
    fn traversal_absolute_and_windows_paths_are_refused() {
        for raw in [
            &b"../evil"[..],
            b"a/../../evil",
            b"a/..",
            b"/etc/passwd",
            b"C:\\Windows",
            b"C:/Windows",
            b"c:evil",
            b"./C:/Windows",
            b"a\\..\\evil",
            b"",
            b"a\0b",
        ] {
            assert!(normalize(raw).is_err(), "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn symlinks_may_point_anywhere_inside_the_root() {
        let link = Path::new("bin/tool");
        assert!(symlink_target_is_inside(link, b"../lib/tool").is_ok());
        assert!(symlink_target_is_inside(link, b"./tool-1.0").is_ok());
        assert!(symlink_target_is_inside(Path::new("top"), b"a/../b").is_ok());
    }

    #[test]
    fn symlinks_leaving_the_root_are_refused() {
        let link = Path::new("bin/tool");
        assert!(symlink_target_is_inside(link, b"../../etc/shadow").is_err());
        assert!(symlink_target_is_inside(link, b"/etc/shadow").is_err());
        assert!(symlink_target_is_inside(Path::new("top"), b"..").is_err());
        assert!(symlink_target_is_inside(Path::new("top"), b"a/../../x").is_err());
        assert!(symlink_target_is_inside(Path::new("top"), b"").is_err());
    }

    #[test]
    fn resolution_follows_inner_links_and_catches_chained_escapes() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        fs::create_dir_all(root.join("a")).unwrap();
        // Each link passes the lexical check on its own...
        symlink("..", root.join("a/l")).unwrap();
        symlink("a/l/..", root.join("b")).unwrap();
        assert!(symlink_target_is_inside(Path::new("a/l"), b"..").is_ok());
        assert!(symlink_target_is_inside(Path::new("b"), b"a/l/..").is_ok());
        // ...but followed for real, `b` lands in the parent of the root.
        assert!(resolved_symlink_is_inside(&root, Path::new("a/l")).unwrap().is_ok());
        assert!(resolved_symlink_is_inside(&root, Path::new("b")).unwrap().is_err());
    }

    #[test]
    fn resolution_accepts_dangling_and_nested_inside_links_and_stops_on_loops() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("lib")).unwrap();
        symlink("lib", root.join("l1")).unwrap();
        symlink("l1/missing/file", root.join("l2")).unwrap();
        assert!(resolved_symlink_is_inside(root, Path::new("l2")).unwrap().is_ok());
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        assert_eq!(resolved_symlink_is_inside(root, Path::new("loop1")).unwrap(), Err("too many levels of symlinks"));
    }
}
