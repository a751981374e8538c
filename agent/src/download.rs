//! Fetching content into `downloads/<sha256>.part`, resuming what is there.
//!
//! Guarantees:
//! - Never more than the signed `size` is accepted: the request asks for
//!   `size - offset` bytes, a response announcing anything else is refused,
//!   and reads stop at exactly that many bytes, however much the controller
//!   sends.
//! - The digest covers the whole file: on resume the bytes already on disk
//!   are hashed again before new ones are appended. A part file longer than
//!   the signed size is deleted and the download starts over.
//! - The file is fsynced before [`Outcome::Done`] is returned.
//! - A slow stream is given up as [`Outcome::Interrupted`] with a message
//!   starting "slow retrieval": after [`READ_TIMEOUT`] without data, or once
//!   the last window averaged less than the [`MinRate`]
//!   (`download_min_rate`, checked by [`RateGuard`] from the request on,
//!   after a grace of one window). So neither a slow-loris controller nor
//!   anyone on the path who can only delay packets holds a job forever: the
//!   job retries later with its backoff and resumes from the part file.
//! - A file that is already complete is only hashed again: no connection is
//!   needed, so a job resumed after a crash can go on while offline.
//! - A local write that fails because of the host (disk full, I/O error) is
//!   [`Outcome::Failed`] with `transient: true`.
//! - With a bandwidth limit, reading pauses as [`Throttle`] says, so the
//!   controller is slowed by flow control rather than the agent buffering.

use crate::durable;
use crate::error::AgentError;
use crate::slow_retrieval::{MinRate, RateGuard};
use crate::throttle::{Rate, Throttle};
use crate::wire;
use flotte_protocol::ContentHasher;
use flotte_protocol::Sha256Digest;
use flotte_protocol::messages::{ContentRequest, ContentResponse, StreamRequest};
use quinn::{Connection, VarInt};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tokio::time::timeout_at;

pub use crate::slow_retrieval::READ_TIMEOUT;
/// Largest chunk read (and written) at once.
const CHUNK: usize = 64 * 1024;

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The whole file is on disk; digest and length of all of it.
    Done { sha256: Sha256Digest, size: u64 },
    /// Worth retrying later (link lost, stream stalled or ended early).
    Interrupted(String),
    /// This attempt cannot succeed (controller has no such content, refuses
    /// the range, or the local file cannot be written); `transient` says
    /// whether a later attempt might (the disk was full).
    Failed { message: String, transient: bool },
}

impl Outcome {
    fn failed(message: impl Into<String>) -> Self {
        Outcome::Failed { message: message.into(), transient: false }
    }

    fn local(error: AgentError) -> Self {
        Outcome::Failed { transient: error.is_transient(), message: error.to_string() }
    }
}

/// Fetches `size` bytes of `digest` into `path` over `connection`.
/// `on_start` is called with the resume offset just before bytes are
/// requested from the controller (not at all if the file is already
/// complete). Without a connection only a complete file can succeed.
/// `limit` caps the download's bandwidth; below `min` it is given up.
pub async fn fetch(
    connection: Option<&Connection>,
    path: PathBuf,
    digest: Sha256Digest,
    size: u64,
    limit: Option<Rate>,
    min: MinRate,
    on_start: impl FnOnce(u64),
) -> Outcome {
    let prepared = tokio::task::spawn_blocking({
        let path = path.clone();
        move || prepare(&path, size)
    })
    .await;
    let (mut file, mut hasher) = match prepared {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return Outcome::local(e),
        Err(e) => return Outcome::failed(format!("preparing {}: {e}", path.display())),
    };
    let offset = hasher.len();
    if offset < size {
        let Some(connection) = connection else {
            return Outcome::Interrupted("not connected to the controller".into());
        };
        on_start(offset);
        let target =
            Target { path: &path, file: &mut file, hasher: &mut hasher, throttle: limit.map(Throttle::new), min };
        if let Err(outcome) = receive(connection, digest, offset, size, target).await {
            return outcome;
        }
    }
    let synced = tokio::task::spawn_blocking(move || file.sync_all()).await;
    match synced {
        Ok(Ok(())) => {
            let (sha256, size) = hasher.finish();
            Outcome::Done { sha256, size }
        }
        Ok(Err(e)) => Outcome::local(AgentError::Io { op: "fsync", path, source: e }),
        Err(e) => Outcome::failed(format!("fsync {}: {e}", path.display())),
    }
}

/// Opens the part file for appending and hashes what it already holds.
fn prepare(path: &Path, size: u64) -> Result<(File, ContentHasher), AgentError> {
    if let Some(dir) = path.parent() {
        durable::create_dir(dir)?;
    }
    let open = || {
        OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(durable::PRIVATE)
            .open(path)
            .map_err(AgentError::io("open download", path))
    };
    let mut file = open()?;
    let len = file.metadata().map_err(AgentError::io("stat download", path))?.len();
    if len > size {
        tracing::warn!(path = %path.display(), len, size, "download is longer than the signed size; starting over");
        drop(file);
        durable::remove(path)?;
        file = open()?;
    }
    let hasher = hash_all(&mut file, path)?;
    if hasher.len() > size {
        // The file grew while it was read; nobody else writes it, so this is corruption.
        return Err(AgentError::Io {
            op: "read download",
            path: path.to_path_buf(),
            source: std::io::Error::other("file changed while it was hashed"),
        });
    }
    Ok((file, hasher))
}

/// Hashes everything `file` holds from its current position, in the
/// chunks a download uses; `path` names it in errors.
fn hash_all(file: &mut impl std::io::Read, path: &Path) -> Result<ContentHasher, AgentError> {
    let mut hasher = ContentHasher::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buf).map_err(AgentError::io("read download", path))?;
        if n == 0 {
            return Ok(hasher);
        }
        hasher.update(&buf[..n]);
    }
}

/// The digest and length of the file at `path`, hashed exactly as a
/// resumed download hashes the bytes already on disk. The caller compares
/// them with the verified metadata (`job::content_mismatch`).
pub fn hash_file(path: &Path) -> Result<(Sha256Digest, u64), AgentError> {
    let mut file = File::open(path).map_err(AgentError::io("open download", path))?;
    Ok(hash_all(&mut file, path)?.finish())
}

/// Fetches all `size` bytes of `digest` over `connection` into `sink`
/// (a download without a part file: nothing to resume), hashing them on the
/// way, with every check of [`fetch`] on sizes and slow retrieval. `label`
/// names the sink in errors. The fleet simulator uses it to discard verified
/// content.
pub async fn fetch_into(
    connection: &Connection,
    label: &Path,
    digest: Sha256Digest,
    size: u64,
    min: MinRate,
    sink: &mut impl Write,
) -> Outcome {
    let mut hasher = ContentHasher::new();
    let target = Target { path: label, file: sink, hasher: &mut hasher, throttle: None, min };
    match receive(connection, digest, 0, size, target).await {
        Ok(()) => {
            let (sha256, size) = hasher.finish();
            Outcome::Done { sha256, size }
        }
        Err(outcome) => outcome,
    }
}

/// Where received bytes go, and how fast they may and must come.
struct Target<'a, W: Write> {
    path: &'a Path,
    file: &'a mut W,
    hasher: &'a mut ContentHasher,
    throttle: Option<Throttle>,
    min: MinRate,
}

/// Requests `offset..size` and appends it to the target.
async fn receive(
    connection: &Connection,
    digest: Sha256Digest,
    offset: u64,
    size: u64,
    target: Target<'_, impl Write>,
) -> Result<(), Outcome> {
    let Target { path, file, hasher, mut throttle, min } = target;
    let interrupted = |what: &str, e: &dyn std::fmt::Display| Outcome::Interrupted(format!("{what}: {e}"));
    let mut guard = RateGuard::new(min, Instant::now());
    // Asked when a read timed out at the guard's deadline, which has passed.
    let too_slow = |guard: &RateGuard| {
        let at = Instant::now().max(guard.deadline());
        Outcome::Interrupted(guard.check(at).err().map_or_else(|| "slow retrieval".into(), |why| why.to_string()))
    };
    let (mut send, mut recv) = connection.open_bi().await.map_err(|e| interrupted("open content stream", &e))?;
    let request = StreamRequest::Content(ContentRequest { digest, offset, length: Some(size - offset) });
    wire::write_frame(&mut send, &request, "content").await.map_err(|e| interrupted("send request", &e))?;
    send.finish().map_err(|e| interrupted("finish request", &e))?;

    let response = timeout_at(guard.deadline().into(), wire::read_frame::<ContentResponse>(&mut recv, "content"))
        .await
        .map_err(|_| too_slow(&guard))?
        .map_err(|e| match e {
            AgentError::Frame(_) => Outcome::failed(e.to_string()),
            other => interrupted("read response", &other),
        })?;
    let expected = size - offset;
    match response {
        ContentResponse::Ok { total_size, offset: o, length }
            if total_size == size && o == offset && length == expected => {}
        ContentResponse::Ok { total_size, offset: o, length } => {
            return Err(Outcome::failed(format!(
                "content size mismatch: the controller offers {length} bytes at offset {o} of {total_size}; \
                 the signed release needs {expected} bytes at offset {offset} of {size}"
            )));
        }
        ContentResponse::NotFound => return Err(Outcome::failed(format!("controller has no content {digest}"))),
        ContentResponse::BadRange { total_size } => {
            return Err(Outcome::failed(format!(
                "controller refused offset {offset} of content {digest} ({total_size} bytes)"
            )));
        }
    }

    let mut remaining = expected;
    while remaining > 0 {
        let max = usize::try_from(remaining).unwrap_or(CHUNK).min(read_size(throttle.as_ref(), min));
        let chunk = timeout_at(guard.deadline().into(), recv.read_chunk(max, true))
            .await
            .map_err(|_| too_slow(&guard))?
            .map_err(|e| interrupted("read content", &e))?
            .ok_or_else(|| {
                Outcome::Interrupted(format!("content stream ended after {} of {expected} bytes", expected - remaining))
            })?;
        let bytes = &chunk.bytes;
        // Small page-cache writes; the fsync at the end runs off the runtime.
        file.write_all(bytes)
            .map_err(|e| Outcome::local(AgentError::Io { op: "write download", path: path.into(), source: e }))?;
        hasher.update(bytes);
        remaining -= bytes.len() as u64;
        let now = Instant::now();
        guard.record(bytes.len() as u64, now);
        // A drip of small chunks never lets the read time out: check here too.
        if remaining > 0
            && let Err(why) = guard.check(now)
        {
            return Err(Outcome::Interrupted(why.to_string()));
        }
        if let Some(throttle) = &mut throttle {
            let pause = throttle.pause_after(bytes.len() as u64, now);
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
    }
    // Whatever else the controller sends is not read.
    let _ = recv.stop(VarInt::from_u32(0));
    Ok(())
}

/// How much one read may take: [`CHUNK`], or less under a bandwidth limit
/// so that the throttle's pause after one read stays within a quarter of
/// the slow-retrieval window (a slow limit never looks like a stall).
fn read_size(throttle: Option<&Throttle>, min: MinRate) -> usize {
    let Some(throttle) = throttle else { return CHUNK };
    let quarter_window = throttle.rate().bytes_per_second() as f64 * min.window.as_secs_f64() / 4.0;
    (quarter_window as usize).clamp(1, CHUNK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preparing_resumes_from_the_bytes_on_disk_and_hashes_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("downloads/x.part");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"abc").unwrap();
        let (mut file, mut hasher) = prepare(&path, 6).unwrap();
        assert_eq!(hasher.len(), 3);
        file.write_all(b"def").unwrap();
        hasher.update(b"def");
        assert_eq!(hasher.finish().0, Sha256Digest::of(b"abcdef"));
        assert_eq!(std::fs::read(&path).unwrap(), b"abcdef");
    }

    #[test]
    fn a_throttled_read_never_costs_more_than_a_quarter_of_the_slow_retrieval_window() {
        let window = |secs| MinRate { rate: Rate::KIB_PER_SECOND, window: std::time::Duration::from_secs(secs) };
        let limit = |text| Throttle::new(Rate::parse(text).unwrap());
        assert_eq!(read_size(None, window(60)), CHUNK);
        assert_eq!(read_size(Some(&limit("10 MiB/s")), window(60)), CHUNK);
        // 1 KiB/s over 60 s: 15 KiB reads, a 15 s pause each, not 64 s.
        assert_eq!(read_size(Some(&limit("1 KiB/s")), window(60)), 15 * 1024);
        assert_eq!(read_size(Some(&limit("1 B/s")), window(1)), 1, "never zero");
    }

    /// The reader loop of [`receive`] in simulated time, on a link that
    /// always has data ready: a download throttled to exactly the minimum
    /// rate (the lowest limit the config accepts) is never given up.
    #[test]
    fn a_download_throttled_to_the_minimum_rate_is_never_given_up_as_slow() {
        for (limit, window) in [("1 KiB/s", 60), ("64 KiB/s", 2), ("1 MiB/s", 1)] {
            let rate = Rate::parse(limit).unwrap();
            let min = MinRate { rate, window: std::time::Duration::from_secs(window) };
            let start = Instant::now();
            let (mut now, mut throttle, mut guard) = (start, Throttle::new(rate), RateGuard::new(min, start));
            while now - start < min.window * 20 {
                let read = read_size(Some(&throttle), min) as u64;
                assert!(now < guard.deadline(), "{limit}: the read would time out at {:?}", now - start);
                guard.record(read, now);
                assert_eq!(guard.check(now), Ok(()), "{limit} at {:?}", now - start);
                now += throttle.pause_after(read, now);
            }
        }
    }

    #[test]
    fn a_part_file_longer_than_the_signed_size_is_started_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.part");
        std::fs::write(&path, b"too long for this release").unwrap();
        let (_file, hasher) = prepare(&path, 4).unwrap();
        assert_eq!(hasher.len(), 0);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }
}
