//! `flotte-tuf-client`: a TUF client for interoperability testing, with the
//! command line of the "client-under-test" convention:
//!
//! ```text
//! flotte-tuf-client --metadata-dir DIR init ROOT_FILE
//! flotte-tuf-client --metadata-dir DIR --metadata-url URL refresh
//! flotte-tuf-client --metadata-dir DIR --metadata-url URL --target-name NAME \
//!     --target-base-url URL --target-dir DIR download      (--target-name repeats)
//! ```
//!
//! Exit code 0 on success, 1 on any failure (the error goes to stderr).
//!
//! It runs the same client workflow as the agent (`flotte_agent::tuf_client`
//! over `flotte_protocol::tuf`); this file is only the shell: plain HTTP
//! with a length cap on every download, and trusted metadata persisted in
//! `--metadata-dir` through `flotte_agent::tuf_store` (write-temp → fsync →
//! rename → fsync dir).
//!
//! Guarantees:
//! - The clock is read once per run and handed to the pure core.
//! - No metadata is persisted before it was verified; a target file appears
//!   in `--target-dir` (named as python-tuf names it: the target name
//!   percent-encoded into one file name) only after its length and every
//!   hash matched, and never holds unverified bytes.
//! - No download reads more than its limit: the signed length for targets
//!   and metadata whose length is listed, else the role's size limit.
//! - No metadata file takes longer than `--metadata-deadline` (default
//!   `flotte_agent::tuf_client::METADATA_DEADLINE`), request to last byte;
//!   the error names the role and the deadline (slow retrieval). A target
//!   file has [`TRANSFER_TIMEOUT`].
//! - Consistent snapshots are followed as python-tuf repositories write
//!   them: `N.root.json` always, `V.snapshot.json` / `V.<role>.json` and
//!   `HASH.<name>` targets when the root sets `consistent_snapshot`.

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use flotte_agent::durable;
use flotte_agent::tuf_client::{Client, Fetched, METADATA_DEADLINE, MetadataSource, deadline_passed};
use flotte_agent::tuf_store::TufStore;
use flotte_protocol::Timestamp;
use flotte_protocol::tuf::hashing::Checker;
use flotte_protocol::tuf::path::{quote, target_url_path};
use flotte_protocol::tuf::{self, TargetFile, TrustedMetadataSet};
use std::fs::{self, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

/// Connecting, and waiting for a response to start.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// One whole target transfer, request to last byte.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Parser, Debug)]
#[command(name = "flotte-tuf-client", about = "A TUF client (client-under-test command line)")]
struct Cli {
    /// Directory of the trusted metadata.
    #[arg(long, global = true)]
    metadata_dir: Option<PathBuf>,
    /// Base URL of the repository's metadata.
    #[arg(long, global = true)]
    metadata_url: Option<String>,
    /// Target to download (repeatable).
    #[arg(long = "target-name", global = true)]
    target_names: Vec<String>,
    /// Base URL of the repository's targets.
    #[arg(long, global = true)]
    target_base_url: Option<String>,
    /// Directory the downloaded targets are written to.
    #[arg(long, global = true)]
    target_dir: Option<PathBuf>,
    /// Longest one metadata file may take, request to last byte (e.g. 30s).
    #[arg(long, global = true, value_parser = humantime::parse_duration)]
    metadata_deadline: Option<Duration>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Trust ROOT_FILE as the initial root.
    Init { root_file: PathBuf },
    /// Update the top-level metadata.
    Refresh,
    /// Refresh, then download and verify every --target-name.
    Download,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not failures; usage errors are (exit 1, not clap's 2).
            return if e.use_stderr() { ExitCode::from(1) } else { ExitCode::SUCCESS };
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flotte-tuf-client: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let metadata_dir = cli.metadata_dir.context("--metadata-dir is required")?;
    let store = TufStore::open(&metadata_dir)?;
    if let Command::Init { root_file } = &cli.command {
        return init(&store, root_file);
    }
    let metadata_url = with_slash(cli.metadata_url.context("--metadata-url is required")?);
    let http = Http::new();
    let deadline = cli.metadata_deadline.unwrap_or(METADATA_DEADLINE);
    let source = HttpSource { http: &http, base: metadata_url, deadline };
    let mut client = Client { store: &store, source, offline_fallback: false };
    let now = Timestamp::from_system_time(SystemTime::now());
    let mut set = client.refresh(now)?;
    if let Command::Download = cli.command {
        let base = with_slash(cli.target_base_url.context("--target-base-url is required")?);
        let dir = cli.target_dir.context("--target-dir is required")?;
        if cli.target_names.is_empty() {
            bail!("--target-name is required");
        }
        fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        for name in &cli.target_names {
            let (file, _) = client.find_target(&mut set, name, now)?;
            let prefix = set.root().consistent_snapshot.then(|| file.prefix_hash()).flatten();
            let url = format!("{base}{}", target_url_path(name, prefix));
            http.download_target(&url, name, &file, &dir)?;
        }
    }
    Ok(())
}

fn init(store: &TufStore, root_file: &Path) -> Result<()> {
    let bytes = read_capped(root_file, tuf::MAX_ROOT_LEN)?;
    TrustedMetadataSet::new(&bytes).with_context(|| format!("{} is not a self-signed root", root_file.display()))?;
    store.save(tuf::ROOT, &bytes)?;
    Ok(())
}

/// Metadata over plain HTTP from `base` (ends with `/`), each file within
/// `deadline`.
struct HttpSource<'a> {
    http: &'a Http,
    base: String,
    deadline: Duration,
}

impl MetadataSource for HttpSource<'_> {
    fn fetch(&mut self, file: &str, max: usize) -> Fetched {
        let url = format!("{}{file}", self.base);
        match self.http.get(&url, max, true, Some(self.deadline)) {
            Ok(Some(bytes)) => Fetched::Found(bytes),
            Ok(None) => Fetched::NotFound,
            Err(e) if timed_out(&e) => Fetched::Unavailable(format!("{}: {e:#}", deadline_passed(file, self.deadline))),
            Err(e) => Fetched::Unavailable(format!("{e:#}")),
        }
    }
}

/// Whether `error` is one of ureq's timeouts (also wrapped in the body
/// reader's I/O error) or a socket timeout.
fn timed_out(error: &anyhow::Error) -> bool {
    let is_timeout = |e: &ureq::Error| matches!(e, ureq::Error::Timeout(_));
    error.chain().any(|cause| {
        cause.downcast_ref::<ureq::Error>().is_some_and(is_timeout)
            || cause.downcast_ref::<std::io::Error>().is_some_and(|io| {
                io.kind() == std::io::ErrorKind::TimedOut
                    || io.get_ref().and_then(|inner| inner.downcast_ref::<ureq::Error>()).is_some_and(is_timeout)
            })
    })
}

struct Http {
    agent: ureq::Agent,
}

impl Http {
    fn new() -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(RESPONSE_TIMEOUT))
            .timeout_recv_response(Some(RESPONSE_TIMEOUT))
            .timeout_global(Some(TRANSFER_TIMEOUT))
            .build()
            .new_agent();
        Http { agent }
    }

    /// Sends the request; `deadline` replaces [`TRANSFER_TIMEOUT`] for the
    /// whole transfer, body included.
    fn response(&self, url: &str, deadline: Option<Duration>) -> Result<ureq::http::Response<ureq::Body>> {
        let request = self.agent.get(url);
        let request = match deadline {
            Some(deadline) => request.config().timeout_global(Some(deadline)).build(),
            None => request,
        };
        request.call().with_context(|| format!("GET {url}"))
    }

    /// The body at `url` (at most `max` bytes, within `deadline`); `None` on
    /// 404 or 403 when `missing_ok` (the end of the root chain).
    fn get(&self, url: &str, max: usize, missing_ok: bool, deadline: Option<Duration>) -> Result<Option<Vec<u8>>> {
        let response = self.response(url, deadline)?;
        let status = response.status();
        if missing_ok && (status == 404 || status == 403) {
            return Ok(None);
        }
        if !status.is_success() {
            bail!("GET {url}: HTTP {status}");
        }
        let mut body = Vec::new();
        let cap = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
        response.into_body().into_reader().take(cap).read_to_end(&mut body).with_context(|| format!("GET {url}"))?;
        if body.len() > max {
            bail!("GET {url}: more than the {max}-byte limit (endless data?)");
        }
        Ok(Some(body))
    }

    /// Streams `url` into `dir` while checking it against `file`; the final
    /// name appears only once every check passed.
    fn download_target(&self, url: &str, name: &str, file: &TargetFile, dir: &Path) -> Result<()> {
        let mut checker = Checker::new(name, Some(file.length), &file.hashes)?;
        let response = self.response(url, None)?;
        if !response.status().is_success() {
            bail!("GET {url}: HTTP {}", response.status());
        }
        let local = quote(name, "");
        let dest = dir.join(&local);
        let tmp = dir.join(format!(".{local}.part-{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let written = (|| -> Result<()> {
            let mut out = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&tmp)
                .with_context(|| format!("create {}", tmp.display()))?;
            let mut reader = response.into_body().into_reader().take(file.length.saturating_add(1));
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = reader.read(&mut buf).with_context(|| format!("GET {url}"))?;
                if n == 0 {
                    break;
                }
                checker.update(&buf[..n])?;
                out.write_all(&buf[..n]).with_context(|| format!("write {}", tmp.display()))?;
            }
            checker.finish()?;
            out.sync_all().with_context(|| format!("fsync {}", tmp.display()))?;
            fs::rename(&tmp, &dest).with_context(|| format!("rename to {}", dest.display()))?;
            durable::fsync_dir(dir)?;
            Ok(())
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written.with_context(|| format!("target {name:?} refused"))
    }
}

fn with_slash(url: String) -> String {
    if url.ends_with('/') { url } else { format!("{url}/") }
}

fn read_capped(path: &Path, max: usize) -> Result<Vec<u8>> {
    let file = fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(max as u64 + 1).read_to_end(&mut bytes).with_context(|| format!("read {}", path.display()))?;
    if bytes.len() > max {
        bail!("{} is larger than {max} bytes", path.display());
    }
    Ok(bytes)
}
