//! `Entry`: what the walk learns about one directory entry, and what the planner compares.
//!
//! Names are raw bytes (`OsString`): Blit never assumes UTF-8, so any name the kernel
//! accepts survives a transfer unchanged.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

pub use crate::sys::xattr::Xattrs;

/// What kind of filesystem object an entry is. Symlinks are never followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// FIFOs, sockets and device nodes (recreated with `mknod`).
    Special,
}

impl EntryKind {
    /// A short word for messages and dry-run listings.
    pub fn label(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Dir => "dir",
            EntryKind::Symlink => "symlink",
            EntryKind::Special => "special",
        }
    }
}

/// A modification time with nanoseconds, as the kernel keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    pub sec: i64,
    pub nsec: u32,
}

impl Timestamp {
    /// Whether two times are within `window_ns` nanoseconds of each other.
    pub fn within(self, other: Timestamp, window_ns: u64) -> bool {
        let a = i128::from(self.sec) * 1_000_000_000 + i128::from(self.nsec);
        let b = i128::from(other.sec) * 1_000_000_000 + i128::from(other.nsec);
        (a - b).unsigned_abs() <= u128::from(window_ns)
    }
}

/// Metadata Blit preserves for every entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    /// Permission bits including setuid/setgid/sticky (`mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: Timestamp,
}

/// Identity of an inode, used to find hard-link groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct InodeId {
    pub dev: u64,
    pub ino: u64,
}

/// One entry of a directory: its name within that directory and what `statx` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: OsString,
    pub kind: EntryKind,
    /// The file-type bits of `st_mode` (`S_IFMT`), needed to recreate special files.
    pub type_bits: u32,
    pub size: u64,
    /// Bytes allocated on disk (`st_blocks * 512`); less than `size` means holes.
    pub allocated: u64,
    pub meta: Meta,
    pub inode: InodeId,
    pub nlink: u32,
    /// Device number for device nodes (`st_rdev`).
    pub rdev: u64,
    /// Target of a symlink, read with `readlinkat`.
    pub link_target: Option<OsString>,
    /// BLAKE3 of the content, filled in only when the comparison needs it (`--checksum`).
    pub hash: Option<[u8; 32]>,
    /// Extended attributes, carried only when the source is remote and `-X` is on (a
    /// local source's are read from its open file when applied).
    pub xattrs: Option<Xattrs>,
}

impl Entry {
    pub fn is_dir(&self) -> bool {
        self.kind == EntryKind::Dir
    }

    /// Whether the file has holes worth preserving.
    pub fn is_sparse(&self) -> bool {
        self.kind == EntryKind::File && self.allocated < self.size
    }

    pub fn name_bytes(&self) -> &[u8] {
        self.name.as_bytes()
    }
}

/// Sorts entries by name bytes, the order the planner merges in.
pub fn sort_by_name(entries: &mut [Entry]) {
    entries.sort_unstable_by(|a, b| a.name_bytes().cmp(b.name_bytes()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_compares_nanoseconds() {
        let a = Timestamp { sec: 10, nsec: 5 };
        let b = Timestamp { sec: 10, nsec: 6 };
        assert!(!a.within(b, 0));
        assert!(a.within(b, 1));
        let c = Timestamp { sec: 11, nsec: 4 };
        assert!(a.within(c, 1_000_000_000));
        assert!(!a.within(c, 999_999_998));
    }
}
