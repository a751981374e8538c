//! What an idle process costs the machine, read from `/proc` (Linux).
//!
//! [`measure`] samples a process twice, a period apart, and reports its
//! resident memory (now and peak), CPU time extrapolated to an hour, and
//! wake-ups (context switches of all its threads) per second. The benchmark
//! binary `flotte-bench` uses it; later benchmarks reuse it for other
//! processes and fleets.
//!
//! Guarantees: reading never panics on odd `/proc` content (an unreadable
//! field is an error); threads that exit during the period take their
//! context switches with them, so wake-ups are a lower bound.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One reading of a process's counters.
#[derive(Debug, Clone)]
pub struct Sample {
    at: Instant,
    /// User + system CPU time of all threads, in clock ticks.
    cpu_ticks: u64,
    /// Voluntary + involuntary context switches summed over live threads.
    switches: u64,
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub anon_kib: u64,
    pub threads: u64,
}

/// The cost of a process over one measured period.
#[derive(Debug, Clone)]
pub struct Footprint {
    pub period: Duration,
    /// Resident set at the end of the period (VmRSS).
    pub rss_kib: u64,
    /// Peak resident set since the process started (VmHWM).
    pub hwm_kib: u64,
    /// The private part of the resident set (RssAnon: heap, stacks); the
    /// rest is file-backed (the binary's pages, shareable).
    pub anon_kib: u64,
    /// CPU time (user + system) over the period, scaled to one hour.
    pub cpu_seconds_per_hour: f64,
    /// Context switches per second over the period.
    pub wakeups_per_second: f64,
    pub threads: u64,
}

impl Sample {
    /// User + system CPU time of the process so far, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        self.cpu_ticks as f64 / clock_ticks_per_second() as f64
    }
}

/// Reads `/proc/<pid>` now.
pub fn sample(pid: u32) -> Result<Sample> {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let stat = std::fs::read_to_string(proc_dir.join("stat")).with_context(|| format!("process {pid} is gone"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let after = stat.rsplit_once(')').context("malformed /proc/PID/stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; `after` starts at field 3.
    let field = |n: usize| -> Result<u64> { Ok(fields.get(n - 3).context("short /proc/PID/stat")?.parse()?) };
    let cpu_ticks = field(14)? + field(15)?;
    let status = std::fs::read_to_string(proc_dir.join("status"))?;
    let mut switches = 0;
    for task in std::fs::read_dir(proc_dir.join("task"))? {
        let Ok(text) = std::fs::read_to_string(task?.path().join("status")) else { continue };
        switches += status_value(&text, "voluntary_ctxt_switches").unwrap_or(0);
        switches += status_value(&text, "nonvoluntary_ctxt_switches").unwrap_or(0);
    }
    Ok(Sample {
        at: Instant::now(),
        cpu_ticks,
        switches,
        rss_kib: status_value(&status, "VmRSS").context("no VmRSS")?,
        hwm_kib: status_value(&status, "VmHWM").context("no VmHWM")?,
        anon_kib: status_value(&status, "RssAnon").context("no RssAnon")?,
        threads: status_value(&status, "Threads").context("no Threads")?,
    })
}

/// Samples `pid`, waits `period`, samples again.
pub fn measure(pid: u32, period: Duration) -> Result<Footprint> {
    let start = sample(pid)?;
    std::thread::sleep(period);
    let end = sample(pid)?;
    Ok(between(&start, &end, clock_ticks_per_second()))
}

/// The footprint between two samples of one process.
pub fn between(start: &Sample, end: &Sample, ticks_per_second: u64) -> Footprint {
    let period = end.at.saturating_duration_since(start.at);
    let secs = period.as_secs_f64().max(f64::EPSILON);
    let cpu = end.cpu_ticks.saturating_sub(start.cpu_ticks) as f64 / ticks_per_second.max(1) as f64;
    Footprint {
        period,
        rss_kib: end.rss_kib,
        hwm_kib: end.hwm_kib,
        anon_kib: end.anon_kib,
        cpu_seconds_per_hour: cpu * 3600.0 / secs,
        wakeups_per_second: end.switches.saturating_sub(start.switches) as f64 / secs,
        threads: end.threads,
    }
}

/// The pid of the first process whose command line contains `needle`
/// (for processes started by code that does not hand out pids).
pub fn find_pid(needle: &Path) -> Result<u32> {
    let needle = needle.to_string_lossy();
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        if String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(needle.as_ref()) {
            return Ok(pid);
        }
    }
    anyhow::bail!("no process with {needle} in its command line")
}

/// `sysconf(_SC_CLK_TCK)`, the unit of `/proc/PID/stat` times.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf reads a constant; no memory is passed.
    #[allow(unsafe_code)]
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// The number in a `Key:   123 kB` line of `/proc/PID/status`.
fn status_value(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')?.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_parsed_by_key() {
        let text = "Name:\tx\nVmHWM:\t  5120 kB\nVmRSS:\t  4096 kB\nThreads:\t3\nvoluntary_ctxt_switches:\t7\n";
        assert_eq!(status_value(text, "VmRSS"), Some(4096));
        assert_eq!(status_value(text, "Threads"), Some(3));
        assert_eq!(status_value(text, "nonvoluntary_ctxt_switches"), None);
    }

    #[test]
    fn this_process_can_be_measured() {
        let f = measure(std::process::id(), Duration::from_millis(50)).unwrap();
        assert!(f.rss_kib > 0 && f.hwm_kib >= f.rss_kib && f.threads >= 1, "{f:?}");
    }
}
