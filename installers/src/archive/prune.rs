//! Choosing which old versions to delete after an activation.
//!
//! Pure: takes the versions on disk with their directory mtimes and returns
//! the ones to remove. Guarantee: the active and the previous version are
//! never selected, and at most `keep` versions remain (more only if `keep`
//! is smaller than the protected set). Among the others, the most recently
//! touched survive. The archive backend bumps a version directory's mtime
//! when it is activated or rolled back to, so "most recently touched" means
//! "most recently staged or activated".

use std::time::SystemTime;

/// A version directory found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OnDisk {
    pub(crate) version: String,
    pub(crate) modified: SystemTime,
}

/// Returns the versions to remove, oldest first.
pub(crate) fn select_for_removal(
    mut versions: Vec<OnDisk>,
    active: &str,
    previous: Option<&str>,
    keep: usize,
) -> Vec<String> {
    let protected = |v: &str| v == active || Some(v) == previous;
    let protected_count = versions.iter().filter(|v| protected(&v.version)).count();
    let mut slots = keep.saturating_sub(protected_count);
    // Newest first; ties broken by name so the choice is deterministic.
    versions.sort_by(|a, b| b.modified.cmp(&a.modified).then_with(|| b.version.cmp(&a.version)));
    let mut remove = Vec::new();
    for v in versions {
        if protected(&v.version) {
            continue;
        }
        if slots > 0 {
            slots -= 1;
        } else {
            remove.push(v.version);
        }
    }
    remove.reverse();
    remove
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(version: &str, secs: u64) -> OnDisk {
        OnDisk { version: version.to_owned(), modified: SystemTime::UNIX_EPOCH + Duration::from_secs(secs) }
    }

    #[test]
    fn the_oldest_unprotected_versions_go_first() {
        let versions = vec![at("1", 1), at("2", 2), at("3", 3), at("4", 4), at("5", 5)];
        assert_eq!(select_for_removal(versions, "5", Some("4"), 3), vec!["1", "2"]);
    }

    #[test]
    fn active_and_previous_survive_even_when_oldest() {
        // After a rollback to "1" and then an upgrade to "9", "1" is the
        // previous version even though "7" and "8" were touched later.
        let versions = vec![at("1", 1), at("7", 7), at("8", 8), at("9", 9)];
        assert_eq!(select_for_removal(versions, "9", Some("1"), 2), vec!["7", "8"]);
    }

    #[test]
    fn keep_below_two_still_keeps_active_and_previous() {
        let versions = vec![at("1", 1), at("2", 2), at("3", 3)];
        assert_eq!(select_for_removal(versions, "3", Some("2"), 0), vec!["1"]);
    }

    #[test]
    fn nothing_is_removed_when_under_the_limit() {
        let versions = vec![at("1", 1), at("2", 2)];
        assert!(select_for_removal(versions, "2", None, 3).is_empty());
    }
}
