//! `verify`: the agent's verification throughput against `openssl dgst
//! -sha256` on the same file, in the same run, interleaved.
//!
//! The Flotte side is the agent's own code path for content that is on
//! disk: the release is looked up through TUF (`flotte_agent::tuf_client`:
//! root, timestamp, snapshot and targets verified from an in-memory
//! repository into a fresh `TufStore`, ed25519 `verify_strict`, then
//! `verified_release`), the file is hashed by `flotte_agent::download::hash_file`
//! (the 64 KiB-chunk `ContentHasher` loop a resumed download runs), and
//! digest and size are compared with the verified metadata by
//! `flotte_agent::job::content_mismatch`. Both sides read the file from the
//! page cache: one untimed pass of each warms it first.

use super::{Report, Stats, Table};
use anyhow::{Context, Result, bail, ensure};
use flotte_agent::tuf_client::{Client, Fetched, MetadataSource};
use flotte_agent::tuf_store::TufStore;
use flotte_protocol::tuf::release::{self, Platform, target_name, verified_release};
use flotte_protocol::tuf::repo::{self, Ed25519Signer, RoleSpec, RootSpec};
use flotte_protocol::{InstallerKind, ReleaseMetadata, Sha256Digest, Timestamp};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime};

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// Size of the file hashed.
    pub size: u64,
    /// Timed runs of each side.
    pub runs: usize,
    /// Where the file is written (deleted afterwards).
    pub dir: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Options { size: 1 << 30, runs: 5, dir: std::env::temp_dir() }
    }
}

/// Runs the scenario and returns its report.
pub fn run(o: &Options) -> Result<Report> {
    ensure!(o.runs > 0, "--runs must be at least 1");
    let dir = tempfile::Builder::new().prefix("flotte-bench-verify-").tempdir_in(&o.dir)?;
    let path = dir.path().join("content.bin");
    eprintln!("writing {} of pseudo-random bytes to {}…", human(o.size), path.display());
    let sha256 = write_noise(&path, o.size)?;
    let repository = Repository::new(&metadata(sha256, o.size))?;

    // Warm the page cache (and check both sides agree) before timing.
    flotte_verify(&repository, &path)?;
    openssl_sha256(&path, sha256)?;
    let (mut flotte, mut openssl) = (Vec::new(), Vec::new());
    for run in 0..o.runs {
        // Alternate who goes first, so neither always runs on a cooler cache.
        let order: [bool; 2] = if run % 2 == 0 { [true, false] } else { [false, true] };
        for is_flotte in order {
            if is_flotte {
                flotte.push(flotte_verify(&repository, &path)?);
            } else {
                openssl.push(openssl_sha256(&path, sha256)?);
            }
        }
        eprintln!("run {}: flotte {:.3} s, openssl {:.3} s", run + 1, flotte[run], openssl[run]);
    }
    let signature = signature_cost(&repository)?;
    Ok(report(o, &Stats::of(&flotte), &Stats::of(&openssl), signature))
}

fn metadata(sha256: Sha256Digest, size: u64) -> ReleaseMetadata {
    let now = Timestamp::from_system_time(SystemTime::now());
    ReleaseMetadata::new("bench", "1.0.0", sha256, size, InstallerKind::Archive, now)
}

/// A TUF repository (one ed25519 key for every role) whose targets list
/// the benchmark's release, held in memory as the controller would serve it.
struct Repository {
    files: BTreeMap<String, Vec<u8>>,
    name: String,
}

impl Repository {
    fn new(release: &ReleaseMetadata) -> Result<Self> {
        let key = Ed25519Signer::from_seed(&[7; 32]);
        let later =
            Timestamp::from_system_time(SystemTime::now()).saturating_add(std::time::Duration::from_secs(86_400));
        let role = RoleSpec { keys: &[key.public()], threshold: 1 };
        let root = repo::root(&RootSpec::one_role_for_all(1, later, role));
        let name = target_name(&release.name, &release.version);
        let mut entries = serde_json::Map::new();
        entries.insert(name.clone(), release::target_entry(release, &Platform::default()));
        let targets = repo::sign(&repo::targets(1, later, entries, &[]), &[&key])?;
        let snapshot = repo::sign(&repo::snapshot(1, later, &[("targets", 1)]), &[&key])?;
        let timestamp = repo::sign(&repo::timestamp(1, later, 1, Some(&snapshot)), &[&key])?;
        let files = BTreeMap::from([
            ("1.root.json".to_string(), repo::sign(&root, &[&key])?),
            ("targets.json".to_string(), targets),
            ("snapshot.json".to_string(), snapshot),
            ("timestamp.json".to_string(), timestamp),
        ]);
        Ok(Repository { files, name })
    }

    /// The agent's TUF update from a pinned root into a fresh store, then
    /// the lookup of the release: its verified metadata.
    fn verify(&self) -> Result<ReleaseMetadata> {
        let dir = tempfile::tempdir()?;
        let store = TufStore::open(dir.path())?;
        store.save(flotte_protocol::tuf::ROOT, &self.files["1.root.json"])?;
        let now = Timestamp::from_system_time(SystemTime::now());
        let mut client = Client { store: &store, source: self, offline_fallback: false };
        let mut set = client.refresh(now)?;
        let (file, role) = client.find_target(&mut set, &self.name, now)?;
        Ok(verified_release(&self.name, &file, &role, &Platform::this_host())?.metadata().clone())
    }
}

impl MetadataSource for &Repository {
    fn fetch(&mut self, file: &str, max: usize) -> Fetched {
        match self.files.get(file) {
            Some(bytes) if bytes.len() <= max => Fetched::Found(bytes.clone()),
            Some(_) => Fetched::Unavailable(format!("{file} is larger than {max} bytes")),
            None => Fetched::NotFound,
        }
    }
}

/// The agent's verification of content on disk; seconds taken.
fn flotte_verify(repository: &Repository, path: &Path) -> Result<f64> {
    let started = Instant::now();
    let verified = repository.verify()?;
    let (sha256, size) = flotte_agent::download::hash_file(path)?;
    if let Some(mismatch) = flotte_agent::job::content_mismatch(&verified, sha256, size) {
        bail!("the agent's verification failed: {mismatch}");
    }
    Ok(started.elapsed().as_secs_f64())
}

/// `openssl dgst -sha256 -r FILE`; seconds taken, checked against `expected`.
fn openssl_sha256(path: &Path, expected: Sha256Digest) -> Result<f64> {
    let started = Instant::now();
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-r"])
        .arg(path)
        .output()
        .context("cannot run openssl (apt-get install openssl)")?;
    let elapsed = started.elapsed().as_secs_f64();
    ensure!(out.status.success(), "openssl dgst failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text.split_whitespace().next().unwrap_or_default();
    ensure!(hex == expected.to_hex(), "openssl computed {hex}, Flotte {expected}");
    Ok(elapsed)
}

/// Median seconds of one whole TUF update and lookup (over 200).
fn signature_cost(repository: &Repository) -> Result<f64> {
    let mut times = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        repository.verify()?;
        times.push(started.elapsed().as_secs_f64());
    }
    Ok(Stats::of(&times).median)
}

/// Whether the CPU offers what sha2 0.10's SHA-NI backend needs; `sha2`
/// checks exactly these (through `cpufeatures`) at run time.
pub fn sha_ni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("sha")
            && std::arch::is_x86_feature_detected!("sse2")
            && std::arch::is_x86_feature_detected!("ssse3")
            && std::arch::is_x86_feature_detected!("sse4.1")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn report(o: &Options, flotte: &Stats, openssl: &Stats, signature: f64) -> Report {
    let gib = o.size as f64 / (1u64 << 30) as f64;
    let rate = |s: f64| format!("{:.2} GiB/s", gib / s.max(f64::EPSILON));
    let mut table = Table::new(&["", "time: median (min – max)", "throughput (median)"]);
    table.row(vec![
        "Flotte agent: TUF lookup + streaming sha256 + size/digest check".into(),
        flotte.show(|s| format!("{s:.3} s")),
        rate(flotte.median),
    ]);
    table.row(vec!["`openssl dgst -sha256`".into(), openssl.show(|s| format!("{s:.3} s")), rate(openssl.median)]);
    let ratio = openssl.median / flotte.median;
    let backend = if sha_ni() {
        "the CPU has SHA-NI (sha, sse2, ssse3, sse4.1 detected), so sha2 0.10 runs its SHA-NI backend \
         (chosen at run time through cpufeatures; features default/oid/std, no `asm`, no `force-soft`)"
    } else {
        "the CPU has no SHA-NI: sha2 0.10 runs its portable backend"
    };
    Report {
        notes: vec![
            format!("file: {} of pseudo-random bytes, page-cached; {} interleaved runs of each", human(o.size), o.runs),
            backend.to_string(),
            format!(
                "one TUF update and lookup (4 ed25519 `verify_strict` checks, fresh store): {:.1} µs (median of 200)",
                signature * 1e6
            ),
        ],
        tables: vec![table],
        summary: vec![format!(
            "**Flotte / openssl throughput: {ratio:.2}×** (goal ≥ 0.95×; min–max of the ratio of runs: {:.2}–{:.2})",
            openssl.min / flotte.max,
            openssl.max / flotte.min
        )],
    }
}

/// Writes `size` pseudo-random bytes to `path`; returns their digest.
fn write_noise(path: &Path, size: u64) -> Result<Sha256Digest> {
    let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut hasher = flotte_protocol::ContentHasher::new();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for chunk in block.chunks_mut(8) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            chunk.copy_from_slice(&rng.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(block.len() as u64) as usize;
        file.write_all(&block[..n])?;
        hasher.update(&block[..n]);
        left -= n as u64;
    }
    file.flush()?;
    Ok(hasher.finish().0)
}

/// `1.0 GiB`, `50 MiB`.
pub fn human(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.0} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}
