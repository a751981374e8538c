//! The enrollment record (`enrollment.toml`): who this agent is and where
//! its controller is. (What it trusts for releases is the TUF root pinned at
//! enrollment, in the state directory's `tuf/`.)
//!
//! Guarantee: the file is written durably and last during enrollment, so its
//! presence means the identity files next to it are complete.

use crate::durable;
use crate::error::{AgentError, Result};
use crate::state_dir::StateDir;
use flotte_protocol::AgentId;
use serde::{Deserialize, Serialize};

/// What enrollment established.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrollment {
    /// Assigned by the controller; shown in logs only (the controller reads
    /// the agent's identity from its certificate).
    pub agent_id: AgentId,
    /// Controller host name or address as given to `enroll`; also the TLS
    /// server name the controller's certificate must match.
    pub controller: String,
    /// UDP port of the controller's QUIC endpoint.
    pub quic_port: u16,
    /// The name given with `enroll --hostname`, reported from then on
    /// (unless the config or `run --hostname` names another).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

impl Enrollment {
    /// Loads the record, or [`AgentError::NotEnrolled`] if there is none.
    pub fn load(state: &StateDir) -> Result<Self> {
        let path = state.enrollment();
        let bytes = durable::read_optional(&path)?.ok_or_else(|| AgentError::NotEnrolled { path: path.clone() })?;
        let text = String::from_utf8_lossy(&bytes);
        toml::from_str(&text).map_err(|e| AgentError::EnrollmentParse { path, source: Box::new(e) })
    }

    /// Writes the record durably.
    pub fn save(&self, state: &StateDir) -> Result<()> {
        let text =
            toml::to_string(self).map_err(|e| AgentError::Encode { what: "enrollment", reason: e.to_string() })?;
        durable::write(&state.enrollment(), text.as_bytes(), durable::STATE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        assert!(matches!(Enrollment::load(&state), Err(AgentError::NotEnrolled { .. })));
        let e = Enrollment {
            agent_id: AgentId("a-1".into()),
            controller: "ctl.example".into(),
            quic_port: 4433,
            hostname: Some("ws-042".into()),
        };
        e.save(&state).unwrap();
        assert_eq!(Enrollment::load(&state).unwrap(), e);
    }
}
