//! Warming the page cache ahead of one large sequential write.
//!
//! Writing a file through the page cache costs, for every page, an allocation and the
//! first touch of that memory. On a virtual machine that hands free memory back to its
//! host (free page reporting, ballooning: the usual cloud and Kubernetes node), that first
//! touch is a fault in the host and dominates the copy: on the bench VM, 4 GiB copied at
//! 2.7 GB/s into memory still backed by the host and at 0.5 GB/s into memory that was
//! handed back. One thread writes a large file (ext4 serializes buffered writes to one
//! inode), so a helper thread takes that cost on another core: the file first gets its
//! final length, and the helper reads ahead (`POSIX_FADV_WILLNEED`) the holes a little in
//! front of the writer. Reading a hole of a local filesystem puts zeroed, clean pages in
//! the cache without any I/O; the writer then copies into pages that are already there.
//! Where the writer overtakes the helper, the helper jumps ahead of it again, so the two
//! fault in different parts of the file at the same time.
//!
//! Memory that is still backed by the host is another matter: there the writer's own
//! faults are cheap, and a helper only contends with it for the page cache's locks (W2
//! local copy 2.2 s without a helper, 3.1 s with one that never rests). So the helper
//! measures what each of its steps costs it (thread CPU time): a step cheaper than
//! [`WARM_COST`] found warm memory, and the helper rests until the writer has moved on by
//! [`REST`] before it tries again. On the bench VM a step costs 0.22–0.25 ns per byte in
//! warm memory and 1.6–1.7 ns per byte in memory that was handed back; one file often
//! gets both (the kernel hands out recently freed pages first).
//!
//! It is used only where it pays: files of at least [`MIN_LEN`], written from the start
//! (not sparse, not resumed), on ext4 and XFS, whose holes read back from memory (on a
//! network filesystem the read-ahead would be real reads). The pages warmed ahead are
//! bounded by [`WINDOW`] per file, and they are clean: under memory pressure the kernel
//! can drop them, which only costs the writer the fault it would have taken anyway.

use std::io;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rustix::fd::{BorrowedFd, OwnedFd};

use crate::sys::file;

/// Files smaller than this are written without a helper (a thread per file would cost
/// more than it saves).
pub const MIN_LEN: u64 = 64 << 20;
/// The helper starts this far beyond the writer, so the two do not queue on the same
/// pages.
const LEAD: u64 = 16 << 20;
/// The helper never warms more than this far beyond the writer.
const WINDOW: u64 = 128 << 20;
/// Bytes read ahead per call (what the kernel reads ahead in one go anyway).
const STEP: u64 = 2 << 20;
/// How long a helper that is far enough ahead sleeps before looking again (the writer
/// also wakes it when it moves on).
const NAP: Duration = Duration::from_millis(5);
/// A step that cost the helper less CPU than this (0.6 ns per byte) found warm memory.
const WARM_COST: Duration = Duration::from_nanos(STEP * 6 / 10);
/// After a step in warm memory the helper rests until the writer has written this much
/// more.
const REST: u64 = 64 << 20;

/// Superblock magic numbers of the filesystems whose holes read back from memory.
const EXT4_MAGIC: u64 = 0xEF53;
const XFS_MAGIC: u64 = 0x5846_5342;

/// The helper of one file being written; stopping it (drop) waits for the helper thread.
pub struct Prefault {
    shared: Arc<Shared>,
    helper: Option<JoinHandle<()>>,
}

struct Shared {
    /// Everything below this offset has been written.
    written: AtomicU64,
    /// The helper has read ahead everything it meant to below this offset.
    warmed: AtomicU64,
    stop: AtomicBool,
}

impl Prefault {
    /// Sets the length of `fd` (an empty file about to be written with `len` bytes, from
    /// the start on) and starts the helper; `None`, with the file untouched, where a
    /// helper does not pay.
    pub fn start(fd: BorrowedFd<'_>, len: u64) -> Option<Prefault> {
        if len < MIN_LEN || !holes_read_from_memory(fd) {
            return None;
        }
        Prefault::start_on(fd, len, WARM_COST).ok()
    }

    /// As `start`, unconditionally; the helper rests after a step cheaper than `warm`.
    fn start_on(fd: BorrowedFd<'_>, len: u64, warm: Duration) -> io::Result<Prefault> {
        let own = rustix::io::fcntl_dupfd_cloexec(fd, 0).map_err(crate::sys::io_err)?;
        file::set_len(fd, len)?;
        let shared = Arc::new(Shared {
            written: AtomicU64::new(0),
            warmed: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let theirs = shared.clone();
        let helper = std::thread::Builder::new()
            .name("blit-prefault".into())
            .spawn(move || run(&own, len, warm, &theirs))?;
        Ok(Prefault {
            shared,
            helper: Some(helper),
        })
    }

    /// The writer has written everything below `offset` (may be called out of order).
    pub fn written(&self, offset: u64) {
        self.shared.written.fetch_max(offset, Ordering::Relaxed);
        if let Some(helper) = &self.helper {
            helper.thread().unpark();
        }
    }

    /// How far the helper has read ahead (for tests).
    #[cfg(test)]
    fn warmed(&self) -> u64 {
        self.shared.warmed.load(Ordering::Relaxed)
    }
}

impl Drop for Prefault {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(helper) = self.helper.take() {
            helper.thread().unpark();
            let _ = helper.join();
        }
    }
}

/// The helper: reads ahead the range `LEAD..WINDOW` beyond the writer, step by step,
/// resting while the memory it gets is warm, until the end of the file or until told to
/// stop. A failed read-ahead ends it quietly: the writer does not need it.
fn run(fd: &OwnedFd, len: u64, warm: Duration, shared: &Shared) {
    let mut next = 0;
    let mut rest_until = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        let written = shared.written.load(Ordering::Relaxed);
        next = next.max(written.saturating_add(LEAD));
        if next >= len {
            break;
        }
        if written < rest_until || next >= written.saturating_add(WINDOW) {
            std::thread::park_timeout(NAP);
            continue;
        }
        let step = STEP.min(len - next);
        let before = thread_cpu();
        let advice = rustix::fs::Advice::WillNeed;
        if rustix::fs::fadvise(fd, next, NonZeroU64::new(step), advice).is_err() {
            break;
        }
        if thread_cpu().saturating_sub(before) < warm {
            rest_until = written.saturating_add(REST);
        }
        next += step;
        shared.warmed.store(next, Ordering::Relaxed);
    }
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Whether `fd` is on a filesystem whose holes read back as zeroes from memory.
fn holes_read_from_memory(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fstatfs(fd).is_ok_and(|fs| {
        let magic = fs.f_type as u64;
        magic == EXT4_MAGIC || magic == XFS_MAGIC
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fd::AsFd;

    fn scratch() -> (tempfile::TempDir, std::fs::File) {
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join("f"))
            .unwrap();
        (dir, f)
    }

    #[test]
    fn small_files_and_memory_filesystems_get_no_helper() {
        let (_dir, f) = scratch();
        assert!(Prefault::start(f.as_fd(), MIN_LEN - 1).is_none());
        assert_eq!(f.metadata().unwrap().len(), 0, "the file is left alone");
        let shm = std::fs::File::open("/dev/shm").or_else(|_| std::fs::File::open("/proc"));
        if let Ok(dir) = shm {
            assert!(!holes_read_from_memory(dir.as_fd()));
        }
    }

    /// Waits until the helper has read ahead at least `want` bytes, then a little more
    /// in case it would go further than it should.
    fn settles_at(pf: &Prefault, want: u64) -> u64 {
        for _ in 0..5000 {
            if pf.warmed() >= want {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(4 * NAP);
        pf.warmed()
    }

    fn on_ext4_or_xfs(f: &std::fs::File) -> bool {
        let yes = holes_read_from_memory(f.as_fd());
        if !yes {
            eprintln!("skipped: the test directory is not on ext4 or XFS");
        }
        yes
    }

    #[test]
    fn the_helper_stays_ahead_of_the_writer_within_its_window_and_the_bytes_are_the_writers() {
        let (dir, f) = scratch();
        if !on_ext4_or_xfs(&f) {
            return;
        }
        let len = WINDOW + LEAD + STEP + 3;
        // Never resting: as if every step found memory handed back to the host.
        let pf = Prefault::start_on(f.as_fd(), len, Duration::ZERO).unwrap();
        assert_eq!(
            f.metadata().unwrap().len(),
            len,
            "the final length is set first"
        );
        assert_eq!(
            settles_at(&pf, WINDOW),
            WINDOW,
            "up to the window, no further"
        );

        let chunk = vec![0xa5u8; 1 << 20];
        let mut at = 0;
        while at < len {
            let n = chunk.len().min((len - at) as usize);
            file::write_all_at(f.as_fd(), &chunk[..n], at).unwrap();
            at += n as u64;
            pf.written(at);
        }
        drop(pf);
        let back = std::fs::read(dir.path().join("f")).unwrap();
        assert_eq!(back.len() as u64, len);
        assert!(
            back.iter().all(|&b| b == 0xa5),
            "every byte is the writer's"
        );
    }

    #[test]
    fn in_warm_memory_the_helper_rests_until_the_writer_has_moved_on() {
        let (_dir, f) = scratch();
        if !on_ext4_or_xfs(&f) {
            return;
        }
        // Every step counts as cheap.
        let pf = Prefault::start_on(f.as_fd(), 4 * REST, Duration::MAX).unwrap();
        assert_eq!(
            settles_at(&pf, LEAD + STEP),
            LEAD + STEP,
            "one step, then rest"
        );
        pf.written(REST - 1);
        assert_eq!(settles_at(&pf, 0), LEAD + STEP, "still resting");
        pf.written(REST);
        let probe = REST + LEAD + STEP;
        assert_eq!(
            settles_at(&pf, probe),
            probe,
            "one more step after the rest"
        );
    }
}
