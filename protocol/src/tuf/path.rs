//! Target names: safety checks before a name becomes a path or a URL,
//! delegation path patterns, and the encodings used for file names.
//!
//! Guarantees of [`check_target_name`]: an accepted name is relative, made
//! of non-empty `/`-separated segments none of which is `.` or `..`, has no
//! backslash, NUL or control character, and the same holds after
//! percent-decoding it (repeatedly, so `%2e%2e` and `%252e%252e` are
//! caught). [`quote`] then maps it to a single file name component.

use crate::tuf::error::{Result, TufError};
use sha2::{Digest as _, Sha256};

/// Longest target name accepted, in bytes.
pub const MAX_TARGET_NAME_LEN: usize = 4096;
/// Rounds of percent-decoding checked; deeper nesting is refused.
const MAX_DECODE_ROUNDS: usize = 4;

/// Refuses a target name that could escape a directory or a base URL.
pub fn check_target_name(name: &str) -> Result<()> {
    let refuse = |reason| Err(TufError::TargetName { name: name.to_string(), reason });
    if name.len() > MAX_TARGET_NAME_LEN {
        return refuse("longer than 4096 bytes");
    }
    let mut current = name.to_string();
    for _ in 0..MAX_DECODE_ROUNDS {
        if let Err(reason) = check_plain(&current) {
            return refuse(reason);
        }
        match percent_decode(&current) {
            Err(reason) => return refuse(reason),
            Ok(decoded) if decoded == current => return Ok(()),
            Ok(decoded) => current = decoded,
        }
    }
    refuse("percent-encoded more times than any real name is")
}

fn check_plain(name: &str) -> std::result::Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if name.starts_with('/') {
        return Err("absolute path");
    }
    if name.contains('\\') {
        return Err("contains a backslash");
    }
    if name.chars().any(char::is_control) {
        return Err("contains a control character");
    }
    for segment in name.split('/') {
        match segment {
            "" => return Err("contains an empty path segment"),
            "." | ".." => return Err("contains a '.' or '..' path segment"),
            _ => {}
        }
    }
    Ok(())
}

fn percent_decode(s: &str) -> std::result::Result<String, &'static str> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && let Ok(text) = std::str::from_utf8(hex)
            && let Ok(byte) = u8::from_str_radix(text, 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent-encoding does not decode to UTF-8")
}

/// Python's `urllib.parse.quote(s, safe=safe)`: every byte but ASCII
/// letters, digits, `_.-~` and those in `safe` becomes `%XX`. With
/// `safe = ""` the result is one file name component (python-tuf names
/// downloaded targets and persisted roles this way).
pub fn quote(s: &str, safe: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"_.-~".contains(&b) || safe.as_bytes().contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The URL path of a target (relative to the targets base URL), with the
/// `HASH.` prefix on its last segment when the repository uses consistent
/// snapshots. Characters a URL path cannot hold are percent-encoded; `/`
/// and existing `%XX` escapes are kept, as python-tuf sends them.
pub fn target_url_path(name: &str, hash_prefix: Option<&str>) -> String {
    let path = match (hash_prefix, name.rsplit_once('/')) {
        (None, _) => name.to_string(),
        (Some(hash), Some((dir, base))) => format!("{dir}/{hash}.{base}"),
        (Some(hash), None) => format!("{hash}.{name}"),
    };
    quote(&path, "/%!$&'()*+,;=:@")
}

/// Whether `name` matches a delegation's `paths` pattern: shell-style
/// (`*`, `?`, `[seq]`, `[!seq]`), matched segment by segment so a wildcard
/// never crosses a `/` (python-tuf's `_is_target_in_pathpattern`).
pub fn matches_pattern(name: &str, pattern: &str) -> bool {
    let names: Vec<&str> = name.split('/').collect();
    let patterns: Vec<&str> = pattern.split('/').collect();
    names.len() == patterns.len() && names.iter().zip(&patterns).all(|(n, p)| fnmatch(n, p))
}

/// Whether the SHA-256 (hex) of `name` starts with `prefix`.
pub fn matches_hash_prefix(name: &str, prefix: &str) -> bool {
    hex::encode(Sha256::digest(name.as_bytes())).starts_with(prefix)
}

/// `fnmatch.fnmatchcase` on one segment.
fn fnmatch(name: &str, pattern: &str) -> bool {
    let n: Vec<char> = name.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    // Iterative glob matching with single-star backtracking.
    let (mut ni, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' => {
                    ni += 1;
                    pi += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = class(&p, pi, n[ni]) {
                        if matched {
                            ni += 1;
                            pi = next;
                            continue;
                        }
                    } else if n[ni] == '[' {
                        // An unclosed '[' is a literal.
                        ni += 1;
                        pi += 1;
                        continue;
                    }
                }
                c if c == n[ni] => {
                    ni += 1;
                    pi += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches `c` against the class starting at `p[start] == '['`; `None` if
/// the class is not closed. Returns (matched, index after the class).
fn class(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = p.get(i) == Some(&'!');
    if negate {
        i += 1;
    }
    let first = i;
    let mut matched = false;
    loop {
        let ch = *p.get(i)?;
        if ch == ']' && i > first {
            return Some((matched != negate, i + 1));
        }
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&e| e != ']') {
            let end = p[i + 2];
            matched |= ch <= c && c <= end;
            i += 3;
        } else {
            matched |= ch == c;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_absolute_and_encoded_names_are_refused() {
        for bad in [
            "../x",
            "a/../../x",
            "..",
            ".",
            "a/./b",
            "/etc/passwd",
            "a\\..\\b",
            "%2e%2e/x",
            "%2E%2E%2Fx",
            "a/%2e%2e",
            "%252e%252e/x",
            "%2fetc%2fpasswd",
            "a//b",
            "a/",
            "",
            "a\0b",
            "a\nb",
            "%5c..%5cx",
            "%ff",
        ] {
            assert!(check_target_name(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn ordinary_names_are_accepted() {
        for good in ["app.tar.gz", "team-x/app-1.2.0.tar", "a/b/c.d", "with space", "100%", "a..b", ".hidden"] {
            check_target_name(good).unwrap();
        }
    }

    #[test]
    fn quote_matches_python() {
        // urllib.parse.quote("team-x/a b+é.tar", "")
        assert_eq!(quote("team-x/a b+é.tar", ""), "team-x%2Fa%20b%2B%C3%A9.tar");
        assert_eq!(quote("a_b.c-d~e", ""), "a_b.c-d~e");
    }

    #[test]
    fn consistent_snapshot_urls_prefix_the_last_segment() {
        assert_eq!(target_url_path("dir/file.txt", Some("ab")), "dir/ab.file.txt");
        assert_eq!(target_url_path("file.txt", Some("ab")), "ab.file.txt");
        assert_eq!(target_url_path("a b/c", None), "a%20b/c");
    }

    #[test]
    fn patterns_match_per_segment_like_fnmatchcase() {
        assert!(matches_pattern("team-x/app.tar", "team-x/*"));
        assert!(!matches_pattern("team-x/sub/app.tar", "team-x/*"));
        assert!(!matches_pattern("team-y/app.tar", "team-x/*"));
        assert!(matches_pattern("a/file1.txt", "a/file?.txt"));
        assert!(matches_pattern("a/fileb.txt", "a/file[a-c].txt"));
        assert!(!matches_pattern("a/filed.txt", "a/file[a-c].txt"));
        assert!(matches_pattern("a/filed.txt", "a/file[!a-c].txt"));
        assert!(matches_pattern("x[y", "x[y"));
        assert!(matches_pattern("anything", "*"));
        assert!(matches_pattern("abcabd", "*ab?"));
        assert!(!matches_pattern("App", "app"));
    }

    #[test]
    fn hash_prefixes_use_the_sha256_of_the_name() {
        let h = hex::encode(Sha256::digest(b"file.txt"));
        assert!(matches_hash_prefix("file.txt", &h[..2]));
        assert!(!matches_hash_prefix("file.txt", "zz"));
    }
}
