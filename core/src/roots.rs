//! Turning the two paths a user typed into the roots of a transfer, with rsync's
//! trailing-slash rule:
//!
//! - `SRC/` (a directory with a trailing slash) means *the contents of* SRC: they land
//!   directly in DST.
//! - `SRC` (no trailing slash) means SRC itself: it lands as `DST/name-of-SRC`.
//! - A source that is not a directory lands as `DST/name` when DST is an existing
//!   directory or ends in `/`, and as DST itself otherwise.
//!
//! It also refuses the two requests that can only end badly: a destination inside the
//! source, and a source that is its own destination.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::spec::Mode;

/// Where a transfer reads and writes, after the trailing-slash rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// A directory tree: the contents of `src` go into `dst`.
    Tree {
        src: PathBuf,
        dst: PathBuf,
        /// The user named the directory itself (no trailing slash), so a move removes it.
        whole_dir: bool,
    },
    /// A single non-directory entry.
    Single {
        src_dir: PathBuf,
        src_name: OsString,
        dst_dir: PathBuf,
        dst_name: OsString,
    },
}

/// A single-entry transfer's names: the source entry, and the name it gets at the
/// destination (the third case of the rule above).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rename {
    pub src: OsString,
    pub dst: OsString,
}

/// `dir/` and `dir/.` (and `.` itself) mean "the contents of dir"; so does the empty
/// path (a module's root, remotely).
pub fn names_contents(p: &Path) -> bool {
    let b = p.as_os_str().as_bytes();
    b.is_empty() || (b.len() > 1 && b.ends_with(b"/")) || b.ends_with(b"/.") || b == b"."
}

/// Applies the trailing-slash rule and the safety checks.
pub fn resolve(src: &Path, dst: &Path, mode: Mode) -> Result<Roots, Error> {
    let src_err = |source: io::Error| Error::Source {
        path: src.to_owned(),
        source,
    };
    let slash = names_contents(src);
    // Without a trailing slash a symlink is transferred as a link, as rsync -a does.
    let meta = if slash {
        std::fs::metadata(src)
    } else {
        std::fs::symlink_metadata(src)
    }
    .map_err(src_err)?;
    let roots = if meta.is_dir() {
        let name = src.file_name().filter(|_| !slash);
        match name {
            Some(name) => Roots::Tree {
                src: src.to_owned(),
                dst: dst.join(name),
                whole_dir: true,
            },
            None => Roots::Tree {
                src: src.to_owned(),
                dst: dst.to_owned(),
                whole_dir: false,
            },
        }
    } else {
        let src_name = src
            .file_name()
            .ok_or_else(|| src_err(io::ErrorKind::InvalidInput.into()))?;
        let into_dir = names_contents(dst) || std::fs::metadata(dst).is_ok_and(|m| m.is_dir());
        let (dst_dir, dst_name) = if into_dir {
            (dst.to_owned(), src_name.to_owned())
        } else {
            let name = dst.file_name().ok_or_else(|| Error::Destination {
                path: dst.to_owned(),
                source: io::ErrorKind::InvalidInput.into(),
            })?;
            (parent_or_dot(dst), name.to_owned())
        };
        Roots::Single {
            src_dir: parent_or_dot(src),
            src_name: src_name.to_owned(),
            dst_dir,
            dst_name,
        }
    };
    check_overlap(&roots, mode)?;
    Ok(roots)
}

fn parent_or_dot(p: &Path) -> PathBuf {
    match p.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Refuses a destination equal to or inside the source, and a mirror whose source is
/// inside its destination (the mirror would delete its own source).
fn check_overlap(roots: &Roots, mode: Mode) -> Result<(), Error> {
    let (src, dst) = match roots {
        Roots::Tree { src, dst, .. } => (src.clone(), dst.clone()),
        Roots::Single {
            src_dir,
            src_name,
            dst_dir,
            dst_name,
        } => (src_dir.join(src_name), dst_dir.join(dst_name)),
    };
    let src_real = match roots {
        // A single entry may be a symlink: canonicalize its directory, not its target.
        Roots::Single {
            src_dir, src_name, ..
        } => canonical(src_dir).join(src_name),
        Roots::Tree { .. } => canonical(&src),
    };
    let dst_real = canonical(&dst);
    if src_real == dst_real {
        return Err(Error::SameSourceAndDestination { path: src });
    }
    if matches!(roots, Roots::Tree { .. }) && dst_real.starts_with(&src_real) {
        return Err(Error::DestinationInsideSource {
            source_dir: src,
            destination: dst,
        });
    }
    if mode == Mode::Mirror && src_real.starts_with(&dst_real) {
        return Err(Error::SourceInsideDestination {
            source_dir: src,
            destination: dst,
        });
    }
    Ok(())
}

/// Canonicalizes the longest existing prefix of `p` and appends the rest, so paths that
/// do not exist yet can still be compared.
fn canonical(p: &Path) -> PathBuf {
    let absolute = if p.is_absolute() {
        p.to_owned()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest.iter().rev().fold(real, |acc, c| acc.join(c));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_slash_rule() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("f"), b"x").unwrap();
        let dst = tmp.path().join("dst");

        let mut with_slash = src.clone().into_os_string();
        with_slash.push("/");
        match resolve(Path::new(&with_slash), &dst, Mode::Copy).unwrap() {
            Roots::Tree {
                dst: d, whole_dir, ..
            } => {
                assert_eq!(d, dst);
                assert!(!whole_dir);
            }
            other => panic!("{other:?}"),
        }
        match resolve(&src, &dst, Mode::Copy).unwrap() {
            Roots::Tree {
                dst: d, whole_dir, ..
            } => {
                assert_eq!(d, dst.join("src"));
                assert!(whole_dir);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn single_file_into_dir_or_as_name() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        let dir = tmp.path().join("d");
        std::fs::create_dir(&dir).unwrap();
        match resolve(&f, &dir, Mode::Copy).unwrap() {
            Roots::Single {
                dst_dir, dst_name, ..
            } => {
                assert_eq!(dst_dir, dir);
                assert_eq!(dst_name, "f");
            }
            other => panic!("{other:?}"),
        }
        match resolve(&f, &tmp.path().join("g"), Mode::Copy).unwrap() {
            Roots::Single { dst_name, .. } => assert_eq!(dst_name, "g"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refuses_overlaps() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let mut slash = src.clone().into_os_string();
        slash.push("/");
        assert!(matches!(
            resolve(Path::new(&slash), &src, Mode::Copy),
            Err(Error::SameSourceAndDestination { .. })
        ));
        assert!(matches!(
            resolve(Path::new(&slash), &src.join("inner"), Mode::Copy),
            Err(Error::DestinationInsideSource { .. })
        ));
        assert!(matches!(
            resolve(&src, &src, Mode::Copy),
            Err(Error::DestinationInsideSource { .. })
        ));
        assert!(matches!(
            resolve(&tmp.path().join("missing"), tmp.path(), Mode::Copy),
            Err(Error::Source { .. })
        ));
    }
}
