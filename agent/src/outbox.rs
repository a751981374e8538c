//! Reports waiting for the controller's acknowledgement (`outbox.json`).
//!
//! Guarantees:
//! - Sequence numbers strictly increase across restarts: `next_seq` is
//!   stored in the same durable write as the report that used the previous
//!   one.
//! - A report is on disk before [`Outbox::push`] returns, and leaves the disk
//!   only when an `Ack` covering its sequence number arrives, so none is
//!   lost across disconnects or restarts.
//! - If the disk refuses a write, the report is still kept in memory and
//!   sent; the error is returned for the caller to log.

use crate::durable;
use crate::error::{AgentError, Result};
use crate::job::ReportDraft;
use flotte_protocol::messages::Report;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The unacknowledged reports and the sequence counter.
#[derive(Debug)]
pub struct Outbox {
    path: PathBuf,
    state: Stored,
}

#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    /// The sequence number the next report gets; never reused.
    next_seq: u64,
    /// Unacknowledged reports, in sequence order.
    reports: Vec<Report>,
}

impl Outbox {
    /// Loads the outbox at `path`, or starts an empty one at sequence 1.
    pub fn load(path: &Path) -> Result<Self> {
        let state = match durable::read_optional(path)? {
            None => Stored { next_seq: 1, reports: Vec::new() },
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| AgentError::StateParse { path: path.to_path_buf(), source: e })?,
        };
        Ok(Outbox { path: path.to_path_buf(), state })
    }

    /// Numbers `draft`, stores it durably and returns the report to send.
    pub fn push(&mut self, draft: ReportDraft) -> (Report, Result<()>) {
        let report = draft.with_seq(self.state.next_seq);
        self.state.next_seq += 1;
        self.state.reports.push(report.clone());
        (report, self.save())
    }

    /// Forgets every report up to and including `seq`.
    pub fn ack(&mut self, seq: u64) -> Result<()> {
        let before = self.state.reports.len();
        self.state.reports.retain(|r| r.seq > seq);
        if self.state.reports.len() == before { Ok(()) } else { self.save() }
    }

    /// Reports not yet acknowledged, oldest first.
    pub fn pending(&self) -> &[Report] {
        &self.state.reports
    }

    fn save(&self) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.state)
            .map_err(|e| AgentError::Encode { what: "outbox", reason: e.to_string() })?;
        durable::write(&self.path, &bytes, durable::STATE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotte_protocol::messages::InstallState;
    use flotte_protocol::{AssignmentId, Timestamp};

    fn draft(id: u64) -> ReportDraft {
        ReportDraft {
            assignment: AssignmentId(id),
            state: InstallState::Received,
            at: Timestamp::from_unix_millis(id),
            active_before: None,
            active_after: None,
        }
    }

    fn seqs(o: &Outbox) -> Vec<u64> {
        o.pending().iter().map(|r| r.seq).collect()
    }

    #[test]
    fn sequence_numbers_strictly_increase_across_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.json");
        let mut o = Outbox::load(&path).unwrap();
        let (a, saved) = o.push(draft(1));
        saved.unwrap();
        let (b, _) = o.push(draft(2));
        o.ack(b.seq).unwrap();
        assert_eq!(seqs(&o), Vec::<u64>::new());

        // Everything acked: the counter must survive anyway.
        let mut o = Outbox::load(&path).unwrap();
        let (c, _) = o.push(draft(3));
        assert!(a.seq < b.seq && b.seq < c.seq, "{} {} {}", a.seq, b.seq, c.seq);
        let o = Outbox::load(&path).unwrap();
        assert_eq!(o.pending(), &[c]);
    }

    #[test]
    fn an_ack_removes_every_report_up_to_its_sequence_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.json");
        let mut o = Outbox::load(&path).unwrap();
        for i in 1..=4 {
            o.push(draft(i)).1.unwrap();
        }
        o.ack(2).unwrap();
        assert_eq!(seqs(&o), vec![3, 4]);
        o.ack(2).unwrap();
        assert_eq!(seqs(&Outbox::load(&path).unwrap()), vec![3, 4], "acks are durable");
        o.ack(100).unwrap();
        assert!(o.pending().is_empty());
    }

    #[test]
    fn a_corrupt_outbox_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.json");
        std::fs::write(&path, "{").unwrap();
        let err = Outbox::load(&path).unwrap_err().to_string();
        assert!(err.contains("outbox.json"), "{err}");
    }
}
