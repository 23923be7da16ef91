//! A directory cursor: one open directory beneath a root, moved from path to path by
//! climbing to the common ancestor and descending from there. Visiting directories in
//! tree order then costs a few system calls per step, however deep they are; opening
//! each one from the root instead costs one call per component, which is quadratic on a
//! deep chain (a 3,000-level chain took 14 s that way).
//!
//! Only the deepest [`KEEP_OPEN`] levels keep their descriptors, so a 100,000-level chain
//! needs no more descriptors than a shallow tree. Climbing above them opens `..`, and the
//! directory found must be the very one (device and inode) the cursor came down
//! through: a directory moved meanwhile would otherwise lead the cursor out of the root.
//! On a mismatch, or when `..` cannot be searched, the path is opened again from the
//! root one component at a time without following symlinks, and if that is not the same
//! directory either the move fails with an error.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};

use super::{dir, io_err};

/// Descriptors a cursor holds at most (the deepest levels it went through). Trees are
/// rarely deeper than this, so ordinary walks never climb through `..`; and many walks
/// at once (an agent serves many clients) stay far from the process's descriptor limit.
pub const KEEP_OPEN: usize = 16;

/// A device and inode: what a directory reached through `..` is checked against.
pub(crate) type Identity = (u64, u64);

pub(crate) fn identity(fd: BorrowedFd<'_>) -> io::Result<Identity> {
    let st = rustix::fs::fstat(fd).map_err(io_err)?;
    Ok((st.st_dev, st.st_ino))
}

/// One directory below the root on the cursor's path.
struct Level {
    /// Where this level's name starts in the cursor's path bytes.
    start: usize,
    /// `None` once closed to stay within `KEEP_OPEN`; `identity` is then set.
    fd: Option<OwnedFd>,
    identity: Option<Identity>,
}

/// An open directory at a relative path beneath a root (borrowed or owned: `R`); see
/// the module doc.
pub struct Cursor<R> {
    root: R,
    /// The current directory's path relative to the root, `/`-separated ("" at the root).
    path: Vec<u8>,
    levels: Vec<Level>,
    /// How many of the deepest levels hold a descriptor (always a run at the end).
    held: usize,
}

impl<R: AsFd> Cursor<R> {
    /// A cursor at `root` itself.
    pub fn new(root: R) -> Cursor<R> {
        Cursor {
            root,
            path: Vec::new(),
            levels: Vec::new(),
            held: 0,
        }
    }

    /// The directory the cursor is at.
    pub fn fd(&self) -> BorrowedFd<'_> {
        match self.levels.last() {
            Some(level) => level
                .fd
                .as_ref()
                .expect("the deepest level is always open")
                .as_fd(),
            None => self.root.as_fd(),
        }
    }

    /// Where the cursor is, relative to the root.
    pub fn rel(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.path))
    }

    /// How many levels below the root the cursor is.
    pub fn depth(&self) -> usize {
        self.levels.len()
    }

    /// The name of the current directory in its parent ("" at the root).
    pub fn name(&self) -> &OsStr {
        let start = self.levels.last().map_or(0, |l| l.start);
        OsStr::from_bytes(&self.path[start..])
    }

    /// Enters subdirectory `name` (a single plain component; a symlink is refused).
    pub fn down(&mut self, name: &OsStr) -> io::Result<()> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes == b"." || bytes == b".." || bytes.contains(&b'/') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} is not a directory name"),
            ));
        }
        let fd = dir::open_dir_at(self.fd(), name)?;
        let start = if self.path.is_empty() {
            0
        } else {
            self.path.push(b'/');
            self.path.len()
        };
        self.path.extend_from_slice(bytes);
        self.levels.push(Level {
            start,
            fd: Some(fd),
            identity: None,
        });
        self.held += 1;
        if self.held > KEEP_OPEN {
            let index = self.levels.len() - self.held;
            let oldest = &mut self.levels[index];
            let fd = oldest.fd.as_ref().expect("held levels are open");
            // Taken now, while it is certainly the directory the cursor came through.
            oldest.identity = Some(identity(fd.as_fd())?);
            oldest.fd = None;
            self.held -= 1;
        }
        Ok(())
    }

    /// Returns to the parent directory. At the root, an error.
    pub fn up(&mut self) -> io::Result<()> {
        let Some(child) = self.levels.pop() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "already at the root",
            ));
        };
        self.path.truncate(child.start.saturating_sub(1));
        self.held -= 1;
        if self.held > 0 || self.levels.is_empty() {
            return Ok(());
        }
        let child_fd = child.fd.expect("the deepest level is always open");
        let parent = self.levels.last().expect("not at the root");
        let wanted = parent.identity.expect("a closed level has its identity");
        let climbed = rustix::fs::openat(
            child_fd.as_fd(),
            "..",
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(io_err)
        .and_then(|fd| Ok((identity(fd.as_fd())?, fd)));
        drop(child_fd);
        let fd = match climbed {
            Ok((found, fd)) if found == wanted => fd,
            _ => match self.reopen(wanted) {
                Ok(fd) => fd,
                Err(e) => {
                    // Nowhere to stand but the root: start over from there.
                    self.levels.clear();
                    self.path.clear();
                    return Err(e);
                }
            },
        };
        let parent = self.levels.last_mut().expect("not at the root");
        parent.fd = Some(fd);
        self.held = 1;
        Ok(())
    }

    /// Opens the current path again from the root (the slow way, for when `..` did not
    /// lead back), and checks it is still the directory the cursor went through.
    fn reopen(&self, wanted: Identity) -> io::Result<OwnedFd> {
        let fd = dir::open_beneath(self.root.as_fd(), self.rel())?;
        if identity(fd.as_fd())? == wanted {
            Ok(fd)
        } else {
            Err(io::Error::other(format!(
                "directory {} was moved during the walk",
                self.rel().display()
            )))
        }
    }

    /// Moves to `rel` (plain components relative to the root): up to the common
    /// ancestor, then down. On an error the cursor stays where it got to, and can be
    /// moved again.
    ///
    /// Only the part of `rel` past the common ancestor is parsed; the common part is
    /// found by comparing bytes, so a step between neighbours deep in a tree does not
    /// cost a parse of their whole paths.
    pub fn go(&mut self, rel: &Path) -> io::Result<()> {
        let not_plain = || {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("path {} is not a plain relative path", rel.display()),
            )
        };
        let target = rel.as_os_str().as_bytes();
        if rel.is_absolute() {
            return Err(not_plain());
        }
        let (common, rest) = self.common_levels(target);
        let mut names = Vec::new();
        for component in Path::new(OsStr::from_bytes(rest)).components() {
            match component {
                Component::Normal(name) => names.push(name),
                Component::CurDir => {}
                _ => return Err(not_plain()),
            }
        }
        while self.levels.len() > common {
            self.up()?;
        }
        for name in names {
            self.down(name)?;
        }
        Ok(())
    }

    /// Where level `i`'s name ends in the path bytes.
    fn level_end(&self, i: usize) -> usize {
        self.levels
            .get(i + 1)
            .map_or(self.path.len(), |next| next.start - 1)
    }

    /// How many leading levels of the cursor's path `target` starts with, and the rest
    /// of `target` after them. The cursor's path is plain (names joined by single
    /// slashes), so a byte prefix of it that ends at a slash in `target` is a prefix of
    /// `target`'s components; a `target` spelled oddly only shares less.
    fn common_levels<'t>(&self, target: &'t [u8]) -> (usize, &'t [u8]) {
        let same = common_prefix(&self.path, target);
        let at_boundary = |end: usize| end == target.len() || target[end] == b'/';
        // Levels that end within the common bytes; the last may end mid-name in target.
        let (mut common, mut above) = (0, self.levels.len());
        while common < above {
            let mid = (common + above) / 2;
            if self.level_end(mid) <= same {
                common = mid + 1;
            } else {
                above = mid;
            }
        }
        if common > 0 && !at_boundary(self.level_end(common - 1)) {
            common -= 1;
        }
        let boundary = common.checked_sub(1).map_or(0, |i| self.level_end(i));
        let rest = &target[boundary..];
        let skip = rest.iter().take_while(|&&b| b == b'/').count();
        (common, &rest[skip..])
    }
}

/// Path order (each directory right before its subtree, names compared as bytes) for
/// plain relative paths, computed with block compares: sorting a deep tree's paths
/// with `Path::cmp` walked their long common prefixes a byte at a time. A list in this
/// order (or reversed) takes a cursor from each path to the next in a few steps.
pub fn tree_order(a: &Path, b: &Path) -> std::cmp::Ordering {
    let (a, b) = (a.as_os_str().as_bytes(), b.as_os_str().as_bytes());
    let same = common_prefix(a, b);
    // A separator sorts before any byte of a name, and the end of a path before both.
    let rank = |p: &[u8]| {
        p.get(same)
            .map(|&c| if c == b'/' { 0 } else { u16::from(c) + 1 })
    };
    rank(a).cmp(&rank(b))
}

/// The length of the longest common prefix of `a` and `b`, compared a block at a time.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    const BLOCK: usize = 64;
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + BLOCK <= n && a[i..i + BLOCK] == b[i..i + BLOCK] {
        i += BLOCK;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    /// A chain `d/d/…` of `depth` levels below `root`, made relative to descriptors
    /// (absolute paths that long do not work).
    fn chain(root: BorrowedFd<'_>, depth: usize) {
        let mut fd = dir::make_dir_at(root, OsStr::new("d"), 0o755).unwrap();
        for _ in 1..depth {
            fd = dir::make_dir_at(fd.as_fd(), OsStr::new("d"), 0o755).unwrap();
        }
    }

    fn chain_path(depth: usize) -> std::path::PathBuf {
        vec!["d"; depth].join("/").into()
    }

    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    #[test]
    fn moves_through_a_deep_chain_with_few_descriptors() {
        let tmp = tempfile::tempdir().unwrap();
        let root = dir::open_root(tmp.path()).unwrap();
        chain(root.as_fd(), 300);
        let before = open_fds();
        let mut cursor = Cursor::new(root.as_fd());
        cursor.go(&chain_path(300)).unwrap();
        assert_eq!(cursor.depth(), 300);
        assert_eq!(cursor.rel(), chain_path(300));
        assert!(
            open_fds() <= before + KEEP_OPEN + 1,
            "{} descriptors",
            open_fds()
        );
        let here = identity(cursor.fd()).unwrap();
        cursor.go(&chain_path(10)).unwrap();
        assert_eq!(cursor.rel(), chain_path(10));
        cursor.go(&chain_path(300)).unwrap();
        assert_eq!(identity(cursor.fd()).unwrap(), here);
        cursor.go(Path::new("")).unwrap();
        assert_eq!(cursor.depth(), 0);
        assert_eq!(
            identity(cursor.fd()).unwrap(),
            identity(root.as_fd()).unwrap()
        );
        assert!(cursor.up().is_err(), "nothing above the root");
    }

    #[test]
    fn a_directory_moved_away_is_not_climbed_out_of() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let root_path = tmp.path().join("root");
        std::fs::create_dir_all(&root_path).unwrap();
        let root = dir::open_root(&root_path).unwrap();
        let depth = KEEP_OPEN + 20;
        chain(root.as_fd(), depth);
        let mut cursor = Cursor::new(root.as_fd());
        cursor.go(&chain_path(depth)).unwrap();
        // Level 5 (and the cursor's part of the chain with it) leaves the root: `..`
        // from it now leads to the directory holding the root, not to level 4.
        let level4 = root_path.join(chain_path(4));
        std::fs::rename(level4.join("d"), tmp.path().join("outside")).unwrap();
        while cursor.depth() > 4 {
            cursor.up().unwrap();
        }
        let meta = std::fs::metadata(&level4).unwrap();
        assert_eq!(
            identity(cursor.fd()).unwrap(),
            (meta.dev(), meta.ino()),
            "back at level 4 inside the root, not at {}",
            tmp.path().display()
        );
    }

    #[test]
    fn a_replaced_directory_stops_the_climb() {
        let tmp = tempfile::tempdir().unwrap();
        let root_path = tmp.path().join("root");
        std::fs::create_dir_all(&root_path).unwrap();
        let root = dir::open_root(&root_path).unwrap();
        let depth = KEEP_OPEN + 20;
        chain(root.as_fd(), depth);
        let mut cursor = Cursor::new(root.as_fd());
        cursor.go(&chain_path(depth)).unwrap();
        // Level 5 leaves the root, and level 4 is replaced by another directory.
        let level4 = root_path.join(chain_path(4));
        std::fs::rename(level4.join("d"), tmp.path().join("outside")).unwrap();
        std::fs::rename(&level4, tmp.path().join("old-level-4")).unwrap();
        std::fs::create_dir(&level4).unwrap();
        let mut result = Ok(());
        while cursor.depth() > 4 && result.is_ok() {
            result = cursor.up();
        }
        let err = result.unwrap_err();
        assert!(err.to_string().contains("was moved"), "{err}");
        assert_eq!(cursor.depth(), 0, "back at the root");
        cursor.go(&chain_path(4)).unwrap();
        assert_eq!(cursor.rel(), chain_path(4));
    }

    #[test]
    fn steps_between_neighbours_however_they_are_spelled() {
        let tmp = tempfile::tempdir().unwrap();
        for d in ["a/b/c", "a/bc", "a/b/cd"] {
            std::fs::create_dir_all(tmp.path().join(d)).unwrap();
        }
        let root = dir::open_root(tmp.path()).unwrap();
        let mut cursor = Cursor::new(root.as_fd());
        for (to, at) in [
            ("a/b/c", "a/b/c"),
            ("a/bc", "a/bc"),
            ("a//b/./c/", "a/b/c"),
            ("a/b/cd", "a/b/cd"),
            ("a/b", "a/b"),
            ("./a/b/c", "a/b/c"),
            ("", ""),
        ] {
            cursor.go(Path::new(to)).unwrap();
            assert_eq!(cursor.rel(), Path::new(at), "going to {to:?}");
            let meta = std::fs::metadata(tmp.path().join(at)).unwrap();
            use std::os::unix::fs::MetadataExt;
            assert_eq!(identity(cursor.fd()).unwrap(), (meta.dev(), meta.ino()));
        }
    }

    #[test]
    fn tree_order_is_path_order() {
        let mut paths: Vec<&Path> = ["a-b", "a/x", "", "a", "ab", "a/x/y", "b", "a/w"]
            .into_iter()
            .map(Path::new)
            .collect();
        let mut expected = paths.clone();
        expected.sort();
        paths.sort_by(|a, b| tree_order(a, b));
        assert_eq!(paths, expected);
    }

    #[test]
    fn refuses_symlinks_and_odd_names() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("real")).unwrap();
        std::os::unix::fs::symlink("real", tmp.path().join("link")).unwrap();
        let root = dir::open_root(tmp.path()).unwrap();
        let mut cursor = Cursor::new(root.as_fd());
        assert!(cursor.go(Path::new("link")).is_err());
        assert!(cursor.go(Path::new("../x")).is_err());
        assert!(cursor.go(Path::new("/real")).is_err());
        for bad in ["", ".", "..", "a/b"] {
            assert!(cursor.down(&OsString::from(bad)).is_err(), "{bad:?}");
        }
        cursor.go(Path::new("real")).unwrap();
        assert_eq!(cursor.name(), "real");
    }
}
