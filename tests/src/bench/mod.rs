//! The scenarios of `flotte-bench` and what they share: repeated
//! measurements summarised as median / min / max, result tables rendered as
//! plain text or Markdown, the machine description, and writing a
//! scenario's section of `docs/BENCHMARKS.md`.
//!
//! Every figure a scenario prints is measured in that run, with its
//! baseline measured in the same invocation (interleaved where the
//! scenario repeats). Nothing here asserts a speed: the CI smoke tests
//! (`tests/tests/it/bench_smoke.rs`) only check that each scenario
//! completes and that its table is sane.

pub mod bare_quinn;
pub mod fanout;
pub mod nginx;
pub mod peers;
pub mod scale;
pub mod site;
pub mod ssh;
pub mod verify;

use anyhow::{Context, Result};
use std::path::Path;
use std::time::Duration;

/// Median, minimum and maximum of repeated measurements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

impl Stats {
    /// Summarises `values` (at least one). The median of an even count is
    /// the mean of the middle two.
    pub fn of(values: &[f64]) -> Stats {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n == 0 {
            return Stats { median: f64::NAN, min: f64::NAN, max: f64::NAN, runs: 0 };
        }
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        Stats { median, min: v[0], max: v[n - 1], runs: n }
    }

    /// The value at quantile `q` (0..=1) of `values`, nearest rank.
    pub fn quantile(values: &[f64], q: f64) -> f64 {
        let mut v: Vec<f64> = values.to_vec();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return f64::NAN;
        }
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    }

    /// `median (min – max)` with `unit`, each formatted by `f`.
    pub fn show(&self, f: impl Fn(f64) -> String) -> String {
        format!("{} ({} – {})", f(self.median), f(self.min), f(self.max))
    }
}

/// A result table: a header row and data rows of equal length.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Table { header: header.iter().map(|s| s.to_string()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// A Markdown table.
    pub fn markdown(&self) -> String {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let mut out = line(&self.header);
        out += &format!("|{}\n", "---|".repeat(self.header.len()));
        for r in &self.rows {
            out += &line(r);
        }
        out
    }

    /// Aligned plain text.
    pub fn plain(&self) -> String {
        let cols = self.header.len();
        let width = |c: usize| {
            std::iter::once(&self.header).chain(&self.rows).map(|r| r.get(c).map_or(0, |s| s.chars().count())).max()
        };
        let widths: Vec<usize> = (0..cols).map(|c| width(c).unwrap_or(0)).collect();
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells.iter().zip(&widths).map(|(s, w)| format!("{s:<w$}")).collect();
            padded.join("  ").trim_end().to_string() + "\n"
        };
        let mut out = line(&self.header);
        for r in &self.rows {
            out += &line(r);
        }
        out
    }
}

/// One scenario's result: free text around one or more tables.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Lines printed before the tables (setup, what was detected).
    pub notes: Vec<String>,
    pub tables: Vec<Table>,
    /// Lines printed after the tables (ratios, goals).
    pub summary: Vec<String>,
}

impl Report {
    pub fn render(&self, markdown: bool) -> String {
        let mut out = String::new();
        for n in &self.notes {
            out += &format!("{}{n}\n", if markdown { "- " } else { "" });
        }
        for t in &self.tables {
            out += "\n";
            out += &if markdown { t.markdown() } else { t.plain() };
        }
        if !self.summary.is_empty() {
            out += "\n";
        }
        for s in &self.summary {
            out += &format!("{}{s}\n", if markdown { "- " } else { "" });
        }
        out
    }
}

/// One line describing the machine: CPU model and count, memory, kernel.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 =
        meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse().ok()).unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} × {model}, {:.0} GiB RAM, Linux {}", mem_kib as f64 / (1 << 20) as f64, kernel.trim())
}

/// Replaces the text between `<!-- bench:NAME -->` and
/// `<!-- /bench:NAME -->` in the Markdown file at `doc` with `body`, or
/// appends a new marked section at the end.
pub fn write_section(doc: &Path, name: &str, body: &str) -> Result<()> {
    let text = std::fs::read_to_string(doc).unwrap_or_default();
    let (open, close) = (format!("<!-- bench:{name} -->"), format!("<!-- /bench:{name} -->"));
    let section = format!("{open}\n{body}{close}");
    let new = match (text.find(&open), text.find(&close)) {
        (Some(a), Some(b)) if b > a => format!("{}{section}{}", &text[..a], &text[b + close.len()..]),
        _ => format!("{}\n{section}\n", text.trim_end()),
    };
    std::fs::write(doc, new).with_context(|| format!("cannot write {}", doc.display()))
}

/// `1.23 s`, `45.6 ms`.
pub fn secs(d: f64) -> String {
    if d < 1.0 { format!("{:.1} ms", d * 1000.0) } else { format!("{d:.2} s") }
}

/// Bytes per second as `MiB/s`.
pub fn mib_per_s(bytes: f64, seconds: f64) -> String {
    format!("{:.0} MiB/s", bytes / (1 << 20) as f64 / seconds.max(f64::EPSILON))
}

pub fn duration_secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_are_median_min_max() {
        let s = Stats::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max, s.runs), (2.0, 1.0, 3.0, 3));
        assert_eq!(Stats::of(&[1.0, 2.0, 3.0, 10.0]).median, 2.5);
        assert_eq!(Stats::quantile(&[5.0, 1.0, 3.0, 2.0, 4.0], 0.5), 3.0);
        assert_eq!(Stats::quantile(&[5.0, 1.0, 3.0, 2.0, 4.0], 0.99), 5.0);
    }

    #[test]
    fn sections_are_replaced_in_place_or_appended() {
        let dir = tempfile::tempdir().unwrap();
        let doc = dir.path().join("B.md");
        std::fs::write(&doc, "# B\n").unwrap();
        write_section(&doc, "x", "one\n").unwrap();
        write_section(&doc, "x", "two\n").unwrap();
        write_section(&doc, "y", "why\n").unwrap();
        let text = std::fs::read_to_string(&doc).unwrap();
        assert_eq!(text, "# B\n<!-- bench:x -->\ntwo\n<!-- /bench:x -->\n<!-- bench:y -->\nwhy\n<!-- /bench:y -->\n");
    }

    #[test]
    fn tables_render_both_ways() {
        let mut t = Table::new(&["a", "bb"]);
        t.row(vec!["1".into(), "2".into()]);
        assert_eq!(t.markdown(), "| a | bb |\n|---|---|\n| 1 | 2 |\n");
        assert_eq!(t.plain(), "a  bb\n1  2\n");
    }
}
