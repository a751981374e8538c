//! Resources of the controller's HTTPS/JSON API: enrollment (used by agents,
//! authenticated by a one-time token) and administration (used by
//! `flottectl`, the future web dashboard and CI/CD pipelines, authenticated
//! by an admin token).
//!
//! Paths, all under `https://HOST:PORT`:
//! - `POST /v1/enroll` — [`EnrollRequest`] → [`EnrollResponse`]; no admin
//!   credentials, the token is the credential.
//! - `POST /v1/enrollment-tokens` — [`TokenRequest`] → [`TokenResponse`].
//! - `GET /v1/agents` — `[AgentView]`.
//! - `GET /v1/agents/{id}/reports` — `[ReportView]`.
//! - `PUT /v1/content/{sha256}` — raw bytes; stored only if they hash to `sha256`.
//! - `GET /v1/tuf/online-keys` — [`OnlineKeysView`], the controller's
//!   timestamp and snapshot keys.
//! - `GET /v1/tuf/status` — a [`TufRoleView`] per stored role: version,
//!   expiry, and a warning for offline roles close to expiry.
//! - `POST /v1/tuf/online-keys/next` — [`OnlineKeysView`] of the next online
//!   keys (created on the first call), which the controller adopts once an
//!   uploaded root names them: the online-key rotation.
//! - `PUT /v1/tuf/root` — raw `root.json` bytes: the first root, or the next
//!   version of the chain → [`TufUploadView`].
//! - `PUT /v1/tuf/roles/{role}` — raw targets (or delegated targets) metadata
//!   signed offline → [`TufUploadView`], listing the releases it added.
//! - `GET /v1/tuf/metadata/{file}` — raw metadata (`root.json`, `N.root.json`,
//!   `timestamp.json`, `snapshot.json`, `targets.json`, `ROLE.json`).
//! - `GET /v1/releases` — `[ReleaseView]`.
//! - `POST /v1/deployments` — [`DeployRequest`] → [`DeploymentView`];
//!   `GET /v1/deployments`, `GET /v1/deployments/{id}`.
//! - `GET /v1/assignments` — `[AssignmentView]`, the per-agent status.
//! - `POST /v1/rollouts` — [`RolloutRequest`] → [`RolloutView`]; `GET /v1/rollouts`,
//!   `GET /v1/rollouts/{id}`, `POST /v1/rollouts/{id}/{pause,resume,approve,abort}`.
//! - `POST /v1/rollouts/{id}/rollback` — [`RollbackRequest`] → [`RollbackView`].
//! - `POST /v1/agents/{id}/tags` — [`TagRequest`] → [`TagsView`].
//!
//! Admin requests carry `Authorization: Bearer <admin token>`. Errors are
//! [`ApiError`] bodies with a 4xx/5xx status.

use crate::digest::Sha256Digest;
use crate::ids::{AgentId, AssignmentId, Timestamp};
use crate::messages::{InstallState, InstalledPackage, Inventory};
use crate::release::InstallerKind;
use crate::signing::PublicKey;
use serde::{Deserialize, Serialize};

/// An agent asks to join the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// The one-time token from `flottectl agents token`.
    pub token: String,
    pub hostname: String,
    /// The agent's ECDSA P-256 public key as an uncompressed SEC1 point
    /// (65 bytes, hex in JSON). The private key never leaves the agent.
    #[serde(with = "hex_bytes")]
    pub public_key: Vec<u8>,
}

/// The controller's answer to a successful enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub agent_id: AgentId,
    /// The agent's client certificate, signed by the controller's CA.
    pub certificate_pem: String,
    /// UDP port of the QUIC endpoint (usually the same number as the API's
    /// TCP port).
    pub quic_port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRequest {
    /// How long the token stays valid, in seconds.
    pub ttl_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub token: String,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentView {
    pub id: AgentId,
    pub hostname: String,
    pub os: String,
    pub arch: String,
    pub agent_version: String,
    pub online: bool,
    pub enrolled_at: Timestamp,
    pub last_seen: Option<Timestamp>,
    pub packages: Vec<InstalledPackage>,
    /// The agent's last reported inventory; `None` until it first connects.
    #[serde(default)]
    pub inventory: Option<Inventory>,
}

/// The controller's online TUF keys: the ones `flottectl trust init` puts
/// into root for the timestamp and snapshot roles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlineKeysView {
    pub timestamp: PublicKey,
    pub snapshot: PublicKey,
}

/// What an accepted TUF metadata upload changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TufUploadView {
    pub role: String,
    pub version: u64,
    /// Releases the upload added to the catalogue (targets roles only).
    pub releases: Vec<ReleaseView>,
}

/// One stored TUF role (the newest root, targets, each delegated role,
/// snapshot, timestamp), for `GET /v1/tuf/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TufRoleView {
    pub role: String,
    pub version: u64,
    pub expires: Timestamp,
    /// Signed by the controller's online keys, and re-signed by it.
    pub online: bool,
    /// Set when an offline-signed role expires within 30 days (or has
    /// expired): what happens and the command that helps.
    pub warning: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseView {
    pub name: String,
    pub version: String,
    pub sha256: Sha256Digest,
    pub size: u64,
    pub installer: InstallerKind,
    /// The TUF targets role that signed it (`targets` or a delegated role).
    pub signed_by: String,
    pub published_at: Timestamp,
}

/// Which agents a deployment goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Every enrolled agent, online or not.
    All,
    /// These agents (by id or hostname).
    Agents(Vec<String>),
    /// Agents carrying any of these tags (`flottectl agents tag`). Dynamic:
    /// agents tagged later join.
    Tags(Vec<String>),
    /// Agents whose inventory matches every condition. Dynamic: agents that
    /// enroll (or whose inventory changes) later and match join.
    Filter(Vec<Condition>),
}

/// One condition of a [`Target::Filter`]: `field=pattern`, where `field` is
/// `os`, `arch`, `hostname`, `id` or `tag`, and `pattern` may use `*` and `?`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    pub field: String,
    pub pattern: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployRequest {
    pub name: String,
    pub version: String,
    pub target: Target,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentView {
    pub id: u64,
    pub name: String,
    pub version: String,
    pub created_at: Timestamp,
    pub assignments: u64,
}

/// The latest known state of one assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentView {
    pub id: AssignmentId,
    pub deployment: u64,
    pub agent: AgentId,
    pub hostname: String,
    pub name: String,
    pub version: String,
    pub state: Option<InstallState>,
    pub updated_at: Timestamp,
    pub active_version: Option<String>,
}

/// One stored report, as the agent sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportView {
    pub seq: u64,
    pub assignment: AssignmentId,
    pub state: InstallState,
    pub at: Timestamp,
    pub received_at: Timestamp,
    pub active_before: Option<String>,
    pub active_after: Option<String>,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong.
    pub error: String,
    /// How to fix it, when there is something to say.
    pub hint: Option<String>,
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() { s.serialize_str(&hex::encode(bytes)) } else { s.serialize_bytes(bytes) }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if d.is_human_readable() {
            hex::decode(String::deserialize(d)?).map_err(serde::de::Error::custom)
        } else {
            <Vec<u8>>::deserialize(d)
        }
    }
}

/// `POST /v1/rollouts`: a release to a target, in waves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutRequest {
    pub name: String,
    pub version: String,
    pub target: Target,
    /// Cumulative wave sizes, e.g. `1,5%,25%,100%`; `100%` is big-bang.
    pub waves: String,
    /// Percent of a wave that must succeed before the next one starts.
    pub success_threshold: f64,
    /// Failures that halt the rollout: `3` (agents) or `2%`.
    pub max_failures: String,
    /// How long a passed wave must stay green, in seconds.
    pub soak_seconds: u64,
    /// After this many seconds without a word, an assigned agent is silent.
    pub silence_seconds: u64,
    /// Whether silent agents count as failed (`true`) or are skipped.
    pub silent_counts_as_failed: bool,
    /// Each next wave waits for `approve`.
    pub manual: bool,
    /// When to start; `None` means now. A time in the past is refused.
    pub start_at: Option<Timestamp>,
    /// Maintenance window in which waves may start, e.g.
    /// `sat,sun 00:00-06:00 Europe/Paris` (IANA zone) or
    /// `sat,sun 00:00-06:00 +01:00` (fixed offset); `None`: any time.
    #[serde(default)]
    pub window: Option<String>,
    /// `push` (required, the default) or `pull` (available in agents'
    /// catalogs for end users to install).
    #[serde(default)]
    pub mode: Option<String>,
    /// For `pull`: when the release becomes required; agents then install it
    /// by themselves (inside the window).
    #[serde(default)]
    pub deadline: Option<Timestamp>,
    /// Release notes shown to end users by `flotte list` (pull offers).
    #[serde(default)]
    pub notes: Option<String>,
    /// For `push`: how many times a user may postpone the install with
    /// `flotte defer`. With deferrals, agents tell their users first and
    /// install `notice_seconds` after receiving the assignment.
    #[serde(default)]
    pub deferrals: Option<u32>,
    /// With deferrals: the notice users get before the install (default 900).
    #[serde(default)]
    pub notice_seconds: Option<u32>,
    /// With deferrals: how long one deferral postpones it (default 3600).
    #[serde(default)]
    pub defer_seconds: Option<u32>,
}

impl RolloutRequest {
    /// Waves when none are given: a canary, a quarter, then everyone.
    pub const DEFAULT_WAVES: &'static str = "1,25%,100%";
    /// Percent of a wave that must succeed when not given.
    pub const DEFAULT_SUCCESS: f64 = 95.0;
    /// Failures that halt a rollout when not given.
    pub const DEFAULT_MAX_FAILURES: &'static str = "2%";
    /// Silence deadline when not given, in seconds.
    pub const DEFAULT_SILENCE_SECONDS: u64 = 3600;

    /// A push of `name@version` to `target` with the defaults of
    /// `flottectl rollout create`: the default waves, success threshold,
    /// failure limit and silence deadline (silent agents count as failed),
    /// no soak, automatic advance, starting now, any time, no deferrals.
    pub fn new(name: impl Into<String>, version: impl Into<String>, target: Target) -> Self {
        RolloutRequest {
            name: name.into(),
            version: version.into(),
            target,
            waves: Self::DEFAULT_WAVES.into(),
            success_threshold: Self::DEFAULT_SUCCESS,
            max_failures: Self::DEFAULT_MAX_FAILURES.into(),
            soak_seconds: 0,
            silence_seconds: Self::DEFAULT_SILENCE_SECONDS,
            silent_counts_as_failed: true,
            manual: false,
            start_at: None,
            window: None,
            mode: None,
            deadline: None,
            notes: None,
            deferrals: None,
            notice_seconds: None,
            defer_seconds: None,
        }
    }
}

/// Progress of one wave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaveView {
    /// As the admin wrote it: `1`, `25%`.
    pub size: String,
    pub assigned: u64,
    pub pending: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub silent: u64,
    /// Pull offers in agents' catalogs that nobody acted on yet.
    #[serde(default)]
    pub offered: u64,
    /// Agents whose user postponed the install (and has not installed yet).
    #[serde(default)]
    pub deferred: u64,
}

/// A rollout and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutView {
    pub id: u64,
    pub name: String,
    pub version: String,
    /// `scheduled`, `running`, `paused`, `halted`, `completed`, `aborted`.
    pub phase: String,
    /// The current wave (0-based), while there is one.
    pub wave: Option<usize>,
    /// `deploying`, `soaking`, `awaiting_approval`, `outside_window` while running.
    pub stage: Option<String>,
    /// Why it halted.
    pub reason: Option<String>,
    pub targeted: u64,
    pub waves: Vec<WaveView>,
    pub created_at: Timestamp,
    pub start_at: Option<Timestamp>,
    /// The rollout this one reverts, for a fleet rollback.
    #[serde(default)]
    pub rollback_of: Option<u64>,
    /// The maintenance window waves start in, if any.
    #[serde(default)]
    pub window: Option<String>,
    /// While the stage is `outside_window`: when the window opens.
    #[serde(default)]
    pub window_opens: Option<Timestamp>,
    /// `push` (required) or `pull` (available in agents' catalogs).
    #[serde(default = "push")]
    pub mode: String,
    /// A pull rollout's deadline, after which it is required.
    #[serde(default)]
    pub deadline: Option<Timestamp>,
    /// How many times users may defer a push install.
    #[serde(default)]
    pub deferrals: u32,
}

fn push() -> String {
    "push".into()
}

/// `POST /v1/rollouts/{id}/rollback`: send every agent that committed the
/// rollout's release back to the version it ran before, as a new rollout.
/// Each field left out is taken from the original rollout.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RollbackRequest {
    #[serde(default)]
    pub waves: Option<String>,
    #[serde(default)]
    pub success_threshold: Option<f64>,
    #[serde(default)]
    pub max_failures: Option<String>,
    #[serde(default)]
    pub soak_seconds: Option<u64>,
    #[serde(default)]
    pub manual: Option<bool>,
}

/// The rollback rollout, and the agents it leaves alone with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackView {
    pub rollout: RolloutView,
    pub skipped: Vec<SkippedAgent>,
}

/// An agent a rollback does not touch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedAgent {
    pub agent: AgentId,
    pub hostname: String,
    pub reason: String,
}

/// `POST /v1/agents/{id}/tags`: add and remove tags; both may be empty to
/// read the current ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRequest {
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// An agent's tags after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagsView {
    pub agent: AgentId,
    pub hostname: String,
    pub tags: Vec<String>,
}
