//! Validation of package names and versions.
//!
//! Names and versions become directory names under the install root, so each
//! must be exactly one harmless path component. Guarantee: a value accepted
//! by [`validate_component`] contains no separator, is not `.` or `..`, does
//! not start with `.` (so it never collides with this crate's hidden
//! bookkeeping entries such as `.staging-*`), and is 1..=128 ASCII bytes.

use crate::error::InstallError;

/// Longest accepted name or version, in bytes.
pub const MAX_COMPONENT_LEN: usize = 128;

/// Checks that `value` is a single safe path component:
/// 1..=128 characters of `[A-Za-z0-9._+~-]`, not starting with `.`.
///
/// `what` names the field in the error, e.g. `"package name"`.
pub fn validate_component(what: &'static str, value: &str) -> Result<(), InstallError> {
    let reject = |reason| Err(InstallError::InvalidName { what, value: value.to_owned(), reason });
    if value.is_empty() {
        return reject("must not be empty");
    }
    if value.len() > MAX_COMPONENT_LEN {
        return reject("longer than 128 bytes");
    }
    if value.starts_with('.') {
        // Also covers "." and "..".
        return reject("must not start with '.'");
    }
    if !value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'~' | b'-')) {
        return reject("may only contain A-Z a-z 0-9 . _ + ~ -");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(v: &str) -> bool {
        validate_component("version", v).is_ok()
    }

    #[test]
    fn ordinary_names_and_versions_are_accepted() {
        for v in ["app", "1.2.3", "1.0~rc1", "1.0+deb12u1-1", "a"] {
            assert!(ok(v), "{v} should be accepted");
        }
        assert!(ok(&"x".repeat(128)));
    }

    #[test]
    fn path_like_values_are_refused() {
        for v in ["", ".", "..", ".hidden", "../x", "a/b", "/abs", "a\\b", "C:x", "a b", "a\0b", "é"] {
            assert!(!ok(v), "{v:?} should be refused");
        }
        assert!(!ok(&"x".repeat(129)));
    }

    #[test]
    fn the_error_names_the_field_and_the_value() {
        let err = validate_component("package name", "../etc").unwrap_err();
        match err {
            InstallError::InvalidName { what, value, .. } => {
                assert_eq!(what, "package name");
                assert_eq!(value, "../etc");
            }
            other => panic!("unexpected error {other:?}"),
        }
    }
}
