//! The source role: walk the tree and stream its manifest, then send the bytes of every
//! file the destination asks for, over all data streams at once.
//!
//! On long links (more streams than a near link gets), large files are cut into chunks
//! that any stream can carry; sparse files send only
//! their data extents; a file that changed since it was listed is refused (`Fail`
//! record), never sent torn.
//!
//! The need lists come from the network: the queue they fill is bounded (a count, and
//! bytes charged to the session's budget), and the session's [`Lifetime`] reaches every
//! wait here — throttle sleeps, the queue, blocked sockets — when it is cancelled.

use std::collections::{HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::SeekFrom;
use tokio::sync::mpsc;

use super::data::{DataPlane, Sink};
use super::job::{Removal, SourceJob};
use super::lifetime::{Budget, Cancel, Held, Lifetime, shut_on_cancel};
use super::{Link, SessionError, frame};
use crate::checksum;
use crate::entry::{EntryKind, Timestamp};
use crate::filter::Filter;
use crate::report::{Report, Stats};
use crate::sync::lock;
use crate::sys::{creds, cursor, dir, file, io_err, xattr};
use crate::walk::{Listed, Subdirs, Visitor, Walk};
use crate::wire::record::Header;
use crate::wire::{self, pb};

/// Entries per `DirBatch` frame; a larger directory is sent in parts. A destination
/// refuses larger batches: a few hundred KiB each, so one frame never costs much memory.
pub const BATCH_ENTRIES: usize = 2000;
/// Encoded bytes of entries per `DirBatch` at most: long symlink targets or large `-X`
/// attributes (XFS and btrfs allow 64 KiB values) would otherwise make a batch of 2,000
/// entries far larger than the messages an agent accepts (16 MiB).
const BATCH_BYTES: usize = 4 << 20;
/// Files larger than this are cut into chunks that several streams carry at once.
const CHUNK: u64 = 16 << 20;
/// Largest record sent: the receiver holds one record's payload per stream.
const RECORD: u64 = 4 << 20;
/// File needs queued at most. A destination keeps at most 8,192 files in flight (its
/// fetcher's limit), so a queue four times that long only comes from a peer that asks
/// for more than it can take: the session ends with an error instead of growing.
const MAX_QUEUED_FILES: usize = 32_768;

/// Runs the source role to the end; returns the destination's report.
pub async fn run(
    mut job: SourceJob,
    link: Link,
    data: DataPlane,
    stats: Arc<Stats>,
) -> Result<Report, SessionError> {
    let Link { tx, mut rx } = link;
    let Lifetime { cancel, budget } = job.lifetime.clone();
    // Dropped with this future: a caller giving up stops the threads below too.
    let guard = cancel.guard();
    let root = Arc::new(job.root.try_clone().map_err(SessionError::Data)?);
    let identity = job.privileges.identity;
    let dirs: ListedDirs = Arc::default();
    let mut remover = job.removal.take().map(|r| Remover {
        root: root.clone(),
        removal: r,
        scope: Scope {
            listed: dirs.clone(),
            filter: job.filter.clone(),
            only: job.only.clone(),
        },
        identity,
        removed: 0,
        failures: Vec::new(),
    });
    let throttle = job.throttle.clone();
    let walk = {
        let (tx, stats, cancel) = (tx.clone(), stats.clone(), cancel.clone());
        let dirs = remover.as_ref().map(|_| dirs.clone());
        tokio::task::spawn_blocking(move || walk_and_send(job, tx, &stats, dirs, cancel))
    };
    let queue = Arc::new(WorkQueue::default());
    let waiting: Weak<WorkQueue> = Arc::downgrade(&queue);
    cancel.on_cancel(move || {
        if let Some(queue) = waiting.upgrade() {
            queue.close();
        }
    });
    let sinks = match data {
        DataPlane::Tcp(streams) => {
            shut_on_cancel(&cancel, &streams);
            streams.into_iter().map(Sink::tcp).collect()
        }
        DataPlane::Grpc => vec![Sink::frames(tx.clone())],
    };
    // Chunks of one file on several streams mean several writers of one file at the
    // destination, which contend on its inode lock: worth it only where one stream's
    // window is the limit (a long link, which gets more streams than a near one).
    let splits = sinks.len() > super::data::NEAR_STREAMS as usize;
    let open_dir = Arc::new(DirSlot::default());
    let senders: Vec<_> = sinks
        .into_iter()
        .map(|sink| {
            let (queue, root, stats) = (queue.clone(), root.clone(), stats.clone());
            let (throttle, open_dir) = (throttle.clone(), open_dir.clone());
            let cancel = cancel.clone();
            tokio::task::spawn_blocking(move || {
                let _acting = acting(identity)?;
                let sender = Sender {
                    queue: &queue,
                    root: root.as_fd(),
                    sink,
                    splits,
                    stats: &stats,
                    throttle: throttle.as_deref(),
                    dirs: &open_dir,
                    cancel: &cancel,
                };
                sender.run()
            })
        })
        .collect();
    let needs = Needs {
        queue: &queue,
        stats: &stats,
        budget: &budget,
    };
    let result = cancel
        .until(serve_needs(&mut rx, &needs, remover.as_mut()))
        .await
        .and_then(|served| served);
    if let Err(e) = &result {
        // Nothing more will be asked for: the senders stop rather than empty the queue.
        cancel.cancel(e.to_string());
    }
    queue.close();
    for sender in senders {
        if let Ok(Err(e)) = sender.await
            && result.is_ok()
        {
            let e = cancel.or(SessionError::Data(e));
            cancel.cancel(e.to_string());
            return Err(super::abort(&tx, e).await);
        }
    }
    let _ = walk.await;
    let mut report = match result {
        Ok(report) => report,
        Err(e) => return Err(super::abort(&tx, cancel.or(e)).await),
    };
    guard.disarm();
    if let Some(remover) = remover {
        let dirs: Vec<PathBuf> = std::mem::take(&mut *lock(&dirs)).into_iter().collect();
        // Directories go only after a move in which nothing failed, on either end.
        let clean = report.failures.is_empty();
        let (removed, failures) = tokio::task::spawn_blocking(move || remover.finish(dirs, clean))
            .await
            .map_err(|e| SessionError::Protocol(e.to_string()))?
            .map_err(SessionError::Data)?;
        report.sources_removed += removed;
        let done = pb::SourceDone {
            sources_removed: removed,
            failures: failures.clone(),
        };
        report
            .failures
            .extend(failures.into_iter().map(wire::failure_from_wire));
        let _ = tx.send(frame(pb::frame::Kind::SourceDone(done))).await;
    }
    Ok(report)
}

/// Where the destination's needs go: the senders' queue, counted.
struct Needs<'a> {
    queue: &'a WorkQueue,
    stats: &'a Stats,
    budget: &'a Arc<Budget>,
}

impl Needs<'_> {
    /// Queues one `NeedBatch` for the senders, each need charged to the budget until
    /// it is sent.
    fn push(&self, batch: pb::NeedBatch) -> Result<(), SessionError> {
        let mut works = Vec::with_capacity(batch.needs.len());
        for need in batch.needs {
            let path = wire::valid_rel(&need.path)?;
            let blocks = match need.block_size {
                0 => Vec::new(),
                crate::resume::BLOCK => need.block_hashes,
                other => {
                    return Err(SessionError::Protocol(format!(
                        "resume block size {other} is not supported"
                    )));
                }
            };
            let bytes = std::mem::size_of::<Work>()
                + path.as_os_str().len()
                + blocks.iter().map(|b| b.len() + 24).sum::<usize>();
            let held = self.budget.take(bytes as u64, "files asked for")?;
            Stats::add(&self.stats.files_planned, 1);
            Stats::add(&self.stats.bytes_planned, need.size);
            works.push(Work::File(FileNeed {
                id: need.id,
                path,
                size: need.size,
                mtime: Timestamp {
                    sec: need.mtime_sec,
                    nsec: need.mtime_nsec,
                },
                blocks,
                _held: held,
            }));
        }
        self.queue.push_back(works)
    }
}

/// Takes the destination's need lists until its summary arrives.
async fn serve_needs(
    rx: &mut mpsc::Receiver<pb::Frame>,
    needs: &Needs<'_>,
    mut remover: Option<&mut Remover>,
) -> Result<Report, SessionError> {
    use pb::frame::Kind;
    loop {
        let Some(f) = rx.recv().await else {
            return Err(SessionError::Closed);
        };
        match f.kind {
            Some(Kind::Need(batch)) => needs.push(batch)?,
            Some(Kind::NeedDone(_)) => needs.queue.close(),
            Some(Kind::Landed(batch)) => match remover.as_deref_mut() {
                Some(r) => r.remove(batch).await?,
                None => {
                    return Err(SessionError::Protocol(
                        "landed entries, but this is not a move".into(),
                    ));
                }
            },
            Some(Kind::Summary(s)) => {
                let report = s.report.ok_or(crate::wire::WireError::Missing("report"))?;
                return Ok(wire::report_from_wire(report));
            }
            Some(Kind::Progress(_)) => {}
            Some(Kind::Abort(a)) => return Err(SessionError::Aborted(a.message)),
            _ => return Err(SessionError::unexpected(&f, "sending files")),
        }
    }
}

/// Walks the tree and sends one `DirBatch` per directory (in parts for large ones), then
/// `ManifestDone`. Entries the walk cannot read go to the destination as failures.
fn walk_and_send(
    job: SourceJob,
    tx: mpsc::Sender<pb::Frame>,
    stats: &Stats,
    visited: Option<ListedDirs>,
    cancel: Cancel,
) {
    let identity = job.privileges.identity;
    let _acting = match acting(identity) {
        Ok(a) => a,
        Err(e) => return abort_walk(&tx, e),
    };
    let visitor = Manifest {
        tx,
        hashes: job.hashes,
        xattrs: job.xattrs.then(|| job.privileges.xattr_scope()),
        dirs: AtomicU64::new(0),
        visited,
        cancel,
        sending: Mutex::new(()),
    };
    let pool = match rayon::ThreadPoolBuilder::new()
        .num_threads(job.workers.max(1))
        .thread_name(|i| format!("blit-source-{i}"))
        .build()
    {
        Ok(pool) => pool,
        Err(e) => return abort_walk(&visitor.tx, io::Error::other(e)),
    };
    if let Err(e) = creds::act_in_pool(&pool, identity) {
        return abort_walk(&visitor.tx, e);
    }
    pool.install(|| Walk::new(&visitor, &job.filter, stats).run(job.root, job.only, ()));
    if visitor.cancel.is_cancelled() {
        return;
    }
    let dirs = visitor.dirs.load(Ordering::Relaxed);
    let _ = visitor
        .tx
        .blocking_send(frame(pb::frame::Kind::ManifestDone(pb::ManifestDone {
            dirs,
        })));
}

/// Ends a walk that could not start: the destination learns why.
fn abort_walk(tx: &mpsc::Sender<pb::Frame>, e: io::Error) {
    let message = format!("could not start worker threads: {e}");
    let _ = tx.blocking_send(frame(pb::frame::Kind::Abort(pb::Abort { message })));
}

/// Acts as the session's identity on this thread, if it has one.
fn acting(identity: Option<creds::Identity>) -> io::Result<Option<creds::Acting>> {
    identity.map(creds::Identity::act).transpose()
}

/// The walk's visitor on the source end: every listing becomes manifest frames.
struct Manifest {
    tx: mpsc::Sender<pb::Frame>,
    hashes: bool,
    /// `-X`: the attribute namespaces sent.
    xattrs: Option<xattr::Scope>,
    dirs: AtomicU64,
    /// A move's record of the directories listed (the scope of its removals; emptied
    /// ones are removed at the end).
    visited: Option<ListedDirs>,
    /// The rest of the walk is skipped once the session is over.
    cancel: Cancel,
    /// Held while one directory's batches are sent: the parts of a large directory must
    /// arrive together, not mixed with the batches other workers send meanwhile.
    sending: Mutex<()>,
}

/// The directories a move's walk listed, relative to its root.
type ListedDirs = Arc<Mutex<HashSet<PathBuf>>>;

impl Visitor for Manifest {
    type State = ();

    fn visit<'s>(&'s self, dir: Listed, _: (), subdirs: &Subdirs<'_, 's, Self>) {
        if self.cancel.is_cancelled() {
            return;
        }
        let rel = dir.rel.as_os_str().as_bytes().to_vec();
        let mut entries = Vec::with_capacity(dir.entries.len());
        for e in &dir.entries {
            let mut w = wire::entry_to_wire(e);
            if self.hashes && e.kind == EntryKind::File {
                match checksum::hash_file_at(dir.fd.as_fd(), &e.name) {
                    Ok(h) => w.hash = Some(h.to_vec()),
                    Err(err) => self.failed(&dir.rel, &e.name, "checksum", &err),
                }
            }
            if let (Some(scope), EntryKind::File | EntryKind::Dir) = (self.xattrs, e.kind) {
                match xattr::read_at(dir.fd.as_fd(), &e.name, scope) {
                    Ok(x) => w.xattrs = Some(wire::xattrs_to_wire(&x)),
                    Err(err) => self.failed(&dir.rel, &e.name, "read extended attributes", &err),
                }
            }
            entries.push(w);
        }
        self.dirs.fetch_add(1, Ordering::Relaxed);
        if let Some(v) = &self.visited {
            lock(v).insert(dir.rel.clone());
        }
        let parts = into_parts(entries);
        let count = parts.len();
        let sending = lock(&self.sending);
        for (part, entries) in parts.into_iter().enumerate() {
            let own = (part == 0 && dir.rel.as_os_str().is_empty())
                .then(|| dir::stat_at_self(dir.fd.as_fd()).ok())
                .flatten();
            let batch = pb::DirBatch {
                rel: rel.clone(),
                entries,
                partial: part + 1 < count,
                dir: own.map(|mut e| {
                    e.name = ".".into();
                    if let Some(scope) = self.xattrs {
                        e.xattrs = xattr::read(dir.fd.as_fd(), scope).ok();
                    }
                    let mut w = wire::entry_to_wire(&e);
                    w.name = b"root".to_vec();
                    w
                }),
            };
            if self
                .tx
                .blocking_send(frame(pb::frame::Kind::Dir(batch)))
                .is_err()
            {
                return;
            }
        }
        drop(sending);
        // Subdirectories are walked after their parent's batch is on its way, so the
        // destination always sees a parent before its children.
        for e in dir.entries.iter().filter(|e| e.is_dir()) {
            subdirs.descend(&e.name, ());
        }
    }

    fn failed(&self, rel: &Path, name: &OsStr, operation: &'static str, error: &io::Error) {
        let failure = pb::Failure {
            path: rel.join(name).as_os_str().as_bytes().to_vec(),
            operation: operation.to_owned(),
            message: error.to_string(),
        };
        let _ = self
            .tx
            .blocking_send(frame(pb::frame::Kind::SourceFailure(failure)));
    }
}

/// A file the destination asked for.
struct FileNeed {
    id: u64,
    path: PathBuf,
    size: u64,
    mtime: Timestamp,
    /// `--resume`: the destination's partial blocks (BLAKE3, `resume::BLOCK` each).
    blocks: Vec<Vec<u8>>,
    /// Its memory, charged to the session until it is sent.
    _held: Held,
}

/// One unit of sending work.
enum Work {
    File(FileNeed),
    /// A chunk of a large file another sender opened and checked.
    Chunk {
        id: u64,
        file: Arc<OwnedFd>,
        offset: u64,
        len: u64,
        total: u64,
    },
}

/// The senders' queue: need lists go in at the back, chunks of large files at the front
/// (so a file's chunks go out together, whichever streams carry them).
#[derive(Default)]
struct WorkQueue {
    state: Mutex<Queued>,
    ready: Condvar,
}

#[derive(Default)]
struct Queued {
    works: VecDeque<Work>,
    /// File needs among `works` (chunks are this end's own doing, not counted).
    files: usize,
    closed: bool,
}

impl Queued {
    fn pop(&mut self) -> Option<Work> {
        let work = self.works.pop_front()?;
        if matches!(work, Work::File(_)) {
            self.files -= 1;
        }
        Some(work)
    }
}

impl WorkQueue {
    /// Queues the destination's needs; an error if that makes more than
    /// [`MAX_QUEUED_FILES`] waiting.
    fn push_back(&self, works: Vec<Work>) -> Result<(), SessionError> {
        let mut s = lock(&self.state);
        if s.files + works.len() > MAX_QUEUED_FILES {
            return Err(SessionError::Limit(format!(
                "the destination asked for more than {MAX_QUEUED_FILES} files at once"
            )));
        }
        s.files += works.len();
        s.works.extend(works);
        self.ready.notify_all();
        Ok(())
    }

    fn push_front(&self, works: Vec<Work>) {
        let mut s = lock(&self.state);
        for w in works.into_iter().rev() {
            s.works.push_front(w);
        }
        self.ready.notify_all();
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.ready.notify_all();
    }

    /// The next work if there is one now.
    fn try_pop(&self) -> Option<Work> {
        lock(&self.state).pop()
    }

    /// The next work, or `None` once closed and empty.
    fn pop(&self) -> Option<Work> {
        let mut s = lock(&self.state);
        loop {
            if let Some(w) = s.pop() {
                return Some(w);
            }
            if s.closed {
                return None;
            }
            s = self.ready.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// One data stream's sender: takes work until the queue is closed and empty.
struct Sender<'a> {
    queue: &'a WorkQueue,
    root: BorrowedFd<'a>,
    sink: Sink,
    /// A long link: large files are cut into chunks.
    splits: bool,
    stats: &'a Stats,
    throttle: Option<&'a super::throttle::Throttle>,
    /// The directory of the last file sent, open, shared by all senders.
    dirs: &'a DirSlot,
    cancel: &'a Cancel,
}

impl Sender<'_> {
    fn run(mut self) -> io::Result<()> {
        loop {
            if self.cancel.is_cancelled() {
                return Err(io::Error::other("the session was cancelled"));
            }
            // Before waiting for more work, push out what is buffered: the destination
            // may be waiting for exactly these files before it asks for more.
            let work = match self.queue.try_pop() {
                Some(work) => work,
                None => {
                    self.sink.flush()?;
                    match self.queue.pop() {
                        Some(work) => work,
                        None => break,
                    }
                }
            };
            match work {
                Work::File(need) => self.send_file(need)?,
                Work::Chunk {
                    id,
                    file,
                    offset,
                    len,
                    total,
                } => self.send_ranges(file.as_fd(), id, &[(offset, len)], total)?,
            }
        }
        self.sink.finish()
    }

    /// Sends one needed file (or its first chunk, queueing the others).
    fn send_file(&mut self, need: FileNeed) -> io::Result<()> {
        let (fd, st) = match open_checked(self.root, &need, self.dirs) {
            Ok(opened) => opened,
            Err(e) => return self.sink.fail(need.id, &e.to_string()),
        };
        let allocated = st.st_blocks as u64 * 512;
        let ranges = if !need.blocks.is_empty() {
            match crate::resume::missing_ranges(fd.as_fd(), need.size, &need.blocks) {
                Ok(r) => r,
                Err(e) => return self.sink.fail(need.id, &format!("read: {e}")),
            }
        } else if allocated < need.size {
            match data_extents(fd.as_fd(), need.size) {
                Ok(r) => r,
                Err(e) => return self.sink.fail(need.id, &format!("read: {e}")),
            }
        } else {
            vec![(0, need.size)]
        };
        let total: u64 = ranges.iter().map(|r| r.1).sum();
        Stats::add(&self.stats.files_done, 1);
        if self.splits && ranges == [(0, total)] && total > CHUNK {
            let file = Arc::new(fd);
            let chunks: Vec<Work> = (1..total.div_ceil(CHUNK))
                .map(|i| Work::Chunk {
                    id: need.id,
                    file: file.clone(),
                    offset: i * CHUNK,
                    len: CHUNK.min(total - i * CHUNK),
                    total,
                })
                .collect();
            self.queue.push_front(chunks);
            return self.send_ranges(file.as_fd(), need.id, &[(0, CHUNK)], total);
        }
        self.send_ranges(fd.as_fd(), need.id, &ranges, total)
    }

    /// Sends the given ranges as records of at most `RECORD` bytes (an empty file
    /// gets one empty record). A file found shorter than listed is refused with a `Fail`.
    fn send_ranges(
        &mut self,
        fd: BorrowedFd<'_>,
        id: u64,
        ranges: &[(u64, u64)],
        total: u64,
    ) -> io::Result<()> {
        if total == 0 {
            self.sink.send_range(fd, Header::data(id, 0, 0, 0))?;
            return Ok(());
        }
        // Throttled, a record is at most what the limit lets through at once, so the
        // sender waits in short steps and the bytes (progress) move steadily.
        let record = self.throttle.map_or(RECORD, |t| t.quantum().min(RECORD));
        for &(start, len) in ranges {
            let mut offset = start;
            while offset < start + len {
                let n = record.min(start + len - offset);
                if let Some(t) = self.throttle {
                    // What is buffered goes out before a wait, not after it.
                    self.sink.flush()?;
                    if !t.take(n, self.cancel) {
                        return Err(io::Error::other("the session was cancelled"));
                    }
                }
                let header = Header::data(id, offset, n as u32, total);
                if !self.sink.send_range(fd, header)? {
                    return self
                        .sink
                        .fail(id, "the file shrank while it was being sent");
                }
                Stats::add(&self.stats.bytes_done, n);
                offset += n;
            }
        }
        Ok(())
    }
}

/// The directory needs are being served from, open. Needs arrive grouped by directory,
/// so the senders share one slot: a directory is opened once, not once per sender.
#[derive(Default)]
struct DirSlot(Mutex<Option<(PathBuf, Arc<OwnedFd>)>>);

impl DirSlot {
    /// `parent` (relative to `root`), opened beneath it or taken from the slot.
    fn open(&self, root: BorrowedFd<'_>, parent: &Path) -> io::Result<Arc<OwnedFd>> {
        if let Some((path, fd)) = &*lock(&self.0)
            && path == parent
        {
            return Ok(fd.clone());
        }
        let fd = Arc::new(dir::open_beneath(root, parent)?);
        *lock(&self.0) = Some((parent.to_owned(), fd.clone()));
        Ok(fd)
    }
}

/// Opens a needed file beneath the root (no symlink followed, no escape) and checks it is
/// still the file that was listed; returns it with its status. The path comes from the
/// destination, so anything but a regular file is refused before it is opened (a FIFO
/// would block the sender forever, a device could act on being opened), and again on
/// the open file in case it was swapped in between.
fn open_checked(
    root: BorrowedFd<'_>,
    need: &FileNeed,
    dirs: &DirSlot,
) -> io::Result<(OwnedFd, rustix::fs::Stat)> {
    let (Some(parent), Some(name)) = (need.path.parent(), need.path.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file path",
        ));
    };
    let dir = dirs.open(root, parent)?;
    if dir::stat_at(dir.as_fd(), name)?.kind != EntryKind::File {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file; not sent",
        ));
    }
    let (fd, st) = file::open_source_stat(dir.as_fd(), name)?;
    let mtime = Timestamp {
        sec: st.st_mtime,
        nsec: st.st_mtime_nsec as u32,
    };
    if st.st_size as u64 != need.size || mtime != need.mtime {
        return Err(io::Error::other(
            "the file changed since it was listed; not sent",
        ));
    }
    Ok((fd, st))
}

/// The data extents of a sparse file (`SEEK_DATA`/`SEEK_HOLE`), within `size`.
fn data_extents(fd: BorrowedFd<'_>, size: u64) -> io::Result<Vec<(u64, u64)>> {
    let mut ranges = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let start = match rustix::fs::seek(fd, SeekFrom::Data(pos)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => return Err(io_err(e)),
        };
        let end = rustix::fs::seek(fd, SeekFrom::Hole(start)).map_err(io_err)?;
        let end = end.min(size);
        if end > start {
            ranges.push((start, end - start));
        }
        pos = end;
    }
    Ok(ranges)
}

/// A move's removals at the source: each entry the destination confirmed, if this
/// session listed it and it is still what was listed (and, when the destination sent a
/// hash, has that content); then — only if nothing failed — the directories that became
/// empty.
struct Remover {
    root: Arc<OwnedFd>,
    removal: Removal,
    scope: Scope,
    identity: Option<creds::Identity>,
    removed: u64,
    failures: Vec<pb::Failure>,
}

/// What this session's walk listed: a destination may confirm only entries in it. It is
/// kept per directory (not per entry, which would cost memory in proportion to the tree):
/// an entry is in scope when its directory was listed and the walk's filter (and, for a
/// single entry, its name) lets it through — exactly what the walk itself sent.
#[derive(Clone)]
struct Scope {
    listed: ListedDirs,
    filter: Filter,
    only: Option<OsString>,
}

impl Scope {
    fn check(&self, path: &Path) -> io::Result<()> {
        let (parent, name) = match (path.parent(), path.file_name()) {
            (Some(parent), Some(name)) => (parent, name),
            _ => return Err(not_listed()),
        };
        let listed = lock(&self.listed).contains(parent)
            && !self.filter.excludes(path, false)
            && self
                .only
                .as_ref()
                .is_none_or(|only| parent.as_os_str().is_empty() && only == name);
        if listed { Ok(()) } else { Err(not_listed()) }
    }
}

fn not_listed() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "not an entry this move listed; left in place",
    )
}

impl Remover {
    async fn remove(&mut self, batch: pb::LandedBatch) -> Result<(), SessionError> {
        let (root, scope, identity) = (self.root.clone(), self.scope.clone(), self.identity);
        let outcomes = tokio::task::spawn_blocking(move || {
            let _acting = acting(identity).map_err(SessionError::Data)?;
            batch
                .entries
                .into_iter()
                .map(|l| {
                    let path = wire::valid_rel(&l.path)?;
                    let result = scope
                        .check(&path)
                        .and_then(|()| remove_landed(root.as_fd(), &path, &l));
                    Ok((l.path, result))
                })
                .collect::<Result<Vec<_>, SessionError>>()
        })
        .await
        .map_err(|e| SessionError::Protocol(e.to_string()))??;
        for (path, result) in outcomes {
            match result {
                Ok(()) => self.removed += 1,
                Err(e) => self.failures.push(pb::Failure {
                    path,
                    operation: "remove source".into(),
                    message: e.to_string(),
                }),
            }
        }
        Ok(())
    }

    /// Removes the emptied directories, deepest first (those still holding something
    /// stay, silently), and the tree's own directory if it was named and is empty now —
    /// only when the move was `clean` and no removal failed: after a failure, a directory
    /// may hold what was never confirmed, or be empty only because it could not be read.
    fn finish(self, mut dirs: Vec<PathBuf>, clean: bool) -> io::Result<(u64, Vec<pb::Failure>)> {
        if !clean || !self.failures.is_empty() {
            return Ok((self.removed, self.failures));
        }
        let _acting = acting(self.identity)?;
        // Each directory after everything below it, with one cursor moving between them:
        // opening each from the root would cost quadratic time on a deep chain.
        dirs.sort_by(|a, b| cursor::tree_order(b, a));
        let mut at = cursor::Cursor::new(self.root.as_fd());
        for rel in dirs.iter().filter(|r| !r.as_os_str().is_empty()) {
            if let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) {
                let _ = at.go(parent).and_then(|()| dir::rmdir_at(at.fd(), name));
            }
        }
        if let Some(whole) = &self.removal.root {
            let _ = dir::rmdir_at(whole.parent.as_fd(), &whole.name);
        }
        Ok((self.removed, self.failures))
    }
}

/// Removes one confirmed entry if it is unchanged since it was listed.
fn remove_landed(root: BorrowedFd<'_>, path: &Path, landed: &pb::Landed) -> io::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an entry path",
        ));
    };
    let dir = dir::open_beneath(root, parent)?;
    let now = dir::stat_at(dir.as_fd(), name)?;
    let listed = Timestamp {
        sec: landed.mtime_sec,
        nsec: landed.mtime_nsec,
    };
    let kind = wire::entry_to_wire(&now).kind;
    if now.is_dir() || kind != landed.kind || now.size != landed.size || now.meta.mtime != listed {
        return Err(io::Error::other(
            "source changed during the move; left in place",
        ));
    }
    if let Some(expected) = &landed.hash
        && checksum::hash_file_at(dir.as_fd(), name)?.as_slice() != expected.as_slice()
    {
        return Err(io::Error::other(
            "destination content differs from the source; source left in place",
        ));
    }
    dir::unlink_at(dir.as_fd(), name)
}

/// Cuts a directory's entries into batches of at most [`BATCH_ENTRIES`] entries and
/// [`BATCH_BYTES`] encoded bytes (a single larger entry goes alone); an empty directory
/// is one empty batch.
fn into_parts(entries: Vec<pb::Entry>) -> Vec<Vec<pb::Entry>> {
    let mut parts = vec![Vec::new()];
    let mut bytes = 0;
    for e in entries {
        let n = prost::Message::encoded_len(&e);
        let full = parts.last().is_some_and(|p| {
            !p.is_empty() && (p.len() >= BATCH_ENTRIES || bytes + n > BATCH_BYTES)
        });
        if full {
            parts.push(Vec::new());
            bytes = 0;
        }
        bytes += n;
        parts.last_mut().expect("never empty").push(e);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, target_len: usize) -> pb::Entry {
        pb::Entry {
            name: name.as_bytes().to_vec(),
            link_target: Some(vec![b'x'; target_len]),
            ..Default::default()
        }
    }

    #[test]
    fn batches_are_cut_by_count_and_by_size() {
        assert_eq!(
            into_parts(Vec::new()),
            vec![Vec::new()],
            "an empty directory"
        );
        let many: Vec<_> = (0..4500).map(|i| entry(&i.to_string(), 0)).collect();
        let sizes: Vec<usize> = into_parts(many).iter().map(Vec::len).collect();
        assert_eq!(sizes, [2000, 2000, 500]);
        // 2,000 symlinks with 4 KiB targets: 8 MiB in all, two batches of about 4 MiB.
        let long: Vec<_> = (0..2000).map(|i| entry(&i.to_string(), 4095)).collect();
        let parts = into_parts(long);
        assert_eq!(parts.len(), 2);
        for p in &parts {
            let bytes: usize = p.iter().map(prost::Message::encoded_len).sum();
            assert!(bytes <= BATCH_BYTES, "{bytes}");
        }
        // An entry larger than a batch still goes, alone.
        let huge = into_parts(vec![
            entry("a", 1),
            entry("b", BATCH_BYTES + 1),
            entry("c", 1),
        ]);
        assert_eq!(huge.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1]);
    }
}
