//! Random secrets (admin tokens, enrollment tokens, agent ids) and the
//! hashes under which they are stored. The store never holds a token
//! itself, only its SHA-256, so a leaked database does not leak credentials.

use flotte_protocol::Sha256Digest;
use rand_core::{OsRng, RngCore};

/// `prefix` followed by 32 random bytes in hex (256 bits of entropy).
pub fn new_token(prefix: &str) -> String {
    format!("{prefix}{}", random_hex(32))
}

/// `n` random bytes from the operating system, hex-encoded.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// 32 random bytes, e.g. an ed25519 seed.
pub fn random_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    seed
}

/// The stored form of a token.
pub fn token_hash(token: &str) -> String {
    Sha256Digest::of(token.as_bytes()).to_hex()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_hashes_hide_them() {
        let (a, b) = (new_token("x_"), new_token("x_"));
        assert_ne!(a, b);
        assert_eq!(a.len(), 2 + 64);
        assert_ne!(token_hash(&a), a);
        assert_eq!(token_hash(&a), token_hash(&a));
    }
}
