//! Running a child process for a bounded time, and keeping the end of what
//! it printed.
//!
//! Used for script hooks, `dpkg` and command health checks. Guarantees of
//! `run`:
//! - the child starts with stdin on `/dev/null`, in a new process group of
//!   which it is the leader, with whatever environment and working directory
//!   the caller configured (`clean_command` gives the standard clean one);
//! - when `timeout` expires, the whole process group is killed with
//!   `SIGKILL` (children and grandchildren included), and the result says
//!   `timed_out`;
//! - when the child exits on its own, whatever it left running in its
//!   process group is killed too: nothing started by a hook outlives it
//!   unless it left the group (`setsid`), which is how daemons must be
//!   started anyway (through the init system);
//! - at most [`OUTPUT_TAIL_BYTES`] of combined stdout and stderr are kept
//!   (the last ones), plus up to the caller's limit of stdout alone, so a
//!   chatty child costs bounded memory;
//! - `run` returns at most [`OUTPUT_GRACE`] after the child is gone even if
//!   an escaped process still holds its output pipes open.

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tracing::warn;

/// How many bytes of combined stdout and stderr are kept for reports.
pub const OUTPUT_TAIL_BYTES: usize = 4096;

/// The `PATH` of every hook, health-check command and `dpkg` run.
pub const CLEAN_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// How long `run` keeps reading output after the child is gone.
pub const OUTPUT_GRACE: Duration = Duration::from_secs(5);

/// How often a spawn that fails with `ETXTBSY` is retried. The error is a
/// race with another thread of this process that had the file open for
/// writing while forking; it clears as soon as that fork has exec'd.
const SPAWN_ATTEMPTS: u32 = 10;

/// What a finished (or killed) child process left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookOutput {
    /// The exit code; `None` if the process was killed by a signal, which
    /// is always the case when `timed_out`.
    pub exit: Option<i32>,
    /// The last [`OUTPUT_TAIL_BYTES`] bytes of stdout and stderr
    /// interleaved in arrival order, as lossy UTF-8.
    pub tail: String,
    /// The timeout expired and the process group was killed.
    pub timed_out: bool,
    /// From spawn to exit.
    pub duration: Duration,
}

impl HookOutput {
    /// Exited by itself with status 0.
    pub fn succeeded(&self) -> bool {
        self.exit == Some(0) && !self.timed_out
    }
}

impl fmt::Display for HookOutput {
    /// "exited with status 1 after 0.02s", without the tail.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.duration.as_secs_f64();
        match (self.timed_out, self.exit) {
            (true, _) => write!(f, "timed out after {secs:.2}s and was killed"),
            (false, Some(code)) => write!(f, "exited with status {code} after {secs:.2}s"),
            (false, None) => write!(f, "was killed by a signal after {secs:.2}s"),
        }
    }
}

/// A command for `program` with an empty environment except
/// `PATH=`[`CLEAN_PATH`] and `LANG=C`. The caller adds arguments, extra
/// variables and the working directory.
pub(crate) fn clean_command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear().env("PATH", CLEAN_PATH).env("LANG", "C");
    cmd
}

/// A finished run.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) output: HookOutput,
    /// The first `stdout_limit` bytes of stdout alone (for tools whose
    /// answer is on stdout, like `dpkg-query`).
    pub(crate) stdout: Vec<u8>,
}

/// Runs `cmd` (see the module doc for the guarantees). `Err` only when the
/// process could not be started or waited for; a failing or killed process
/// is an `Ok` whose output says so.
///
/// stdout and stderr share one pipe, so the tail keeps their real order;
/// when `stdout_limit > 0`, stdout gets its own pipe instead (and its order
/// relative to stderr is only approximate).
pub(crate) fn run(cmd: &mut Command, timeout: Duration, stdout_limit: usize) -> io::Result<Finished> {
    let (combined, write_end) = pipe()?;
    let stdout = if stdout_limit > 0 { Stdio::piped() } else { Stdio::from(write_end.try_clone()?) };
    cmd.stdin(Stdio::null()).stdout(stdout).stderr(Stdio::from(write_end)).process_group(0);
    let started = Instant::now();
    let spawned = spawn(cmd);
    // The command holds our copies of the write end: drop them, or the
    // reader would never see end-of-file.
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = spawned?;
    // process_group(0) made the child the leader of a group with its pid.
    let pgid = i32::try_from(child.id()).unwrap_or(0);
    let tail = Arc::new(Mutex::new(Tail::default()));
    let (done_tx, done_rx) = mpsc::channel::<Vec<u8>>();
    let mut readers = 0;
    let pipes: [(Option<Box<dyn Read + Send>>, usize); 2] = [
        (Some(Box::new(combined)), 0),
        (child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>), stdout_limit),
    ];
    for (pipe, keep) in pipes {
        let Some(pipe) = pipe else { continue };
        let (tail, done_tx) = (Arc::clone(&tail), done_tx.clone());
        let spawned = thread::Builder::new().name("flotte-output".into()).spawn(move || {
            let _ = done_tx.send(drain(pipe, &tail, keep));
        });
        if let Err(e) = spawned {
            kill_and_reap(child, pgid);
            return Err(e);
        }
        readers += 1;
    }
    drop(done_tx);

    let (status, timed_out) = wait_with_timeout(child, pgid, timeout)?;
    let duration = started.elapsed();
    // Nothing the child started may outlive it (see the module doc).
    kill_process_group(pgid);

    let deadline = Instant::now() + OUTPUT_GRACE;
    let mut stdout = Vec::new();
    for _ in 0..readers {
        match done_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(kept) if !kept.is_empty() => stdout = kept,
            Ok(_) => {}
            Err(_) => {
                warn!("a process that left the hook's process group still holds its output open; not waiting");
                break;
            }
        }
    }
    let tail = tail.lock().map(|t| t.to_string_lossy()).unwrap_or_default();
    let exit = if timed_out { None } else { status.code() };
    if exit.is_none() && !timed_out {
        tracing::debug!(signal = ?status.signal(), "child killed by a signal");
    }
    Ok(Finished { output: HookOutput { exit, tail, timed_out, duration }, stdout })
}

/// A close-on-exec pipe: the read end as a file, and the write end.
#[allow(unsafe_code)]
fn pipe() -> io::Result<(File, OwnedFd)> {
    let mut fds: [libc::c_int; 2] = [-1; 2];
    // SAFETY: pipe2 writes two descriptors into the array, which we own and
    // which is exactly two ints long.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open, and nothing
    // else owns them: each is wrapped exactly once.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((File::from(read), write))
}

/// Spawns, retrying a few times on `ETXTBSY` (see [`SPAWN_ATTEMPTS`]).
fn spawn(cmd: &mut Command) -> io::Result<Child> {
    let mut attempt = 1;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < SPAWN_ATTEMPTS => {
                thread::sleep(Duration::from_millis(10 * u64::from(attempt)));
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Waits for the child on a helper thread; on timeout kills its process
/// group and then collects it.
fn wait_with_timeout(child: Child, pgid: i32, timeout: Duration) -> io::Result<(ExitStatus, bool)> {
    let (tx, rx) = mpsc::channel();
    let child = Arc::new(Mutex::new(Some(child)));
    let waiter_child = Arc::clone(&child);
    let spawned = thread::Builder::new().name("flotte-wait".into()).spawn(move || {
        let taken = waiter_child.lock().ok().and_then(|mut c| c.take());
        if let Some(mut c) = taken {
            let _ = tx.send(c.wait());
        }
    });
    if let Err(e) = spawned {
        if let Some(c) = child.lock().ok().and_then(|mut c| c.take()) {
            kill_and_reap(c, pgid);
        }
        return Err(e);
    }
    match rx.recv_timeout(timeout) {
        Ok(status) => Ok((status?, false)),
        Err(RecvTimeoutError::Timeout) => {
            kill_process_group(pgid);
            let status = rx.recv().map_err(|_| io::Error::other("the waiter thread vanished"))??;
            Ok((status, true))
        }
        Err(RecvTimeoutError::Disconnected) => Err(io::Error::other("the waiter thread vanished")),
    }
}

fn kill_and_reap(mut child: Child, pgid: i32) {
    kill_process_group(pgid);
    let _ = child.wait();
}

/// Sends `SIGKILL` to every process in group `pgid`.
///
/// Called after the leader may already have been reaped: the kernel does not
/// reuse a pid while a process group of that id still has members, so the
/// signal can only reach our child's group (or nobody, `ESRCH`).
#[allow(unsafe_code)]
fn kill_process_group(pgid: i32) {
    // 0 and 1 would mean "our own group" and "every process": never.
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    let rc = unsafe { libc::kill(-pgid, libc::SIGKILL) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            warn!(pgid, error = %e, "could not kill process group");
        }
    }
}

/// Reads `pipe` to the end into the shared tail; returns the first `keep`
/// bytes.
fn drain(mut pipe: impl Read, tail: &Mutex<Tail>, keep: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => return kept,
            Ok(n) => {
                let chunk = &buf[..n];
                if let Ok(mut t) = tail.lock() {
                    t.push(chunk);
                }
                let room = keep.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..room.min(n)]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return kept,
        }
    }
}

/// The last [`OUTPUT_TAIL_BYTES`] bytes written to it.
#[derive(Debug, Default)]
struct Tail {
    buf: Vec<u8>,
    /// Bytes dropped from the front.
    dropped: u64,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        if self.buf.len() > OUTPUT_TAIL_BYTES {
            let cut = self.buf.len() - OUTPUT_TAIL_BYTES;
            self.buf.drain(..cut);
            self.dropped += cut as u64;
        }
    }

    /// Lossy UTF-8, without a character cut in half at the front.
    fn to_string_lossy(&self) -> String {
        let mut start = 0;
        if self.dropped > 0 {
            while start < self.buf.len() && start < 3 && (self.buf[start] & 0xC0) == 0x80 {
                start += 1;
            }
        }
        String::from_utf8_lossy(&self.buf[start..]).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = clean_command("/bin/sh");
        cmd.arg("-c").arg(script);
        cmd
    }

    #[test]
    fn exit_code_and_interleaved_output_are_reported() {
        let done = run(&mut sh("echo out; echo err >&2; echo out again; exit 3"), Duration::from_secs(30), 0).unwrap();
        assert_eq!(done.output.exit, Some(3));
        assert!(!done.output.timed_out);
        assert!(!done.output.succeeded());
        assert_eq!(done.output.tail, "out\nerr\nout again\n", "one pipe keeps the real order");
        assert!(done.stdout.is_empty(), "stdout is only kept on request");
    }

    #[test]
    fn the_environment_is_clean_and_stdin_is_empty() {
        let done = run(&mut sh("env; cat; echo end"), Duration::from_secs(30), 64 * 1024).unwrap();
        assert!(done.output.succeeded());
        let mut vars: Vec<&str> = std::str::from_utf8(&done.stdout).unwrap().lines().collect();
        assert_eq!(vars.pop(), Some("end"), "cat read an empty stdin");
        vars.retain(|v| !v.starts_with("PWD="));
        vars.sort();
        assert_eq!(vars, vec!["LANG=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"]);
    }

    #[test]
    fn only_the_last_4_kib_of_output_are_kept() {
        // 10 000 'a' then a marker: the tail ends with the marker and is capped.
        let done = run(&mut sh("head -c 10000 /dev/zero | tr '\\0' a; echo MARK"), Duration::from_secs(30), 0).unwrap();
        assert_eq!(done.output.tail.len(), OUTPUT_TAIL_BYTES);
        assert!(done.output.tail.ends_with("aaaMARK\n"));
    }

    #[test]
    fn a_missing_program_is_an_error() {
        let err = run(&mut clean_command("/nonexistent/flotte-hook"), Duration::from_secs(1), 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_timeout_kills_the_process_and_is_reported() {
        let done = run(&mut sh("echo started; exec sleep 600"), Duration::from_millis(300), 0).unwrap();
        assert!(done.output.timed_out);
        assert_eq!(done.output.exit, None);
        assert_eq!(done.output.tail, "started\n");
        assert!(done.output.duration < Duration::from_secs(60));
        assert!(done.output.to_string().starts_with("timed out after"));
    }

    #[test]
    fn the_tail_never_starts_with_half_a_character() {
        let mut t = Tail::default();
        t.push("é".repeat(OUTPUT_TAIL_BYTES).as_bytes()); // 2 bytes each
        t.push(b"x"); // shifts by one: the front is now a continuation byte
        let s = t.to_string_lossy();
        assert!(!s.starts_with('\u{fffd}'));
        assert!(s.ends_with("éx"));
    }
}
