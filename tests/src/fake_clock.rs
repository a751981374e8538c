//! A wall clock for one agent process under test, through libfaketime.
//!
//! The offset lives in a file that libfaketime re-reads on every call, so a
//! test moves the clock of a running agent by writing it ([`FakeClock::set`]).
//! The monotonic clock (tokio's timers, QUIC's) is left alone, as on a real
//! clock step.

use anyhow::{Result, ensure};
use std::path::{Path, PathBuf};

/// The library the Debian package `faketime` installs.
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// An offset file, starting at no offset.
pub struct FakeClock {
    offset: PathBuf,
}

impl FakeClock {
    /// Writes the offset file at `path`; fails if libfaketime is missing.
    pub fn new(path: PathBuf) -> Result<Self> {
        ensure!(
            Path::new(LIBFAKETIME).exists(),
            "this test needs libfaketime (apt-get install faketime; .ci/run does)"
        );
        let clock = FakeClock { offset: path };
        clock.set("+0")?;
        Ok(clock)
    }

    /// Moves the clock to `offset` from the real one: `+7200` (seconds),
    /// `-1d`, in libfaketime's syntax.
    pub fn set(&self, offset: &str) -> Result<()> {
        Ok(std::fs::write(&self.offset, format!("{offset}\n"))?)
    }

    /// The environment that puts a process on this clock.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LD_PRELOAD".into(), LIBFAKETIME.into()),
            ("FAKETIME_TIMESTAMP_FILE".into(), self.offset.display().to_string()),
            ("FAKETIME_NO_CACHE".into(), "1".into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ]
    }
}
