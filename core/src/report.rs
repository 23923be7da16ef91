//! What a transfer tells the outside world: live progress counters, per-entry events,
//! and the final `Report`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::entry::EntryKind;
use crate::spec::Mode;

/// Live counters, updated by workers and read by whoever draws progress.
#[derive(Debug, Default)]
pub struct Stats {
    /// Source entries examined so far.
    pub entries_seen: AtomicU64,
    /// Files (and bytes) the plan says must be written, as discovered so far.
    pub files_planned: AtomicU64,
    pub bytes_planned: AtomicU64,
    /// Files (and bytes) written so far.
    pub files_done: AtomicU64,
    pub bytes_done: AtomicU64,
}

/// A consistent-enough copy of `Stats` for display.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub entries_seen: u64,
    pub files_planned: u64,
    pub bytes_planned: u64,
    pub files_done: u64,
    pub bytes_done: u64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            entries_seen: self.entries_seen.load(Ordering::Relaxed),
            files_planned: self.files_planned.load(Ordering::Relaxed),
            bytes_planned: self.bytes_planned.load(Ordering::Relaxed),
            files_done: self.files_done.load(Ordering::Relaxed),
            bytes_done: self.bytes_done.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// What happened (or, in a dry run, would happen) to one destination path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new entry of this kind; `bytes` of content for files.
    Create { kind: EntryKind, bytes: u64 },
    /// An existing file rewritten.
    Update { bytes: u64 },
    /// A partial file completed; `reused` bytes were verified and kept.
    Resume { bytes: u64, reused: u64 },
    /// A hard link to another destination path.
    Link { target: PathBuf },
    /// Only metadata changed.
    Meta,
    /// Removed from the destination (mirror).
    Delete { kind: EntryKind },
    /// Removed from the source after its copy was confirmed (move).
    RemoveSource,
    /// Could not be transferred.
    Fail { message: String },
}

/// One per-entry event. `path` is relative to the destination root.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    pub path: &'a Path,
    pub change: &'a Change,
}

/// Receives per-entry events. Implementations must be cheap and thread-safe: workers call
/// them inline.
pub trait Observer: Sync {
    /// Whether `event` wants to be called at all (building paths costs allocations).
    fn wants_events(&self) -> bool {
        true
    }
    fn event(&self, event: Event<'_>);
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Quiet;

impl Observer for Quiet {
    fn wants_events(&self) -> bool {
        false
    }
    fn event(&self, _: Event<'_>) {}
}

/// A per-entry failure: the run went on without this entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Failure {
    /// Path relative to the transfer root (source and destination share it).
    #[serde(serialize_with = "lossy_path")]
    pub path: PathBuf,
    /// What was being done: "read", "copy", "delete", …
    pub operation: std::borrow::Cow<'static, str>,
    pub message: String,
}

/// The outcome of a transfer.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub mode: Mode,
    pub dry_run: bool,
    /// Source entries examined (after filters).
    pub entries: u64,
    /// Files whose content was written (or would be, in a dry run).
    pub files_copied: u64,
    pub bytes_copied: u64,
    /// Bytes of partial files verified and kept by `--resume`.
    pub bytes_resumed: u64,
    /// Files already up to date.
    pub files_skipped: u64,
    pub dirs_created: u64,
    /// Symlinks, special files and hard links created.
    pub links_created: u64,
    /// Entries whose metadata alone was fixed.
    pub metadata_updated: u64,
    /// Destination entries deleted: mirror deletes, and directories that a type change
    /// replaced (empty ones in copy and move), counting everything inside them.
    pub deleted: u64,
    /// Source files removed after a confirmed copy (move).
    pub sources_removed: u64,
    pub failures: Vec<Failure>,
    /// Set when mirror deletes were not carried out, with why.
    pub deletes_skipped: Option<String>,
    #[serde(serialize_with = "seconds")]
    pub elapsed: Duration,
    /// Bytes written per second of wall time.
    pub bytes_per_second: f64,
    /// How the bytes travelled when one end was remote: "tcp" (over `streams`
    /// data-plane connections) or "grpc" (inside the control stream). Empty for a local
    /// transfer.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub data_plane: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub streams: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Report {
    /// Whether some entries failed (the exit code says "partial").
    pub fn is_partial(&self) -> bool {
        !self.failures.is_empty() || self.deletes_skipped.is_some()
    }

    /// Records the wall time of the run and the throughput it implies.
    pub fn set_elapsed(&mut self, elapsed: Duration) {
        self.elapsed = elapsed;
        let secs = elapsed.as_secs_f64();
        self.bytes_per_second = if secs > 0.0 {
            self.bytes_copied as f64 / secs
        } else {
            0.0
        };
    }
}

fn lossy_path<S: serde::Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&path.to_string_lossy())
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}
