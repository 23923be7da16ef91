//! The destination role: plan each arriving directory against the local disk with the
//! same code a local transfer uses (`transfer::dir::visit`), ask the source for the files
//! that must be written, and write them as their records arrive — staged under a temp
//! name or `O_TMPFILE`, published by rename or `linkat` only when complete — then run the
//! same end-of-run steps (hard links, mirror deletes, directory metadata).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use rustix::fd::{AsFd, OwnedFd};
use tokio::sync::mpsc;

use super::data::{DataPlane, FrameReader, Incoming};
use super::fetcher::Fetcher;
use super::{Link, SessionError, frame};
use crate::entry::{Entry, Meta};
use crate::filter::Filter;
use crate::report::{Observer, Report, Stats};
use crate::spec::TransferSpec;
use crate::sys::{creds, dir as sysdir};
use crate::transfer::context::{Ctx, Rename, lock};
use crate::transfer::dir::{Batch, Descend, DirState, DstDir, visit};
use crate::transfer::finish_run;
use crate::transfer::policy;
use crate::wire::{self, pb};

/// What the destination end writes into.
pub struct DestinationJob {
    pub spec: TransferSpec,
    /// The destination root; `None` in a dry run whose destination does not exist.
    pub root: Option<OwnedFd>,
    pub rename: Option<Rename>,
    /// Filter rules (protecting excluded destination entries from mirror deletes).
    pub filter: Filter,
}

/// What the session's dispatcher hands the planner.
enum Inbound {
    Dir {
        rel: PathBuf,
        entries: Vec<Entry>,
        partial: bool,
        /// The source root's own entry (root batch only).
        root: Option<Entry>,
    },
    Done,
    SourceFailure(pb::Failure),
}

/// Runs the destination role to the end and returns its report (also sent to the source).
pub async fn run(
    job: DestinationJob,
    link: Link,
    data: DataPlane,
    stats: Arc<Stats>,
    observer: Arc<dyn Observer + Send + Sync>,
) -> Result<Report, SessionError> {
    let started = Instant::now();
    let Link { tx, mut rx } = link;
    let (plane, streams) = data.describe();
    let (in_tx, in_rx) = mpsc::channel(super::LINK_DEPTH);
    let (data_tx, readers) = match data {
        DataPlane::Tcp(s) => (None, s.into_iter().map(Incoming::stream).collect()),
        DataPlane::Grpc => {
            let (dtx, drx) = mpsc::channel(super::LINK_DEPTH);
            (Some(dtx), vec![Incoming::frames(FrameReader::new(drx))])
        }
    };
    let planner = {
        let tx = tx.clone();
        tokio::task::spawn_blocking(move || receive(job, in_rx, readers, tx, &stats, &*observer))
    };
    // The dispatcher ends with the manifest (TCP) or never on its own (gRPC: it forwards
    // data until the source stops); the planner ends when everything is written.
    let (dispatched, planned) = {
        let dispatch = dispatch(&mut rx, in_tx, data_tx);
        tokio::pin!(dispatch);
        let mut planner = planner;
        tokio::select! {
            d = &mut dispatch => (d, planner.await),
            p = &mut planner => (Ok(()), p),
        }
    };
    let planned =
        planned.unwrap_or_else(|e| Err(SessionError::Protocol(format!("planner failed: {e}"))));
    let mut report = match (dispatched, planned) {
        (Err(e), _) | (Ok(()), Err(e)) => return Err(super::abort(&tx, e).await),
        (Ok(()), Ok(report)) => report,
    };
    report.data_plane = plane;
    report.streams = streams;
    report.set_elapsed(started.elapsed());
    let summary = pb::Summary {
        report: Some(wire::report_to_wire(&report)),
    };
    let _ = tx.send(frame(pb::frame::Kind::Summary(summary))).await;
    // Close our half and let the source finish (it ends the session on the summary), so
    // the summary is delivered before either end goes away.
    drop(tx);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(f) = rx.recv().await {
            // A move's source reports what it removed.
            if let Some(pb::frame::Kind::SourceDone(done)) = f.kind {
                report.sources_removed += done.sources_removed;
                report
                    .failures
                    .extend(done.failures.into_iter().map(wire::failure_from_wire));
            }
        }
    })
    .await;
    Ok(report)
}

/// Forwards the source's frames: manifest to the planner, `Data` bytes to the reader.
/// Ends when the manifest is complete and the data is in (or on error).
async fn dispatch(
    rx: &mut mpsc::Receiver<pb::Frame>,
    planner: mpsc::Sender<Inbound>,
    mut data: Option<mpsc::Sender<Vec<u8>>>,
) -> Result<(), SessionError> {
    use pb::frame::Kind;
    let mut planner = Some(planner);
    loop {
        let Some(f) = rx.recv().await else {
            return if planner.is_none() && data.is_none() {
                Ok(())
            } else {
                Err(SessionError::Closed)
            };
        };
        let inbound = match f.kind {
            Some(Kind::Dir(b)) => {
                let rel = wire::valid_rel(&b.rel)?;
                let entries = b
                    .entries
                    .into_iter()
                    .map(wire::entry_from_wire)
                    .collect::<Result<Vec<_>, _>>()?;
                let root = match b.dir {
                    Some(d) if rel.as_os_str().is_empty() => Some(wire::entry_from_wire(d)?),
                    _ => None,
                };
                Inbound::Dir {
                    rel,
                    entries,
                    partial: b.partial,
                    root,
                }
            }
            Some(Kind::SourceFailure(failure)) => Inbound::SourceFailure(failure),
            Some(Kind::ManifestDone(_)) => Inbound::Done,
            Some(Kind::Data(bytes)) => {
                let Some(d) = &data else {
                    return Err(SessionError::unexpected(
                        &pb::Frame {
                            kind: Some(Kind::Data(bytes)),
                        },
                        "receiving",
                    ));
                };
                // The reader ending early is the planner's error to report.
                let _ = d.send(bytes).await;
                continue;
            }
            Some(Kind::Abort(a)) => return Err(SessionError::Aborted(a.message)),
            Some(Kind::Progress(_)) => continue,
            _ => return Err(SessionError::unexpected(&f, "receiving")),
        };
        let done = matches!(inbound, Inbound::Done);
        // The planner stopping early is reported by the planner itself.
        let Some(to_planner) = &planner else {
            return Err(SessionError::Protocol(
                "frame after the manifest ended".into(),
            ));
        };
        let _ = to_planner.send(inbound).await;
        if done {
            planner = None;
            if data.is_none() {
                return Ok(());
            }
            // With the bytes in this stream, keep forwarding until the source's data
            // stream has ended: the source closes it after the need list is done, then the
            // only frames left are Data.
            if let Some(d) = data.take() {
                return forward_data(rx, d).await;
            }
        }
    }
}

/// After the manifest, in gRPC fallback: everything is `Data` until the source stops.
async fn forward_data(
    rx: &mut mpsc::Receiver<pb::Frame>,
    data: mpsc::Sender<Vec<u8>>,
) -> Result<(), SessionError> {
    use pb::frame::Kind;
    loop {
        match rx.recv().await.map(|f| f.kind) {
            Some(Some(Kind::Data(bytes))) => {
                if data.send(bytes).await.is_err() {
                    return Ok(());
                }
            }
            Some(Some(Kind::Abort(a))) => return Err(SessionError::Aborted(a.message)),
            Some(Some(Kind::Progress(_))) => {}
            Some(_) => {
                return Err(SessionError::Protocol(
                    "unexpected frame after the manifest".into(),
                ));
            }
            None => return Err(SessionError::Closed),
        }
    }
}

/// The blocking part: plan, fetch, write, finish.
fn receive(
    job: DestinationJob,
    mut inbound: mpsc::Receiver<Inbound>,
    readers: Vec<Incoming>,
    tx: mpsc::Sender<pb::Frame>,
    stats: &Stats,
    observer: &dyn Observer,
) -> Result<Report, SessionError> {
    // Everything below reads and writes as the session's identity, if it has one: this
    // thread until it returns, the session's own pool and receivers for their lifetime.
    let identity = job.spec.privileges.identity;
    let _acting = identity
        .map(creds::Identity::act)
        .transpose()
        .map_err(SessionError::Data)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(job.spec.limits.workers.max(1))
        .thread_name(|i| format!("blit-dest-{i}"))
        .build()
        .map_err(|e| crate::error::Error::Workers(e.to_string()))?;
    creds::act_in_pool(&pool, identity).map_err(SessionError::Data)?;
    let root_state = root_state(&job)?;
    let fetcher = Fetcher::new(tx.clone());
    let mut ctx = Ctx::new(
        &job.spec,
        stats,
        observer,
        job.filter.clone(),
        None,
        job.root,
    );
    ctx.fetch = Some(&fetcher);
    ctx.landing = Some(&fetcher);
    let ctx = ctx;
    let manifest = std::thread::scope(|scope| {
        let receivers: Vec<_> = readers
            .into_iter()
            .map(|r| {
                let (ctx, fetcher) = (&ctx, &fetcher);
                std::thread::Builder::new()
                    .name("blit-receive".into())
                    .spawn_scoped(scope, move || {
                        let received = match identity.map(creds::Identity::act_for_thread) {
                            Some(Err(e)) => Err(e),
                            _ => fetcher.receive(ctx, r),
                        };
                        if received.is_err() {
                            // No more data will come: planners waiting for room must stop.
                            fetcher.stop();
                        }
                        received
                    })
            })
            .collect::<Result<_, _>>()
            .map_err(SessionError::Data)?;
        let planner = Planner {
            ctx: &ctx,
            fetcher: &fetcher,
            slots: Mutex::default(),
            held: Mutex::new(0),
            room: Condvar::new(),
        };
        let manifest = pool.install(|| planner.run(&mut inbound, root_state));
        fetcher.flush();
        let _ = tx.blocking_send(frame(pb::frame::Kind::NeedDone(pb::NeedDone {})));
        if manifest.is_err() {
            // The source is gone or misbehaved: stop waiting for its data.
            fetcher.cancel(&ctx);
        }
        let mut data = Ok(());
        for r in receivers {
            match r.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => data = Err(SessionError::Data(e)),
                Err(_) => data = Err(SessionError::Protocol("a receiver panicked".into())),
            }
        }
        fetcher.cancel(&ctx);
        manifest.and(data)
    });
    manifest?;
    let report = finish_run(ctx, None);
    fetcher.flush();
    Ok(report)
}

/// The root directory's visit state.
fn root_state(job: &DestinationJob) -> Result<DirState, SessionError> {
    let dst = match &job.root {
        Some(fd) => {
            let meta = sysdir::stat_at_self(fd.as_fd())
                .map_err(SessionError::Data)?
                .meta;
            DstDir::Existing(Arc::new(fd.try_clone().map_err(SessionError::Data)?), meta)
        }
        None => DstDir::Absent,
    };
    Ok(DirState {
        dst,
        // Replaced by the root batch's own metadata when it arrives (see `Planner::arrive`).
        src_meta: Meta::default(),
        src_xattrs: None,
        finalize: false,
        rename: job.rename.clone(),
    })
}

/// Matches arriving directory batches with the visit states their parents hand down, and
/// runs each visit on the pool once it has both.
struct Planner<'c> {
    ctx: &'c Ctx<'c>,
    fetcher: &'c Fetcher,
    slots: Mutex<Slots>,
    /// Directory batches received and not yet visited (queued, or waiting for their
    /// parent's visit): the manifest is taken in only as fast as it is planned.
    held: Mutex<usize>,
    room: Condvar,
}

/// Directory batches held at most before the planner stops taking the manifest in.
const MAX_HELD: usize = 128;

#[derive(Default)]
struct Slots {
    waiting: HashMap<PathBuf, Slot>,
    /// Directories the destination does not enter (creation failed, or a dry run's
    /// missing ones are still entered): their batches are dropped.
    skipped: HashSet<PathBuf>,
}

enum Slot {
    State(DirState),
    Batch(Vec<Entry>),
}

impl<'c> Planner<'c> {
    /// Takes batches until the manifest is complete; returns once every visit is done.
    fn run(
        &'c self,
        inbound: &mut mpsc::Receiver<Inbound>,
        root: DirState,
    ) -> Result<(), SessionError> {
        lock(&self.slots)
            .waiting
            .insert(PathBuf::new(), Slot::State(root));
        rayon::scope(|scope| {
            let mut parts: Option<(PathBuf, Vec<Entry>)> = None;
            loop {
                match inbound.blocking_recv() {
                    Some(Inbound::Dir {
                        rel,
                        entries,
                        partial,
                        root,
                    }) => {
                        if let Some(root) = root {
                            self.root_entry(root);
                        }
                        let entries = match parts.take() {
                            Some((r, mut earlier)) if r == rel => {
                                earlier.extend(entries);
                                earlier
                            }
                            Some(_) => {
                                return Err(SessionError::Protocol(
                                    "a directory's parts were interleaved".into(),
                                ));
                            }
                            None => entries,
                        };
                        if partial {
                            parts = Some((rel, entries));
                        } else {
                            self.hold();
                            self.arrive(scope, rel, entries);
                        }
                    }
                    Some(Inbound::SourceFailure(f)) => {
                        let path = PathBuf::from(OsString::from_vec(f.path));
                        self.ctx.record_failure(path, f.operation.into(), f.message);
                    }
                    Some(Inbound::Done) => return Ok(()),
                    None => return Err(SessionError::Closed),
                }
            }
        })
    }

    /// The source root's metadata (and xattrs): the destination root gets them at the end (a single
    /// file's directory is not part of the transfer and keeps its own).
    fn root_entry(&self, mut root: Entry) {
        policy::sanitize(&self.ctx.spec.privileges, &mut root);
        if let Some(Slot::State(state)) = lock(&self.slots).waiting.get_mut(Path::new("")) {
            state.src_meta = root.meta;
            state.src_xattrs = root.xattrs;
            state.finalize = state.rename.is_none();
        }
    }

    /// Counts one more batch held, first waiting while too many are.
    fn hold(&self) {
        let mut held = lock(&self.held);
        while *held >= MAX_HELD {
            held = self.room.wait(held).unwrap_or_else(|p| p.into_inner());
        }
        *held += 1;
    }

    /// `n` held batches were visited or dropped.
    fn release(&self, n: usize) {
        let mut held = lock(&self.held);
        *held = held.saturating_sub(n);
        self.room.notify_all();
    }

    fn arrive(&'c self, scope: &rayon::Scope<'c>, rel: PathBuf, mut entries: Vec<Entry>) {
        crate::entry::sort_by_name(&mut entries);
        let privileges = &self.ctx.spec.privileges;
        entries
            .iter_mut()
            .for_each(|e| policy::sanitize(privileges, e));
        let mut slots = lock(&self.slots);
        let parent_skipped = rel.parent().is_some_and(|p| slots.skipped.contains(p));
        if parent_skipped || slots.skipped.contains(&rel) {
            slots.skipped.insert(rel);
            drop(slots);
            return self.release(1);
        }
        match slots.waiting.remove(&rel) {
            Some(Slot::State(state)) => {
                drop(slots);
                self.spawn(scope, rel, entries, state);
            }
            replaced => {
                slots.waiting.insert(rel, Slot::Batch(entries));
                drop(slots);
                // A directory sent twice: the earlier batch is dropped.
                if let Some(Slot::Batch(_)) = replaced {
                    self.release(1);
                }
            }
        }
    }

    fn spawn(
        &'c self,
        scope: &rayon::Scope<'c>,
        rel: PathBuf,
        entries: Vec<Entry>,
        state: DirState,
    ) {
        scope.spawn(move |scope| {
            let dirs: Vec<OsString> = entries
                .iter()
                .filter(|e| e.is_dir())
                .map(|e| e.name.clone())
                .collect();
            let descend = Subdirs {
                planner: self,
                scope,
                rel: &rel,
                entered: RefCell::new(HashSet::new()),
            };
            let batch = Batch {
                rel: rel.clone(),
                src: None,
                entries,
            };
            visit(self.ctx, batch, state, &descend);
            self.fetcher.flush();
            let entered = descend.entered.into_inner();
            let mut dropped = 0;
            let mut slots = lock(&self.slots);
            for name in dirs.iter().filter(|n| !entered.contains(*n)) {
                let skipped = rel.join(name);
                slots.waiting.retain(|k, slot| {
                    let keep = !k.starts_with(&skipped);
                    dropped += usize::from(!keep && matches!(slot, Slot::Batch(_)));
                    keep
                });
                slots.skipped.insert(skipped);
            }
            drop(slots);
            self.release(1 + dropped);
        });
    }
}

/// `Descend` for a remote source: the subdirectory's batch may already be here, or will
/// come.
struct Subdirs<'p, 'c> {
    planner: &'c Planner<'c>,
    scope: &'p rayon::Scope<'c>,
    rel: &'p Path,
    entered: RefCell<HashSet<OsString>>,
}

impl Descend for Subdirs<'_, '_> {
    fn descend(&self, name: &std::ffi::OsStr, state: DirState) {
        self.entered.borrow_mut().insert(name.to_owned());
        let rel = self.rel.join(name);
        let mut slots = lock(&self.planner.slots);
        match slots.waiting.remove(&rel) {
            Some(Slot::Batch(entries)) => {
                drop(slots);
                self.planner.spawn(self.scope, rel, entries, state);
            }
            _ => {
                slots.waiting.insert(rel, Slot::State(state));
            }
        }
    }
}
