//! The destination's fetcher: it turns the planner's Copy/Resume actions into needs for
//! the source (batched, with at most [`MAX_PENDING`] files in flight), and each data
//! stream's receiver writes the records that arrive through the one staging path
//! (temp file, then publish), reporting every file's outcome.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use rustix::fd::{AsFd, OwnedFd};
use tokio::sync::mpsc;

use super::data::Incoming;
use super::frame;
use crate::entry::Entry;
use crate::prefault::Prefault;
use crate::sync::lock;
use crate::sys::file;
use crate::sys::temp;
use crate::transfer::remote::{Destination, Fetch, Landing, Staged, Target};
use crate::wire::record::{Header, Kind};
use crate::wire::{self, pb};

/// Files asked for and not yet written, at most: bounds memory and open files however
/// far the planner runs ahead of the data.
const MAX_PENDING: usize = 8192;
/// A planner that found the map full waits until it is down to this many: planners run
/// far ahead of the data, so without this gap every written file would wake them all
/// (a system call and a context switch each) for one more need.
const RESUME_PENDING: usize = MAX_PENDING - 2 * NEED_BATCH;
/// Needs per `NeedBatch` frame.
const NEED_BATCH: usize = 1024;

/// A file asked for and not yet written.
struct PendingFile {
    target: Target,
    entry: Entry,
    replaces: Option<Entry>,
    /// Continue the partial file left by an earlier run (`--resume`), whose first this
    /// many bytes the source trusts (its block hashes were sent).
    resume: Option<u64>,
    /// That partial file, claimed (locked) from the moment its blocks were hashed until
    /// it is written: no other run may change what the source was told.
    part: Mutex<Option<temp::Owned>>,
    state: Mutex<FileState>,
}

enum FileState {
    Waiting,
    Writing {
        staged: Arc<Staged>,
        received: u64,
        /// Warms the page cache ahead of a large file's records.
        prefault: Option<Prefault>,
    },
    Done,
}

/// The destination's `Fetch`: turns Copy actions into needs, and writes what arrives.
pub(super) struct Fetcher {
    tx: mpsc::Sender<pb::Frame>,
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, Arc<PendingFile>>>,
    /// Files that failed before all their records arrived: the rest are dropped.
    failed: Mutex<HashSet<u64>>,
    /// A data stream broke: nothing more will be written.
    stopped: std::sync::atomic::AtomicBool,
    drained: Condvar,
    batch: Mutex<Vec<pb::Need>>,
    landed: Mutex<Landed>,
}

/// A move's confirmations not sent yet, and the directories that hold them: synced before
/// the source is told, so nothing it then removes exists only in the page cache here.
#[derive(Default)]
struct Landed {
    entries: Vec<pb::Landed>,
    dirs: Vec<Arc<OwnedFd>>,
}

impl Landing for Fetcher {
    fn landed(&self, path: PathBuf, src: &Entry, hash: Option<[u8; 32]>, dir: &Arc<OwnedFd>) {
        use std::os::unix::ffi::OsStrExt;
        let landed = pb::Landed {
            path: path.as_os_str().as_bytes().to_vec(),
            kind: wire::entry_to_wire(src).kind,
            size: src.size,
            mtime_sec: src.meta.mtime.sec,
            mtime_nsec: src.meta.mtime.nsec,
            hash: hash.map(|h| h.to_vec()),
        };
        let full = {
            let mut batch = lock(&self.landed);
            batch.entries.push(landed);
            if !batch.dirs.last().is_some_and(|d| Arc::ptr_eq(d, dir)) {
                batch.dirs.push(dir.clone());
            }
            batch.entries.len() >= NEED_BATCH
        };
        if full {
            self.flush();
        }
    }
}

impl Fetch for Fetcher {
    fn fetch(
        &self,
        target: Target,
        src: &Entry,
        replaces: Option<&Entry>,
        part: Option<temp::Owned>,
    ) -> io::Result<()> {
        use std::os::unix::ffi::OsStrExt;
        let resume = part.is_some();
        let block_hashes = match &part {
            Some(part) => crate::resume::block_hashes(part.fd.as_fd(), src.size)?,
            None => Vec::new(),
        };
        let trusted = resume.then(|| block_hashes.len() as u64 * crate::resume::BLOCK);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let path = target.source_path();
        let file = PendingFile {
            target,
            entry: src.clone(),
            replaces: replaces.cloned(),
            resume: trusted,
            part: Mutex::new(part),
            state: Mutex::new(FileState::Waiting),
        };
        lock(&self.pending).insert(id, Arc::new(file));
        let need = pb::Need {
            id,
            path: path.as_os_str().as_bytes().to_vec(),
            size: src.size,
            mtime_sec: src.meta.mtime.sec,
            mtime_nsec: src.meta.mtime.nsec,
            block_size: if resume { crate::resume::BLOCK } else { 0 },
            block_hashes: block_hashes.iter().map(|h| h.to_vec()).collect(),
        };
        let full = {
            let mut batch = lock(&self.batch);
            batch.push(need);
            batch.len() >= NEED_BATCH
        };
        if full {
            self.flush();
        }
        if lock(&self.pending).len() >= MAX_PENDING {
            self.flush();
            let mut pending = lock(&self.pending);
            while pending.len() > RESUME_PENDING && !self.stopped.load(Ordering::Relaxed) {
                pending = self
                    .drained
                    .wait(pending)
                    .unwrap_or_else(|p| p.into_inner());
            }
        }
        Ok(())
    }
}

impl Fetcher {
    pub(super) fn new(tx: mpsc::Sender<pb::Frame>) -> Fetcher {
        Fetcher {
            tx,
            next_id: AtomicU64::new(0),
            pending: Mutex::default(),
            failed: Mutex::default(),
            stopped: std::sync::atomic::AtomicBool::new(false),
            drained: Condvar::new(),
            batch: Mutex::default(),
            landed: Mutex::default(),
        }
    }

    /// Wakes planners waiting for room, for good: the data streams are gone.
    pub(super) fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        let _guard = lock(&self.pending);
        self.drained.notify_all();
    }

    /// Sends the needs (and, for a move, the landed entries) gathered so far.
    pub(super) fn flush(&self) {
        let needs = std::mem::take(&mut *lock(&self.batch));
        if !needs.is_empty() {
            let _ = self
                .tx
                .blocking_send(frame(pb::frame::Kind::Need(pb::NeedBatch { needs })));
        }
        let Landed { entries, mut dirs } = std::mem::take(&mut *lock(&self.landed));
        dirs.sort_by_key(Arc::as_ptr);
        dirs.dedup_by(|a, b| Arc::ptr_eq(a, b));
        // An entry whose directory cannot be synced is not confirmed: its source stays.
        if dirs.iter().any(|d| file::sync_dir(d.as_fd()).is_err()) {
            return;
        }
        if !entries.is_empty() {
            let _ = self
                .tx
                .blocking_send(frame(pb::frame::Kind::Landed(pb::LandedBatch { entries })));
        }
    }

    /// Fails every file still pending (the source ended without sending them).
    pub(super) fn cancel(&self, dest: &Destination<'_>) {
        let pending: Vec<_> = lock(&self.pending).drain().collect();
        self.drained.notify_all();
        for (id, f) in pending {
            self.fail(dest, id, &f, "the source did not send this file");
        }
    }

    /// One data stream's receiver: applies its records until the end record.
    pub(super) fn receive(&self, dest: &Destination<'_>, mut stream: Incoming) -> io::Result<()> {
        while let Some(header) = stream.next_header()? {
            let file = lock(&self.pending).get(&header.id).cloned();
            if file.is_none() && lock(&self.failed).contains(&header.id) {
                continue;
            }
            let Some(file) = file else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a record for file {} that was not asked for", header.id),
                ));
            };
            match header.kind {
                Kind::Data => self.write(dest, &file, header, &mut stream)?,
                Kind::Fail => {
                    let message = String::from_utf8_lossy(stream.payload()?).into_owned();
                    self.fail(dest, header.id, &file, &message);
                }
                Kind::End => unreachable!("the reader returns None at the end"),
            }
        }
        Ok(())
    }

    /// Writes one data record from `stream`; publishes the file when its last byte is
    /// in. Only a broken stream is an error; a file that cannot be written fails alone
    /// (a payload not taken is skipped by the stream's next read).
    fn write(
        &self,
        dest: &Destination<'_>,
        file: &PendingFile,
        header: Header,
        stream: &mut Incoming,
    ) -> io::Result<()> {
        let (id, offset, total, len) = (header.id, header.offset, header.total, header.len);
        let len = u64::from(len);
        let size = file.entry.size;
        if total > size || offset + len > size {
            self.fail(
                dest,
                id,
                file,
                "the source sent bytes past the end of the file",
            );
            return Ok(());
        }
        let staged = {
            let mut state = lock(&file.state);
            match &*state {
                FileState::Waiting => {
                    let replacing = file.replaces.is_some();
                    let staged = dest
                        .stage(
                            &file.target,
                            &file.entry,
                            replacing,
                            lock(&file.part).take(),
                        )
                        .and_then(|staged| {
                            // The kept blocks must still be there, or the file would be wrong.
                            match file.resume {
                                Some(trusted) if file::len(staged.fd.as_fd())? < trusted => {
                                    Err(io::Error::other("the partial file changed while resuming"))
                                }
                                _ => Ok(staged),
                            }
                        });
                    match staged {
                        Ok(staged) => {
                            // Only a file sent whole, from the start, is written in order.
                            let prefault = (file.resume.is_none() && total == size)
                                .then(|| Prefault::start(staged.fd.as_fd(), size))
                                .flatten();
                            let staged = Arc::new(staged);
                            *state = FileState::Writing {
                                staged: staged.clone(),
                                received: 0,
                                prefault,
                            };
                            staged
                        }
                        Err(e) => {
                            drop(state);
                            self.fail(dest, id, file, &format!("create: {e}"));
                            return Ok(());
                        }
                    }
                }
                FileState::Writing { staged, .. } => staged.clone(),
                FileState::Done => return Ok(()),
            }
        };
        if let Err(e) = stream.write_to(staged.fd.as_fd(), offset, len)? {
            self.fail(dest, id, file, &format!("write: {e}"));
            return Ok(());
        }
        dest.received(len);
        let finished = {
            let mut state = lock(&file.state);
            match &mut *state {
                FileState::Writing {
                    received, prefault, ..
                } => {
                    *received += len;
                    if let Some(prefault) = prefault {
                        prefault.written(offset + len);
                    }
                    (*received == total).then(|| std::mem::replace(&mut *state, FileState::Done))
                }
                _ => None,
            }
        };
        let Some(finished) = finished else {
            return Ok(());
        };
        // Dropped outside the lock: stopping a prefault helper waits for its thread.
        drop(finished);
        self.finish(id);
        // Holes at the end (sparse), or a resumed file longer than the source.
        let published = (if total < size || file.resume.is_some() {
            file::set_len(staged.fd.as_fd(), size)
        } else {
            Ok(())
        })
        .and_then(|()| dest.publish(&file.target, &file.entry, &staged, file.replaces.as_ref()));
        match published {
            Ok(()) => {
                let reused = if file.resume.is_some() {
                    size - total
                } else {
                    0
                };
                dest.file_done(
                    &file.target,
                    &file.entry,
                    file.replaces.as_ref(),
                    size - reused,
                    reused,
                );
            }
            Err(e) => {
                dest.discard(&file.target, &staged, &file.entry);
                dest.file_failed(&file.target, "copy", &e);
            }
        }
        Ok(())
    }

    /// Forgets a written file, and lets waiting planners go on once the map has drained
    /// to [`RESUME_PENDING`] (only then can one be waiting, and a notification is a system
    /// call whether or not anyone waits).
    fn finish(&self, id: u64) {
        let mut pending = lock(&self.pending);
        let drained = pending.remove(&id).is_some() && pending.len() == RESUME_PENDING;
        drop(pending);
        if drained {
            self.drained.notify_all();
        }
    }

    /// Drops a file that cannot be written (its remaining records are ignored), removes
    /// its temp file, and reports it.
    fn fail(&self, dest: &Destination<'_>, id: u64, file: &PendingFile, message: &str) {
        lock(&self.failed).insert(id);
        self.finish(id);
        let state = std::mem::replace(&mut *lock(&file.state), FileState::Done);
        if let FileState::Writing { staged, .. } = state {
            dest.discard(&file.target, &staged, &file.entry);
        }
        dest.file_failed(&file.target, "copy", &io::Error::other(message.to_owned()));
    }
}
