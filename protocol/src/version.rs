//! The order of release versions, and the downgrade rule built on it.
//!
//! Versions compare by Debian's rules (`dpkg --compare-versions`), the
//! order the dpkg installer already lives by: digits compare as numbers,
//! letters sort before other characters, and `~` sorts before anything,
//! even the end of the string, so a pre-release is written `2.0~rc1`
//! (older than `2.0`). An epoch (`1:`) and a Debian revision (`-2`) are
//! honoured when a version has them, as versions `dpkg` reports do.
//!
//! Guarantees:
//! - [`compare`] is a total order that agrees with `dpkg --compare-versions`
//!   on every version Flotte accepts, and never panics on any string.
//! - [`check_downgrade`] lets an older release replace a newer active
//!   version only under a signed rollback authorisation whose ceiling covers
//!   that active version; a release at or above the active version, or a
//!   host without one, always passes.

use std::cmp::Ordering;

/// Compares two versions by Debian's rules.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (a_epoch, a_rest) = split_epoch(a);
    let (b_epoch, b_rest) = split_epoch(b);
    let (a_upstream, a_revision) = split_revision(a_rest);
    let (b_upstream, b_revision) = split_revision(b_rest);
    a_epoch
        .cmp(&b_epoch)
        .then_with(|| verrevcmp(a_upstream, b_upstream))
        .then_with(|| verrevcmp(a_revision, b_revision))
}

/// `1:2.0` → (1, "2.0"); no (or an unparsable) epoch is epoch 0.
fn split_epoch(v: &str) -> (u64, &str) {
    match v.split_once(':') {
        Some((epoch, rest)) if !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_digit()) => {
            (epoch.parse().unwrap_or(u64::MAX), rest)
        }
        _ => (0, v),
    }
}

/// Upstream version and revision, split at the last `-`.
fn split_revision(v: &str) -> (&str, &str) {
    v.rsplit_once('-').unwrap_or((v, ""))
}

/// The weight of a non-digit character: `~` lowest (below the end of the
/// string, which weighs 0), then letters, then everything else.
fn weight(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`: alternating runs of non-digits (compared character
/// by character by [`weight`]) and digits (compared as numbers).
fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let (wa, wb) = (weight(a.get(i).copied()), weight(b.get(j).copied()));
            if wa != wb {
                return wa.cmp(&wb);
            }
            i += 1;
            j += 1;
        }
        let digits = |s: &[u8], k: &mut usize| {
            while *k < s.len() && s[*k] == b'0' {
                *k += 1;
            }
            let start = *k;
            while *k < s.len() && s[*k].is_ascii_digit() {
                *k += 1;
            }
            start..*k
        };
        let (ra, rb) = (digits(a, &mut i), digits(b, &mut j));
        // Without leading zeros, the longer run is the greater number.
        let by_value = ra.len().cmp(&rb.len()).then_with(|| a[ra].cmp(&b[rb]));
        if by_value != Ordering::Equal {
            return by_value;
        }
    }
    Ordering::Equal
}

/// Why an older release may not replace the active version.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DowngradeError {
    #[error(
        "refusing to downgrade {name} from the active {active} to {version}: no signed rollback authorisation \
         allows it; an admin with the targets key can sign one with \
         `flottectl package allow-rollback {name} {version} --up-to {active}`"
    )]
    NotAuthorised { name: String, version: String, active: String },
    #[error(
        "refusing to downgrade {name} from the active {active} to {version}: its signed rollback authorisation \
         covers versions up to {up_to} only"
    )]
    BeyondAuthorisation { name: String, version: String, active: String, up_to: String },
}

/// Whether release `name@version` may replace `active`. `rollback_up_to` is
/// the release's signed rollback authorisation: it may replace versions up
/// to and including that one.
pub fn check_downgrade(
    name: &str,
    version: &str,
    active: &str,
    rollback_up_to: Option<&str>,
) -> Result<(), DowngradeError> {
    if compare(version, active) != Ordering::Less {
        return Ok(());
    }
    let owned = |s: &str| s.to_string();
    match rollback_up_to {
        None => {
            Err(DowngradeError::NotAuthorised { name: owned(name), version: owned(version), active: owned(active) })
        }
        Some(up_to) if compare(active, up_to) == Ordering::Greater => Err(DowngradeError::BeyondAuthorisation {
            name: owned(name),
            version: owned(version),
            active: owned(active),
            up_to: owned(up_to),
        }),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::{Equal, Greater, Less};

    #[test]
    fn versions_order_like_dpkg() {
        // (a, b, a compared with b), checked against `dpkg --compare-versions`.
        let table = [
            ("1.0", "1.0", Equal),
            ("1.2.0", "1.10.0", Less),
            ("1.0", "1.0.1", Less),
            ("2.0~rc1", "2.0", Less),
            ("2.0~rc1", "2.0~rc2", Less),
            ("2.0~~", "2.0~", Less),
            ("1.0a", "1.0", Greater),
            ("1.0a", "1.0+", Less),
            ("1.0+build.5", "1.0", Greater),
            ("1.01", "1.1", Equal),
            ("1:0.1", "9.9", Greater),
            ("1.0-1", "1.0-2", Less),
            ("1.0-10", "1.0-9", Greater),
            ("2.30-1", "2.4-7", Greater),
            ("0", "", Equal),
            ("99999999999999999999999", "1", Greater),
        ];
        for (a, b, want) in table {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn upgrades_reinstalls_and_first_installs_need_no_authorisation() {
        assert_eq!(check_downgrade("app", "2.0", "1.0", None), Ok(()));
        assert_eq!(check_downgrade("app", "1.0", "1.0", None), Ok(()));
    }

    #[test]
    fn a_downgrade_without_a_signed_authorisation_is_refused_and_the_error_names_the_fix() {
        let err = check_downgrade("app", "1.0", "2.0", None).unwrap_err();
        assert!(matches!(err, DowngradeError::NotAuthorised { .. }));
        let text = err.to_string();
        assert!(text.contains("app") && text.contains("2.0") && text.contains("1.0"), "{text}");
        assert!(text.contains("flottectl package allow-rollback app 1.0 --up-to 2.0"), "{text}");
    }

    #[test]
    fn an_authorisation_covers_active_versions_up_to_its_ceiling_and_no_further() {
        assert_eq!(check_downgrade("app", "1.0", "2.0", Some("2.0")), Ok(()));
        assert_eq!(check_downgrade("app", "1.0", "1.5", Some("2.0")), Ok(()));
        let err = check_downgrade("app", "1.0", "3.0", Some("2.0")).unwrap_err();
        assert!(matches!(err, DowngradeError::BeyondAuthorisation { .. }), "{err}");
        assert!(err.to_string().contains("up to 2.0"), "{err}");
    }
}
