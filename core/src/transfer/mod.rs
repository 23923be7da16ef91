//! Running a transfer on this machine: both roles in one process.
//!
//! `Transfer::run` opens the roots (`roots`), walks the source tree with a pool of workers
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

use std::sync::Arc;
use std::time::Instant;

use rustix::fd::AsFd;

use self::context::Ctx;
use self::dir::{DirState, DstDir};
use crate::error::Error;
use crate::report::{Observer, Report, Stats};
use crate::roots::{self, Base, DestinationRoot, SourceRoot, WholeDir};
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
        let options = &self.spec.options;
        let source = roots::open_source(Base::Local, src, options)?;
        // Before the destination is opened (and perhaps created).
        roots::check_overlap(&source, dst, options.mode)?;
        let destination = roots::open_destination(Base::Local, dst, &source.shape, options)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(options.limits.workers.max(1))
            .thread_name(|i| format!("blit-worker-{i}"))
            .build()
            .map_err(|e| Error::Workers(e.to_string()))?;
        let mut report = pool.install(|| self.run_roots(source, destination, observer))?;
        report.set_elapsed(started.elapsed());
        Ok(report)
    }

    /// Walks from the source root, with the destination side as the visitor.
    fn run_roots(
        &self,
        source: SourceRoot,
        destination: DestinationRoot,
        observer: &dyn Observer,
    ) -> Result<Report, Error> {
        let src_err = |e| Error::Source {
            path: source.path.clone(),
            source: e,
        };
        let dst_err = |e| Error::Destination {
            path: destination.path.clone(),
            source: e,
        };
        let src_meta = sysdir::stat_at_self(source.dir.as_fd())
            .map_err(src_err)?
            .meta;
        let dst_state = match &destination.dir {
            Some(fd) => {
                let meta = sysdir::stat_at_self(fd.as_fd()).map_err(dst_err)?.meta;
                DstDir::Existing(Arc::new(fd.try_clone().map_err(dst_err)?), meta)
            }
            None => DstDir::Absent,
        };
        let src_root = source.dir.try_clone().map_err(src_err)?;
        let single = destination.rename;
        let ctx = Ctx::new(
            &self.spec.options,
            &self.stats,
            observer,
            destination.filter,
            Some(src_root),
            destination.dir,
        );
        let only = single.as_ref().map(|r| r.src.clone());
        let tree = single.is_none().then_some(MovedTree {
            whole_dir: source.whole_dir,
        });
        let state = DirState {
            dst: dst_state,
            src_meta,
            src_xattrs: None,
            // A single file's directory is not part of the transfer: leave its metadata.
            finalize: single.is_none(),
            rename: single,
        };
        Walk::new(&ctx, &ctx.settings.filter, &self.stats).run(source.dir, only, state);
        Ok(finish_run(ctx, tree))
    }
}

/// A local source tree, whose emptied directories a move removes at the end (and the
/// tree's own directory, when it was named without a trailing slash).
struct MovedTree {
    whole_dir: Option<WholeDir>,
}

/// The end-of-run steps of a destination (local or remote source), then the report.
fn finish_run(ctx: Ctx<'_>, tree: Option<MovedTree>) -> Report {
    let options = ctx.settings.options;
    let mut skipped = None;
    if !options.dry_run {
        if let Some(root) = ctx.settings.dst_root.as_ref().map(|fd| fd.as_fd()) {
            finish::hard_links(&ctx, root);
            skipped = finish::deletes(&ctx, root);
            finish::directories(&ctx, root);
        }
        if let (Mode::Move, Some(tree)) = (options.mode, tree) {
            finish::emptied_sources(&ctx, tree.whole_dir.as_ref());
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
