//! The enrollment record (`enrollment.toml`): who this agent is, where its
//! controller is, and which release-signing keys it trusts.
//!
//! Guarantee: the file is written durably and last during enrollment, so its
//! presence means the identity files next to it are complete.

use crate::durable;
use crate::error::{AgentError, Result};
use crate::state_dir::StateDir;
use flotte_protocol::{AgentId, PublicKey, TrustedKeys};
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
    /// Release-signing public keys, hex.
    pub trusted_keys: Vec<PublicKey>,
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

    /// The keys releases are verified against.
    pub fn trusted_keys(&self) -> TrustedKeys {
        TrustedKeys::new(self.trusted_keys.iter().cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotte_protocol::SecretKey;

    #[test]
    fn the_record_round_trips_with_hex_keys() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        assert!(matches!(Enrollment::load(&state), Err(AgentError::NotEnrolled { .. })));
        let key = SecretKey::from_seed([7; 32]).public_key();
        let e = Enrollment {
            agent_id: AgentId("a-1".into()),
            controller: "ctl.example".into(),
            quic_port: 4433,
            trusted_keys: vec![key.clone()],
            hostname: Some("ws-042".into()),
        };
        e.save(&state).unwrap();
        let text = std::fs::read_to_string(state.enrollment()).unwrap();
        assert!(text.contains(&key.to_hex()), "{text}");
        assert_eq!(Enrollment::load(&state).unwrap(), e);
        assert_eq!(e.trusted_keys().len(), 1);
    }
}
