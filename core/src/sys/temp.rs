//! Temp files that belong to one writer.
//!
//! A file is written under a hidden temp name and renamed over its final name only when
//! complete. Several runs may write the same target at once (two pushes to one path), so
//! a temp file must never be shared, truncated or removed by another run while its writer
//! may still use it:
//!
//! - every temp name is unique: `.blit-<key>.<nonce>.<tmp|part>`, where `<key>` is derived
//!   from the final name (so a later run can find the partial files of a target to resume
//!   them) and `<nonce>` is new for every file; it is created with `O_EXCL`, never reused;
//! - its writer holds an exclusive `flock` on it for as long as it may write or publish
//!   it, so another run can tell a file in use from one that was abandoned (a killed
//!   writer's locks are gone with it);
//! - another run takes a leftover only by taking that lock first: to resume it
//!   ([`claim`]) or to remove it ([`remove_if_abandoned`]).
//!
//! Names of the older form `.blit-<key>.<tmp|part>` (no nonce) are still recognised, so
//! partial files left by an older release can be resumed or cleaned up.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{FlockOperation, Mode, OFlags};

use super::{dir, io_err};

/// How long a temp file whose lock cannot tell us anything (a filesystem without `flock`,
/// or a hard-link temp shared with a live file) must sit untouched before it counts as
/// abandoned: far longer than any writer pauses between two writes.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(3600);

/// Hex digits of the key derived from the final name.
const KEY_LEN: usize = 16;
/// Hex digits of the per-file nonce.
const NONCE_LEN: usize = 16;
/// Attempts at a fresh name before giving up (each collision is astronomically rare;
/// repeated failures mean something else is wrong).
const CREATE_ATTEMPTS: usize = 8;

/// What a temp file is for, encoded in its suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TempSuffix {
    /// Written in one go; a leftover is garbage.
    Tmp,
    /// A large file in progress; a leftover can be resumed with `--resume`.
    Part,
}

impl TempSuffix {
    fn as_str(self) -> &'static str {
        match self {
            TempSuffix::Tmp => "tmp",
            TempSuffix::Part => "part",
        }
    }
}

/// The key of the temp files standing in for `final_name`: 16 hex digits of its BLAKE3,
/// so a 255-byte name still yields a short temp name.
pub fn key(final_name: &OsStr) -> String {
    let hash = blake3::hash(final_name.as_bytes());
    hash.to_hex()[..KEY_LEN].to_owned()
}

/// A fresh, unique temp name for `final_name`.
pub fn unique_name(final_name: &OsStr, suffix: TempSuffix) -> OsString {
    OsString::from(format!(
        ".blit-{}.{:0width$x}.{}",
        key(final_name),
        nonce(),
        suffix.as_str(),
        width = NONCE_LEN
    ))
}

/// A value no other temp name of this process has, and very unlikely in any other: a
/// random start (from the kernel, once) stepped by an odd constant, which visits every
/// 64-bit value before repeating.
fn nonce() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        let mut b = [0u8; 8];
        let seeded = rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty());
        match seeded {
            Ok(8) => u64::from_le_bytes(b),
            // No entropy to be had: the pid and the time still separate processes.
            _ => {
                let now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                now ^ (u64::from(std::process::id()) << 32)
            }
        }
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    start.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// A temp name, taken apart.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// The key of the final name it stands in for.
    pub key: &'a [u8],
    pub suffix: TempSuffix,
}

/// Recognises Blit's temp names (`.blit-<key>[.<nonce>].<tmp|part>`).
pub fn parse(name: &OsStr) -> Option<Parsed<'_>> {
    let rest = name.as_bytes().strip_prefix(b".blit-")?;
    let hex = |b: &[u8], n: usize| b.len() == n && b.iter().all(u8::is_ascii_hexdigit);
    let (key, rest) = rest.split_at_checked(KEY_LEN)?;
    let rest = rest.strip_prefix(b".")?;
    let suffix = match rest.rsplit_once_byte(b'.') {
        Some((nonce, suffix)) if hex(nonce, NONCE_LEN) => suffix,
        Some(_) => return None,
        None => rest,
    };
    let suffix = match suffix {
        b"tmp" => TempSuffix::Tmp,
        b"part" => TempSuffix::Part,
        _ => return None,
    };
    hex(key, KEY_LEN).then_some(Parsed { key, suffix })
}

/// Byte-slice `rsplit_once` for one separator.
trait RsplitOnceByte {
    fn rsplit_once_byte(&self, sep: u8) -> Option<(&[u8], &[u8])>;
}

impl RsplitOnceByte for [u8] {
    fn rsplit_once_byte(&self, sep: u8) -> Option<(&[u8], &[u8])> {
        let i = self.iter().rposition(|&b| b == sep)?;
        Some((&self[..i], &self[i + 1..]))
    }
}

/// Whether `name` looks like one of Blit's temp files.
pub fn is_temp_name(name: &OsStr) -> bool {
    parse(name).is_some()
}

/// A temp file this writer owns: open, locked, under a name nobody else uses.
#[derive(Debug)]
pub struct Owned {
    pub fd: OwnedFd,
    pub name: OsString,
}

/// Creates a new temp file for `final_name` in `dir`, exclusively, and locks it. It is
/// private to its owner (0600) until the final mode is set: a temp file must never carry
/// setuid bits or someone else's permissions before its owner is set.
pub fn create(dir: BorrowedFd<'_>, final_name: &OsStr, suffix: TempSuffix) -> io::Result<Owned> {
    let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut last = None;
    for _ in 0..CREATE_ATTEMPTS {
        let name = unique_name(final_name, suffix);
        let fd = match rustix::fs::openat(dir, &*name, flags, Mode::from_raw_mode(0o600)) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::EXIST) => continue,
            Err(e) => return Err(io_err(e)),
        };
        // Between the create and the lock, a cleaner that ignores our fresh file's age
        // could have locked and removed it: then either our lock fails (it still holds
        // it) or the file has no name left. Either way, start over with a new name.
        match lock(fd.as_fd()) {
            Lock::Held if links(fd.as_fd())? > 0 => return Ok(Owned { fd, name }),
            Lock::Unsupported => return Ok(Owned { fd, name }),
            Lock::Held | Lock::Busy => {
                last = Some(io::Error::other(
                    "a fresh temp file was taken by another run",
                ));
                let _ = unlink_if_same(dir, &name, fd.as_fd());
            }
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free temp name")))
}

/// Takes over the leftover temp file `name` in `dir` (to resume it): `None` if another
/// writer holds it, or it is gone.
pub fn claim(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<Owned>> {
    let flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    let st = rustix::fs::fstat(&fd).map_err(io_err)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Ok(None);
    }
    let ours = match lock(fd.as_fd()) {
        Lock::Held => true,
        Lock::Busy => false,
        Lock::Unsupported => idle_for(&st) >= ABANDONED_AFTER,
    };
    // Locked, but possibly after its last holder removed or published it.
    if !ours || !is_still(dir, name, &st)? {
        return Ok(None);
    }
    Ok(Some(Owned {
        fd,
        name: name.to_owned(),
    }))
}

/// Removes the leftover temp file `name` from `dir` if no writer holds it any more.
/// Returns whether it did. A hard-link temp (more than one link) is also a live file's
/// name, so its lock says nothing about the temp: it goes only once it is old.
pub fn remove_if_abandoned(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<bool> {
    let Some(owned) = claim(dir, name)? else {
        return Ok(false);
    };
    let st = rustix::fs::fstat(&owned.fd).map_err(io_err)?;
    if st.st_nlink > 1 && idle_for(&st) < ABANDONED_AFTER {
        return Ok(false);
    }
    unlink_if_same(dir, name, owned.fd.as_fd())?;
    Ok(true)
}

/// Locks an unnamed (`O_TMPFILE`) file before it is linked under a temp name, so that
/// the moment it has a name it is visibly in use.
pub fn lock_unnamed(fd: BorrowedFd<'_>) {
    // A fresh unnamed file cannot be locked by anyone else; unsupported means no lock.
    let _ = lock(fd);
}

enum Lock {
    Held,
    Busy,
    /// The filesystem has no `flock` (some FUSE and network filesystems).
    Unsupported,
}

fn lock(fd: BorrowedFd<'_>) -> Lock {
    loop {
        match rustix::fs::flock(fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Lock::Held,
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Lock::Busy,
            Err(_) => return Lock::Unsupported,
        }
    }
}

fn links(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(rustix::fs::fstat(fd).map_err(io_err)?.st_nlink as u64)
}

/// How long since the file's content or status last changed.
fn idle_for(st: &rustix::fs::Stat) -> Duration {
    let changed = st.st_ctime.max(st.st_mtime);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    Duration::from_secs(now.saturating_sub(changed).max(0) as u64)
}

/// Whether `name` in `dir` is still the inode `st` describes.
fn is_still(dir: BorrowedFd<'_>, name: &OsStr, st: &rustix::fs::Stat) -> io::Result<bool> {
    match rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
        Ok(now) => Ok(now.st_ino == st.st_ino && now.st_dev == st.st_dev && st.st_nlink > 0),
        Err(rustix::io::Errno::NOENT) => Ok(false),
        Err(e) => Err(io_err(e)),
    }
}

/// Unlinks `name` if it is still the file open as `fd`.
fn unlink_if_same(dir: BorrowedFd<'_>, name: &OsStr, fd: BorrowedFd<'_>) -> io::Result<()> {
    let st = rustix::fs::fstat(fd).map_err(io_err)?;
    if is_still(dir, name, &st)? {
        dir::unlink_at(dir, name)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_recognised_and_short() {
        let long = OsString::from("x".repeat(255));
        for suffix in [TempSuffix::Tmp, TempSuffix::Part] {
            let a = unique_name(&long, suffix);
            let b = unique_name(&long, suffix);
            assert_ne!(a, b, "every temp name is new");
            assert!(a.len() < 60, "{a:?}");
            let parsed = parse(&a).expect("recognised");
            assert_eq!(parsed.key, key(&long).as_bytes());
            assert_eq!(parsed.suffix, suffix);
        }
        // The older form, without a nonce, is still recognised.
        let old = format!(".blit-{}.part", key(OsStr::new("f")));
        assert_eq!(parse(OsStr::new(&old)).unwrap().suffix, TempSuffix::Part);
        for not in [
            ".blit-notatempname.tmp",
            "file.tmp",
            ".blit-0123456789abcdef.xyz.tmp",
            ".blit-0123456789abcdef.0123456789abcdef.txt",
        ] {
            assert!(!is_temp_name(OsStr::new(not)), "{not}");
        }
    }

    #[test]
    fn a_held_temp_file_is_neither_claimed_nor_removed() {
        let d = tempfile::tempdir().unwrap();
        let dir = dir::open_root(d.path()).unwrap();
        let owned = create(dir.as_fd(), OsStr::new("f"), TempSuffix::Part).unwrap();
        assert!(claim(dir.as_fd(), &owned.name).unwrap().is_none());
        assert!(!remove_if_abandoned(dir.as_fd(), &owned.name).unwrap());
        assert!(d.path().join(&owned.name).exists());
        // Its writer is gone: now it is a leftover, to resume or to remove.
        let name = owned.name.clone();
        drop(owned);
        let resumed = claim(dir.as_fd(), &name).unwrap().expect("abandoned");
        assert!(!remove_if_abandoned(dir.as_fd(), &name).unwrap(), "claimed");
        drop(resumed);
        assert!(remove_if_abandoned(dir.as_fd(), &name).unwrap());
        assert!(!d.path().join(&name).exists());
    }
}
