//! The controller's authoritative state, in SQLite.
//!
//! Everything that must survive a restart lives here, never only in memory:
//! a second controller replica (PostgreSQL, a later issue) must be able to
//! take over from this state alone. The SQL is kept portable (no SQLite-only
//! functions) for that reason.
//!
//! Guarantees:
//! - The schema is created and upgraded by numbered migrations.
//! - `synchronous=FULL`: when a method returns, its change is on disk, so an
//!   acknowledgement sent after it is never a lie.
//! - An enrollment token is consumed at most once, atomically.
//! - A report is stored at most once per (agent, seq), and only for an
//!   assignment of that agent.
//! - The store never reads the clock; callers pass `now`.

use crate::error::ControllerError;
use flotte_protocol::api::{AgentView, AssignmentView, DeploymentView, ReleaseView, ReportView};
use flotte_protocol::messages::{Assignment, Hello, InstallState, InstalledPackage, Inventory, Offer, Report};
use flotte_protocol::{AgentId, AssignmentId, InstallerKind, ReleaseMetadata, ReleaseRef, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};
use rusqlite_migration::{M, Migrations};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

const MIGRATIONS: &[M<'static>] = &[
    M::up(
        "CREATE TABLE admin_tokens (
        hash TEXT PRIMARY KEY,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE enrollment_tokens (
        hash TEXT PRIMARY KEY,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        used_at BIGINT,
        used_by TEXT
    );
    CREATE TABLE agents (
        id TEXT PRIMARY KEY,
        hostname TEXT NOT NULL,
        cert_fingerprint TEXT NOT NULL UNIQUE,
        enrolled_at BIGINT NOT NULL,
        last_seen BIGINT,
        os TEXT NOT NULL DEFAULT '',
        os_version TEXT NOT NULL DEFAULT '',
        kernel TEXT NOT NULL DEFAULT '',
        arch TEXT NOT NULL DEFAULT '',
        agent_version TEXT NOT NULL DEFAULT '',
        packages TEXT NOT NULL DEFAULT '[]',
        last_report_seq BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE signing_keys (
        key_id TEXT PRIMARY KEY,
        public_key TEXT NOT NULL,
        added_at BIGINT NOT NULL
    );
    CREATE TABLE releases (
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        size BIGINT NOT NULL,
        installer TEXT NOT NULL,
        signed_by TEXT NOT NULL,
        signed BLOB NOT NULL,
        published_at BIGINT NOT NULL,
        PRIMARY KEY (name, version)
    );
    CREATE TABLE deployments (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        FOREIGN KEY (name, version) REFERENCES releases (name, version)
    );
    CREATE TABLE assignments (
        id INTEGER PRIMARY KEY,
        deployment_id BIGINT NOT NULL REFERENCES deployments (id),
        agent_id TEXT NOT NULL REFERENCES agents (id),
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        state TEXT,
        terminal INTEGER NOT NULL DEFAULT 0,
        updated_at BIGINT NOT NULL,
        active_version TEXT,
        UNIQUE (deployment_id, agent_id)
    );
    CREATE INDEX assignments_pending ON assignments (agent_id, terminal);
    CREATE TABLE reports (
        agent_id TEXT NOT NULL REFERENCES agents (id),
        seq BIGINT NOT NULL,
        assignment_id BIGINT NOT NULL REFERENCES assignments (id),
        state TEXT NOT NULL,
        at BIGINT NOT NULL,
        received_at BIGINT NOT NULL,
        active_before TEXT,
        active_after TEXT,
        PRIMARY KEY (agent_id, seq)
    );",
    ),
    // Rollouts: the pure engine's state, persisted with its effects.
    M::up(
        "CREATE TABLE rollouts (
        id BIGINT PRIMARY KEY REFERENCES deployments (id),
        target TEXT NOT NULL,
        engine TEXT NOT NULL,
        phase TEXT NOT NULL,
        report_watermark BIGINT NOT NULL DEFAULT 0,
        next_timeout BIGINT,
        updated_at BIGINT NOT NULL
    );
    CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY,
        at BIGINT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT NOT NULL
    );",
    ),
    // Fleet rollback and dynamic targets: the version each agent of a
    // rollout gets when it differs per agent (a rollback sends each agent
    // back to its own previous version), which rollout a rollback reverts,
    // and the tags admins put on agents.
    M::up(
        "CREATE TABLE rollout_versions (
        rollout_id BIGINT NOT NULL,
        agent_id TEXT NOT NULL,
        version TEXT NOT NULL,
        PRIMARY KEY (rollout_id, agent_id)
    );
    CREATE TABLE rollbacks (
        id BIGINT PRIMARY KEY,
        rollback_of BIGINT NOT NULL
    );
    CREATE TABLE agent_tags (
        agent_id TEXT NOT NULL REFERENCES agents (id),
        tag TEXT NOT NULL,
        PRIMARY KEY (agent_id, tag)
    );",
    ),
    // The agent's whole last inventory (JSON `Inventory`); '' until the
    // agent first connects. The columns above keep the fields lists filter on.
    M::up("ALTER TABLE agents ADD COLUMN inventory TEXT NOT NULL DEFAULT '';"),
    // TUF: the repository's metadata files (every root version, targets and
    // delegated roles, snapshot, timestamp). Releases are now the targets
    // entries of verified roles; the single-key release signatures go.
    M::up(
        "CREATE TABLE tuf_metadata (
        file TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        version BIGINT NOT NULL,
        expires BIGINT NOT NULL,
        bytes BLOB NOT NULL
    );
    DROP TABLE signing_keys;
    ALTER TABLE releases DROP COLUMN signed;",
    ),
    // A rollout is rolled back at most once, even by two racing requests.
    M::up("CREATE UNIQUE INDEX rollbacks_once ON rollbacks (rollback_of);"),
    // Pull rollouts: what the offers of a rollout carry besides the release
    // (JSON `OfferTerms`); NULL for push rollouts, whose assignments are
    // sent as `Assign`.
    M::up("ALTER TABLE rollouts ADD COLUMN offer TEXT;"),
    // TUF consistent snapshots: every recent version of snapshot, targets
    // and delegated roles under its versioned name (`7.targets.json`), so a
    // client reading timestamp → snapshot → targets gets the versions it was
    // told of even while a publish replaces the current files.
    M::up(
        "CREATE TABLE tuf_versioned (
        file TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        version BIGINT NOT NULL,
        bytes BLOB NOT NULL
    );
    CREATE INDEX tuf_versioned_by_role ON tuf_versioned (role, version);",
    ),
];

/// One unfinished assignment as it goes to its agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A push rollout: install it.
    Assign(Assignment),
    /// A pull rollout: put it in the catalog.
    Offer(Offer),
}

impl Delivery {
    /// Assignment `id` of `release`, as it goes to its agent: an offer with
    /// `offer`'s terms for a pull rollout (or a push with notice), else a
    /// plain assignment. The one place both the store's pending deliveries
    /// and a rollout step's fresh ones are built, so the two cannot differ.
    pub fn new(id: AssignmentId, release: ReleaseRef, issued_at: Timestamp, offer: Option<&OfferTerms>) -> Delivery {
        match offer {
            None => Delivery::Assign(Assignment { id, release, issued_at }),
            Some(terms) => Delivery::Offer(Offer {
                assignment: id,
                release,
                issued_at,
                deadline: terms.deadline,
                window: terms.window.clone(),
                notes: terms.notes.clone(),
                notice_secs: terms.notice_secs,
                deferrals: terms.deferrals,
                defer_secs: terms.defer_secs,
            }),
        }
    }

    pub fn id(&self) -> AssignmentId {
        match self {
            Delivery::Assign(a) => a.id,
            Delivery::Offer(o) => o.assignment,
        }
    }
}

/// What every offer of one pull rollout carries besides its release.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OfferTerms {
    pub deadline: Option<Timestamp>,
    pub window: Option<flotte_protocol::window::Window>,
    pub notes: Option<String>,
    /// A push with notice and deferrals (see `Offer`).
    #[serde(default)]
    pub notice_secs: Option<u32>,
    #[serde(default)]
    pub deferrals: u32,
    #[serde(default)]
    pub defer_secs: u32,
}

impl OfferTerms {
    /// The terms as stored with their rollout (`rollouts.offer`).
    pub(crate) fn decode(text: &str) -> Result<OfferTerms, ControllerError> {
        serde_json::from_str(text).map_err(|e| corrupt("offer terms")(e.to_string()))
    }
}

/// What happened to an enrollment token presented by an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    Accepted,
    Unknown,
    AlreadyUsed,
    Expired,
}

/// What happened to a report an agent sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportOutcome {
    Stored,
    /// Sequence number already seen: a retransmission or a replay.
    Duplicate,
    /// The assignment does not exist or belongs to another agent.
    Foreign,
}

/// An agent as the QUIC layer needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    pub id: AgentId,
    pub hostname: String,
}

/// The SQLite-backed store. Cheap to share behind an `Arc`.
pub struct Store {
    conn: Mutex<Connection>,
}

pub(crate) fn ts(t: Timestamp) -> i64 {
    i64::try_from(t.as_unix_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn from_ts(v: i64) -> Timestamp {
    Timestamp::from_unix_millis(u64::try_from(v).unwrap_or(0))
}

fn corrupt(what: &str) -> impl FnOnce(String) -> ControllerError + '_ {
    move |e| ControllerError::Corrupt(format!("{what}: {e}"))
}

impl Store {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &Path) -> Result<Self, ControllerError> {
        Self::setup(Connection::open(path)?)
    }

    /// An in-memory store, for unit tests.
    pub fn open_in_memory() -> Result<Self, ControllerError> {
        Self::setup(Connection::open_in_memory()?)
    }

    fn setup(mut conn: Connection) -> Result<Self, ControllerError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Migrations::from_slice(MIGRATIONS).to_latest(&mut conn)?;
        Ok(Store { conn: Mutex::new(conn) })
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    // ---- credentials ----

    pub fn add_admin_token(&self, hash: &str, now: Timestamp) -> Result<(), ControllerError> {
        self.conn().execute("INSERT INTO admin_tokens (hash, created_at) VALUES (?1, ?2)", params![hash, ts(now)])?;
        Ok(())
    }

    pub fn is_admin_token(&self, hash: &str) -> Result<bool, ControllerError> {
        let found = self
            .conn()
            .query_row("SELECT 1 FROM admin_tokens WHERE hash = ?1", params![hash], |_| Ok(()))
            .optional()?;
        Ok(found.is_some())
    }

    pub fn add_enrollment_token(
        &self,
        hash: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<(), ControllerError> {
        self.conn().execute(
            "INSERT INTO enrollment_tokens (hash, created_at, expires_at) VALUES (?1, ?2, ?3)",
            params![hash, ts(now), ts(expires_at)],
        )?;
        Ok(())
    }

    /// Consumes the token and registers the agent in one transaction: either
    /// both happen or neither.
    pub fn enroll(
        &self,
        token_hash: &str,
        agent: &AgentRecord,
        cert_fingerprint: &str,
        now: Timestamp,
    ) -> Result<TokenUse, ControllerError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        /// The token's `enrollment_tokens` row.
        struct TokenRow {
            expires_at: i64,
            used_at: Option<i64>,
        }
        let row = tx
            .query_row("SELECT expires_at, used_at FROM enrollment_tokens WHERE hash = ?1", params![token_hash], |r| {
                Ok(TokenRow { expires_at: r.get(0)?, used_at: r.get(1)? })
            })
            .optional()?;
        let outcome = match row {
            None => TokenUse::Unknown,
            Some(TokenRow { used_at: Some(_), .. }) => TokenUse::AlreadyUsed,
            Some(TokenRow { expires_at, .. }) if expires_at <= ts(now) => TokenUse::Expired,
            Some(_) => {
                tx.execute(
                    "UPDATE enrollment_tokens SET used_at = ?2, used_by = ?3 WHERE hash = ?1 AND used_at IS NULL",
                    params![token_hash, ts(now), agent.id.0],
                )?;
                tx.execute(
                    "INSERT INTO agents (id, hostname, cert_fingerprint, enrolled_at) VALUES (?1, ?2, ?3, ?4)",
                    params![agent.id.0, agent.hostname, cert_fingerprint, ts(now)],
                )?;
                TokenUse::Accepted
            }
        };
        tx.commit()?;
        Ok(outcome)
    }

    // ---- agents ----

    pub fn agent_by_fingerprint(&self, fingerprint: &str) -> Result<Option<AgentRecord>, ControllerError> {
        Ok(self
            .conn()
            .query_row("SELECT id, hostname FROM agents WHERE cert_fingerprint = ?1", params![fingerprint], |r| {
                Ok(AgentRecord { id: AgentId(r.get(0)?), hostname: r.get(1)? })
            })
            .optional()?)
    }

    /// Records an agent's `Hello` (last seen, version and inventory) in one
    /// transaction: one durable write per connection. Returns whether the
    /// facts rollout targets match on (hostname, os, arch) changed.
    pub fn agent_connected(&self, id: &AgentId, hello: &Hello, now: Timestamp) -> Result<bool, ControllerError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.prepare_cached("UPDATE agents SET last_seen = ?2, agent_version = ?3 WHERE id = ?1")?.execute(params![
            id.0,
            ts(now),
            hello.agent_version
        ])?;
        let facts_changed = write_inventory(&tx, id, &hello.inventory)?;
        tx.commit()?;
        Ok(facts_changed)
    }

    /// Records an agent's new inventory; returns whether the facts rollout
    /// targets match on (hostname, os, arch) changed.
    pub fn update_inventory(&self, id: &AgentId, inv: &Inventory) -> Result<bool, ControllerError> {
        write_inventory(&self.conn(), id, inv)
    }

    pub fn touch_agent(&self, id: &AgentId, now: Timestamp) -> Result<(), ControllerError> {
        self.conn().execute("UPDATE agents SET last_seen = ?2 WHERE id = ?1", params![id.0, ts(now)])?;
        Ok(())
    }

    /// All agents; `online` is filled in by the caller, who knows the sessions.
    pub fn list_agents(&self) -> Result<Vec<AgentView>, ControllerError> {
        self.query_agents("ORDER BY hostname, id", [])
    }

    /// One agent, or `None` if it is not enrolled; `online` as in [`Store::list_agents`].
    pub fn agent_view(&self, id: &AgentId) -> Result<Option<AgentView>, ControllerError> {
        Ok(self.query_agents("WHERE id = ?1", [&id.0])?.pop())
    }

    /// The agents `SELECT`ed with `filter` (a `WHERE` and/or `ORDER BY`
    /// clause over the `agents` table), as [`Store::query_releases`] does for releases.
    fn query_agents(&self, filter: &str, params: impl rusqlite::Params) -> Result<Vec<AgentView>, ControllerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT id, hostname, os, arch, agent_version, enrolled_at, last_seen, packages, inventory
             FROM agents {filter}"
        ))?;
        /// The view without its JSON columns, which are decoded after.
        struct AgentRow {
            view: AgentView,
            packages: String,
            inventory: String,
        }
        let rows = stmt.query_map(params, |r| {
            Ok(AgentRow {
                view: AgentView {
                    id: AgentId(r.get(0)?),
                    hostname: r.get(1)?,
                    os: r.get(2)?,
                    arch: r.get(3)?,
                    agent_version: r.get(4)?,
                    online: false,
                    enrolled_at: from_ts(r.get(5)?),
                    last_seen: r.get::<_, Option<i64>>(6)?.map(from_ts),
                    packages: vec![],
                    inventory: None,
                },
                packages: r.get(7)?,
                inventory: r.get(8)?,
            })
        })?;
        rows.map(|row| {
            let AgentRow { mut view, packages, inventory } = row?;
            view.packages = serde_json::from_str::<Vec<InstalledPackage>>(&packages)
                .map_err(|e| corrupt("agent packages")(e.to_string()))?;
            if !inventory.is_empty() {
                view.inventory =
                    Some(serde_json::from_str(&inventory).map_err(|e| corrupt("agent inventory")(e.to_string()))?);
            }
            Ok(view)
        })
        .collect()
    }

    // ---- releases ----

    /// Adds a release from a verified targets role (`role` signed it) in
    /// transaction `tx`. Returns `false` if that name and version already
    /// exist (releases are immutable).
    pub fn insert_release_tx(
        tx: &rusqlite::Transaction<'_>,
        m: &ReleaseMetadata,
        role: &str,
        now: Timestamp,
    ) -> Result<bool, ControllerError> {
        let n = tx.execute(
            "INSERT INTO releases (name, version, sha256, size, installer, signed_by, published_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (name, version) DO NOTHING",
            params![
                m.name,
                m.version,
                m.sha256.to_hex(),
                i64::try_from(m.size).unwrap_or(i64::MAX),
                m.installer.to_string(),
                role,
                ts(now)
            ],
        )?;
        Ok(n == 1)
    }

    pub fn list_releases(&self) -> Result<Vec<ReleaseView>, ControllerError> {
        self.query_releases("ORDER BY name, published_at", params![])
    }

    pub fn release(&self, name: &str, version: &str) -> Result<Option<ReleaseView>, ControllerError> {
        Ok(self.query_releases("WHERE name = ?1 AND version = ?2", params![name, version])?.pop())
    }

    /// The releases `SELECT`ed with `filter` (a `WHERE` and/or `ORDER BY`
    /// clause over the `releases` table).
    fn query_releases(&self, filter: &str, args: impl rusqlite::Params) -> Result<Vec<ReleaseView>, ControllerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT {} FROM releases {filter}", ReleaseRow::COLUMNS))?;
        let rows = stmt.query_map(args, ReleaseRow::read)?;
        rows.map(|row| row?.into_view()).collect()
    }

    // ---- deployments and assignments ----

    pub fn list_deployments(&self) -> Result<Vec<DeploymentView>, ControllerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT d.id, d.name, d.version, d.created_at, COUNT(a.id) FROM deployments d
             LEFT JOIN assignments a ON a.deployment_id = d.id GROUP BY d.id, d.name, d.version, d.created_at ORDER BY d.id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(DeploymentView {
                id: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                name: r.get(1)?,
                version: r.get(2)?,
                created_at: from_ts(r.get(3)?),
                assignments: u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every unfinished assignment of `agent`, oldest first: what to (re)send
    /// when it connects. Assignments of pull rollouts come as offers.
    pub fn pending_deliveries(&self, agent: &AgentId) -> Result<Vec<Delivery>, ControllerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT a.id, a.name, a.version, d.created_at, ro.offer FROM assignments a
             JOIN releases r ON r.name = a.name AND r.version = a.version
             JOIN deployments d ON d.id = a.deployment_id
             LEFT JOIN rollouts ro ON ro.id = a.deployment_id
             WHERE a.agent_id = ?1 AND a.terminal = 0 AND (ro.offer IS NULL OR ro.phase <> 'aborted')
             ORDER BY a.id",
        )?;
        /// A delivery with its offer terms still encoded.
        struct PendingRow {
            id: AssignmentId,
            release: ReleaseRef,
            issued_at: Timestamp,
            offer: Option<String>,
        }
        let rows = stmt.query_map(params![agent.0], |r| {
            Ok(PendingRow {
                id: AssignmentId(u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0)),
                release: ReleaseRef { name: r.get(1)?, version: r.get(2)? },
                issued_at: from_ts(r.get(3)?),
                offer: r.get(4)?,
            })
        })?;
        rows.map(|row| {
            let PendingRow { id, release, issued_at, offer } = row?;
            let terms = offer.map(|t| OfferTerms::decode(&t)).transpose()?;
            Ok(Delivery::new(id, release, issued_at, terms.as_ref()))
        })
        .collect()
    }

    /// Unfinished offers `agent` holds whose rollout was aborted: the agent
    /// must drop them (`Cancel`), or users could still install them, and a
    /// deadline would still install them.
    pub fn withdrawn_offers(&self, agent: &AgentId) -> Result<Vec<AssignmentId>, ControllerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT a.id FROM assignments a JOIN rollouts ro ON ro.id = a.deployment_id
             WHERE a.agent_id = ?1 AND a.terminal = 0 AND ro.offer IS NOT NULL AND ro.phase = 'aborted'
             ORDER BY a.id",
        )?;
        let rows = stmt.query_map(params![agent.0], |r| r.get::<_, i64>(0))?;
        rows.map(|id| Ok(AssignmentId(u64::try_from(id?).unwrap_or(0)))).collect()
    }

    /// The push assignments among [`Store::pending_deliveries`].
    pub fn pending_assignments(&self, agent: &AgentId) -> Result<Vec<Assignment>, ControllerError> {
        Ok(self
            .pending_deliveries(agent)?
            .into_iter()
            .filter_map(|d| match d {
                Delivery::Assign(a) => Some(a),
                Delivery::Offer(_) => None,
            })
            .collect())
    }

    /// Whether `agent` has an assignment whose release has content `digest`.
    pub fn agent_may_fetch(
        &self,
        agent: &AgentId,
        digest: &flotte_protocol::Sha256Digest,
    ) -> Result<bool, ControllerError> {
        let found = self
            .conn()
            .query_row(
                "SELECT 1 FROM assignments a JOIN releases r ON r.name = a.name AND r.version = a.version
                 WHERE a.agent_id = ?1 AND r.sha256 = ?2 LIMIT 1",
                params![agent.0, digest.to_hex()],
                |_| Ok(()),
            )
            .optional()?;
        Ok(found.is_some())
    }

    /// Stores a report from `agent` and moves its assignment's state.
    pub fn record_report(
        &self,
        agent: &AgentId,
        report: &Report,
        now: Timestamp,
    ) -> Result<ReportOutcome, ControllerError> {
        let seq = i64::try_from(report.seq).unwrap_or(i64::MAX);
        let assignment = i64::try_from(report.assignment.0).unwrap_or(-1);
        let state = serde_json::to_string(&report.state).map_err(|e| ControllerError::Other(e.to_string()))?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let seen: i64 = tx.query_row(
            "SELECT 1 FROM reports WHERE agent_id = ?1 AND seq = ?2 UNION ALL SELECT 0 LIMIT 1",
            params![agent.0, seq],
            |r| r.get(0),
        )?;
        if seen == 1 {
            return Ok(ReportOutcome::Duplicate);
        }
        let owner: Option<String> = tx
            .query_row("SELECT agent_id FROM assignments WHERE id = ?1", params![assignment], |r| r.get(0))
            .optional()?;
        if owner.as_deref() != Some(agent.0.as_str()) {
            return Ok(ReportOutcome::Foreign);
        }
        tx.execute(
            "INSERT INTO reports (agent_id, seq, assignment_id, state, at, received_at, active_before, active_after)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![agent.0, seq, assignment, state, ts(report.at), ts(now), report.active_before, report.active_after],
        )?;
        // Reports arrive in sequence order per agent; the latest one wins.
        tx.execute(
            "UPDATE assignments SET state = ?2, terminal = ?3, updated_at = ?4, active_version = ?5
             WHERE id = ?1 AND terminal = 0",
            params![assignment, state, report.state.is_terminal(), ts(now), report.active_after],
        )?;
        tx.execute(
            "UPDATE agents SET last_report_seq = MAX(last_report_seq, ?2) WHERE id = ?1",
            params![agent.0, seq],
        )?;
        tx.commit()?;
        Ok(ReportOutcome::Stored)
    }

    pub fn list_assignments(&self) -> Result<Vec<AssignmentView>, ControllerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT a.id, a.deployment_id, a.agent_id, g.hostname, a.name, a.version, a.state, a.updated_at, a.active_version
             FROM assignments a JOIN agents g ON g.id = a.agent_id ORDER BY a.id",
        )?;
        /// The view without its JSON state, which is decoded after.
        struct AssignmentRow {
            view: AssignmentView,
            state: Option<String>,
        }
        let rows = stmt.query_map([], |r| {
            Ok(AssignmentRow {
                view: AssignmentView {
                    id: AssignmentId(u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0)),
                    deployment: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                    agent: AgentId(r.get(2)?),
                    hostname: r.get(3)?,
                    name: r.get(4)?,
                    version: r.get(5)?,
                    state: None,
                    updated_at: from_ts(r.get(7)?),
                    active_version: r.get(8)?,
                },
                state: r.get(6)?,
            })
        })?;
        rows.map(|row| {
            let AssignmentRow { mut view, state } = row?;
            view.state = parse_state(state.as_deref())?;
            Ok(view)
        })
        .collect()
    }

    pub fn reports_for(&self, agent: &AgentId) -> Result<Vec<ReportView>, ControllerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT seq, assignment_id, state, at, received_at, active_before, active_after FROM reports
             WHERE agent_id = ?1 ORDER BY seq",
        )?;
        /// A report with its JSON state still encoded.
        struct ReportRow {
            seq: u64,
            assignment: AssignmentId,
            state: String,
            at: Timestamp,
            received_at: Timestamp,
            active_before: Option<String>,
            active_after: Option<String>,
        }
        let rows = stmt.query_map(params![agent.0], |r| {
            Ok(ReportRow {
                seq: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                assignment: AssignmentId(u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0)),
                state: r.get(2)?,
                at: from_ts(r.get(3)?),
                received_at: from_ts(r.get(4)?),
                active_before: r.get(5)?,
                active_after: r.get(6)?,
            })
        })?;
        rows.map(|row| {
            let ReportRow { seq, assignment, state, at, received_at, active_before, active_after } = row?;
            Ok(ReportView {
                seq,
                assignment,
                state: parse_state(Some(&state))?
                    .ok_or_else(|| ControllerError::Corrupt("empty report state".into()))?,
                at,
                received_at,
                active_before,
                active_after,
            })
        })
        .collect()
    }
}

/// A `releases` row, as [`Store::list_releases`] and [`Store::release`]
/// read it.
struct ReleaseRow {
    name: String,
    version: String,
    sha256: String,
    size: i64,
    installer: String,
    signed_by: String,
    published_at: i64,
}

impl ReleaseRow {
    /// The columns [`ReleaseRow::read`] decodes, in its order.
    const COLUMNS: &str = "name, version, sha256, size, installer, signed_by, published_at";

    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<ReleaseRow> {
        Ok(ReleaseRow {
            name: r.get(0)?,
            version: r.get(1)?,
            sha256: r.get(2)?,
            size: r.get(3)?,
            installer: r.get(4)?,
            signed_by: r.get(5)?,
            published_at: r.get(6)?,
        })
    }

    fn into_view(self) -> Result<ReleaseView, ControllerError> {
        Ok(ReleaseView {
            name: self.name,
            version: self.version,
            sha256: self
                .sha256
                .parse()
                .map_err(|e: flotte_protocol::digest::ParseDigestError| corrupt("release sha256")(e.to_string()))?,
            size: u64::try_from(self.size).unwrap_or(0),
            installer: self.installer.parse::<InstallerKind>().map_err(corrupt("release installer"))?,
            signed_by: self.signed_by,
            published_at: from_ts(self.published_at),
        })
    }
}

fn parse_state(state: Option<&str>) -> Result<Option<InstallState>, ControllerError> {
    state.map(|s| serde_json::from_str(s).map_err(|e| corrupt("install state")(e.to_string()))).transpose()
}

/// Writes `inv` as agent `id`'s inventory; returns whether its hostname, os
/// or arch differ from what was stored (false for an unknown agent).
fn write_inventory(conn: &rusqlite::Connection, id: &AgentId, inv: &Inventory) -> Result<bool, ControllerError> {
    let facts_changed = conn
        .prepare_cached("SELECT hostname <> ?2 OR os <> ?3 OR arch <> ?4 FROM agents WHERE id = ?1")?
        .query_row(params![id.0, inv.hostname, inv.os, inv.arch], |r| r.get::<_, bool>(0))
        .optional()?
        .unwrap_or(false);
    let packages = serde_json::to_string(&inv.packages).unwrap_or_else(|_| "[]".into());
    let inventory = serde_json::to_string(inv).unwrap_or_default();
    conn.prepare_cached(
        "UPDATE agents SET hostname = ?2, os = ?3, os_version = ?4, kernel = ?5, arch = ?6, packages = ?7,
         inventory = ?8 WHERE id = ?1",
    )?
    .execute(params![id.0, inv.hostname, inv.os, inv.os_version, inv.kernel, inv.arch, packages, inventory])?;
    Ok(facts_changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{Rollout, RolloutPolicy};
    use flotte_protocol::Sha256Digest;
    use flotte_protocol::api::Target;

    const T0: Timestamp = Timestamp::from_unix_millis(1_000_000);

    fn agent(id: &str) -> AgentRecord {
        AgentRecord { id: AgentId(id.into()), hostname: format!("host-{id}") }
    }

    fn enrolled(store: &Store, id: &str) -> AgentId {
        let token = format!("tok-{id}");
        store.add_enrollment_token(&token, T0, T0.saturating_add(std::time::Duration::from_secs(60))).unwrap();
        assert_eq!(store.enroll(&token, &agent(id), &format!("fp-{id}"), T0).unwrap(), TokenUse::Accepted);
        AgentId(id.into())
    }

    fn published(store: &Store) {
        let release = ReleaseMetadata::new("app", "1.0", Sha256Digest::of(b"x"), 1, InstallerKind::Archive, T0);
        let mut conn = store.conn();
        let tx = conn.transaction().unwrap();
        assert!(Store::insert_release_tx(&tx, &release, "targets", T0).unwrap());
        assert!(!Store::insert_release_tx(&tx, &release, "targets", T0).unwrap(), "releases are immutable");
        tx.commit().unwrap();
    }

    fn report(seq: u64, assignment: AssignmentId, state: InstallState) -> Report {
        Report { seq, assignment, state, at: T0, active_before: None, active_after: Some("1.0".into()) }
    }

    #[test]
    fn an_enrollment_token_works_once_and_not_after_expiry() {
        let store = Store::open_in_memory().unwrap();
        enrolled(&store, "a");
        assert_eq!(store.enroll("tok-a", &agent("b"), "fp-b", T0).unwrap(), TokenUse::AlreadyUsed);
        assert_eq!(store.enroll("nope", &agent("b"), "fp-b", T0).unwrap(), TokenUse::Unknown);
        store.add_enrollment_token("old", T0, T0).unwrap();
        assert_eq!(store.enroll("old", &agent("b"), "fp-b", T0).unwrap(), TokenUse::Expired);
        assert!(store.agent_by_fingerprint("fp-b").unwrap().is_none(), "a refused enrollment registers nothing");
        assert_eq!(store.agent_by_fingerprint("fp-a").unwrap(), Some(agent("a")));
    }

    #[test]
    fn a_hello_says_whether_the_facts_rollouts_target_changed() {
        let store = Store::open_in_memory().unwrap();
        let id = enrolled(&store, "a");
        let hello = |os: &str, arch: &str, packages: usize| Hello {
            protocol_version: flotte_protocol::PROTOCOL_VERSION,
            min_protocol_version: flotte_protocol::MIN_PROTOCOL_VERSION,
            agent_version: "1.0".into(),
            inventory: Inventory {
                hostname: "host-a".into(),
                os: os.into(),
                arch: arch.into(),
                packages: (0..packages)
                    .map(|i| InstalledPackage { name: format!("p{i}"), version: "1".into() })
                    .collect(),
                ..Inventory::default()
            },
        };
        assert!(store.agent_connected(&id, &hello("linux", "x86_64", 0), T0).unwrap(), "first connection");
        assert!(!store.agent_connected(&id, &hello("linux", "x86_64", 0), T0).unwrap(), "a plain reconnection");
        assert!(!store.agent_connected(&id, &hello("linux", "x86_64", 3), T0).unwrap(), "packages are not targeted");
        assert!(store.agent_connected(&id, &hello("linux", "aarch64", 3), T0).unwrap(), "a new arch");
        assert!(store.update_inventory(&id, &hello("freebsd", "aarch64", 3).inventory).unwrap(), "a new os");
        assert!(!store.update_inventory(&AgentId("nobody".into()), &Inventory::default()).unwrap(), "unknown agent");
    }

    #[test]
    fn reports_are_stored_once_and_only_for_the_agents_own_assignments() {
        let store = Store::open_in_memory().unwrap();
        let (a, b) = (enrolled(&store, "a"), enrolled(&store, "b"));
        published(&store);
        let big_bang = |id| Rollout::new(id, RolloutPolicy::big_bang(), [a.clone()], T0);
        let (push, _) = store.create_rollout("app", "1.0", &Target::All, T0, big_bang).unwrap();
        assert!(!store.rollout_has_offers(push).unwrap(), "a plain push has no offers to withdraw");
        let pending = store.pending_assignments(&a).unwrap();
        assert_eq!(pending.len(), 1);
        let id = pending[0].id;
        assert_eq!(
            store.record_report(&b, &report(1, id, InstallState::Succeeded), T0).unwrap(),
            ReportOutcome::Foreign
        );
        assert_eq!(store.record_report(&a, &report(1, id, InstallState::Received), T0).unwrap(), ReportOutcome::Stored);
        assert_eq!(
            store.record_report(&a, &report(1, id, InstallState::Succeeded), T0).unwrap(),
            ReportOutcome::Duplicate
        );
        assert_eq!(store.list_assignments().unwrap()[0].state, Some(InstallState::Received));
        assert_eq!(
            store.record_report(&a, &report(2, id, InstallState::Succeeded), T0).unwrap(),
            ReportOutcome::Stored
        );
        assert!(store.pending_assignments(&a).unwrap().is_empty(), "a terminal assignment is no longer pending");
        assert_eq!(store.reports_for(&a).unwrap().len(), 2);
    }

    #[test]
    fn each_wave_hands_out_exactly_what_the_store_delivers_to_its_agents() {
        // The session sends a step's deliveries without asking the store:
        // they must be the store's own answer, offer terms and issue time
        // (the deployment's creation, not the wave's start) included.
        let store = Store::open_in_memory().unwrap();
        let fleet: Vec<AgentId> = ["a", "b", "c"].into_iter().map(|id| enrolled(&store, id)).collect();
        published(&store);
        let offer = OfferTerms {
            notes: Some("restart after lunch".into()),
            notice_secs: Some(900),
            deferrals: 2,
            defer_secs: 3600,
            ..OfferTerms::default()
        };
        let extras = crate::rollout::persist::Extras { offer: Some(offer), ..Default::default() };
        let waves = crate::rollout::spec::parse_waves("1,100%").unwrap();
        let policy = RolloutPolicy { waves, soak: std::time::Duration::ZERO, ..RolloutPolicy::big_bang() };
        let build = |id| Rollout::new(id, policy, fleet.clone(), T0);
        let (id, first) = store.create_rollout_with("app", "1.0", &Target::All, &extras, T0, build).unwrap();
        assert!(store.rollout_has_offers(id).unwrap());
        assert_eq!(first.deliveries.len(), 1, "the first wave is one agent");
        let (canary, delivery) = &first.deliveries[0];
        assert_eq!(store.pending_deliveries(canary).unwrap(), vec![delivery.clone()]);
        assert!(matches!(delivery, Delivery::Offer(o) if o.notes.as_deref() == Some("restart after lunch")));

        let later = T0.saturating_add(std::time::Duration::from_secs(60));
        store.record_report(canary, &report(1, delivery.id(), InstallState::Succeeded), later).unwrap();
        let second = store.step_rollout(id, later, |_| Ok::<(), std::convert::Infallible>(())).unwrap().unwrap();
        let mut reached: Vec<&AgentId> = second.deliveries.iter().map(|(agent, _)| agent).collect();
        reached.push(canary);
        reached.sort();
        assert_eq!(reached, fleet.iter().collect::<Vec<_>>(), "the second wave assigns everyone else, once");
        for (agent, delivery) in &second.deliveries {
            assert_eq!(store.pending_deliveries(agent).unwrap(), vec![delivery.clone()], "{agent}");
            assert!(matches!(delivery, Delivery::Offer(o) if o.issued_at == T0), "{delivery:?}");
        }
        let idle = store.step_rollout(id, later, |_| Ok::<(), std::convert::Infallible>(())).unwrap().unwrap();
        assert!(idle.deliveries.is_empty(), "a step that assigns nobody hands out nothing");
    }

    #[test]
    fn migrations_survive_reopening_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        enrolled(&Store::open(&path).unwrap(), "a");
        assert!(Store::open(&path).unwrap().agent_by_fingerprint("fp-a").unwrap().is_some());
    }
}
