//! The job journal: one JSON file per assignment in `jobs/`.
//!
//! Guarantees: a record is replaced atomically and is on disk when
//! [`Journal::save`] returns; records are kept after a job ends, so a
//! redelivered assignment is recognised after any number of restarts.
//! Loading skips (and logs) a file it cannot parse instead of refusing to
//! start the agent.

use crate::durable;
use crate::error::{AgentError, Result};
use crate::job::JobRecord;
use crate::state_dir::StateDir;

/// Reads and writes job records.
#[derive(Debug, Clone)]
pub struct Journal {
    state: StateDir,
}

impl Journal {
    /// Opens (and creates) the journal directory.
    pub fn open(state: &StateDir) -> Result<Self> {
        durable::create_dir(&state.jobs_dir())?;
        Ok(Journal { state: state.clone() })
    }

    /// Writes `record` durably.
    pub fn save(&self, record: &JobRecord) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(record)
            .map_err(|e| AgentError::Encode { what: "job record", reason: e.to_string() })?;
        durable::write(&self.state.job(record.id), &bytes, durable::STATE)
    }

    /// Every readable record, in no particular order.
    pub fn load_all(&self) -> Result<Vec<JobRecord>> {
        let dir = self.state.jobs_dir();
        let mut records = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(AgentError::io("read directory", &dir))? {
            let path = entry.map_err(AgentError::io("read directory", &dir))?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(AgentError::io("read", &path))?;
            match serde_json::from_slice::<JobRecord>(&bytes) {
                Ok(record) => records.push(record),
                Err(source) => tracing::error!(error = %AgentError::StateParse { path, source }, "skipping job record"),
            }
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobRecord, JobState};
    use flotte_protocol::{AssignmentId, ReleaseRef, Timestamp};

    #[test]
    fn records_round_trip_and_garbage_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let journal = Journal::open(&state).unwrap();
        let record = JobRecord {
            id: AssignmentId(4),
            release: ReleaseRef { name: "app".into(), version: "1.0".into() },
            issued_at: Timestamp::from_unix_millis(5),
            received_at: Timestamp::from_unix_millis(6),
            state: JobState::Downloading { offset: 9 },
            since: Timestamp::from_unix_millis(6),
            baseline: None,
            active_after: None,
            package: None,
            restarts: 2,
            backup_taken: false,
            not_before: None,
            windowed: true,
            rollout_window: Some("sat 00:00-06:00 Europe/Paris".parse().unwrap()),
        };
        journal.save(&record).unwrap();
        std::fs::write(state.jobs_dir().join("5.json"), "not json").unwrap();
        assert_eq!(journal.load_all().unwrap(), vec![record]);
    }
}
