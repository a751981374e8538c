//! Interoperability with python-tuf, the reference TUF implementation, over
//! real processes on loopback:
//!
//! - Repositories built by python-tuf (`tests/tuf/make_repo.py`, with
//!   `tuf.api.metadata`) are accepted by `flotte-tuf-client`, and the
//!   attacks built the same way are refused by it, each with its reason.
//! - Repositories written by Flotte's signer (`flotte_protocol::tuf::repo`),
//!   and the metadata a running controller serves after `flottectl trust
//!   init|rotate|delegate` and `package publish`, are accepted by
//!   python-tuf's `ngclient.Updater` (`tests/tuf/ngclient_download.py`).
//!
//! Repositories are served by a small HTTP server in this file, bound to
//! 127.0.0.1 on an ephemeral port; a test switches the served stage to play
//! the repository's next state (or an attacker's). Each client run is a new
//! process, so every second stage also checks state persisted across a
//! restart.
//!
//! python-tuf comes from the virtual environment `.ci/run` creates
//! (`target/tuf-venv`, or `FLOTTE_TUF_PYTHON`). If it is missing these tests
//! fail with a message naming that step; they never skip.

use anyhow::{Context as _, Result, bail};
use flotte_protocol::Timestamp;
use flotte_protocol::tuf::path::quote;
use flotte_protocol::tuf::repo::{self, DelegationSpec, Ed25519Signer, RoleSpec, RootSpec};
use serde_json::{Map, Value};
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

// ---- python-tuf and the client binary --------------------------------------

const CI_STEP: &str = "the python-tuf step of .ci/run: `python3 -m venv target/tuf-venv && \
     target/tuf-venv/bin/pip install tuf 'securesystemslib[crypto]'`";

/// The venv's python, checked once to import python-tuf.
fn python() -> &'static Path {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = PYTHON.get_or_init(|| {
        let exe = match std::env::var_os("FLOTTE_TUF_PYTHON") {
            Some(p) => PathBuf::from(p),
            None => workspace().join("target/tuf-venv/bin/python3"),
        };
        let check = Command::new(&exe)
            .args(["-c", "import tuf.ngclient, tuf.api.metadata, securesystemslib.signer, cryptography"])
            .output();
        match check {
            Ok(out) if out.status.success() => Ok(exe),
            Ok(out) => Err(format!(
                "{} cannot import python-tuf ({}); run {CI_STEP}",
                exe.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => Err(format!("python-tuf venv not found ({}: {e}); run {CI_STEP}", exe.display())),
        }
    });
    match found {
        Ok(p) => p,
        Err(msg) => panic!("{msg}"),
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the workspace").to_path_buf()
}

/// `flotte-tuf-client`, built by `cargo build --workspace` next to this test binary.
fn client_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let candidates: Vec<PathBuf> = exe.ancestors().skip(1).take(2).map(|d| d.join("flotte-tuf-client")).collect();
    candidates.iter().find(|p| p.is_file()).cloned().unwrap_or_else(|| {
        panic!("flotte-tuf-client not found in {candidates:?}; build it first with `cargo build --workspace`")
    })
}

// ---- a loopback HTTP server for repository stages ---------------------------

#[derive(Default)]
struct ServerState {
    /// The directory served (a stage: `metadata/` and `targets/`).
    root: PathBuf,
    /// A path that streams bytes forever instead of a file (endless data).
    endless: Option<String>,
    /// Bytes written on endless responses, for the bounded-transfer check.
    endless_sent: u64,
    /// A path whose file is sent one byte every [`DRIP_INTERVAL`] (slow retrieval).
    dripping: Option<String>,
    /// Every request path, in order.
    requests: Vec<String>,
}

/// HTTP/1.1 GET-only file server on 127.0.0.1:0; one thread per connection,
/// `Connection: close`. Stops when dropped.
struct RepoServer {
    addr: SocketAddr,
    state: Arc<Mutex<ServerState>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Safety bound of an endless response, far above every client limit.
const ENDLESS_BOUND: u64 = 256 << 20;
/// The pace of a dripping response: one byte per interval.
const DRIP_INTERVAL: Duration = Duration::from_millis(200);

impl RepoServer {
    fn start(root: PathBuf) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(ServerState { root, ..Default::default() }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let st = st.clone();
                    std::thread::spawn(move || {
                        let _ = serve(stream, &st);
                    });
                }
            }
        });
        Ok(RepoServer { addr, state, stop, thread: Some(thread) })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    fn serve_dir(&self, root: PathBuf) {
        self.state.lock().unwrap().root = root;
    }

    fn set_endless(&self, path: &str) {
        self.state.lock().unwrap().endless = Some(path.to_string());
    }

    fn set_dripping(&self, path: Option<&str>) {
        self.state.lock().unwrap().dripping = path.map(str::to_string);
    }

    fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }
}

impl Drop for RepoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut stream: TcpStream, state: &Mutex<ServerState>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 || head.len() > 16 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let path = text.split_whitespace().nth(1).unwrap_or("/").split('?').next().unwrap_or("/").to_string();
    let (root, endless, dripping) = {
        let mut s = state.lock().unwrap();
        s.requests.push(path.clone());
        (s.root.clone(), s.endless.clone(), s.dripping.clone())
    };
    if endless.as_deref() == Some(path.as_str()) {
        stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n")?;
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0u64;
        while sent < ENDLESS_BOUND && stream.write_all(&chunk).is_ok() {
            sent += chunk.len() as u64;
            state.lock().unwrap().endless_sent += chunk.len() as u64;
        }
        return Ok(());
    }
    let decoded = percent_decode(&path);
    let rel = decoded.trim_start_matches('/');
    let file = root.join(rel);
    let body = if rel.split('/').any(|s| s == "..") { None } else { std::fs::read(&file).ok() };
    match body {
        Some(body) => {
            write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())?;
            if dripping.as_deref() == Some(path.as_str()) {
                // Until the client hangs up (the write fails) or the body is out.
                for byte in body.chunks(1) {
                    stream.write_all(byte)?;
                    std::thread::sleep(DRIP_INTERVAL);
                }
                return Ok(());
            }
            stream.write_all(&body)
        }
        None => stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex =
            b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---- scenarios built by python-tuf, run by flotte-tuf-client ---------------

/// One python-tuf-built scenario: its files, the server, and the client's
/// directories.
struct Scenario {
    name: String,
    dir: tempfile::TempDir,
    server: RepoServer,
}

/// What one client run did.
struct Outcome {
    what: String,
    code: Option<i32>,
    stderr: String,
}

impl Outcome {
    #[track_caller]
    fn succeeds(&self) {
        assert_eq!(self.code, Some(0), "{} should succeed; stderr: {}", self.what, self.stderr);
    }

    /// Exit code 1, and the error names `reason`.
    #[track_caller]
    fn refused(&self, reason: &str) {
        assert_eq!(self.code, Some(1), "{} should be refused; stderr: {}", self.what, self.stderr);
        assert!(self.stderr.contains(reason), "{}: expected {reason:?} in the error, got: {}", self.what, self.stderr);
    }
}

impl Scenario {
    /// Builds `name` with make_repo.py, serves stage 1 and runs `init`.
    fn start(name: &str) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix(&format!("flotte-tuf-{name}-")).tempdir()?;
        let script = workspace().join("tests/tuf/make_repo.py");
        let out = Command::new(python()).arg(&script).arg(name).arg(dir.path().join("repo")).output()?;
        if !out.status.success() {
            bail!("make_repo.py {name} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let server = RepoServer::start(dir.path().join("repo/stage-1"))?;
        let s = Scenario { name: name.to_string(), dir, server };
        s.init().succeeds();
        Ok(s)
    }

    fn stage(&self, n: u32) {
        self.server.serve_dir(self.dir.path().join(format!("repo/stage-{n}")));
    }

    fn metadata_dir(&self) -> PathBuf {
        self.dir.path().join("client/metadata")
    }

    fn target_dir(&self) -> PathBuf {
        self.dir.path().join("client/targets")
    }

    fn run(&self, what: &str, args: &[&str]) -> Outcome {
        let started = Instant::now();
        let out = Command::new(client_bin())
            .arg("--metadata-dir")
            .arg(self.metadata_dir())
            .args(args)
            .output()
            .expect("run flotte-tuf-client");
        assert!(started.elapsed() < Duration::from_secs(60), "{what} took {:?}", started.elapsed());
        Outcome {
            what: format!("{} ({})", what, self.name),
            code: out.status.code(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn init(&self) -> Outcome {
        let root = self.dir.path().join("repo/root.json");
        self.run("init", &["init", root.to_str().unwrap()])
    }

    fn refresh(&self) -> Outcome {
        self.run("refresh", &["--metadata-url", &self.server.url("metadata"), "refresh"])
    }

    fn download(&self, names: &[&str]) -> Outcome {
        let (meta, targets, dir) =
            (self.server.url("metadata"), self.server.url("targets"), self.target_dir().display().to_string());
        let mut args = vec!["--metadata-url", &meta, "--target-base-url", &targets, "--target-dir", &dir];
        for n in names {
            args.extend(["--target-name", n]);
        }
        args.push("download");
        self.run(&format!("download {names:?}"), &args)
    }

    /// The downloaded file of target `name`, if any.
    fn downloaded(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(self.target_dir().join(quote(name, ""))).ok()
    }

    /// The bytes python-tuf put into the repository for target `name`.
    fn published(&self, stage: u32, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join(format!("repo/stage-{stage}/targets/{name}"))).unwrap()
    }

    /// The version of `role` the client trusts on disk.
    fn trusted_version(&self, role: &str) -> Option<u64> {
        let bytes = std::fs::read(self.metadata_dir().join(format!("{role}.json"))).ok()?;
        serde_json::from_slice::<Value>(&bytes).ok()?["signed"]["version"].as_u64()
    }
}

const HELLO: &str = "hello.txt";
const IN_DIR: &str = "dir/file.txt";

#[test]
fn python_tuf_repository_accepted() -> Result<()> {
    let s = Scenario::start("plain")?;
    s.refresh().succeeds();
    for role in ["root", "timestamp", "snapshot", "targets"] {
        assert_eq!(s.trusted_version(role), Some(1), "{role} persisted");
    }
    s.download(&[HELLO, IN_DIR]).succeeds();
    assert_eq!(s.downloaded(HELLO).unwrap(), s.published(1, HELLO));
    assert_eq!(s.downloaded(IN_DIR).unwrap(), s.published(1, IN_DIR));
    // A second run starts from the persisted state (same versions: nothing new).
    s.refresh().succeeds();
    Ok(())
}

#[test]
fn python_tuf_consistent_snapshot_repository_accepted() -> Result<()> {
    let s = Scenario::start("consistent")?;
    s.download(&[HELLO, IN_DIR]).succeeds();
    assert_eq!(s.downloaded(HELLO).unwrap(), b"hello from python-tuf\n");
    s.stage(2);
    s.download(&[HELLO]).succeeds();
    assert_eq!(s.downloaded(HELLO).unwrap(), b"hello again, version 2\n");
    assert_eq!(s.trusted_version("targets"), Some(2));
    let reqs = s.server.requests();
    assert!(reqs.contains(&"/metadata/2.snapshot.json".to_string()), "{reqs:?}");
    assert!(reqs.iter().any(|r| r.starts_with("/targets/") && r.ends_with(".hello.txt")), "{reqs:?}");
    Ok(())
}

#[test]
fn python_tuf_delegations_accepted_and_their_paths_enforced() -> Result<()> {
    let s = Scenario::start("delegation")?;
    s.download(&["team-x/app.tar", "bins/hashed.bin", HELLO]).succeeds();
    assert_eq!(s.downloaded("team-x/app.tar").unwrap(), b"team x app\n");
    assert_eq!(s.downloaded("bins/hashed.bin").unwrap(), b"\x00\x01binary\xff");
    assert_eq!(s.trusted_version("team-x"), Some(1), "delegated role persisted");
    // team-x lists other/evil.txt, but is trusted only for team-x/*.
    s.download(&["other/evil.txt"]).refused("not in the repository");
    assert!(s.downloaded("other/evil.txt").is_none());
    Ok(())
}

#[test]
fn python_tuf_ecdsa_keys_accepted() -> Result<()> {
    let s = Scenario::start("ecdsa")?;
    s.download(&[HELLO]).succeeds();
    assert_eq!(s.downloaded(HELLO).unwrap(), s.published(1, HELLO));
    Ok(())
}

#[test]
fn python_tuf_rsa_pss_and_pkcs1v15_keys_accepted() -> Result<()> {
    let s = Scenario::start("rsa")?;
    s.download(&[IN_DIR]).succeeds();
    assert_eq!(s.downloaded(IN_DIR).unwrap(), b"a file in a directory\n");
    Ok(())
}

#[test]
fn python_tuf_root_rotation_accepted() -> Result<()> {
    // 1-of-1 ed25519 → 2-of-3 (ed25519, ecdsa, rsa) → v3 signed by the new keys only.
    let s = Scenario::start("root-rotation")?;
    s.refresh().succeeds();
    assert_eq!(s.trusted_version("root"), Some(1));
    s.stage(2);
    s.refresh().succeeds();
    assert_eq!(s.trusted_version("root"), Some(3));
    Ok(())
}

#[test]
fn fast_forward_recovery() -> Result<()> {
    let s = Scenario::start("fast-forward")?;
    s.refresh().succeeds();
    assert_eq!(s.trusted_version("timestamp"), Some(1000));
    // Root v2 rotates the timestamp and snapshot keys; versions start over.
    s.stage(2);
    s.refresh().succeeds();
    assert_eq!(s.trusted_version("root"), Some(2));
    assert_eq!(s.trusted_version("timestamp"), Some(1));
    assert_eq!(s.trusted_version("snapshot"), Some(1));
    Ok(())
}

#[test]
fn freeze_expired_metadata_rejected() -> Result<()> {
    for role in ["root", "timestamp", "snapshot", "targets"] {
        let s = Scenario::start(&format!("expired-{role}"))?;
        s.refresh().refused(&format!("{role} v1 expired at"));
        if role != "root" {
            assert_ne!(s.trusted_version(role), Some(1), "expired {role} not persisted");
        }
    }
    Ok(())
}

#[test]
fn rollback_timestamp_rejected_after_restart() -> Result<()> {
    let s = Scenario::start("rollback-timestamp")?;
    s.refresh().succeeds();
    assert_eq!(s.trusted_version("timestamp"), Some(2));
    s.stage(2);
    s.refresh().refused("timestamp v1 is older than the trusted v2 (rollback)");
    assert_eq!(s.trusted_version("timestamp"), Some(2), "trusted state unchanged");
    Ok(())
}

#[test]
fn rollback_snapshot_rejected_after_restart() -> Result<()> {
    let s = Scenario::start("rollback-snapshot")?;
    s.refresh().succeeds();
    s.stage(2);
    s.refresh().refused("timestamp v3: snapshot.json v1 is older than the trusted v2 (rollback)");
    assert_eq!(s.trusted_version("snapshot"), Some(2));
    Ok(())
}

#[test]
fn rollback_targets_rejected_after_restart() -> Result<()> {
    let s = Scenario::start("rollback-targets")?;
    s.refresh().succeeds();
    s.stage(2);
    s.refresh().refused("snapshot v3: targets.json v1 is older than the trusted v2 (rollback)");
    assert_eq!(s.trusted_version("targets"), Some(2));
    Ok(())
}

#[test]
fn rollback_root_rejected() -> Result<()> {
    let s = Scenario::start("rollback-root")?;
    s.refresh().succeeds();
    assert_eq!(s.trusted_version("root"), Some(2));
    s.stage(2);
    s.refresh().refused("root v1 offered where v3 (trusted root + 1) was expected");
    assert_eq!(s.trusted_version("root"), Some(2));
    Ok(())
}

#[test]
fn mix_and_match_rejected() -> Result<()> {
    let s = Scenario::start("mix-and-match")?;
    s.refresh().succeeds();
    s.stage(2);
    s.refresh().refused("targets v1 does not match v2 listed by snapshot v2 (mix-and-match)");
    Ok(())
}

#[test]
fn target_substitution_rejected() -> Result<()> {
    for (scenario, reason) in
        [("wrong-target-hash", "sha256"), ("wrong-target-length", "does not match the signed length")]
    {
        let s = Scenario::start(scenario)?;
        s.download(&[HELLO]).refused(reason);
        let left: Vec<_> = std::fs::read_dir(s.target_dir())?.collect();
        assert!(left.is_empty(), "{scenario}: nothing is left in the target directory: {left:?}");
    }
    Ok(())
}

#[test]
fn threshold_not_met_rejected() -> Result<()> {
    let s = Scenario::start("threshold-not-met")?;
    s.refresh().refused("targets v1: 1 of the required 2 signatures");
    Ok(())
}

#[test]
fn threshold_counts_unique_keys() -> Result<()> {
    let s = Scenario::start("duplicate-signature")?;
    s.refresh().refused("two signatures by key id");
    Ok(())
}

#[test]
fn root_rotation_without_old_signatures_rejected() -> Result<()> {
    let s = Scenario::start("root-rotation-without-old-signatures")?;
    s.refresh().succeeds();
    s.stage(2);
    s.refresh().refused("root v2: 0 of the required 1 signatures");
    assert_eq!(s.trusted_version("root"), Some(1));
    Ok(())
}

#[test]
fn root_rotation_missing_new_threshold_rejected() -> Result<()> {
    let s = Scenario::start("root-rotation-missing-new-threshold")?;
    s.stage(2);
    s.refresh().refused("root v2: 1 of the required 2 signatures");
    assert_eq!(s.trusted_version("root"), Some(1));
    Ok(())
}

#[test]
fn endless_data_stops_at_the_cap() -> Result<()> {
    let s = Scenario::start("plain")?;
    s.server.set_endless("/metadata/timestamp.json");
    s.refresh().refused("more than the 16384-byte limit");

    let s = Scenario::start("plain")?;
    s.refresh().succeeds();
    s.server.set_endless(&format!("/targets/{HELLO}"));
    s.download(&[HELLO]).refused("does not match the signed length");
    assert!(s.downloaded(HELLO).is_none());
    // The server stopped soon after the client hung up: bounded transfer.
    let sent = s.server.state.lock().unwrap().endless_sent;
    assert!(sent < ENDLESS_BOUND / 4, "{sent} bytes sent before the client closed");
    Ok(())
}

#[test]
fn slow_retrieval_of_metadata_is_given_up_at_its_deadline() -> Result<()> {
    let dir = tempfile::Builder::new().prefix("flotte-tuf-slow-").tempdir()?;
    let repo_dir = dir.path().join("repo");
    write_flotte_repo(&repo_dir, false, false)?;
    let server = RepoServer::start(repo_dir.clone())?;
    let metadata_dir = dir.path().join("client/metadata");
    let client = |args: &[&str]| -> Result<std::process::Output> {
        let out = Command::new(client_bin()).arg("--metadata-dir").arg(&metadata_dir).args(args).output()?;
        Ok(out)
    };
    let init = client(&["init", repo_dir.join("root-v1.json").to_str().context("utf-8 path")?])?;
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let url = server.url("metadata");
    let refresh = || client(&["--metadata-url", &url, "--metadata-deadline", "2s", "refresh"]);

    // One byte every 200 ms: the timestamp (hundreds of bytes) would take minutes.
    server.set_dripping(Some("/metadata/timestamp.json"));
    let started = Instant::now();
    let slow = refresh()?;
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&slow.stderr);
    eprintln!("dripped timestamp given up after {took:?}: {stderr}");
    assert_eq!(slow.status.code(), Some(1), "{stderr}");
    let reason =
        "slow retrieval: timestamp metadata (timestamp.json) not received within its whole-file deadline of 2s";
    assert!(stderr.contains(reason), "{stderr}");
    assert!(took >= Duration::from_secs(2), "not before the deadline: {took:?}");
    assert!(!metadata_dir.join("timestamp.json").exists(), "nothing of it was trusted");

    server.set_dripping(None);
    let recovered = refresh()?;
    assert!(recovered.status.success(), "{}", String::from_utf8_lossy(&recovered.stderr));
    assert!(metadata_dir.join("timestamp.json").exists());
    Ok(())
}

#[test]
fn target_name_traversal_refused() -> Result<()> {
    let s = Scenario::start("plain")?;
    for name in ["../hello.txt", "%2e%2e/hello.txt", "/etc/passwd", "dir/../../x", "a\\..\\b"] {
        s.download(&[name]).refused("refused");
    }
    let reqs = s.server.requests();
    assert!(!reqs.iter().any(|r| r.starts_with("/targets")), "no target was requested: {reqs:?}");
    Ok(())
}

// ---- Flotte's signer, read by python-tuf's ngclient -------------------------

/// Writes a repository with Flotte's signer: roots v1 → v2 (the root key
/// rotated, 1-of-1 → 2-of-2), targets delegating `team-x/*`, and
/// consistent-snapshot file names when asked. `expired` makes the timestamp
/// expired.
fn write_flotte_repo(dir: &Path, consistent: bool, expired: bool) -> Result<()> {
    let now = Timestamp::from_system_time(SystemTime::now());
    let later = now.saturating_add(Duration::from_secs(7 * 86_400));
    let (root1, root2a, root2b) =
        (Ed25519Signer::from_seed(&[1; 32]), Ed25519Signer::from_seed(&[2; 32]), Ed25519Signer::from_seed(&[3; 32]));
    let (ts, snap, targets, team) = (
        Ed25519Signer::from_seed(&[4; 32]),
        Ed25519Signer::from_seed(&[5; 32]),
        Ed25519Signer::from_seed(&[6; 32]),
        Ed25519Signer::from_seed(&[7; 32]),
    );
    let root_spec = |version, root_keys: &[&repo::PublicKeyEntry], threshold| {
        repo::root(&RootSpec {
            version,
            expires: later,
            consistent_snapshot: consistent,
            root: RoleSpec { keys: root_keys, threshold },
            timestamp: RoleSpec { keys: &[ts.public()], threshold: 1 },
            snapshot: RoleSpec { keys: &[snap.public()], threshold: 1 },
            targets: RoleSpec { keys: &[targets.public()], threshold: 1 },
        })
    };
    let v1 = repo::sign(&root_spec(1, &[root1.public()], 1), &[&root1])?;
    let v2 = repo::sign(&root_spec(2, &[root2a.public(), root2b.public()], 2), &[&root1, &root2a, &root2b])?;

    let files: Vec<(&str, &[u8])> =
        vec![("hello.txt", b"hello from flotte\n"), ("dir/file.txt", b"nested\n"), ("team-x/app.tar", b"team x\n")];
    let entry = |name: &str| {
        let bytes = files.iter().find(|f| f.0 == name).unwrap().1;
        (name.to_string(), repo::target_entry(bytes, Some(serde_json::json!({"flotte": {"package": name}}))))
    };
    let top: Map<String, Value> = ["hello.txt", "dir/file.txt"].into_iter().map(entry).collect();
    let team_files: Map<String, Value> = ["team-x/app.tar"].into_iter().map(entry).collect();
    let delegation = DelegationSpec {
        name: "team-x",
        keys: RoleSpec { keys: &[team.public()], threshold: 1 },
        terminating: true,
        paths: &["team-x/*"],
    };
    let targets_md = repo::sign(&repo::targets(3, later, top, &[delegation]), &[&targets])?;
    let team_md = repo::sign(&repo::targets(1, later, team_files, &[]), &[&team])?;
    let snapshot_md = repo::sign(&repo::snapshot(4, later, &[("targets", 3), ("team-x", 1)]), &[&snap])?;
    let ts_expires = if expired { Timestamp::from_unix_millis(now.as_unix_millis() - 86_400_000) } else { later };
    let timestamp_md = repo::sign(&repo::timestamp(5, ts_expires, 4, Some(&snapshot_md)), &[&ts])?;

    let meta = dir.join("metadata");
    std::fs::create_dir_all(&meta)?;
    let versioned = |v: u64, role: &str| if consistent { format!("{v}.{role}.json") } else { format!("{role}.json") };
    for (name, bytes) in [
        ("1.root.json".to_string(), &v1),
        ("2.root.json".to_string(), &v2),
        ("root.json".to_string(), &v2),
        ("timestamp.json".to_string(), &timestamp_md),
        (versioned(4, "snapshot"), &snapshot_md),
        (versioned(3, "targets"), &targets_md),
        (versioned(1, "team-x"), &team_md),
    ] {
        std::fs::write(meta.join(name), bytes)?;
    }
    for (name, bytes) in &files {
        let path = match (consistent, name.rsplit_once('/')) {
            (true, Some((d, base))) => format!("{d}/{}.{base}", flotte_protocol::tuf::hashing::sha256_hex(bytes)),
            (true, None) => format!("{}.{name}", flotte_protocol::tuf::hashing::sha256_hex(bytes)),
            (false, _) => name.to_string(),
        };
        let path = dir.join("targets").join(path);
        std::fs::create_dir_all(path.parent().context("parent")?)?;
        std::fs::write(path, bytes)?;
    }
    std::fs::write(dir.join("root-v1.json"), &v1)?;
    Ok(())
}

/// Runs ngclient against a Flotte-written repository.
fn ngclient(consistent: bool, expired: bool) -> Result<(std::process::Output, tempfile::TempDir)> {
    let dir = tempfile::Builder::new().prefix("flotte-tuf-ngclient-").tempdir()?;
    let repo_dir = dir.path().join("repo");
    write_flotte_repo(&repo_dir, consistent, expired)?;
    let server = RepoServer::start(repo_dir.clone())?;
    let out = Command::new(python())
        .arg(workspace().join("tests/tuf/ngclient_download.py"))
        .arg(server.url("metadata"))
        .arg(repo_dir.join("root-v1.json"))
        .arg(dir.path().join("client/metadata"))
        .arg(server.url("targets"))
        .arg(dir.path().join("client/targets"))
        .args(["hello.txt", "dir/file.txt", "team-x/app.tar"])
        .output()?;
    Ok((out, dir))
}

#[test]
fn flotte_repository_accepted_by_python_tuf() -> Result<()> {
    for consistent in [false, true] {
        let (out, dir) = ngclient(consistent, false)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "consistent={consistent}: ngclient refused: {stderr}");
        let versions: Value = serde_json::from_slice(&out.stdout)?;
        assert_eq!(versions, serde_json::json!({"root": 2, "timestamp": 5, "snapshot": 4, "targets": 3}));
        let targets = dir.path().join("client/targets");
        assert_eq!(std::fs::read(targets.join("hello.txt"))?, b"hello from flotte\n");
        assert_eq!(std::fs::read(targets.join("dir%2Ffile.txt"))?, b"nested\n");
        assert_eq!(std::fs::read(targets.join("team-x%2Fapp.tar"))?, b"team x\n");
    }
    Ok(())
}

#[test]
fn flotte_expired_timestamp_rejected_by_python_tuf() -> Result<()> {
    let (out, _dir) = ngclient(false, true)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "ngclient must refuse: {stderr}");
    assert!(stderr.contains("ExpiredMetadataError"), "{stderr}");
    Ok(())
}

// ---- a real controller's metadata, read by python-tuf's ngclient -----------

#[test]
fn controller_metadata_accepted_by_python_tuf() -> Result<()> {
    use flotte_controller::ctl::{keys, package, sample, trust};
    use flotte_protocol::tuf::release::Platform;

    // A controller whose root and online keys were rotated once, with a
    // delegated team role, one release in each targets role, and a
    // rollback authorisation.
    let lab = flotte_tests::Lab::start()?;
    let targets_key = lab.trusted_key()?;
    let new_root = keys::generate(&lab.path("root-2.key"))?.0;
    let new_root_public = [new_root.public_key()];
    let rotation = trust::Rotation { new_online_keys: true, ..trust::Rotation::root_keys(&new_root_public, 1) };
    trust::rotate(&lab.client, rotation, &[lab.root_key()?, new_root])?;
    let team = lab.untrusted_key()?;
    trust::delegate(&lab.client, &targets_key, "team-x", &["team-x/*".into()], &[team.public_key()], 1)?;
    let hello = sample::build(lab.dir.path(), "hello", "1.0.0", 0)?;
    lab.publish_file(&targets_key, &hello, "hello", "1.0.0", &package::ReleaseSpec::default())?;
    lab.allow_rollback(&targets_key, "hello", "1.0.0", "2.0.0")?;
    let app = sample::build(lab.dir.path(), "team-x", "1.0", 0)?;
    let spec = package::ReleaseSpec::default();
    package::publish_as(&lab.client, &team, "team-x", &app, "team-x", "1.0", &spec, &Platform::default())?;

    // Its metadata, as the admin API serves it, and the package bytes under
    // their target names, on a plain HTTP server.
    let dir = tempfile::Builder::new().prefix("flotte-tuf-controller-").tempdir()?;
    let repo_dir = dir.path().join("repo");
    let meta = repo_dir.join("metadata");
    std::fs::create_dir_all(&meta)?;
    // The root asks for consistent snapshots: ngclient fetches snapshot
    // and targets roles by versioned name (`7.targets.json`), as the
    // controller serves them, and target files prefixed with their hash.
    let fetch = |file: &str| lab.client.tuf_metadata(file)?.with_context(|| format!("controller has no {file}"));
    for file in ["1.root.json", "2.root.json", "timestamp.json"] {
        std::fs::write(meta.join(file), fetch(file)?)?;
    }
    let timestamp: Value = serde_json::from_slice(&fetch("timestamp.json")?)?;
    let snapshot_file = format!("{}.snapshot.json", timestamp["signed"]["meta"]["snapshot.json"]["version"]);
    let snapshot = fetch(&snapshot_file)?;
    std::fs::write(meta.join(&snapshot_file), &snapshot)?;
    let snapshot: Value = serde_json::from_slice(&snapshot)?;
    for role in ["targets", "team-x"] {
        let file = format!("{}.{role}.json", snapshot["signed"]["meta"][format!("{role}.json")]["version"]);
        std::fs::write(meta.join(&file), fetch(&file)?)?;
    }
    for (dir, file, path) in [("hello", "1.0.0", &hello), ("team-x", "1.0", &app)] {
        let bytes = std::fs::read(path)?;
        let prefixed = format!("{}.{file}", flotte_protocol::Sha256Digest::of(&bytes).to_hex());
        let dest = repo_dir.join("targets").join(dir).join(prefixed);
        std::fs::create_dir_all(dest.parent().context("parent")?)?;
        std::fs::write(dest, bytes)?;
    }
    let server = RepoServer::start(repo_dir.clone())?;
    let out = Command::new(python())
        .arg(workspace().join("tests/tuf/ngclient_download.py"))
        .arg(server.url("metadata"))
        .arg(&lab.trust.root)
        .arg(dir.path().join("client/metadata"))
        .arg(server.url("targets"))
        .arg(dir.path().join("client/targets"))
        .args(["hello/1.0.0", "team-x/1.0"])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ngclient refused the controller's metadata: {stderr}");
    let versions: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(versions["root"], 2, "{versions}");
    assert_eq!(versions["targets"], 4, "init, delegate, publish, allow-rollback: {versions}");
    let targets = dir.path().join("client/targets");
    assert_eq!(std::fs::read(targets.join("hello%2F1.0.0"))?, std::fs::read(&hello)?);
    assert_eq!(std::fs::read(targets.join("team-x%2F1.0"))?, std::fs::read(&app)?);
    Ok(())
}
