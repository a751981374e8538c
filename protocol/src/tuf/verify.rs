//! Threshold signature checks.
//!
//! Guarantees of [`verify_role`]:
//! - Only keys the delegating role lists for this role count, each looked up
//!   by id in the delegator's `keys`; signatures by any other id are ignored.
//! - A key counts once, however often it appears: distinct *key material*
//!   is counted, so two key ids naming the same key (or one key listed as
//!   both PSS and PKCS#1 v1.5) add up to one. Duplicate key ids in a role and
//!   duplicate signatures by one id are refused when the metadata is parsed.
//! - A key of an unknown type or scheme, or whose material does not decode,
//!   never counts; the error says so key by key.

use crate::tuf::error::{Result, TufError};
use crate::tuf::keys::Key;
use crate::tuf::metadata::{Envelope, RoleKeys};
use std::collections::{BTreeMap, BTreeSet};

/// Checks that at least `role_keys.threshold` distinct keys signed `env`.
pub fn verify_role(
    role: &str,
    version: u64,
    keys: &BTreeMap<String, Key>,
    role_keys: &RoleKeys,
    env: &Envelope,
) -> Result<()> {
    let mut counted: BTreeSet<Vec<u8>> = BTreeSet::new();
    let mut notes: Vec<String> = Vec::new();
    for keyid in &role_keys.keyids {
        let short: String = keyid.chars().take(12).collect();
        let Some(key) = keys.get(keyid) else {
            notes.push(format!("key {short}…: not in keys"));
            continue;
        };
        let Some(sig) = env.signatures.iter().find(|s| &s.keyid == keyid) else {
            notes.push(format!("key {short}…: no signature"));
            continue;
        };
        let checked = hex::decode(&sig.sig)
            .map_err(|_| "signature is not hex".to_string())
            .and_then(|raw| key.verify(&env.canonical, &raw));
        match (checked, key.identity()) {
            (Ok(()), Some(identity)) => {
                if !counted.insert(identity) {
                    notes.push(format!("key {short}…: same key as one already counted"));
                }
            }
            (Ok(()), None) => notes.push(format!("key {short}…: unusable key")),
            (Err(reason), _) => notes.push(format!("key {short}…: {reason}")),
        }
    }
    if counted.len() as u64 >= role_keys.threshold {
        return Ok(());
    }
    Err(TufError::Threshold {
        role: role.to_string(),
        version,
        valid: counted.len(),
        threshold: role_keys.threshold,
        details: if notes.is_empty() { "no keys listed".to_string() } else { notes.join("; ") },
    })
}
