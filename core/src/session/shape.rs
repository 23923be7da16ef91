//! The trailing-slash rule across two machines. The source end knows what its path names
//! (a directory, its contents, or one entry) and sends that as a [`Shape`]; the
//! destination end applies the rule to its own path (see `roots` for the local case).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::roots::Rename;
use crate::wire::pb;

/// What the source path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// A directory; `name` when the directory itself goes (no trailing slash), `None`
    /// for its contents.
    Tree { name: Option<OsString> },
    /// One non-directory entry.
    Single { name: OsString },
}

/// Where the destination side of a transfer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationRoot {
    /// The directory the transfer writes into (created if missing).
    pub dir: PathBuf,
    /// A single entry and the name it gets.
    pub rename: Option<Rename>,
    /// Filter rules are matched below this name (rsync anchors `/pattern` at the parent of
    /// a source named without a trailing slash).
    pub filter_base: Option<OsString>,
}

pub use crate::roots::names_contents;

impl Shape {
    /// The destination root for this source shape, given the destination path as the user
    /// wrote it and whether it is an existing directory.
    pub fn destination(&self, dst: &Path, dst_is_dir: bool) -> DestinationRoot {
        match self {
            Shape::Tree { name: Some(name) } => DestinationRoot {
                dir: dst.join(name),
                rename: None,
                filter_base: Some(name.clone()),
            },
            Shape::Tree { name: None } => DestinationRoot {
                dir: dst.to_owned(),
                rename: None,
                filter_base: None,
            },
            Shape::Single { name } => {
                let into_dir = dst_is_dir || names_contents(dst);
                let (dir, dst_name) = match dst.file_name() {
                    Some(file) if !into_dir => (
                        dst.parent().map(Path::to_owned).unwrap_or_default(),
                        file.to_owned(),
                    ),
                    _ => (dst.to_owned(), name.clone()),
                };
                DestinationRoot {
                    dir,
                    rename: Some(Rename {
                        src: name.clone(),
                        dst: dst_name,
                    }),
                    filter_base: None,
                }
            }
        }
    }

    pub fn to_wire(&self) -> pb::SourceShape {
        let shape = match self {
            Shape::Tree { name } => pb::source_shape::Shape::Tree(pb::TreeShape {
                name: name.as_ref().map(|n| n.as_bytes().to_vec()),
            }),
            Shape::Single { name } => pb::source_shape::Shape::Single(name.as_bytes().to_vec()),
        };
        pb::SourceShape { shape: Some(shape) }
    }

    pub fn from_wire(s: Option<pb::SourceShape>) -> Result<Shape, crate::wire::WireError> {
        let bad = |n: &[u8]| crate::wire::WireError::Name(String::from_utf8_lossy(n).into_owned());
        match s.and_then(|s| s.shape) {
            Some(pb::source_shape::Shape::Tree(t)) => match t.name {
                Some(n) if !crate::wire::valid_name(&n) => Err(bad(&n)),
                name => Ok(Shape::Tree {
                    name: name.map(OsString::from_vec),
                }),
            },
            Some(pb::source_shape::Shape::Single(n)) if crate::wire::valid_name(&n) => {
                Ok(Shape::Single {
                    name: OsString::from_vec(n),
                })
            }
            Some(pb::source_shape::Shape::Single(n)) => Err(bad(&n)),
            None => Err(crate::wire::WireError::Missing("source shape")),
        }
    }
}

/// The shape of a source path and the directory to open for it: the tree itself, or the
/// parent of a single entry. `is_dir` is what the path names (following a final symlink
/// only with a trailing slash, as rsync does).
pub fn source(path: &Path, is_dir: bool) -> (PathBuf, Shape) {
    let contents = names_contents(path);
    if is_dir {
        let name = path.file_name().filter(|_| !contents).map(OsStr::to_owned);
        return (path.to_owned(), Shape::Tree { name });
    }
    let parent = path.parent().map(Path::to_owned).unwrap_or_default();
    let name = path.file_name().map(OsStr::to_owned).unwrap_or_default();
    (parent, Shape::Single { name })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trailing_slash_rule() {
        let (dir, shape) = source(Path::new("data/src"), true);
        assert_eq!(
            (dir.as_path(), &shape),
            (
                Path::new("data/src"),
                &Shape::Tree {
                    name: Some("src".into())
                }
            )
        );
        assert_eq!(
            shape.destination(Path::new("out"), true).dir,
            Path::new("out/src")
        );
        let (_, shape) = source(Path::new("data/src/"), true);
        assert_eq!(shape, Shape::Tree { name: None });
        assert_eq!(
            shape.destination(Path::new("out"), false).dir,
            Path::new("out")
        );
        let (dir, shape) = source(Path::new("data/f.txt"), false);
        assert_eq!(dir, Path::new("data"));
        let into = shape.destination(Path::new("out"), true);
        assert_eq!(
            (into.dir.as_path(), into.rename.unwrap().dst),
            (Path::new("out"), "f.txt".into())
        );
        let renamed = shape.destination(Path::new("out/g.txt"), false);
        assert_eq!(
            (renamed.dir.as_path(), renamed.rename.unwrap().dst),
            (Path::new("out"), "g.txt".into())
        );
        let slash = shape.destination(Path::new("new/"), false);
        assert_eq!(slash.dir, Path::new("new/"));
        let wire = Shape::from_wire(Some(shape.to_wire())).unwrap();
        assert_eq!(wire, shape);
        let evil = pb::SourceShape {
            shape: Some(pb::source_shape::Shape::Single(b"../x".to_vec())),
        };
        assert!(Shape::from_wire(Some(evil)).is_err());
    }
}
