//! Running a transfer on this machine: both roles in one process.
//!
//! `Transfer::run` resolves the roots, walks the source tree with a pool of workers
//! (`walk::Walk`; for each directory the destination side in `dir` lists its
//! counterpart, plans with `plan::diff` and applies), then runs the end-of-run steps in
//! `finish`. Per-file failures land in the report; only problems that make the
//! whole request impossible are `Err`.

mod apply;
mod context;
mod dir;
mod finish;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use rustix::fd::{AsFd, OwnedFd};

use self::context::Ctx;
use self::dir::{DirState, DstDir};
use crate::error::Error;
use crate::report::{Observer, Report, Stats};
use crate::roots::{self, Roots};
use crate::spec::{Endpoint, Mode, TransferSpec};
use crate::sys::dir as sysdir;
use crate::walk::Walk;

pub use apply::RESUMABLE_MIN;

/// A transfer ready to run. Progress can be read from `stats()` while `run` works.
pub struct Transfer {
    spec: TransferSpec,
    stats: Arc<Stats>,
}

impl Transfer {
    pub fn new(spec: TransferSpec) -> Transfer {
        Transfer {
            spec,
            stats: Arc::new(Stats::default()),
        }
    }

    /// Live counters for progress display.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Runs the transfer to the end. Blocks; uses `spec.limits.workers` threads.
    pub fn run(&self, observer: &dyn Observer) -> Result<Report, Error> {
        let started = Instant::now();
        let (Endpoint::Local(src), Endpoint::Local(dst)) =
            (&self.spec.source, &self.spec.destination);
        let roots = roots::resolve(src, dst)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.spec.limits.workers.max(1))
            .thread_name(|i| format!("blit-worker-{i}"))
            .build()
            .map_err(|e| Error::Workers(e.to_string()))?;
        let mut report = match &roots {
            Roots::Tree {
                src,
                dst,
                whole_dir,
            } => pool.install(|| self.run_tree(src, dst, *whole_dir, observer))?,
            Roots::Single {
                src_dir,
                src_name,
                dst_dir,
                dst_name,
            } => {
                pool.install(|| self.run_single(src_dir, src_name, dst_dir, dst_name, observer))?
            }
        };
        report.set_elapsed(started.elapsed());
        Ok(report)
    }

    fn run_tree(
        &self,
        src: &Path,
        dst: &Path,
        whole_dir: bool,
        observer: &dyn Observer,
    ) -> Result<Report, Error> {
        let src_err = |source| Error::Source {
            path: src.to_owned(),
            source,
        };
        let src_fd = sysdir::open_root(src).map_err(src_err)?;
        let src_meta = sysdir::stat_at_self(src_fd.as_fd()).map_err(src_err)?.meta;
        let dst_fd = open_destination(dst, self.spec.dry_run)?;
        let dst_state = match &dst_fd {
            Some(fd) => {
                let meta =
                    sysdir::stat_at_self(fd.as_fd()).map_err(|source| Error::Destination {
                        path: dst.to_owned(),
                        source,
                    })?;
                DstDir::Existing(Arc::new(reopen(fd, dst)?), meta.meta)
            }
            None => DstDir::Absent,
        };
        let ctx = Ctx::new(
            &self.spec,
            &self.stats,
            observer,
            reopen(&src_fd, src)?,
            dst_fd,
        );
        let state = DirState {
            dst: dst_state,
            src_meta,
            finalize: true,
            rename: None,
        };
        Walk::new(&ctx, &self.spec.filter, &self.stats).run(src_fd, None, state);
        Ok(self.finish(ctx, Some((src, whole_dir))))
    }

    fn run_single(
        &self,
        src_dir: &Path,
        src_name: &std::ffi::OsStr,
        dst_dir: &Path,
        dst_name: &std::ffi::OsStr,
        observer: &dyn Observer,
    ) -> Result<Report, Error> {
        let src_fd = sysdir::open_root(src_dir).map_err(|source| Error::Source {
            path: src_dir.to_owned(),
            source,
        })?;
        let dst_fd = open_destination(dst_dir, self.spec.dry_run)?;
        let dst_state = match &dst_fd {
            Some(fd) => DstDir::Existing(Arc::new(reopen(fd, dst_dir)?), Default::default()),
            None => DstDir::Absent,
        };
        let ctx = Ctx::new(
            &self.spec,
            &self.stats,
            observer,
            reopen(&src_fd, src_dir)?,
            dst_fd,
        );
        let state = DirState {
            dst: dst_state,
            src_meta: Default::default(),
            finalize: false,
            rename: Some((src_name.to_owned(), dst_name.to_owned())),
        };
        // Filters apply to what is inside a tree, not to the one entry named.
        let everything = crate::filter::Filter::new();
        Walk::new(&ctx, &everything, &self.stats).run(src_fd, Some(src_name.to_owned()), state);
        Ok(self.finish(ctx, None))
    }

    /// The end-of-run steps, then the report.
    fn finish(&self, ctx: Ctx<'_>, tree: Option<(&Path, bool)>) -> Report {
        let mut skipped = None;
        if !self.spec.dry_run {
            if let Some(root) = ctx.dst_root.as_ref().map(|fd| fd.as_fd()) {
                finish::hard_links(&ctx, root);
                skipped = finish::deletes(&ctx, root);
                finish::directories(&ctx, root);
            }
            if let (Mode::Move, Some((src, whole_dir))) = (self.spec.mode, tree) {
                finish::emptied_sources(&ctx, src, whole_dir);
            }
        } else if let Some(limit) = self.spec.limits.max_delete {
            let would = ctx.tally.deleted.load(std::sync::atomic::Ordering::Relaxed);
            if would > limit {
                skipped = Some(format!(
                    "would refuse to delete {would} entries: more than --max-delete {limit}"
                ));
            }
        }
        let mut report = ctx.into_report();
        report.deletes_skipped = skipped;
        report
    }
}

/// Opens (creating if needed) the destination root. A dry run does not create it.
fn open_destination(dst: &Path, dry_run: bool) -> Result<Option<OwnedFd>, Error> {
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

/// A second descriptor for a root: one is shared with the workers, one kept for the end.
fn reopen(fd: &OwnedFd, path: &Path) -> Result<OwnedFd, Error> {
    fd.try_clone().map_err(|source| Error::Destination {
        path: path.to_owned(),
        source,
    })
}
