//! The source role: walk the tree and stream its manifest, then send the bytes of every
//! file the destination asks for, over all data streams at once.
//!
//! Large files are cut into chunks that any stream can carry; sparse files send only
//! their data extents; a file that changed since it was listed is refused (`Fail`
//! record), never sent torn.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::SeekFrom;
use tokio::sync::mpsc;

use super::data::{DataPlane, Sink};
use super::{Link, SessionError, frame};
use crate::checksum;
use crate::entry::{EntryKind, Timestamp};
use crate::filter::Filter;
use crate::report::{Report, Stats};
use crate::sys::{dir, file, io_err};
use crate::walk::{Listed, Subdirs, Visitor, Walk};
use crate::wire::record::{Header, MAX_PAYLOAD};
use crate::wire::{self, pb};

/// Entries per `DirBatch` frame; a larger directory is sent in parts.
const BATCH_ENTRIES: usize = 2000;
/// Files larger than this are cut into chunks that several streams carry at once.
const CHUNK: u64 = 16 << 20;
/// Read buffer of each sender (records on the copying path are at most this large).
const READ_BUFFER: usize = 1 << 20;

/// What the source end serves.
pub struct SourceJob {
    /// The directory walked: the tree, or the directory holding a single entry.
    pub root: OwnedFd,
    /// A single entry's name (the walk lists only it).
    pub only: Option<OsString>,
    /// Filter rules, anchored as the destination will anchor them.
    pub filter: Filter,
    /// Send BLAKE3 hashes with the entries (`--checksum`).
    pub hashes: bool,
    pub workers: usize,
}

/// Runs the source role to the end; returns the destination's report.
pub async fn run(
    job: SourceJob,
    link: Link,
    data: DataPlane,
    stats: Arc<Stats>,
) -> Result<Report, SessionError> {
    let Link { tx, mut rx } = link;
    let root = Arc::new(job.root.try_clone().map_err(SessionError::Data)?);
    let walk = {
        let (tx, stats) = (tx.clone(), stats.clone());
        tokio::task::spawn_blocking(move || walk_and_send(job, tx, &stats))
    };
    let queue = Arc::new(WorkQueue::default());
    let sinks = match data {
        DataPlane::Tcp(streams) => streams.into_iter().map(Sink::tcp).collect(),
        DataPlane::Grpc => vec![Sink::frames(tx.clone())],
    };
    let splits = sinks.len() > 1;
    let senders: Vec<_> = sinks
        .into_iter()
        .map(|sink| {
            let (queue, root, stats) = (queue.clone(), root.clone(), stats.clone());
            tokio::task::spawn_blocking(move || {
                send_loop(&queue, root.as_fd(), sink, splits, &stats)
            })
        })
        .collect();
    let result = serve_needs(&mut rx, &queue, &stats).await;
    queue.close();
    for sender in senders {
        if let Ok(Err(e)) = sender.await {
            if result.is_ok() {
                return Err(super::abort(&tx, SessionError::Data(e)).await);
            }
        }
    }
    let _ = walk.await;
    match result {
        Ok(report) => Ok(report),
        Err(e) => Err(super::abort(&tx, e).await),
    }
}

/// Takes the destination's need lists until its summary arrives.
async fn serve_needs(
    rx: &mut mpsc::Receiver<pb::Frame>,
    queue: &WorkQueue,
    stats: &Stats,
) -> Result<Report, SessionError> {
    use pb::frame::Kind;
    loop {
        let Some(f) = rx.recv().await else {
            return Err(SessionError::Closed);
        };
        match f.kind {
            Some(Kind::Need(batch)) => {
                let mut works = Vec::with_capacity(batch.needs.len());
                for need in batch.needs {
                    let path = wire::valid_rel(&need.path)?;
                    Stats::add(&stats.files_planned, 1);
                    Stats::add(&stats.bytes_planned, need.size);
                    works.push(Work::File(FileNeed {
                        id: need.id,
                        path,
                        size: need.size,
                        mtime: Timestamp {
                            sec: need.mtime_sec,
                            nsec: need.mtime_nsec,
                        },
                    }));
                }
                queue.push_back(works);
            }
            Some(Kind::NeedDone(_)) => queue.close(),
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
fn walk_and_send(job: SourceJob, tx: mpsc::Sender<pb::Frame>, stats: &Stats) {
    let visitor = Manifest {
        tx,
        hashes: job.hashes,
        dirs: AtomicU64::new(0),
    };
    let pool = match rayon::ThreadPoolBuilder::new()
        .num_threads(job.workers.max(1))
        .thread_name(|i| format!("blit-source-{i}"))
        .build()
    {
        Ok(pool) => pool,
        Err(e) => {
            let message = format!("could not start worker threads: {e}");
            let _ = visitor
                .tx
                .blocking_send(frame(pb::frame::Kind::Abort(pb::Abort { message })));
            return;
        }
    };
    pool.install(|| Walk::new(&visitor, &job.filter, stats).run(job.root, job.only, ()));
    let dirs = visitor.dirs.load(Ordering::Relaxed);
    let _ = visitor
        .tx
        .blocking_send(frame(pb::frame::Kind::ManifestDone(pb::ManifestDone {
            dirs,
        })));
}

/// The walk's visitor on the source end: every listing becomes manifest frames.
struct Manifest {
    tx: mpsc::Sender<pb::Frame>,
    hashes: bool,
    dirs: AtomicU64,
}

impl Visitor for Manifest {
    type State = ();

    fn visit<'s>(&'s self, dir: Listed, _: (), subdirs: &Subdirs<'_, 's, Self>) {
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
            entries.push(w);
        }
        self.dirs.fetch_add(1, Ordering::Relaxed);
        let parts = entries.len().div_ceil(BATCH_ENTRIES).max(1);
        let mut entries = entries.into_iter();
        for part in 0..parts {
            let own = (part == 0 && dir.rel.as_os_str().is_empty())
                .then(|| dir::stat_at_self(dir.fd.as_fd()).ok())
                .flatten();
            let batch = pb::DirBatch {
                rel: rel.clone(),
                entries: entries.by_ref().take(BATCH_ENTRIES).collect(),
                partial: part + 1 < parts,
                dir: own.map(|mut e| {
                    e.name = ".".into();
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
    state: Mutex<(VecDeque<Work>, bool)>,
    ready: Condvar,
}

impl WorkQueue {
    fn push_back(&self, works: Vec<Work>) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0.extend(works);
        self.ready.notify_all();
    }

    fn push_front(&self, works: Vec<Work>) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for w in works.into_iter().rev() {
            s.0.push_front(w);
        }
        self.ready.notify_all();
    }

    fn close(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1 = true;
        self.ready.notify_all();
    }

    /// The next work, or `None` once closed and empty.
    fn pop(&self) -> Option<Work> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(w) = s.0.pop_front() {
                return Some(w);
            }
            if s.1 {
                return None;
            }
            s = self.ready.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// One data stream's sender: takes work until the queue is closed and empty.
fn send_loop(
    queue: &WorkQueue,
    root: BorrowedFd<'_>,
    mut sink: Sink,
    splits: bool,
    stats: &Stats,
) -> io::Result<()> {
    let mut buf = vec![0u8; READ_BUFFER];
    while let Some(work) = queue.pop() {
        match work {
            Work::File(need) => send_file(queue, root, &mut sink, splits, need, &mut buf, stats)?,
            Work::Chunk {
                id,
                file,
                offset,
                len,
                total,
            } => {
                if !send_ranges(
                    &mut sink,
                    file.as_fd(),
                    id,
                    &[(offset, len)],
                    total,
                    &mut buf,
                    stats,
                )? {
                    sink.fail(id, "the file shrank while it was being sent")?;
                }
            }
        }
    }
    sink.finish()
}

/// Sends one needed file (or its first chunk, queueing the others).
fn send_file(
    queue: &WorkQueue,
    root: BorrowedFd<'_>,
    sink: &mut Sink,
    splits: bool,
    need: FileNeed,
    buf: &mut [u8],
    stats: &Stats,
) -> io::Result<()> {
    let fd = match open_checked(root, &need) {
        Ok(fd) => fd,
        Err(e) => return sink.fail(need.id, &e.to_string()),
    };
    let allocated = rustix::fs::fstat(&fd).map_or(need.size, |st| st.st_blocks as u64 * 512);
    let ranges = if allocated < need.size {
        match data_extents(fd.as_fd(), need.size) {
            Ok(r) => r,
            Err(e) => return sink.fail(need.id, &format!("read: {e}")),
        }
    } else {
        vec![(0, need.size)]
    };
    let total: u64 = ranges.iter().map(|r| r.1).sum();
    if splits && ranges.len() == 1 && total > CHUNK {
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
        queue.push_front(chunks);
        Stats::add(&stats.files_done, 1);
        if !send_ranges(
            sink,
            file.as_fd(),
            need.id,
            &[(0, CHUNK)],
            total,
            buf,
            stats,
        )? {
            sink.fail(need.id, "the file shrank while it was being sent")?;
        }
        return Ok(());
    }
    if !send_ranges(sink, fd.as_fd(), need.id, &ranges, total, buf, stats)? {
        sink.fail(need.id, "the file shrank while it was being sent")?;
    } else {
        Stats::add(&stats.files_done, 1);
    }
    Ok(())
}

/// Opens a needed file beneath the root (no symlink followed, no escape) and checks it is
/// still the file that was listed.
fn open_checked(root: BorrowedFd<'_>, need: &FileNeed) -> io::Result<OwnedFd> {
    let (Some(parent), Some(name)) = (need.path.parent(), need.path.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file path",
        ));
    };
    let dir = dir::open_beneath(root, parent)?;
    let fd = file::open_source(dir.as_fd(), name)?;
    let st = rustix::fs::fstat(&fd).map_err(io_err)?;
    let mtime = Timestamp {
        sec: st.st_mtime,
        nsec: st.st_mtime_nsec as u32,
    };
    if st.st_size as u64 != need.size || mtime != need.mtime {
        return Err(io::Error::other(
            "the file changed since it was listed; not sent",
        ));
    }
    Ok(fd)
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

/// Sends the given ranges as records of at most `MAX_PAYLOAD` bytes (an empty file gets
/// one empty record). `Ok(false)` if the file was shorter than expected.
fn send_ranges(
    sink: &mut Sink,
    fd: BorrowedFd<'_>,
    id: u64,
    ranges: &[(u64, u64)],
    total: u64,
    buf: &mut [u8],
    stats: &Stats,
) -> io::Result<bool> {
    if total == 0 {
        return sink.send_range(fd, Header::data(id, 0, 0, 0), buf);
    }
    for &(start, len) in ranges {
        let mut offset = start;
        while offset < start + len {
            let n = u64::from(MAX_PAYLOAD).min(start + len - offset);
            if !sink.send_range(fd, Header::data(id, offset, n as u32, total), buf)? {
                return Ok(false);
            }
            Stats::add(&stats.bytes_done, n);
            offset += n;
        }
    }
    Ok(true)
}
