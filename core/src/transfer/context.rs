//! State shared by all workers of one transfer, in three parts: its fixed [`Settings`]
//! (options, the copier, roots, filter, the remote source's hooks, where progress goes),
//! its [`Tally`] (the counters and failures of the report), and the work [`Deferred`] to
//! the end of the run (deletes, directory metadata, hard links, a move's source
//! directories).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rustix::fd::OwnedFd;

use super::remote::{Fetch, Landing};
use crate::copy::Copier;
use crate::entry::{Entry, InodeId, Meta, Xattrs};
use crate::filter::Filter;
use crate::plan::DiffOptions;
use crate::report::{Change, Event, Failure, Observer, Report, Stats};
use crate::roots::Rename;
use crate::spec::{Compare, Mode, Options};
use crate::sync::lock;

/// What the run has done so far: the counters and failures that make its `Report`.
#[derive(Debug, Default)]
pub struct Tally {
    pub entries: AtomicU64,
    pub files_copied: AtomicU64,
    pub bytes_copied: AtomicU64,
    pub bytes_resumed: AtomicU64,
    pub files_skipped: AtomicU64,
    pub dirs_created: AtomicU64,
    pub links_created: AtomicU64,
    pub metadata_updated: AtomicU64,
    pub deleted: AtomicU64,
    pub sources_removed: AtomicU64,
    /// Entries already removed (or about to be) by type changes in a mirror, which count
    /// against `--max-delete` along with the end-of-run deletes.
    deletes_reserved: AtomicU64,
    failures: Mutex<Vec<Failure>>,
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// A destination entry to delete once all copies are done.
#[derive(Debug)]
pub struct PendingDelete {
    pub dir: PathBuf,
    pub entry: Entry,
}

/// A directory whose metadata is set at the very end (after everything inside it).
#[derive(Debug)]
pub struct PendingDir {
    pub rel: PathBuf,
    pub meta: Meta,
    /// The source directory's extended attributes when they came over the network.
    pub xattrs: Option<Xattrs>,
}

/// A hard link to create once the first member of its group has been written.
#[derive(Debug)]
pub struct PendingLink {
    pub rel: PathBuf,
    pub target: PathBuf,
    /// The source entry (a move removes it once linked).
    pub src: Entry,
}

/// What a run was asked to do, where, and whom it tells: fixed when it starts.
pub struct Settings<'a> {
    pub options: &'a Options,
    pub copier: Copier,
    /// Live counters for a progress display.
    pub stats: &'a Stats,
    observer: &'a dyn Observer,
    events: bool,
    /// Ownership is preserved (asked for, allowed by `options.privileges`, and running as
    /// root — not as a module's identity).
    pub owner: bool,
    pub umask: u32,
    /// `O_TMPFILE` works on the destination filesystem (assumed until a file finds
    /// otherwise).
    pub unnamed_ok: AtomicBool,
    /// The source root, when the source is on this machine.
    pub src_root: Option<OwnedFd>,
    /// Where file content comes from when the source is remote.
    pub fetch: Option<&'a dyn Fetch>,
    /// A remote source to tell which entries landed (a move removes them there).
    pub landing: Option<&'a dyn Landing>,
    /// `None` only in a dry run whose destination does not exist yet.
    pub dst_root: Option<OwnedFd>,
    /// The filter, anchored where rsync anchors it (see `Filter::with_base`).
    pub filter: Filter,
}

/// The work the visits defer to the end of the run (see `finish`), and what they must
/// remember until then.
#[derive(Debug, Default)]
pub struct Deferred {
    pub deletes: Mutex<Vec<PendingDelete>>,
    pub dirs: Mutex<Vec<PendingDir>>,
    /// First destination path of each hard-link group seen so far, and that path's
    /// destination inode when it was already up to date.
    pub link_groups: Mutex<HashMap<InodeId, (PathBuf, Option<InodeId>)>>,
    pub links: Mutex<Vec<PendingLink>>,
    /// Source directories visited (a move removes the emptied ones).
    pub src_dirs: Mutex<Vec<PathBuf>>,
}

/// Everything the workers of one run share: its fixed settings, what it has done so
/// far, and the work deferred to its end.
pub struct Ctx<'a> {
    pub settings: Settings<'a>,
    pub tally: Tally,
    pub deferred: Deferred,
}

impl<'a> Ctx<'a> {
    pub fn new(
        options: &'a Options,
        stats: &'a Stats,
        observer: &'a dyn Observer,
        filter: Filter,
        src_root: Option<OwnedFd>,
        dst_root: Option<OwnedFd>,
    ) -> Ctx<'a> {
        let settings = Settings {
            options,
            copier: Copier::new(options.reflink),
            stats,
            observer,
            events: observer.wants_events(),
            owner: options.preserve.owner && options.privileges.owner && crate::sys::is_root(),
            umask: crate::sys::meta::umask(),
            // Linking an O_TMPFILE needs root or /proc (see `file::link_unnamed`).
            unnamed_ok: AtomicBool::new(
                crate::sys::is_root() || std::path::Path::new("/proc/self/fd").is_dir(),
            ),
            src_root,
            fetch: None,
            landing: None,
            dst_root,
            filter,
        };
        Ctx {
            settings,
            tally: Tally::default(),
            deferred: Deferred::default(),
        }
    }

    /// The source root; an error when the source is on another machine.
    pub fn src_root(&self) -> std::io::Result<rustix::fd::BorrowedFd<'_>> {
        use rustix::fd::AsFd;
        self.settings
            .src_root
            .as_ref()
            .map(|fd| fd.as_fd())
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "the source is on another machine",
                )
            })
    }

    pub fn diff_options(&self) -> DiffOptions {
        DiffOptions {
            compare: self.settings.options.compare,
            modify_window_ns: self.settings.options.limits.modify_window_ns,
            delete: self.settings.options.mode == Mode::Mirror,
            owner: self.settings.owner,
        }
    }

    /// The extended-attribute namespaces this transfer carries (`-X`).
    pub fn xattr_scope(&self) -> crate::sys::xattr::Scope {
        self.settings.options.privileges.xattr_scope()
    }

    pub fn checksum(&self) -> bool {
        self.settings.options.compare == Compare::Checksum
    }

    pub fn dry_run(&self) -> bool {
        self.settings.options.dry_run
    }

    /// Reports a change to the observer (building the path only if someone listens).
    pub fn emit(&self, dir: &Path, name: &std::ffi::OsStr, change: Change) {
        if self.settings.events {
            let path = dir.join(name);
            self.settings.observer.event(Event {
                path: &path,
                change: &change,
            });
        }
    }

    /// Records a per-entry failure; the run goes on.
    pub fn fail(
        &self,
        dir: &Path,
        name: &std::ffi::OsStr,
        operation: &'static str,
        error: &std::io::Error,
    ) {
        let path = dir.join(name);
        let message = format!("{operation}: {error}");
        if self.settings.events {
            self.settings.observer.event(Event {
                path: &path,
                change: &Change::Fail {
                    message: message.clone(),
                },
            });
        }
        lock(&self.tally.failures).push(Failure {
            path,
            operation: operation.into(),
            message: error.to_string(),
        });
    }

    /// Records a failure reported from elsewhere (a remote source's walk).
    pub fn record_failure(
        &self,
        path: PathBuf,
        operation: std::borrow::Cow<'static, str>,
        message: String,
    ) {
        if self.settings.events {
            let change = Change::Fail {
                message: format!("{operation}: {message}"),
            };
            self.settings.observer.event(Event {
                path: &path,
                change: &change,
            });
        }
        lock(&self.tally.failures).push(Failure {
            path,
            operation,
            message,
        });
    }

    /// Reserves `n` deletes against `--max-delete`; false (and nothing reserved) if that
    /// would exceed it.
    pub fn reserve_deletes(&self, n: u64) -> bool {
        let Some(limit) = self.settings.options.limits.max_delete else {
            return true;
        };
        let before = self.tally.deletes_reserved.fetch_add(n, Ordering::Relaxed);
        if before + n > limit {
            self.tally.deletes_reserved.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        true
    }

    pub fn deletes_reserved(&self) -> u64 {
        self.tally.deletes_reserved.load(Ordering::Relaxed)
    }

    pub fn has_failures(&self) -> bool {
        !lock(&self.tally.failures).is_empty()
    }

    pub fn file_written(&self, bytes: u64, reused: u64) {
        bump(&self.tally.files_copied, 1);
        bump(&self.tally.bytes_copied, bytes);
        bump(&self.tally.bytes_resumed, reused);
        Stats::add(&self.settings.stats.files_done, 1);
        // A remote file's bytes are counted as they arrive (see `remote::Destination::received`).
        if self.settings.fetch.is_none() {
            Stats::add(&self.settings.stats.bytes_done, bytes + reused);
        }
    }

    pub fn file_planned(&self, bytes: u64) {
        Stats::add(&self.settings.stats.files_planned, 1);
        Stats::add(&self.settings.stats.bytes_planned, bytes);
    }

    pub fn count(&self, counter: fn(&Tally) -> &AtomicU64, n: u64) {
        bump(counter(&self.tally), n);
    }

    /// Turns the counters into the final report.
    pub fn into_report(self) -> Report {
        let t = &self.tally;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Report {
            mode: self.settings.options.mode,
            dry_run: self.settings.options.dry_run,
            entries: get(&t.entries),
            files_copied: get(&t.files_copied),
            bytes_copied: get(&t.bytes_copied),
            bytes_resumed: get(&t.bytes_resumed),
            files_skipped: get(&t.files_skipped),
            dirs_created: get(&t.dirs_created),
            links_created: get(&t.links_created),
            metadata_updated: get(&t.metadata_updated),
            deleted: get(&t.deleted),
            sources_removed: get(&t.sources_removed),
            failures: self
                .tally
                .failures
                .into_inner()
                .unwrap_or_else(|p| p.into_inner()),
            deletes_skipped: None,
            elapsed: Default::default(),
            bytes_per_second: 0.0,
            data_plane: String::new(),
            streams: 0,
        }
    }
}

/// A name as it appears on the two sides (they differ only for a single renamed file).
#[derive(Debug, Clone, Copy)]
pub struct Names<'a> {
    pub src: &'a std::ffi::OsStr,
    pub dst: &'a std::ffi::OsStr,
}

/// An entry's names on both sides, given its destination name.
pub fn names<'e>(rename: Option<&'e Rename>, dst_name: &'e std::ffi::OsStr) -> Names<'e> {
    match rename {
        Some(r) if r.dst == dst_name => Names {
            src: &r.src,
            dst: dst_name,
        },
        _ => Names {
            src: dst_name,
            dst: dst_name,
        },
    }
}
