//! `flottectl trust`: the offline half of the TUF repository. Root keys,
//! the targets key and delegated keys live with the admin (files outside
//! the controller's data directory); these functions build and sign root and
//! targets metadata with them and upload it. The controller only adds its
//! online snapshot and timestamp signatures.
//!
//! Guarantees:
//! - Nothing is uploaded that the admin's keys did not sign; the controller
//!   verifies every upload again before storing it.
//! - `init` writes every secret key it creates with mode 0600 and refuses to
//!   overwrite an existing key file.
//! - Target names are `NAME/VERSION`; a delegated role is trusted for the
//!   patterns it is given (`team-x/*`: every version of package `team-x`).

use crate::client::AdminClient;
use crate::ctl::{keys, output};
use anyhow::{Context, Result, bail, ensure};
use flotte_protocol::api::{TufRoleView, TufUploadView};
use flotte_protocol::tuf::release::{self, Platform, target_entry, target_name};
use flotte_protocol::tuf::repo::{self, Ed25519Signer, PublicKeyEntry, RoleSpec, RootSpec};
use flotte_protocol::tuf::{self, canonical};
use flotte_protocol::{PublicKey, ReleaseMetadata, SecretKey, Timestamp};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Default lifetime of root and targets metadata signed here.
pub const OFFLINE_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// A signer for a Flotte key file.
pub fn signer(key: &SecretKey) -> Ed25519Signer {
    Ed25519Signer::from_seed(&key.seed())
}

/// The root and targets entry of a public key.
pub fn entry(key: &PublicKey) -> PublicKeyEntry {
    PublicKeyEntry::ed25519(key.as_bytes())
}

fn sign(signed: &Value, signers: &[&Ed25519Signer]) -> Result<Vec<u8>> {
    repo::sign(signed, signers).map_err(|e| anyhow::anyhow!("cannot encode metadata: {e}"))
}

/// What `trust init` created.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Initialized {
    pub root_keys: Vec<PathBuf>,
    pub targets_key: PathBuf,
    /// The signed `root.json` to give agents at enrollment (`--root`).
    pub root: PathBuf,
    pub root_sha256: String,
}

/// `flottectl trust init`: creates `keys` root keys (threshold
/// `threshold`) and a targets key in `dir`, signs root v1 naming the
/// controller's online keys for timestamp and snapshot, signs an empty
/// targets v1, and uploads both.
pub fn init(client: &AdminClient, dir: &Path, keys_n: usize, threshold: u64) -> Result<Initialized> {
    ensure!(keys_n >= 1, "--root-keys must be at least 1");
    ensure!((1..=keys_n as u64).contains(&threshold), "--threshold must be between 1 and --root-keys ({keys_n})");
    if client.tuf_metadata("root.json")?.is_some() {
        bail!("the controller already has a TUF root; change it with `flottectl trust rotate`");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let online = client.tuf_online_keys()?;
    let mut root_keys = Vec::new();
    let mut root_paths = Vec::new();
    for i in 1..=keys_n {
        let path = dir.join(format!("root-{i}.key"));
        root_keys.push(keys::generate(&path)?.0);
        root_paths.push(path);
    }
    let targets_path = dir.join("targets.key");
    let (targets_key, _) = keys::generate(&targets_path)?;
    let root_entries: Vec<PublicKeyEntry> = root_keys.iter().map(|k| entry(&k.public_key())).collect();
    let root_bytes = build_root(
        1,
        &root_entries.iter().collect::<Vec<_>>(),
        threshold,
        &entry(&targets_key.public_key()),
        &online,
        &root_keys.iter().collect::<Vec<_>>(),
    )?;
    let root_file = dir.join("root.json");
    std::fs::write(&root_file, &root_bytes).with_context(|| format!("cannot write {}", root_file.display()))?;
    client.upload_root(&root_bytes)?;
    let targets = repo::targets(1, now().saturating_add(OFFLINE_LIFETIME), Map::new(), &[]);
    client.upload_role(tuf::TARGETS, &sign(&targets, &[&signer(&targets_key)])?)?;
    Ok(Initialized {
        root_keys: root_paths,
        targets_key: targets_path,
        root: root_file,
        root_sha256: tuf::hashing::sha256_hex(&root_bytes),
    })
}

fn build_root(
    version: u64,
    root_keys: &[&PublicKeyEntry],
    threshold: u64,
    targets: &PublicKeyEntry,
    online: &flotte_protocol::api::OnlineKeysView,
    sign_with: &[&SecretKey],
) -> Result<Vec<u8>> {
    let timestamp = entry(&online.timestamp);
    let snapshot = entry(&online.snapshot);
    let spec = RootSpec {
        version,
        expires: now().saturating_add(OFFLINE_LIFETIME),
        consistent_snapshot: true,
        root: RoleSpec { keys: root_keys, threshold },
        timestamp: RoleSpec { keys: &[&timestamp], threshold: 1 },
        snapshot: RoleSpec { keys: &[&snapshot], threshold: 1 },
        targets: RoleSpec { keys: &[targets], threshold: 1 },
    };
    let signers: Vec<Ed25519Signer> = sign_with.iter().map(|k| signer(k)).collect();
    sign(&repo::root(&spec), &signers.iter().collect::<Vec<_>>())
}

/// The `signed` object of a metadata file.
fn signed_of(role: &str, bytes: &[u8], max: usize) -> Result<Value> {
    let env = tuf::metadata::Envelope::parse(role, bytes, max)?;
    Ok(env.signed)
}

fn version_of(signed: &Value) -> u64 {
    signed.get("version").and_then(Value::as_u64).unwrap_or(0)
}

/// What the next root changes.
#[derive(Debug, Clone, Copy)]
pub struct Rotation<'a> {
    /// The new root's keys, with their threshold.
    pub root_keys: &'a [PublicKey],
    pub threshold: u64,
    /// A new targets key; the current one is kept if `None`.
    pub targets: Option<&'a PublicKey>,
    /// Replace the controller's online timestamp and snapshot keys too
    /// (after a theft of its data directory): the root names the next keys
    /// the controller prepares, and it adopts them once the root is stored.
    pub new_online_keys: bool,
}

impl<'a> Rotation<'a> {
    /// New root keys only.
    pub fn root_keys(root_keys: &'a [PublicKey], threshold: u64) -> Self {
        Rotation { root_keys, threshold, targets: None, new_online_keys: false }
    }
}

/// `flottectl trust rotate`: root v(N+1) as `rotation` says, signed by
/// every key in `sign_with`, which must include a threshold of the old
/// root's keys and of the new one's.
pub fn rotate(client: &AdminClient, rotation: Rotation<'_>, sign_with: &[SecretKey]) -> Result<TufUploadView> {
    let Rotation { root_keys, threshold, targets, new_online_keys } = rotation;
    ensure!(!root_keys.is_empty(), "name the new root's keys with --root-key");
    ensure!(
        (1..=root_keys.len() as u64).contains(&threshold),
        "--threshold must be between 1 and the number of root keys"
    );
    let current = client.tuf_metadata("root.json")?.context("the controller has no root: run `trust init` first")?;
    let signed = signed_of(tuf::ROOT, &current, tuf::MAX_ROOT_LEN)?;
    let targets_entry = match targets {
        Some(k) => entry(k),
        None => {
            let id = signed["roles"]["targets"]["keyids"][0].as_str().context("current root has no targets key")?;
            PublicKeyEntry { keyid: id.to_string(), json: signed["keys"][id].clone() }
        }
    };
    let online = if new_online_keys { client.tuf_next_online_keys()? } else { client.tuf_online_keys()? };
    let entries: Vec<PublicKeyEntry> = root_keys.iter().map(entry).collect();
    let bytes = build_root(
        version_of(&signed) + 1,
        &entries.iter().collect::<Vec<_>>(),
        threshold,
        &targets_entry,
        &online,
        &sign_with.iter().collect::<Vec<_>>(),
    )?;
    Ok(client.upload_root(&bytes)?)
}

/// The current `signed` object of targets role `role`, or a fresh one
/// (version 0) for a delegated role that was never published.
fn current_targets(client: &AdminClient, role: &str) -> Result<Value> {
    match client.tuf_metadata(&format!("{}.json", tuf::path::quote(role, "")))? {
        Some(bytes) => signed_of(role, &bytes, tuf::MAX_TARGETS_LEN),
        None if role != tuf::TARGETS => Ok(repo::targets(0, now(), Map::new(), &[])),
        None => bail!("the controller has no targets metadata: run `flottectl trust init` first"),
    }
}

/// Bumps the version and expiry of `signed`, signs it with `key` and uploads it.
fn resign_and_upload(client: &AdminClient, role: &str, mut signed: Value, key: &SecretKey) -> Result<TufUploadView> {
    let version = version_of(&signed) + 1;
    signed["version"] = json!(version);
    signed["expires"] = json!(tuf::expiry::format(now().saturating_add(OFFLINE_LIFETIME)));
    canonical::encode(&signed).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(client.upload_role(role, &sign(&signed, &[&signer(key)])?)?)
}

/// `flottectl trust delegate`: lets `keys` (threshold `threshold`) sign
/// targets matching `paths` as role `role`, by a new version of the
/// top-level targets signed with `targets_key`.
pub fn delegate(
    client: &AdminClient,
    targets_key: &SecretKey,
    role: &str,
    paths: &[String],
    keys: &[PublicKey],
    threshold: u64,
) -> Result<TufUploadView> {
    flotte_protocol::release::validate_name("role name", role)?;
    ensure!(![tuf::ROOT, tuf::TIMESTAMP, tuf::SNAPSHOT, tuf::TARGETS].contains(&role), "{role} is a top-level role");
    ensure!(!paths.is_empty(), "give the role at least one --path pattern, e.g. 'team-x/*'");
    ensure!(!keys.is_empty() && (1..=keys.len() as u64).contains(&threshold), "bad --key / --threshold");
    let mut signed = current_targets(client, tuf::TARGETS)?;
    let obj = signed.as_object_mut().context("targets is not an object")?;
    let delegations = obj.entry("delegations").or_insert_with(|| json!({"keys": {}, "roles": []}));
    let entries: Vec<PublicKeyEntry> = keys.iter().map(entry).collect();
    for e in &entries {
        delegations["keys"][&e.keyid] = e.json.clone();
    }
    let roles = delegations["roles"].as_array_mut().context("delegations.roles is not a list")?;
    roles.retain(|r| r["name"] != role);
    roles.push(json!({
        "name": role,
        "keyids": entries.iter().map(|e| e.keyid.clone()).collect::<Vec<_>>(),
        "threshold": threshold,
        "terminating": true,
        "paths": paths,
    }));
    resign_and_upload(client, tuf::TARGETS, signed, targets_key)
}

/// Adds `release` to targets role `role` (signed with `key`) and uploads
/// the new version; the controller adds the release to its catalogue.
pub fn publish_release(
    client: &AdminClient,
    key: &SecretKey,
    role: &str,
    release: &ReleaseMetadata,
    platform: &Platform,
) -> Result<TufUploadView> {
    let mut signed = current_targets(client, role)?;
    let name = target_name(&release.name, &release.version);
    let targets = signed["targets"].as_object_mut().context("targets.targets is not an object")?;
    if targets.contains_key(&name) {
        bail!("{} is already in {role}; releases are immutable, publish a new version", release.label());
    }
    targets.insert(name, target_entry(release, platform));
    resign_and_upload(client, role, signed, key)
}

/// `flottectl package allow-rollback`: signs, in targets role `role`, that
/// the published `name@version` may replace active versions up to and
/// including `up_to`. Agents refuse to install a release over a newer
/// version without it.
pub fn authorise_rollback(
    client: &AdminClient,
    key: &SecretKey,
    role: &str,
    name: &str,
    version: &str,
    up_to: &str,
) -> Result<TufUploadView> {
    let mut signed = current_targets(client, role)?;
    let target = target_name(name, version);
    let entry = signed["targets"].get_mut(&target).with_context(|| {
        format!("{role} does not list {name}@{version}; publish it first, or name the role that signs it with --role")
    })?;
    release::authorise_rollback(&target, entry, up_to)?;
    resign_and_upload(client, role, signed, key)
}

/// `flottectl trust resign`: the same entries of targets role `role`,
/// signed with `key` as the next version, valid for another year.
pub fn resign(client: &AdminClient, role: &str, key: &SecretKey) -> Result<TufUploadView> {
    ensure!(
        ![tuf::ROOT, tuf::TIMESTAMP, tuf::SNAPSHOT].contains(&role),
        "{role} is not a targets role: the controller re-signs snapshot and timestamp itself, and \
         `flottectl trust rotate` signs the next root"
    );
    let signed = current_targets(client, role)?;
    ensure!(version_of(&signed) > 0, "the controller has no {role} metadata to re-sign");
    resign_and_upload(client, role, signed, key)
}

/// `flottectl trust status` as a table: each role, its version and expiry,
/// then the warnings.
pub fn status_table(roles: &[TufRoleView], now: Timestamp) -> String {
    let rows: Vec<Vec<String>> = roles
        .iter()
        .map(|r| {
            vec![
                r.role.clone(),
                r.version.to_string(),
                r.expires.to_string(),
                output::duration(r.expires.saturating_since(now)),
                if r.online { "controller (online)" } else { "offline" }.to_string(),
            ]
        })
        .collect();
    let mut text = output::table(&["ROLE", "VERSION", "EXPIRES", "LEFT", "SIGNED BY"], &rows);
    for warning in roles.iter().filter_map(|r| r.warning.as_deref()) {
        text.push_str(&format!("warning: {warning}\n"));
    }
    text
}
