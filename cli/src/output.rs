//! What the CLI prints: per-entry lines (`-v`, dry runs), the closing summary, failures,
//! and the JSON report.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;

use blit_core::{Change, Event, Observer, Report};

/// Prints one line per event to stdout (or stderr when stdout carries JSON).
pub struct EventPrinter {
    dry_run: bool,
    verbose: bool,
    to_stderr: bool,
    lock: Mutex<()>,
}

impl EventPrinter {
    pub fn new(verbose: bool, dry_run: bool, to_stderr: bool) -> EventPrinter {
        EventPrinter {
            dry_run,
            verbose,
            to_stderr,
            lock: Mutex::new(()),
        }
    }
}

/// Paths are printed as bytes: a non-UTF-8 name shows as the bytes it is, and names with
/// control characters are escaped so one entry is always one line.
pub fn display_path(path: &Path) -> String {
    let mut out = String::new();
    for chunk in path.as_os_str().as_bytes().utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

impl Observer for EventPrinter {
    fn wants_events(&self) -> bool {
        self.verbose || self.dry_run
    }

    fn event(&self, event: Event<'_>) {
        let path = display_path(event.path);
        let would = if self.dry_run { "would " } else { "" };
        let line = match event.change {
            Change::Create { kind, bytes } if *bytes > 0 => format!(
                "{would}create {} {path} ({})",
                kind.label(),
                human_bytes(*bytes)
            ),
            Change::Create { kind, .. } => format!("{would}create {} {path}", kind.label()),
            Change::Update { bytes } => {
                format!("{would}update file {path} ({})", human_bytes(*bytes))
            }
            Change::Resume { bytes, reused } => {
                format!(
                    "{would}resume file {path} ({} written, {} kept)",
                    human_bytes(*bytes),
                    human_bytes(*reused)
                )
            }
            Change::Link { target } => format!("{would}link {path} => {}", display_path(target)),
            Change::Meta => format!("{would}set metadata {path}"),
            Change::Delete { kind } => format!("{would}delete {} {path}", kind.label()),
            Change::RemoveSource => format!("{would}remove source {path}"),
            Change::Fail { message } => format!("failed {path}: {message}"),
        };
        let _guard = self.lock.lock();
        if self.to_stderr || matches!(event.change, Change::Fail { .. }) {
            let _ = writeln!(std::io::stderr(), "{line}");
        } else {
            let _ = writeln!(std::io::stdout(), "{line}");
        }
    }
}

/// `1536` → `1.5 KiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The human summary, on stderr, after the run.
/// `source` and `destination` are the paths as given; failure paths are relative to the
/// transfer roots below them, so the closing line names both.
pub fn summary(report: &Report, source: &Path, destination: &Path) {
    let mut err = std::io::stderr().lock();
    let verb = if report.dry_run {
        "would copy"
    } else {
        "copied"
    };
    let _ = write!(
        err,
        "{verb} {} files ({}), {} up to date",
        report.files_copied,
        human_bytes(report.bytes_copied),
        report.files_skipped
    );
    if report.bytes_resumed > 0 {
        let _ = write!(err, ", {} resumed", human_bytes(report.bytes_resumed));
    }
    if report.dirs_created > 0 {
        let _ = write!(err, ", {} dirs created", report.dirs_created);
    }
    if report.links_created > 0 {
        let _ = write!(err, ", {} links", report.links_created);
    }
    if report.metadata_updated > 0 {
        let _ = write!(err, ", {} metadata updates", report.metadata_updated);
    }
    if report.deleted > 0 {
        let verb = if report.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        let _ = write!(err, ", {verb} {}", report.deleted);
    }
    if report.sources_removed > 0 {
        let _ = write!(err, ", {} sources removed", report.sources_removed);
    }
    match (report.data_plane.as_str(), report.streams) {
        ("", _) => {}
        ("grpc", _) => {
            let _ = write!(
                err,
                ", bytes carried in the gRPC stream (no data-plane connection)"
            );
        }
        (plane, n) => {
            let _ = write!(
                err,
                ", over {n} {plane} stream{}",
                if n == 1 { "" } else { "s" }
            );
        }
    }
    let secs = report.elapsed.as_secs_f64();
    let _ = writeln!(
        err,
        " in {secs:.2} s ({}/s)",
        human_bytes(report.bytes_per_second as u64)
    );
    for f in &report.failures {
        let _ = writeln!(
            err,
            "blit: error: {} {}: {}",
            f.operation,
            display_path(&f.path),
            f.message
        );
    }
    if let Some(why) = &report.deletes_skipped {
        let _ = writeln!(err, "blit: error: {why} (--max-delete)");
    }
    if !report.failures.is_empty() {
        let _ = writeln!(
            err,
            "blit: {} entries failed (paths above are relative to {} and {}); the rest was \
             transferred",
            report.failures.len(),
            display_path(source),
            display_path(destination)
        );
    }
}

/// The report as one JSON document on stdout.
pub fn json(report: &Report) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut out, report);
    let _ = writeln!(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_print_on_one_line_and_keep_their_bytes() {
        let p = Path::new(std::ffi::OsStr::from_bytes(b"a\nb\xff"));
        assert_eq!(display_path(p), "a\\nb\\xff");
    }

    #[test]
    fn bytes_are_humane() {
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
