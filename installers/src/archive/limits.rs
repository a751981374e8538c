//! Caps on what one archive may cost, and the meter that enforces them.
//!
//! Guarantee: the [`Budget`] is charged *before* bytes are written, with the
//! number of bytes really read from the decompressed stream (never the size
//! a header claims), so at most `max_unpacked_bytes` of entry data is ever
//! read, held in memory or written, whatever the archive says about itself.

use crate::error::InstallError;

/// Limits applied to every extraction (decompression bombs, entry floods).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveLimits {
    /// Most archive members (files, directories, links, global headers)
    /// accepted before extraction fails with [`InstallError::TooManyEntries`].
    pub max_entries: u64,
    /// Most bytes of entry data (file contents, plus any data attached to
    /// other entries and extension headers) read from the decompressed
    /// stream before extraction fails with [`InstallError::TooLarge`].
    pub max_unpacked_bytes: u64,
}

impl Default for ArchiveLimits {
    /// 100 000 entries and 4 GiB.
    fn default() -> Self {
        ArchiveLimits { max_entries: 100_000, max_unpacked_bytes: 4 * 1024 * 1024 * 1024 }
    }
}

/// Running totals for one extraction.
#[derive(Debug)]
pub(crate) struct Budget {
    limits: ArchiveLimits,
    /// Members seen so far.
    entries: u64,
    /// Entry-data bytes read so far.
    bytes: u64,
}

impl Budget {
    /// A fresh meter for one extraction.
    pub(crate) fn new(limits: ArchiveLimits) -> Self {
        Budget { limits, entries: 0, bytes: 0 }
    }

    /// Counts one more member; fails once the count exceeds the limit.
    pub(crate) fn count_entry(&mut self) -> Result<(), InstallError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(InstallError::TooManyEntries { limit: self.limits.max_entries });
        }
        Ok(())
    }

    /// Charges `n` bytes that were just read; fails if the total would
    /// exceed the limit. Call before writing those bytes anywhere.
    pub(crate) fn charge_bytes(&mut self, n: usize) -> Result<(), InstallError> {
        let total = u64::try_from(n)
            .ok()
            .and_then(|n| self.bytes.checked_add(n))
            .filter(|&total| total <= self.limits.max_unpacked_bytes);
        match total {
            Some(total) => {
                self.bytes = total;
                Ok(())
            }
            None => Err(InstallError::TooLarge { limit_bytes: self.limits.max_unpacked_bytes }),
        }
    }

    /// Entry-data bytes read so far.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Members counted so far.
    pub(crate) fn entries(&self) -> u64 {
        self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(max_entries: u64, max_unpacked_bytes: u64) -> Budget {
        Budget::new(ArchiveLimits { max_entries, max_unpacked_bytes })
    }

    #[test]
    fn defaults_are_100k_entries_and_4_gib() {
        let d = ArchiveLimits::default();
        assert_eq!(d.max_entries, 100_000);
        assert_eq!(d.max_unpacked_bytes, 4 << 30);
    }

    #[test]
    fn entries_up_to_the_limit_pass_and_one_more_fails() {
        let mut b = budget(2, 0);
        b.count_entry().unwrap();
        b.count_entry().unwrap();
        assert!(matches!(b.count_entry(), Err(InstallError::TooManyEntries { limit: 2 })));
    }

    #[test]
    fn bytes_up_to_the_limit_pass_and_one_more_fails_without_being_counted() {
        let mut b = budget(1, 10);
        b.charge_bytes(6).unwrap();
        b.charge_bytes(4).unwrap();
        assert_eq!(b.bytes(), 10);
        assert!(matches!(b.charge_bytes(1), Err(InstallError::TooLarge { limit_bytes: 10 })));
        assert_eq!(b.bytes(), 10);
    }

    #[test]
    fn huge_charges_do_not_overflow() {
        let mut b = budget(1, u64::MAX);
        b.charge_bytes(usize::MAX).unwrap();
        assert!(b.charge_bytes(usize::MAX).is_err());
    }
}
