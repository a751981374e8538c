//! Every message that crosses a QUIC stream between agent and controller.
//!
//! # Streams
//! - **Control stream.** The agent opens one bidirectional stream right after
//!   the handshake and sends [`AgentMessage::Hello`]. The controller answers
//!   [`ControllerMessage::Welcome`] (or [`ControllerMessage::Refused`] and
//!   closes). After that the controller pushes assignments and
//!   cancellations; the agent sends reports, which the controller acks by
//!   sequence number.
//! - **Request streams** (protocol 2). For each download (or resumed
//!   download) and each TUF metadata file the agent opens a new
//!   bidirectional stream and sends one [`StreamRequest`]:
//!   - [`StreamRequest::Content`]: the controller answers one
//!     [`ContentResponse`] frame followed, on success, by exactly `length`
//!     raw bytes, then finishes the stream.
//!   - [`StreamRequest::Metadata`]: the controller answers one
//!     [`MetadataResponse`] frame followed, on success, by exactly `length`
//!     raw bytes. The agent reads at most the size limit of the role it asked
//!     for, whatever `length` says.
//!
//! No message carries the agent's identity: the controller takes it from
//! the client certificate of the connection.

use crate::digest::Sha256Digest;
use crate::ids::{AgentId, AssignmentId, Timestamp};
use crate::signing::ReleaseRef;
use serde::{Deserialize, Serialize};

/// Agent → controller on the control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentMessage {
    /// First message of every connection.
    Hello(Hello),
    /// The inventory changed since the last one sent.
    Inventory(Inventory),
    /// A state change of one assignment. Resent until acked.
    Report(Report),
}

/// Controller → agent on the control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerMessage {
    /// The controller accepted the `Hello`.
    Welcome(Welcome),
    /// The controller will not talk to this agent; it closes the connection
    /// after sending this.
    Refused { reason: String },
    /// Install this release.
    Assign(Assignment),
    /// Stop working on this assignment if it has not been installed yet.
    Cancel { assignment: AssignmentId },
    /// Every report with a sequence number up to and including `seq` is
    /// durably stored; the agent may forget them.
    Ack { seq: u64 },
    /// Put this release in the agent's catalog: for the end user to install
    /// (a pull rollout), or to install after telling the user, who may defer
    /// it (a push with notice). Sent only on sessions that negotiated
    /// protocol version [`OFFERS_SINCE`] or later.
    Offer(Offer),
}

/// The first protocol version with [`ControllerMessage::Offer`] and
/// [`InstallState::Offered`].
pub const OFFERS_SINCE: u16 = 3;

/// Longest [`Offer::notes`] in bytes; longer notes are cut by the controller.
pub const MAX_OFFER_NOTES: usize = 4096;

/// One release offered to one agent. The agent keeps it in its catalog
/// until the end user installs it (`flotte install`), or installs it by
/// itself once it is required: after `deadline` (pull), or `notice_secs`
/// after storing it (push with notice), later by the user's deferrals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// The assignment an install of this offer reports under, so the
    /// rollout counts it like a push.
    pub assignment: AssignmentId,
    /// The release, by name: the agent looks it up in its TUF-verified
    /// targets before it is shown to anyone, and installs it like a push.
    pub release: ReleaseRef,
    pub issued_at: Timestamp,
    /// After this time the release is required: the agent installs it
    /// without being asked (inside `window`, if there is one).
    pub deadline: Option<Timestamp>,
    /// The rollout's maintenance window, honoured by a deadline install.
    pub window: Option<crate::window::Window>,
    /// What the admin tells end users about this release (release notes),
    /// at most [`MAX_OFFER_NOTES`] bytes. Not signed by the publisher.
    pub notes: Option<String>,
    /// A push with notice: the release is required this many seconds after
    /// the agent stored the offer; until then the user is told, and may
    /// defer. `None` for a plain pull offer.
    pub notice_secs: Option<u32>,
    /// How many times the user may postpone the required install
    /// (`flotte defer`).
    pub deferrals: u32,
    /// How long one deferral postpones it, in seconds.
    pub defer_secs: u32,
}

/// Opens the conversation; carries the version exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The highest protocol version the agent speaks.
    pub protocol_version: u16,
    /// The oldest protocol version the agent still speaks.
    pub min_protocol_version: u16,
    /// `flotte-agent` build version, for the admin's inventory.
    pub agent_version: String,
    pub inventory: Inventory,
}

/// The controller's answer to `Hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The version both sides will speak.
    pub protocol_version: u16,
    /// Who the controller believes this agent is (from its certificate).
    pub agent_id: AgentId,
    /// The controller's clock, so an agent can warn about skew.
    pub server_time: Timestamp,
}

/// What the agent knows about its host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub hostname: String,
    pub os: String,
    pub os_version: String,
    pub kernel: String,
    pub arch: String,
    /// Flotte-managed packages and their active versions.
    pub packages: Vec<InstalledPackage>,
    /// CPU, memory and root disk; zero where the OS does not say.
    #[serde(default)]
    pub hardware: Hardware,
    /// When the host booted (its clock, seconds precision); the uptime is
    /// `now - boot_time`, so the value does not change while the host runs.
    #[serde(default)]
    pub boot_time: Option<Timestamp>,
    /// Users with a login session on the host, sorted, without duplicates.
    #[serde(default)]
    pub users: Vec<String>,
    /// Every installed dpkg package, if the agent is configured to report
    /// them (`report_dpkg_packages`); `None` when it is not.
    #[serde(default)]
    pub dpkg_packages: Option<Vec<InstalledPackage>>,
}

/// The host's hardware, as far as an inventory cares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hardware {
    /// The CPU's brand string, e.g. "AMD EPYC 7B13".
    pub cpu_model: String,
    /// Logical CPUs.
    pub cpu_cores: u32,
    /// Physical memory in bytes.
    pub memory_total: u64,
    /// Size of the file system mounted at `/`, in bytes.
    pub root_disk_total: u64,
    /// Space available to unprivileged users on `/`, in bytes.
    pub root_disk_free: u64,
}

/// One Flotte-managed package on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledPackage {
    pub name: String,
    pub version: String,
}

/// One release assigned to one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub id: AssignmentId,
    /// The release to install. Only a name: the agent takes everything else
    /// from the TUF targets metadata it verifies itself.
    pub release: ReleaseRef,
    pub issued_at: Timestamp,
}

/// A state change of one assignment on one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Per-agent sequence number, strictly increasing across restarts. The
    /// controller ignores a sequence number it has already stored.
    pub seq: u64,
    pub assignment: AssignmentId,
    pub state: InstallState,
    /// The agent's clock when the state was entered.
    pub at: Timestamp,
    /// The active version of the package before this assignment started.
    pub active_before: Option<String>,
    /// The active version now.
    pub active_after: Option<String>,
}

/// Longest failure message (including a captured log tail) a report
/// carries, in bytes. See [`bounded_message`].
pub const MAX_REPORT_MESSAGE: usize = 4096;

/// Where an assignment stands on an agent.
///
/// New variants are appended, so the postcard encoding of the older ones
/// does not change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstallState {
    /// The agent stored the assignment durably.
    Received,
    /// Content is being fetched; `offset` is where this attempt started, so a
    /// resumed download reports a non-zero offset.
    Downloading { offset: u64, total: u64 },
    /// Size, sha256 and signature are being checked.
    Verifying,
    /// Verified bytes are handed to the installer (stage, preflight, backup,
    /// switch, detection).
    Installing,
    /// The new version is active.
    Succeeded,
    /// The assignment ended without installing; the previous version stays
    /// active.
    Failed { class: FailureClass, message: String },
    /// The new version is active and on probation: its health check must
    /// keep passing before the install is committed.
    HealthChecking,
    /// The install failed after the switch (or the agent stopped during it);
    /// the previous version is being restored.
    RollingBack,
    /// The previous version is active again (and its backed-up paths are
    /// restored). `class` and `message` say why the new one was abandoned.
    RolledBack { class: FailureClass, message: String },
    /// The previous version could not be restored: the host needs an admin.
    /// The package is quarantined on this agent until the admin clears it
    /// (`flotte-agent quarantine clear NAME`); `active_after` says what the
    /// agent found active.
    RollbackFailed { message: String },
    /// The release is in the agent's catalog, waiting for the end user (a
    /// pull offer was stored durably). Nothing was downloaded or installed.
    Offered,
    /// The user postponed the required install until `until`; `remaining`
    /// deferrals are left.
    Deferred { until: Timestamp, remaining: u32 },
    /// The content is downloaded and verified; the install waits for the
    /// agent's maintenance window (and, for a deadline install, the
    /// rollout's), which next opens at `until`. Still in flight.
    WaitingForWindow { until: Timestamp },
}

impl InstallState {
    /// Whether no further report will follow for this assignment.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            InstallState::Succeeded
                | InstallState::Failed { .. }
                | InstallState::RolledBack { .. }
                | InstallState::RollbackFailed { .. }
        )
    }

    /// A short lowercase name for tables: `downloading`, `failed`, …
    pub fn name(&self) -> &'static str {
        match self {
            InstallState::Received => "received",
            InstallState::Downloading { .. } => "downloading",
            InstallState::Verifying => "verifying",
            InstallState::Installing => "installing",
            InstallState::Succeeded => "succeeded",
            InstallState::Failed { .. } => "failed",
            InstallState::HealthChecking => "health_checking",
            InstallState::RollingBack => "rolling_back",
            InstallState::RolledBack { .. } => "rolled_back",
            InstallState::RollbackFailed { .. } => "rollback_failed",
            InstallState::Offered => "offered",
            InstallState::Deferred { .. } => "deferred",
            InstallState::WaitingForWindow { .. } => "waiting_for_window",
        }
    }

    /// The failure class and message of a state that ended badly.
    pub fn failure(&self) -> Option<(Option<FailureClass>, &str)> {
        match self {
            InstallState::Failed { class, message } | InstallState::RolledBack { class, message } => {
                Some((Some(*class), message))
            }
            InstallState::RollbackFailed { message } => Some((None, message)),
            _ => None,
        }
    }
}

/// Why an assignment failed. Decides whether retrying can help.
///
/// New variants are appended, so the postcard encoding of the older ones
/// does not change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// Signature, size, hash or the signed spec did not check out. Permanent.
    Verification,
    /// The content could not be fetched.
    Download,
    /// The installer failed (stage, backup, switch, or a hook).
    Install,
    /// The health check failed during probation. Permanent.
    Health,
    /// The installer reported success but the version is not detected as
    /// installed. Permanent.
    Detection,
    /// A check before any change refused the install (package quarantined,
    /// no way to roll back). Permanent.
    Preflight,
    /// The agent stopped (crash, kill, power loss) while the new version was
    /// being switched to or was on probation, or kept stopping during this
    /// job; it was not trusted.
    Interrupted,
}

impl FailureClass {
    /// A short lowercase name for tables.
    pub fn name(self) -> &'static str {
        match self {
            FailureClass::Verification => "verification",
            FailureClass::Download => "download",
            FailureClass::Install => "install",
            FailureClass::Health => "health",
            FailureClass::Detection => "detection",
            FailureClass::Preflight => "preflight",
            FailureClass::Interrupted => "interrupted",
        }
    }
}

/// Cuts `message` to at most [`MAX_REPORT_MESSAGE`] bytes, keeping its
/// start (the error) and its end (the newest log lines) around a marker,
/// on character boundaries.
pub fn bounded_message(message: String) -> String {
    if message.len() <= MAX_REPORT_MESSAGE {
        return message;
    }
    const MARKER: &str = "\n[…]\n";
    let head_len = floor_char_boundary(&message, MAX_REPORT_MESSAGE / 4);
    let budget = MAX_REPORT_MESSAGE - head_len - MARKER.len();
    let mut tail_start = message.len() - budget;
    while !message.is_char_boundary(tail_start) {
        tail_start += 1;
    }
    format!("{}{MARKER}{}", &message[..head_len], &message[tail_start..])
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Opens a content stream: send the bytes of `digest` from `offset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentRequest {
    pub digest: Sha256Digest,
    pub offset: u64,
    /// At most this many bytes; `None` means to the end.
    pub length: Option<u64>,
}

/// The controller's answer on a content stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContentResponse {
    /// `length` raw bytes follow, starting at `offset` of a blob of
    /// `total_size` bytes.
    Ok { total_size: u64, offset: u64, length: u64 },
    /// The controller has no content with that digest.
    NotFound,
    /// `offset` is past the end of the content.
    BadRange { total_size: u64 },
}

/// The first frame of every stream the agent opens after the control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamRequest {
    /// Package bytes by digest and range.
    Content(ContentRequest),
    /// One TUF metadata file.
    Metadata(MetadataRequest),
}

/// Asks for one TUF metadata file by its repository file name:
/// `N.root.json`, `timestamp.json`, `snapshot.json`, `targets.json` or
/// `ROLE.json` (the delegated role name percent-encoded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataRequest {
    pub file: String,
}

/// The controller's answer on a metadata stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataResponse {
    /// `length` raw bytes follow.
    Ok { length: u64 },
    /// The repository has no such file (the end of the root chain, or an
    /// unknown role).
    NotFound,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{FrameDecoder, encode};

    #[test]
    fn every_agent_message_round_trips_through_a_frame() {
        let messages = vec![
            AgentMessage::Hello(Hello {
                protocol_version: 1,
                min_protocol_version: 1,
                agent_version: "0.1.0".into(),
                inventory: Inventory { hostname: "ws-1".into(), ..Default::default() },
            }),
            AgentMessage::Report(Report {
                seq: 3,
                assignment: AssignmentId(9),
                state: InstallState::Failed { class: FailureClass::Verification, message: "bad".into() },
                at: Timestamp::from_unix_millis(5),
                active_before: Some("1.0".into()),
                active_after: Some("1.0".into()),
            }),
        ];
        let mut d = FrameDecoder::new();
        for m in &messages {
            d.push(&encode(m).unwrap());
        }
        for m in messages {
            assert_eq!(d.next::<AgentMessage>("control").unwrap(), Some(m));
        }
    }

    #[test]
    fn install_states_render_as_snake_case_json_for_the_admin_api() {
        let s = InstallState::Downloading { offset: 10, total: 20 };
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"downloading":{"offset":10,"total":20}}"#);
        assert!(InstallState::Succeeded.is_terminal());
        assert!(!s.is_terminal());
    }

    #[test]
    fn rollback_states_are_terminal_except_rolling_back() {
        let rolled = InstallState::RolledBack { class: FailureClass::Health, message: "exit 1".into() };
        assert!(rolled.is_terminal());
        assert!(InstallState::RollbackFailed { message: "x".into() }.is_terminal());
        assert!(!InstallState::RollingBack.is_terminal());
        assert!(!InstallState::HealthChecking.is_terminal());
        assert_eq!(rolled.name(), "rolled_back");
        assert_eq!(serde_json::to_string(&rolled).unwrap(), r#"{"rolled_back":{"class":"health","message":"exit 1"}}"#);
        assert_eq!(rolled.failure(), Some((Some(FailureClass::Health), "exit 1")));
    }

    #[test]
    fn the_old_states_keep_their_wire_encoding() {
        // Appending variants must not renumber the existing ones.
        assert_eq!(postcard::to_stdvec(&InstallState::Succeeded).unwrap(), [4]);
        let failed = InstallState::Failed { class: FailureClass::Install, message: String::new() };
        assert_eq!(postcard::to_stdvec(&failed).unwrap(), [5, 2, 0]);
    }

    #[test]
    fn offers_are_appended_so_older_messages_keep_their_encoding() {
        assert_eq!(postcard::to_stdvec(&ControllerMessage::Ack { seq: 7 }).unwrap(), [4, 7]);
        assert_eq!(postcard::to_stdvec(&InstallState::Offered).unwrap(), [10]);
        assert!(!InstallState::Offered.is_terminal());
        assert_eq!(InstallState::Offered.name(), "offered");
        let offer = ControllerMessage::Offer(Offer {
            assignment: AssignmentId(3),
            release: ReleaseRef { name: "app".into(), version: "1.0".into() },
            issued_at: Timestamp::EPOCH,
            deadline: Some(Timestamp::from_unix_millis(9)),
            window: Some("sat,sun 00:00-06:00".parse().unwrap()),
            notes: Some("Fixes printing.".into()),
            notice_secs: Some(600),
            deferrals: 2,
            defer_secs: 3600,
        });
        let mut d = FrameDecoder::new();
        d.push(&encode(&offer).unwrap());
        assert_eq!(d.next::<ControllerMessage>("control").unwrap(), Some(offer));
    }

    #[test]
    fn peers_speak_the_newest_version_both_know() {
        use crate::{PROTOCOL_VERSION, negotiate};
        assert_eq!(negotiate(2, 2), Some(2), "a version 2 agent (no offers) is still served");
        assert_eq!(negotiate(1, 1), None, "version 1 predates TUF releases");
        assert_eq!(negotiate(2, PROTOCOL_VERSION + 5), Some(PROTOCOL_VERSION));
        assert_eq!(negotiate(PROTOCOL_VERSION + 1, PROTOCOL_VERSION + 2), None, "too new");
        assert_eq!(negotiate(0, 0), None, "too old");
    }

    #[test]
    fn long_messages_keep_their_head_and_tail_within_the_bound() {
        let short = "disk full".to_string();
        assert_eq!(bounded_message(short.clone()), short);
        let long = format!("error: hook failed\n{}last line é", "ééé log\n".repeat(2000));
        let bounded = bounded_message(long);
        assert!(bounded.len() <= MAX_REPORT_MESSAGE, "{}", bounded.len());
        assert!(bounded.starts_with("error: hook failed"));
        assert!(bounded.ends_with("last line é"));
        assert!(bounded.contains("[…]"));
    }
}
