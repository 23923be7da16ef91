//! The roots of a transfer: the one place where the path a source or a destination was
//! given as is opened, with rsync's trailing-slash rule:
//!
//! - `SRC/` (a directory with a trailing slash) means *the contents of* SRC: they land
//!   directly in DST.
//! - `SRC` (no trailing slash) means SRC itself: it lands as `DST/name-of-SRC`.
//! - A source that is not a directory lands as `DST/name` when DST is an existing
//!   directory or ends in `/`, and as DST itself otherwise.
//!
//! Without a trailing slash a final symlink is the entry itself (sent as a link, as
//! `rsync -a` does); with one it is followed to the directory it names.
//!
//! [`open_source`] opens a source root and [`open_destination`] a destination root, for
//! a path on this machine ([`Base::Local`]: a local transfer, a client's own end) and for
//! a path inside a served directory ([`Base::Beneath`]: an agent's module) alike. A local
//! transfer also refuses overlapping roots first (`overlap`).

mod overlap;
mod shape;

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::OFlags;

use crate::error::Error;
use crate::filter::Filter;
use crate::spec::{Mode, Options};
use crate::sys::{beneath, dir as sysdir};

pub use overlap::check_overlap;
pub use shape::{Shape, names_contents};

/// What the paths of a transfer's roots are relative to.
#[derive(Debug, Clone, Copy)]
pub enum Base<'a> {
    /// Paths on this machine as the user wrote them (relative to the working
    /// directory); symlinks in them are followed, as every file tool does for the paths
    /// it is handed.
    Local,
    /// Paths from the network, relative to a served directory (an agent's module) and
    /// resolved beneath it: never outside it, symlinks followed only while they stay in.
    Beneath(BorrowedFd<'a>),
}

/// A single-entry transfer's names: the source entry, and the name it gets at the
/// destination (the third case of the rule above).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rename {
    pub src: OsString,
    pub dst: OsString,
}

/// A directory named without a trailing slash, which a move removes once it is empty:
/// its parent, opened, and its name there.
#[derive(Debug)]
pub struct WholeDir {
    pub parent: OwnedFd,
    pub name: OsString,
}

/// An opened source root.
#[derive(Debug)]
pub struct SourceRoot {
    /// The directory walked: the tree, or the directory holding the single entry.
    pub dir: OwnedFd,
    /// Its path, relative to the base.
    pub path: PathBuf,
    /// What the source path names.
    pub shape: Shape,
    /// A move (not a dry run) of a directory named without a trailing slash: the
    /// directory itself goes too, once emptied.
    pub whole_dir: Option<WholeDir>,
}

/// An opened destination root, for a source of a given [`Shape`].
#[derive(Debug)]
pub struct DestinationRoot {
    /// The directory written into (created if missing); `None` only in a dry run whose
    /// destination does not exist (a dry run creates nothing).
    pub dir: Option<OwnedFd>,
    /// Its path, relative to the base.
    pub path: PathBuf,
    /// A single entry and the name it gets.
    pub rename: Option<Rename>,
    /// The transfer's filter, anchored as rsync anchors it for this source (below the
    /// directory's name when the directory itself is sent).
    pub filter: Filter,
}

/// Opens the source root `path`: the directory to walk, what the path names and, for a
/// move of a whole directory, its parent.
pub fn open_source(base: Base<'_>, path: &Path, options: &Options) -> Result<SourceRoot, Error> {
    let failed = |at: &Path, source: io::Error| Error::Source {
        path: at.to_owned(),
        source,
    };
    let is_dir = base
        .names_dir(path, names_contents(path))
        .map_err(|e| failed(path, e))?;
    let shape =
        Shape::of(path, is_dir).ok_or_else(|| failed(path, io::ErrorKind::InvalidInput.into()))?;
    let dir_path = match shape {
        Shape::Tree { .. } => path.to_owned(),
        Shape::Single { .. } => base.parent(path),
    };
    let dir = base.open_dir(&dir_path).map_err(|e| failed(&dir_path, e))?;
    let whole_dir = match &shape {
        Shape::Tree { name: Some(name) } if options.mode == Mode::Move && !options.dry_run => {
            // Best effort: a parent that cannot be opened only keeps the emptied
            // directory itself in place.
            base.open_parent(&base.parent(path))
                .ok()
                .map(|parent| WholeDir {
                    parent,
                    name: name.clone(),
                })
        }
        _ => None,
    };
    Ok(SourceRoot {
        dir,
        path: dir_path,
        shape,
        whole_dir,
    })
}

/// Opens the destination root `path` for a source of `shape`: creates it unless in a
/// dry run, and says under which name a single entry lands.
pub fn open_destination(
    base: Base<'_>,
    path: &Path,
    shape: &Shape,
    options: &Options,
) -> Result<DestinationRoot, Error> {
    let (dir_path, rename) = place(base, path, shape)?;
    let dir = base
        .open_or_create(&dir_path, options.dry_run)
        .map_err(|source| Error::Destination {
            path: dir_path.clone(),
            source,
        })?;
    Ok(DestinationRoot {
        dir,
        path: dir_path,
        rename,
        filter: shape.anchor(&options.filter),
    })
}

/// Where a source of `shape` lands at `path`: the directory written into and, for a
/// single entry, the name it gets there.
fn place(base: Base<'_>, path: &Path, shape: &Shape) -> Result<(PathBuf, Option<Rename>), Error> {
    let name = match shape {
        Shape::Tree { name: Some(name) } => return Ok((path.join(name), None)),
        Shape::Tree { name: None } => return Ok((path.to_owned(), None)),
        Shape::Single { name } => name,
    };
    let into_dir = names_contents(path) || base.names_dir(path, true).unwrap_or(false);
    if into_dir {
        let rename = Rename {
            src: name.clone(),
            dst: name.clone(),
        };
        return Ok((path.to_owned(), Some(rename)));
    }
    let Some(file) = path.file_name() else {
        return Err(Error::Destination {
            path: path.to_owned(),
            source: io::ErrorKind::InvalidInput.into(),
        });
    };
    let rename = Rename {
        src: name.clone(),
        dst: file.to_owned(),
    };
    Ok((base.parent(path), Some(rename)))
}

impl Base<'_> {
    /// Whether `path` names a directory, following a final symlink when `follow`.
    fn names_dir(self, path: &Path, follow: bool) -> io::Result<bool> {
        match self {
            Base::Local if follow => std::fs::metadata(path).map(|m| m.is_dir()),
            Base::Local => std::fs::symlink_metadata(path).map(|m| m.is_dir()),
            Base::Beneath(root) if follow => beneath::open_dir(root, path).map(|_| true),
            Base::Beneath(root) => match (path.parent(), path.file_name()) {
                (Some(parent), Some(name)) => {
                    let parent = beneath::open_dir(root, parent)?;
                    Ok(sysdir::stat_at(parent.as_fd(), name)?.is_dir())
                }
                // The served directory itself.
                _ => Ok(true),
            },
        }
    }

    /// The directory holding `path`: `.` for a bare local name, the served directory
    /// (the empty path) for a bare name beneath it.
    fn parent(self, path: &Path) -> PathBuf {
        let parent = path.parent().unwrap_or(Path::new(""));
        match self {
            Base::Local if parent.as_os_str().is_empty() => PathBuf::from("."),
            _ => parent.to_owned(),
        }
    }

    fn open_dir(self, path: &Path) -> io::Result<OwnedFd> {
        match self {
            Base::Local => sysdir::open_root(path),
            Base::Beneath(root) => beneath::open_dir(root, path),
        }
    }

    /// Opens the directory `path`, creating it (and its parents) when missing — unless
    /// `dry_run`, where a missing one is `None`.
    fn open_or_create(self, path: &Path, dry_run: bool) -> io::Result<Option<OwnedFd>> {
        match self.open_dir(path) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if e.kind() == io::ErrorKind::NotFound && dry_run => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => match self {
                Base::Local => {
                    std::fs::create_dir_all(path)?;
                    sysdir::open_root(path).map(Some)
                }
                Base::Beneath(root) => beneath::create_dirs(root, path, 0o755).map(Some),
            },
            Err(e) => Err(e),
        }
    }

    /// Opens the directory `path` only to remove an entry from it (`O_PATH`: removing
    /// needs no right to read it).
    fn open_parent(self, path: &Path) -> io::Result<OwnedFd> {
        let flags = OFlags::PATH | OFlags::DIRECTORY;
        match self {
            Base::Local => {
                rustix::fs::open(path, flags | OFlags::CLOEXEC, rustix::fs::Mode::empty())
                    .map_err(crate::sys::io_err)
            }
            Base::Beneath(root) => beneath::open(root, path, flags),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blit_test_support::with_slash;

    fn opts(tweak: impl FnOnce(&mut Options)) -> Options {
        let mut o = Options::default();
        tweak(&mut o);
        o
    }

    /// A scratch area with `src/f`, `src/sub/` and a file `one`.
    fn area() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("src/sub")).unwrap();
        std::fs::write(tmp.path().join("src/f"), b"x").unwrap();
        std::fs::write(tmp.path().join("one"), b"1").unwrap();
        tmp
    }

    #[test]
    fn the_trailing_slash_decides_what_a_directory_source_is() {
        let tmp = area();
        let src = tmp.path().join("src");
        let whole = open_source(Base::Local, &src, &Options::default()).unwrap();
        assert_eq!(
            whole.shape,
            Shape::Tree {
                name: Some("src".into())
            }
        );
        assert_eq!(whole.path, src);
        let contents = open_source(Base::Local, &with_slash(&src), &Options::default()).unwrap();
        assert_eq!(contents.shape, Shape::Tree { name: None });

        let dst = tmp.path().join("dst");
        let into = open_destination(Base::Local, &dst, &whole.shape, &Options::default()).unwrap();
        assert_eq!(into.path, dst.join("src"));
        assert!(into.dir.is_some() && dst.join("src").is_dir());
        let flat = open_destination(Base::Local, &dst, &contents.shape, &Options::default());
        assert_eq!(flat.unwrap().path, dst);
    }

    #[test]
    fn a_single_entry_lands_in_a_directory_or_under_the_name_given() {
        let tmp = area();
        let one = open_source(Base::Local, &tmp.path().join("one"), &Options::default()).unwrap();
        assert_eq!(one.shape, Shape::Single { name: "one".into() });
        assert_eq!(one.path, tmp.path());
        let o = Options::default();
        let into = open_destination(Base::Local, &tmp.path().join("src"), &one.shape, &o).unwrap();
        assert_eq!(
            (into.path, into.rename.unwrap().dst),
            (tmp.path().join("src"), "one".into())
        );
        let renamed = open_destination(Base::Local, &tmp.path().join("g"), &one.shape, &o);
        let renamed = renamed.unwrap();
        assert_eq!(
            (renamed.path, renamed.rename.unwrap().dst),
            (tmp.path().to_owned(), "g".into())
        );
        let slash = open_destination(Base::Local, &tmp.path().join("new/"), &one.shape, &o);
        assert_eq!(slash.unwrap().path, tmp.path().join("new/"));
        assert!(
            tmp.path().join("new").is_dir(),
            "a trailing slash makes a directory"
        );
        // A bare name is in the working directory.
        let bare = open_source(Base::Local, Path::new("Cargo.toml"), &o).unwrap();
        assert_eq!(bare.path, Path::new("."));
    }

    #[test]
    fn without_a_trailing_slash_a_symlink_is_the_entry_itself() {
        let tmp = area();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink("src", &link).unwrap();
        let itself = open_source(Base::Local, &link, &Options::default()).unwrap();
        assert_eq!(
            itself.shape,
            Shape::Single {
                name: "link".into()
            }
        );
        let through = open_source(Base::Local, &with_slash(&link), &Options::default()).unwrap();
        assert_eq!(through.shape, Shape::Tree { name: None });
    }

    #[test]
    fn beneath_a_served_directory_the_same_rule_holds_and_nothing_escapes() {
        let tmp = area();
        std::os::unix::fs::symlink("..", tmp.path().join("src/up")).unwrap();
        let module = sysdir::open_root(&tmp.path().join("src")).unwrap();
        let base = Base::Beneath(module.as_fd());
        let o = Options::default();
        let root = open_source(base, Path::new(""), &o).unwrap();
        assert_eq!(root.shape, Shape::Tree { name: None });
        let sub = open_source(base, Path::new("sub"), &o).unwrap();
        assert_eq!(
            sub.shape,
            Shape::Tree {
                name: Some("sub".into())
            }
        );
        let f = open_source(base, Path::new("f"), &o).unwrap();
        assert_eq!(
            (f.shape.single(), f.path.as_path()),
            (Some("f".as_ref()), Path::new(""))
        );
        let escape = open_source(base, Path::new("up/"), &o).unwrap_err();
        assert!(
            matches!(&escape, Error::Source { source, .. } if source.kind() == io::ErrorKind::PermissionDenied),
            "{escape:?}"
        );

        let into = open_destination(base, Path::new("new/deeper"), &sub.shape, &o).unwrap();
        assert_eq!(into.path, Path::new("new/deeper/sub"));
        assert!(tmp.path().join("src/new/deeper/sub").is_dir());
        let renamed = open_destination(base, Path::new("sub/g"), &f.shape, &o).unwrap();
        assert_eq!(
            (renamed.path.as_path(), renamed.rename.unwrap().dst),
            (Path::new("sub"), "g".into())
        );
        assert!(open_destination(base, Path::new("up/x"), &sub.shape, &o).is_err());
    }

    #[test]
    fn a_dry_run_creates_nothing_and_a_move_holds_the_whole_directory() {
        let tmp = area();
        let src = tmp.path().join("src");
        let dry = opts(|o| o.dry_run = true);
        let whole = open_source(Base::Local, &src, &dry).unwrap();
        let missing = tmp.path().join("missing");
        let preview = open_destination(Base::Local, &missing, &whole.shape, &dry).unwrap();
        assert!(preview.dir.is_none() && !missing.exists());
        assert!(whole.whole_dir.is_none(), "a dry run removes nothing");

        let moving = opts(|o| o.mode = Mode::Move);
        let whole = open_source(Base::Local, &src, &moving)
            .unwrap()
            .whole_dir
            .unwrap();
        assert_eq!(whole.name, "src");
        let contents = open_source(Base::Local, &with_slash(&src), &moving).unwrap();
        assert!(contents.whole_dir.is_none(), "the contents only");
    }

    #[test]
    fn errors_name_the_path_that_failed() {
        let tmp = area();
        let missing = tmp.path().join("missing");
        match open_source(Base::Local, &missing, &Options::default()) {
            Err(Error::Source { path, source }) => {
                assert_eq!((path, source.kind()), (missing, io::ErrorKind::NotFound));
            }
            other => panic!("{other:?}"),
        }
        let file_as_dir = with_slash(&tmp.path().join("one"));
        assert!(matches!(
            open_source(Base::Local, &file_as_dir, &Options::default()),
            Err(Error::Source { .. })
        ));
        let one = Shape::Single { name: "one".into() };
        let blocked = tmp.path().join("one/below");
        match open_destination(Base::Local, &blocked, &one, &Options::default()) {
            Err(Error::Destination { path, .. }) => assert_eq!(path, tmp.path().join("one")),
            other => panic!("{other:?}"),
        }
    }
}
