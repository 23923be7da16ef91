//! The trailing-slash rule as data: what a source path names (its [`Shape`]), which
//! paths name "the contents of" a directory, and how filter rules are anchored for it.
//! The source end works the shape out from its own path; across two machines it travels
//! to the destination end (`wire::shape_to_wire`), which places it at its own path
//! (`roots::open_destination`).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::filter::Filter;

/// What a source path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// A directory; `name` when the directory itself goes (no trailing slash), `None`
    /// for its contents.
    Tree { name: Option<OsString> },
    /// One non-directory entry.
    Single { name: OsString },
}

/// `dir/` and `dir/.` (and `.` itself) mean "the contents of dir"; so does the empty
/// path (a module's root, remotely).
pub fn names_contents(p: &Path) -> bool {
    let b = p.as_os_str().as_bytes();
    b.is_empty() || (b.len() > 1 && b.ends_with(b"/")) || b.ends_with(b"/.") || b == b"."
}

impl Shape {
    /// The shape of `path`, given whether it names a directory; `None` for a
    /// non-directory path without a final name (which cannot be sent as one entry).
    pub(super) fn of(path: &Path, is_dir: bool) -> Option<Shape> {
        if is_dir {
            let name = path
                .file_name()
                .filter(|_| !names_contents(path))
                .map(OsStr::to_owned);
            return Some(Shape::Tree { name });
        }
        path.file_name().map(|name| Shape::Single {
            name: name.to_owned(),
        })
    }

    /// The single entry's name, when the source is one entry.
    pub fn single(&self) -> Option<&OsStr> {
        match self {
            Shape::Single { name } => Some(name),
            Shape::Tree { .. } => None,
        }
    }

    /// `filter` as rsync anchors it: below the directory's name when the directory
    /// itself is sent; nothing filters a single entry.
    pub fn anchor(&self, filter: &Filter) -> Filter {
        match self {
            Shape::Tree { name: Some(name) } => filter.with_base(Path::new(name)),
            Shape::Tree { name: None } => filter.clone(),
            Shape::Single { .. } => Filter::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::RuleKind;

    #[test]
    fn a_trailing_slash_names_the_contents() {
        for contents in ["", ".", "d/", "d/."] {
            assert!(names_contents(Path::new(contents)), "{contents:?}");
        }
        for itself in ["d", "a/d", "/a/d", "d/.."] {
            assert!(!names_contents(Path::new(itself)), "{itself:?}");
        }
        assert_eq!(
            Shape::of(Path::new("data/src"), true),
            Some(Shape::Tree {
                name: Some("src".into())
            })
        );
        assert_eq!(
            Shape::of(Path::new("data/src/"), true),
            Some(Shape::Tree { name: None })
        );
        assert_eq!(
            Shape::of(Path::new("data/f"), false),
            Some(Shape::Single { name: "f".into() })
        );
        assert_eq!(Shape::of(Path::new("/"), false), None);
    }

    #[test]
    fn filters_are_anchored_at_a_named_directory() {
        let mut filter = Filter::new();
        filter.add(RuleKind::Exclude, "/src/build").unwrap();
        let named = Shape::Tree {
            name: Some("src".into()),
        };
        assert!(named.anchor(&filter).excludes(Path::new("build"), true));
        let contents = Shape::Tree { name: None };
        assert!(!contents.anchor(&filter).excludes(Path::new("build"), true));
        let single = Shape::Single { name: "f".into() };
        assert!(
            !single
                .anchor(&filter)
                .excludes(Path::new("src/build"), true)
        );
    }
}
