//! Length and hash checks of signed file descriptions (`MetaFile`,
//! `TargetFile`), over whole buffers or streamed.
//!
//! Every listed hash must match: a hash algorithm Flotte does not implement
//! refuses the file rather than being skipped, so an attacker cannot list
//! only an exotic hash. Supported: `sha256`, `sha512`.

use crate::tuf::error::{Result, TufError};
use sha2::{Digest as _, Sha256, Sha512};
use std::collections::BTreeMap;

/// Streams bytes through every listed hash while counting them.
pub struct Checker<'a> {
    what: String,
    length: Option<u64>,
    hashes: &'a BTreeMap<String, String>,
    seen: u64,
    sha256: Option<Sha256>,
    sha512: Option<Sha512>,
}

impl<'a> Checker<'a> {
    /// Refuses at once if a listed algorithm is unsupported.
    pub fn new(what: &str, length: Option<u64>, hashes: &'a BTreeMap<String, String>) -> Result<Self> {
        let mut checker = Checker { what: what.to_string(), length, hashes, seen: 0, sha256: None, sha512: None };
        for algorithm in hashes.keys() {
            match algorithm.as_str() {
                "sha256" => checker.sha256 = Some(Sha256::new()),
                "sha512" => checker.sha512 = Some(Sha512::new()),
                _ => return Err(TufError::UnsupportedHash { what: what.to_string(), algorithm: algorithm.clone() }),
            }
        }
        Ok(checker)
    }

    /// Feeds more bytes. Fails as soon as more than the signed length
    /// arrived, so a caller can stop reading an endless stream.
    pub fn update(&mut self, bytes: &[u8]) -> Result<()> {
        self.seen = self.seen.saturating_add(bytes.len() as u64);
        if let Some(expected) = self.length
            && self.seen > expected
        {
            return Err(TufError::LengthMismatch { what: self.what.clone(), expected, found: self.seen });
        }
        if let Some(h) = &mut self.sha256 {
            h.update(bytes);
        }
        if let Some(h) = &mut self.sha512 {
            h.update(bytes);
        }
        Ok(())
    }

    /// Checks the total length and every hash.
    pub fn finish(self) -> Result<()> {
        if let Some(expected) = self.length
            && self.seen != expected
        {
            return Err(TufError::LengthMismatch { what: self.what, expected, found: self.seen });
        }
        let computed = [
            ("sha256", self.sha256.map(|h| hex::encode(h.finalize()))),
            ("sha512", self.sha512.map(|h| hex::encode(h.finalize()))),
        ];
        for (algorithm, found) in computed {
            if let (Some(found), Some(expected)) = (found, self.hashes.get(algorithm))
                && &found != expected
            {
                return Err(TufError::HashMismatch {
                    what: self.what,
                    algorithm: algorithm.to_string(),
                    expected: expected.clone(),
                    found,
                });
            }
        }
        Ok(())
    }
}

/// Checks a whole buffer.
pub fn check(what: &str, length: Option<u64>, hashes: &BTreeMap<String, String>, data: &[u8]) -> Result<()> {
    let mut checker = Checker::new(what, length, hashes)?;
    checker.update(data)?;
    checker.finish()
}

/// The `hashes` object Flotte writes: `{"sha256": hex}`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn every_listed_hash_must_match() {
        let data = b"payload";
        let sha512 = hex::encode(Sha512::digest(data));
        let good = hashes(&[("sha256", sha256_hex(data)), ("sha512", sha512.clone())]);
        check("t", Some(7), &good, data).unwrap();
        let bad = hashes(&[("sha256", sha256_hex(data)), ("sha512", sha512.replace('a', "b"))]);
        assert!(matches!(check("t", Some(7), &bad, data), Err(TufError::HashMismatch { .. })));
    }

    #[test]
    fn unknown_algorithms_and_wrong_lengths_are_refused() {
        let exotic = hashes(&[("blake7", "00".into())]);
        assert!(matches!(check("t", None, &exotic, b"x"), Err(TufError::UnsupportedHash { .. })));
        let h = hashes(&[("sha256", sha256_hex(b"abc"))]);
        assert!(matches!(check("t", Some(2), &h, b"abc"), Err(TufError::LengthMismatch { .. })));
        assert!(matches!(check("t", Some(4), &h, b"abc"), Err(TufError::LengthMismatch { .. })));
    }

    #[test]
    fn streaming_stops_at_the_first_byte_past_the_signed_length() {
        let h = hashes(&[("sha256", sha256_hex(b"abc"))]);
        let mut c = Checker::new("t", Some(3), &h).unwrap();
        c.update(b"ab").unwrap();
        assert!(c.update(b"cd").is_err());
    }
}
