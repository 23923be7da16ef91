//! Directory access: open directories without following symlinks, list them with large
//! `getdents64` reads, and `statx` each entry with only the fields the planner needs.

use std::cell::RefCell;
use std::ffi::{OsStr, OsString};
use std::io;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path};

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawDir, StatxFlags};

use super::io_err;
use crate::entry::{Entry, EntryKind, InodeId, Meta, Timestamp};

/// `getdents64` buffer size: big enough that a directory of thousands of entries is read
/// in a handful of calls.
const DENTS_BUF: usize = 256 * 1024;

thread_local! {
    static DENTS: RefCell<Vec<MaybeUninit<u8>>> = RefCell::new(vec![MaybeUninit::uninit(); DENTS_BUF]);
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Opens a transfer root given by the user (symlinks in the path are followed, as every
/// file tool does for the paths it is handed).
pub fn open_root(path: &Path) -> io::Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err)
}

/// Opens the directory `name` inside `parent`, refusing to follow a symlink.
pub fn open_dir_at(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    rustix::fs::openat(parent, name, DIR_FLAGS, Mode::empty()).map_err(io_err)
}

/// Opens `rel` beneath `root` one component at a time, never following a symlink, so the
/// result is always inside `root`. `rel` must be relative and free of `..`.
pub fn open_beneath(root: BorrowedFd<'_>, rel: &Path) -> io::Result<OwnedFd> {
    let mut current: Option<OwnedFd> = None;
    for component in rel.components() {
        let name = match component {
            Component::Normal(name) => name,
            Component::CurDir => continue,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("path {} is not a plain relative path", rel.display()),
                ));
            }
        };
        let parent = current.as_ref().map_or(root, |fd| fd.as_fd());
        current = Some(open_dir_at(parent, name)?);
    }
    match current {
        Some(fd) => Ok(fd),
        None => rustix::fs::openat(root, ".", DIR_FLAGS, Mode::empty()).map_err(io_err),
    }
}

/// The names in a directory, without `.` and `..`.
pub fn read_names(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    DENTS.with(|buf| {
        let mut buf = buf.borrow_mut();
        // RawDir reads from the fd's current offset; start from the beginning.
        rustix::fs::seek(dir, rustix::fs::SeekFrom::Start(0)).map_err(io_err)?;
        let mut raw = RawDir::new(dir, buf.as_mut_slice());
        let mut names = Vec::new();
        while let Some(item) = raw.next() {
            let item = item.map_err(io_err)?;
            let name = item.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(OsString::from_vec(name.to_vec()));
            }
        }
        Ok(names)
    })
}

/// The result of listing one directory: the entries that could be examined, and the
/// names that could not (with why). Entries that vanished mid-listing are simply absent.
#[derive(Debug, Default)]
pub struct Listing {
    pub entries: Vec<Entry>,
    pub errors: Vec<(OsString, io::Error)>,
}

/// Lists `dir` and stats every entry. Symlink targets are read too.
pub fn list(dir: BorrowedFd<'_>) -> io::Result<Listing> {
    let mut listing = Listing::default();
    for name in read_names(dir)? {
        match stat_at(dir, &name) {
            Ok(entry) => listing.entries.push(entry),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => listing.errors.push((name, e)),
        }
    }
    Ok(listing)
}

/// The `statx` fields the engine uses; asking for less lets network filesystems skip work.
fn statx_mask() -> StatxFlags {
    StatxFlags::TYPE
        | StatxFlags::MODE
        | StatxFlags::NLINK
        | StatxFlags::UID
        | StatxFlags::GID
        | StatxFlags::MTIME
        | StatxFlags::INO
        | StatxFlags::SIZE
        | StatxFlags::BLOCKS
}

/// Stats `name` inside `dir` without following a symlink.
pub fn stat_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Entry> {
    let st =
        rustix::fs::statx(dir, name, AtFlags::SYMLINK_NOFOLLOW, statx_mask()).map_err(io_err)?;
    let kind = match FileType::from_raw_mode(u32::from(st.stx_mode)) {
        FileType::RegularFile => EntryKind::File,
        FileType::Directory => EntryKind::Dir,
        FileType::Symlink => EntryKind::Symlink,
        _ => EntryKind::Special,
    };
    let link_target = if kind == EntryKind::Symlink {
        Some(read_link_at(dir, name)?)
    } else {
        None
    };
    Ok(Entry {
        name: name.to_owned(),
        kind,
        type_bits: u32::from(st.stx_mode) & 0o170000,
        size: if kind == EntryKind::Dir {
            0
        } else {
            st.stx_size
        },
        allocated: st.stx_blocks.saturating_mul(512),
        meta: Meta {
            mode: u32::from(st.stx_mode) & 0o7777,
            uid: st.stx_uid,
            gid: st.stx_gid,
            mtime: Timestamp {
                sec: st.stx_mtime.tv_sec,
                nsec: st.stx_mtime.tv_nsec,
            },
        },
        inode: InodeId {
            dev: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
            ino: st.stx_ino,
        },
        nlink: st.stx_nlink,
        rdev: rustix::fs::makedev(st.stx_rdev_major, st.stx_rdev_minor),
        link_target,
        xattrs: None,
        hash: None,
    })
}

/// Reads a symlink's target as raw bytes.
pub fn read_link_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OsString> {
    let target = rustix::fs::readlinkat(dir, name, Vec::new()).map_err(io_err)?;
    Ok(OsString::from_vec(target.into_bytes()))
}

/// Creates directory `name` in `parent` (owner-writable until its final mode is set at
/// the end of the run) and opens it. An existing directory is fine.
pub fn make_dir_at(parent: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<OwnedFd> {
    match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode((mode | 0o700) & 0o7777)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => open_dir_at(parent, name),
        Err(e) => Err(io_err(e)),
    }
}

/// Removes a non-directory entry.
pub fn unlink_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(io_err)
}

/// Removes an empty directory.
pub fn rmdir_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(io_err)
}

/// Atomically replaces `to` with `from`, both in `dir`.
pub fn rename_in(dir: BorrowedFd<'_>, from: &OsStr, to: &OsStr) -> io::Result<()> {
    rustix::fs::renameat(dir, from, dir, to).map_err(io_err)
}

/// Stats an open directory itself.
pub fn stat_at_self(dir: BorrowedFd<'_>) -> io::Result<Entry> {
    stat_at(dir, OsStr::new("."))
}
