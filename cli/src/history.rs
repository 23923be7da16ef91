//! The local performance history behind `blit diagnostics perf`: one JSON line per run in
//! `$XDG_STATE_HOME/blit/perf.jsonl` (default `~/.local/state/blit/perf.jsonl`).

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use blit_core::Report;
use serde::{Deserialize, Serialize};

use crate::output::human_bytes;

/// One recorded run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// Seconds since the Unix epoch when the run ended.
    pub at: u64,
    pub mode: String,
    /// Workload shape: "small files", "mixed" or "large files", by mean file size.
    pub shape: String,
    pub entries: u64,
    pub files: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub workers: usize,
    pub failures: usize,
}

impl Record {
    pub fn from_report(report: &Report, workers: usize) -> Record {
        Record {
            at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            mode: format!("{:?}", report.mode).to_lowercase(),
            shape: shape(report.files_copied, report.bytes_copied).to_owned(),
            entries: report.entries,
            files: report.files_copied,
            bytes: report.bytes_copied,
            seconds: report.elapsed.as_secs_f64(),
            workers,
            failures: report.failures.len(),
        }
    }
}

fn shape(files: u64, bytes: u64) -> &'static str {
    match bytes.checked_div(files) {
        None => "no change",
        Some(mean) if mean < 64 * 1024 => "small files",
        Some(mean) if mean < 16 << 20 => "mixed",
        Some(_) => "large files",
    }
}

/// Where the history lives.
pub fn path() -> Option<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(state.join("blit").join("perf.jsonl"))
}

/// Appends a record; failures to write the history never fail a transfer.
pub fn record(rec: &Record) {
    let Some(path) = path() else { return };
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(&path)
        && let Ok(line) = serde_json::to_string(rec)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// Reads all records, skipping lines that do not parse.
pub fn load() -> Vec<Record> {
    let Some(path) = path() else {
        return Vec::new();
    };
    let Ok(f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect()
}

/// `blit diagnostics perf`: the last `limit` runs as a table (or raw JSON lines).
pub fn show(limit: usize, json: bool) {
    let records = load();
    let recent = &records[records.len().saturating_sub(limit)..];
    if json {
        for r in recent {
            println!("{}", serde_json::to_string(r).unwrap_or_default());
        }
        return;
    }
    match path() {
        Some(p) => println!("history: {}", p.display()),
        None => println!("history: unavailable (no HOME or XDG_STATE_HOME)"),
    }
    if recent.is_empty() {
        println!("no runs recorded yet");
        return;
    }
    println!(
        "{:>12} {:>7} {:>12} {:>10} {:>11} {:>9} {:>12} {:>10}",
        "when", "mode", "shape", "files", "bytes", "seconds", "throughput", "files/s"
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for r in recent {
        let rate = if r.seconds > 0.0 {
            r.bytes as f64 / r.seconds
        } else {
            0.0
        };
        let files_rate = if r.seconds > 0.0 {
            r.files as f64 / r.seconds
        } else {
            0.0
        };
        println!(
            "{:>12} {:>7} {:>12} {:>10} {:>11} {:>9.3} {:>10}/s {:>10.0}",
            ago(now.saturating_sub(r.at)),
            r.mode,
            r.shape,
            r.files,
            human_bytes(r.bytes),
            r.seconds,
            human_bytes(rate as u64),
            files_rate
        );
    }
}

fn ago(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s ago"),
        s if s < 7200 => format!("{}m ago", s / 60),
        s if s < 172_800 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_by_mean_size() {
        assert_eq!(shape(0, 0), "no change");
        assert_eq!(shape(100, 409_600), "small files");
        assert_eq!(shape(1, 4 << 30), "large files");
    }
}
