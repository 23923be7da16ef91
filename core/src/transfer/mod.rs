//! Running a transfer on this machine: both roles in one process.
//!
//! `Transfer::run` resolves the roots, walks the source tree with a pool of workers
//! (`walk::Walk`; for each directory the destination side in `dir` lists its
//! counterpart and plans with `plan::diff`, and `action` carries each planned action out
//! through the filesystem operations in `entry_ops`), then runs the end-of-run steps in
//! `finish`, with the shared state of the run in `context`. Per-file failures land in the
//! report; only problems that make the whole request impossible are `Err`.
//!
//! A destination whose source is on another machine (a session's destination role) runs
//! the same visits and steps through [`remote`], the one door into them from outside.

mod action;
mod context;
mod dir;
mod entry_ops;
mod finish;
mod policy;
pub mod remote;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use rustix::fd::{AsFd, OwnedFd};

use self::context::Ctx;
use self::dir::{DirState, DstDir};
use crate::error::Error;
use crate::filter::Filter;
use crate::report::{Observer, Report, Stats};
use crate::roots::{self, Roots};
use crate::spec::{Endpoint, Mode, TransferSpec};
use crate::sys::dir as sysdir;
use crate::walk::Walk;

pub use crate::roots::Rename;
pub use entry_ops::RESUMABLE_MIN;

/// A transfer ready to run. Progress can be read from `stats()` while `run` works.
pub struct Transfer {
    spec: TransferSpec,
    stats: Arc<Stats>,
}

impl Transfer {
    pub fn new(spec: TransferSpec) -> Transfer {
        Transfer::with_stats(spec, Arc::new(Stats::default()))
    }

    /// A transfer that counts into `stats` (shared with a progress display).
    pub fn with_stats(spec: TransferSpec, stats: Arc<Stats>) -> Transfer {
        Transfer { spec, stats }
    }

    /// Live counters for progress display.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Runs the transfer to the end. Blocks; uses `spec.limits.workers` threads.
    pub fn run(&self, observer: &dyn Observer) -> Result<Report, Error> {
        let started = Instant::now();
        let (Endpoint::Local(src), Endpoint::Local(dst)) =
            (&self.spec.source, &self.spec.destination)
        else {
            return Err(Error::NotLocal);
        };
        let roots = roots::resolve(src, dst, self.spec.options.mode)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.spec.options.limits.workers.max(1))
            .thread_name(|i| format!("blit-worker-{i}"))
            .build()
            .map_err(|e| Error::Workers(e.to_string()))?;
        let mut report = pool.install(|| self.run_roots(&roots, observer))?;
        report.set_elapsed(started.elapsed());
        Ok(report)
    }

    /// Walks from the source root, with the destination side as the visitor.
    fn run_roots(&self, roots: &Roots, observer: &dyn Observer) -> Result<Report, Error> {
        let (src_dir, dst_dir, single) = match roots {
            Roots::Tree { src, dst, .. } => (src, dst, None),
            Roots::Single {
                src_dir,
                src_name,
                dst_dir,
                dst_name,
            } => (
                src_dir,
                dst_dir,
                Some(Rename {
                    src: src_name.clone(),
                    dst: dst_name.clone(),
                }),
            ),
        };
        let src_err = |source| Error::Source {
            path: src_dir.clone(),
            source,
        };
        let dst_err = |source| Error::Destination {
            path: dst_dir.clone(),
            source,
        };
        let src_fd = sysdir::open_root(src_dir).map_err(src_err)?;
        let src_meta = sysdir::stat_at_self(src_fd.as_fd()).map_err(src_err)?.meta;
        let dst_fd = open_destination(dst_dir, self.spec.options.dry_run)?;
        let dst_state = match &dst_fd {
            Some(fd) => {
                let meta = sysdir::stat_at_self(fd.as_fd()).map_err(dst_err)?.meta;
                DstDir::Existing(Arc::new(fd.try_clone().map_err(dst_err)?), meta)
            }
            None => DstDir::Absent,
        };
        let filter = match roots {
            // Filters apply to what is inside a tree, not to the one entry named.
            Roots::Single { .. } => Filter::new(),
            Roots::Tree {
                src,
                whole_dir: true,
                ..
            } => self
                .spec
                .options
                .filter
                .with_base(Path::new(src.file_name().unwrap_or_default())),
            Roots::Tree { .. } => self.spec.options.filter.clone(),
        };
        let src_root = src_fd.try_clone().map_err(src_err)?;
        let ctx = Ctx::new(
            &self.spec.options,
            &self.stats,
            observer,
            filter,
            Some(src_root),
            dst_fd,
        );
        let only = single.as_ref().map(|r| r.src.clone());
        let state = DirState {
            dst: dst_state,
            src_meta,
            src_xattrs: None,
            // A single file's directory is not part of the transfer: leave its metadata.
            finalize: single.is_none(),
            rename: single,
        };
        Walk::new(&ctx, &ctx.settings.filter, &self.stats).run(src_fd, only, state);
        let tree = match roots {
            Roots::Tree { src, whole_dir, .. } => Some((src.as_path(), *whole_dir)),
            Roots::Single { .. } => None,
        };
        Ok(self.finish(ctx, tree))
    }

    /// The end-of-run steps, then the report.
    fn finish(&self, ctx: Ctx<'_>, tree: Option<(&Path, bool)>) -> Report {
        finish_run(ctx, tree)
    }
}

/// The end-of-run steps of a destination (local or remote source), then the report.
fn finish_run(ctx: Ctx<'_>, tree: Option<(&Path, bool)>) -> Report {
    let options = ctx.settings.options;
    let mut skipped = None;
    if !options.dry_run {
        if let Some(root) = ctx.settings.dst_root.as_ref().map(|fd| fd.as_fd()) {
            finish::hard_links(&ctx, root);
            skipped = finish::deletes(&ctx, root);
            finish::directories(&ctx, root);
        }
        if let (Mode::Move, Some((src, whole_dir))) = (options.mode, tree) {
            finish::emptied_sources(&ctx, src, whole_dir);
        }
    } else if let Some(limit) = options.limits.max_delete {
        let would = ctx.tally.deleted.load(std::sync::atomic::Ordering::Relaxed);
        if would > limit {
            skipped = Some(format!(
                "would refuse to delete {would} entries: more than the delete limit ({limit})"
            ));
        }
    }
    let mut report = ctx.into_report();
    report.deletes_skipped = skipped;
    report
}

/// Opens (creating if needed) the destination root. A dry run does not create it.
pub(crate) fn open_destination(dst: &Path, dry_run: bool) -> Result<Option<OwnedFd>, Error> {
    let err = |source| Error::Destination {
        path: dst.to_owned(),
        source,
    };
    match sysdir::open_root(dst) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && dry_run => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dst).map_err(err)?;
            sysdir::open_root(dst).map(Some).map_err(err)
        }
        Err(e) => Err(err(e)),
    }
}
