//! The destination side of a run whose source is on another machine: what the engine
//! offers a session's destination role, and all it offers.
//!
//! The role feeds a [`Destination`] the source's directory batches; each is visited
//! exactly as a local transfer visits a directory (list the destination, plan, apply).
//! Files to write are handed to the role's [`Fetch`] as a [`Target`]; when their bytes
//! arrive the role stages, publishes (or discards) and records them through the
//! `Destination` again, so a remote file takes the same staging path as a local one.
//! [`Destination::finish`] runs the same end-of-run steps and returns the report.

use std::borrow::Cow;
use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use rustix::fd::{AsFd, OwnedFd};

use super::context::{Ctx, Names};
use super::dir::{self, Batch, DstDir};
use super::entry_ops::{self, Place};
use super::{action, finish_run, policy};
use crate::entry::{Entry, Meta, sort_by_name};
use crate::filter::Filter;
use crate::report::{Observer, Report, Stats};
use crate::roots::Rename;
use crate::spec::{Mode, Options};
use crate::sys::dir as sysdir;
use crate::sys::temp;

pub use super::dir::{Descend, DirState};
pub use super::entry_ops::Staged;

/// Where file content comes from when the source is on another machine: a directory's
/// visit hands each file to write (a Copy or Resume action) to the role instead of
/// copying it on the spot, with the partial file it claimed for a Resume. The role writes
/// it later, as its bytes arrive ([`Destination::stage`], [`Destination::publish`]).
pub trait Fetch: Sync {
    /// Asks for `src`'s content, to be written at `file` (replacing `replaces`); `resume`
    /// is the partial file an earlier run left, claimed for this one. An error fails the
    /// file alone.
    fn fetch(
        &self,
        file: Target,
        src: &Entry,
        replaces: Option<&Entry>,
        resume: Option<temp::Owned>,
    ) -> io::Result<()>;
}

/// A move with a remote source: the destination reports each entry it holds, confirmed,
/// and the source removes it there (after checking it did not change).
pub trait Landing: Sync {
    /// `path` is relative to the source root; `hash` is the destination copy's BLAKE3
    /// when the comparison needs content; `dir` is the destination directory holding the
    /// copy, to be synced before the source is told.
    fn landed(&self, path: PathBuf, src: &Entry, hash: Option<[u8; 32]>, dir: &Arc<OwnedFd>);
}

/// Where a file fetched from the source is written: its destination directory, held
/// open, and its names on both sides.
pub struct Target {
    rel: PathBuf,
    dir: Arc<OwnedFd>,
    name: OsString,
    src_name: OsString,
    setgid: bool,
}

impl Target {
    /// The target of an action planned at `at`.
    pub(super) fn of(at: Place<'_>) -> Target {
        Target {
            rel: at.rel.to_owned(),
            dir: at.dst_dir.clone(),
            name: at.names.dst.to_owned(),
            src_name: at.names.src.to_owned(),
            setgid: at.dst_setgid,
        }
    }

    /// The file's path relative to the source root: what the source is asked for.
    pub fn source_path(&self) -> PathBuf {
        self.rel.join(&self.src_name)
    }

    /// Where the staging path writes it (the source is not on this machine, and a
    /// partial file to continue is handed over claimed, not by name).
    fn place(&self) -> Place<'_> {
        Place {
            rel: &self.rel,
            src: None,
            dst: self.dir.as_fd(),
            dst_dir: &self.dir,
            names: Names {
                src: &self.src_name,
                dst: &self.name,
            },
            part: None,
            dst_setgid: self.setgid,
        }
    }
}

/// The destination side of one run with a remote source: settings, counters and the
/// work deferred to the end, shared by the role's planners and receivers.
pub struct Destination<'a> {
    ctx: Ctx<'a>,
}

impl<'a> Destination<'a> {
    /// A destination writing beneath `root` (`None` only in a dry run whose destination
    /// does not exist yet), which asks `fetch` for file content and, in a move, tells
    /// `landing` what it holds. `filter` protects excluded destination entries.
    pub fn new(
        options: &'a Options,
        stats: &'a Stats,
        observer: &'a dyn Observer,
        filter: Filter,
        root: Option<OwnedFd>,
        fetch: &'a dyn Fetch,
        landing: &'a dyn Landing,
    ) -> Destination<'a> {
        let mut ctx = Ctx::new(options, stats, observer, filter, None, root);
        ctx.settings.fetch = Some(fetch);
        ctx.settings.landing = Some(landing);
        Destination { ctx }
    }

    /// The root directory's visit state. Until the source's root entry arrives
    /// ([`Destination::root_arrived`]) the root's own metadata is left alone.
    pub fn root_state(&self, rename: Option<Rename>) -> io::Result<DirState> {
        let dst = match &self.ctx.settings.dst_root {
            Some(fd) => {
                let meta = sysdir::stat_at_self(fd.as_fd())?.meta;
                DstDir::Existing(Arc::new(fd.try_clone()?), meta)
            }
            None => DstDir::Absent,
        };
        Ok(DirState {
            dst,
            src_meta: Meta::default(),
            src_xattrs: None,
            finalize: false,
            rename,
        })
    }

    /// The source root's own entry, for the root's visit `state`: the destination root
    /// gets its metadata (and xattrs) at the end, as far as this destination's privileges
    /// allow — unless the root is only a single file's directory, which keeps its own.
    pub fn root_arrived(&self, state: &mut DirState, mut root: Entry) {
        policy::sanitize(&self.ctx.settings.options.privileges, &mut root);
        state.src_meta = root.meta;
        state.src_xattrs = root.xattrs;
        state.finalize = state.rename.is_none();
    }

    /// Puts a directory's entries as they arrived into the form a visit takes: sorted by
    /// name, and trimmed to what this destination may create (`policy`), so a refused
    /// privilege is not a difference found again on every run.
    pub fn prepare_batch(&self, entries: &mut [Entry]) {
        sort_by_name(entries);
        let privileges = &self.ctx.settings.options.privileges;
        entries
            .iter_mut()
            .for_each(|e| policy::sanitize(privileges, e));
    }

    /// Visits one directory, as a local transfer does: lists its destination side, plans,
    /// queues subdirectories through `subdirs`, and carries the plan out (files to write go
    /// to the [`Fetch`]). `entries` come from [`Destination::prepare_batch`].
    pub fn visit(
        &self,
        rel: PathBuf,
        entries: Vec<Entry>,
        state: DirState,
        subdirs: &impl Descend,
    ) {
        let batch = Batch {
            rel,
            src: None,
            entries,
        };
        dir::visit(&self.ctx, batch, state, subdirs);
    }

    /// Records a failure the source reported (its walk could not read something).
    pub fn source_failed(&self, path: PathBuf, operation: Cow<'static, str>, message: String) {
        self.ctx.record_failure(path, operation, message);
    }

    /// Opens the file `file`'s bytes are written to: the claimed partial file when
    /// resuming, otherwise a new unnamed or temp file (see `entry_ops::stage`).
    pub fn stage(
        &self,
        file: &Target,
        src: &Entry,
        replacing: bool,
        resume: Option<temp::Owned>,
    ) -> io::Result<Staged> {
        entry_ops::stage(&self.ctx, file.place(), src, replacing, resume)
    }

    /// Finishes a staged file whose content is complete: its metadata, then its final
    /// name, replacing `replaces`.
    pub fn publish(
        &self,
        file: &Target,
        src: &Entry,
        staged: &Staged,
        replaces: Option<&Entry>,
    ) -> io::Result<()> {
        entry_ops::publish_file(&self.ctx, file.place(), src, staged, None, replaces)
    }

    /// Drops a staged file that failed (a large one's partial file stays for `--resume`).
    pub fn discard(&self, file: &Target, staged: &Staged, src: &Entry) {
        entry_ops::discard(file.place(), staged, src);
    }

    /// Records a published file in the report (`reused` bytes came from a partial file)
    /// and, in a move, confirms it to the source's [`Landing`].
    pub fn file_done(
        &self,
        file: &Target,
        src: &Entry,
        replaced: Option<&Entry>,
        bytes: u64,
        reused: u64,
    ) {
        let ctx = &self.ctx;
        action::file_done(ctx, &file.rel, &file.name, replaced, bytes, reused);
        if let (Mode::Move, Some(landing)) = (ctx.settings.options.mode, ctx.settings.landing) {
            action::land(ctx, landing, file.place(), src, true);
        }
    }

    /// Records that `file` could not be written; the run goes on.
    pub fn file_failed(&self, file: &Target, operation: &'static str, error: &io::Error) {
        self.ctx.fail(&file.rel, &file.name, operation, error);
    }

    /// Counts bytes written as they arrive, for progress (a remote file's bytes are not
    /// counted again when it is published).
    pub fn received(&self, bytes: u64) {
        Stats::add(&self.ctx.settings.stats.bytes_done, bytes);
    }

    /// The end-of-run steps (hard links, mirror deletes, directory metadata), then the
    /// report.
    pub fn finish(self) -> Report {
        finish_run(self.ctx, None)
    }
}
