//! Conversions between core types and `blit_proto::v1` types.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use blit_proto::v1 as pb;

use crate::entry::{Entry, EntryKind, InodeId, Meta, Timestamp, Xattrs};
use crate::filter::{Filter, RuleKind};
use crate::report::{Failure, Report};
use crate::roots::Shape;
use crate::spec::{Compare, Limits, Mode, Options, Preserve};

/// A message from the network that the engine must not act on.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("invalid file name {0:?}: a name is one non-empty path component")]
    Name(String),
    #[error("invalid path {0:?}: paths are relative and never leave their root")]
    Path(String),
    #[error("unknown {what} value {value}")]
    Enum { what: &'static str, value: i32 },
    #[error("missing {0}")]
    Missing(&'static str),
    #[error(
        "invalid extended attribute {0:?}: a namespaced name of 1-255 bytes, a value of at most 64 KiB"
    )]
    Xattr(String),
    #[error(transparent)]
    Filter(#[from] crate::error::Error),
}

/// Whether `name` is a single path component: not empty, no `/`, no NUL, not `.`/`..`.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.iter().any(|&b| b == b'/' || b == 0)
}

/// A relative path of plain components (empty for the root), or an error.
pub fn valid_rel(path: &[u8]) -> Result<PathBuf, WireError> {
    let p = Path::new(OsStr::from_bytes(path));
    let plain = !path.contains(&0)
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if plain {
        Ok(p.to_owned())
    } else {
        Err(WireError::Path(String::from_utf8_lossy(path).into_owned()))
    }
}

fn kind_to_wire(kind: EntryKind) -> pb::EntryKind {
    match kind {
        EntryKind::File => pb::EntryKind::File,
        EntryKind::Dir => pb::EntryKind::Dir,
        EntryKind::Symlink => pb::EntryKind::Symlink,
        EntryKind::Special => pb::EntryKind::Special,
    }
}

pub fn entry_to_wire(e: &Entry) -> pb::Entry {
    pb::Entry {
        name: e.name.as_bytes().to_vec(),
        kind: kind_to_wire(e.kind) as i32,
        type_bits: e.type_bits,
        size: e.size,
        allocated: e.allocated,
        mode: e.meta.mode,
        uid: e.meta.uid,
        gid: e.meta.gid,
        mtime_sec: e.meta.mtime.sec,
        mtime_nsec: e.meta.mtime.nsec,
        dev: e.inode.dev,
        ino: e.inode.ino,
        nlink: e.nlink,
        rdev: e.rdev,
        link_target: e.link_target.as_ref().map(|t| t.as_bytes().to_vec()),
        hash: e.hash.map(|h| h.to_vec()),
        xattrs: e.xattrs.as_ref().map(xattrs_to_wire),
    }
}

pub fn xattrs_to_wire(x: &Xattrs) -> pb::XattrSet {
    pb::XattrSet {
        attrs: x
            .iter()
            .map(|(name, value)| pb::Xattr {
                name: name.as_bytes().to_vec(),
                value: value.clone(),
            })
            .collect(),
    }
}

/// Longest extended attribute name and value Linux accepts.
const XATTR_NAME_MAX: usize = 255;
const XATTR_SIZE_MAX: usize = 64 << 10;

fn xattrs_from_wire(set: pb::XattrSet) -> Result<Xattrs, WireError> {
    set.attrs
        .into_iter()
        .map(|a| {
            let ok = !a.name.is_empty()
                && a.name.len() <= XATTR_NAME_MAX
                && !a.name.contains(&0)
                && a.name.contains(&b'.')
                && a.value.len() <= XATTR_SIZE_MAX;
            if !ok {
                return Err(WireError::Xattr(
                    String::from_utf8_lossy(&a.name).into_owned(),
                ));
            }
            Ok((OsString::from_vec(a.name), a.value))
        })
        .collect()
}

/// An entry from the network, checked.
pub fn entry_from_wire(e: pb::Entry) -> Result<Entry, WireError> {
    if !valid_name(&e.name) {
        return Err(WireError::Name(
            String::from_utf8_lossy(&e.name).into_owned(),
        ));
    }
    let kind = match pb::EntryKind::try_from(e.kind) {
        Ok(pb::EntryKind::File) => EntryKind::File,
        Ok(pb::EntryKind::Dir) => EntryKind::Dir,
        Ok(pb::EntryKind::Symlink) => EntryKind::Symlink,
        Ok(pb::EntryKind::Special) => EntryKind::Special,
        _ => {
            return Err(WireError::Enum {
                what: "entry kind",
                value: e.kind,
            });
        }
    };
    let hash = e.hash.and_then(|h| <[u8; 32]>::try_from(h.as_slice()).ok());
    Ok(Entry {
        name: OsString::from_vec(e.name),
        kind,
        type_bits: e.type_bits & 0o170000,
        size: e.size,
        allocated: e.allocated,
        meta: Meta {
            mode: e.mode & 0o7777,
            uid: e.uid,
            gid: e.gid,
            mtime: Timestamp {
                sec: e.mtime_sec,
                nsec: e.mtime_nsec.min(999_999_999),
            },
        },
        inode: InodeId {
            dev: e.dev,
            ino: e.ino,
        },
        nlink: e.nlink,
        rdev: e.rdev,
        link_target: e.link_target.map(OsString::from_vec),
        hash,
        xattrs: e.xattrs.map(xattrs_from_wire).transpose()?,
    })
}

/// What a source path names, for the destination end.
pub fn shape_to_wire(shape: &Shape) -> pb::SourceShape {
    let shape = match shape {
        Shape::Tree { name } => pb::source_shape::Shape::Tree(pb::TreeShape {
            name: name.as_ref().map(|n| n.as_bytes().to_vec()),
        }),
        Shape::Single { name } => pb::source_shape::Shape::Single(name.as_bytes().to_vec()),
    };
    pb::SourceShape { shape: Some(shape) }
}

/// A source's shape from the network: its name must be one path component.
pub fn shape_from_wire(s: Option<pb::SourceShape>) -> Result<Shape, WireError> {
    let bad = |n: &[u8]| WireError::Name(String::from_utf8_lossy(n).into_owned());
    match s.and_then(|s| s.shape) {
        Some(pb::source_shape::Shape::Tree(t)) => match t.name {
            Some(n) if !valid_name(&n) => Err(bad(&n)),
            name => Ok(Shape::Tree {
                name: name.map(OsString::from_vec),
            }),
        },
        Some(pb::source_shape::Shape::Single(n)) if valid_name(&n) => Ok(Shape::Single {
            name: OsString::from_vec(n),
        }),
        Some(pb::source_shape::Shape::Single(n)) => Err(bad(&n)),
        None => Err(WireError::Missing("source shape")),
    }
}

/// The options both ends must agree on (what the writing end may do is its own
/// business, and is not sent).
pub fn options_to_wire(spec: &Options) -> pb::TransferOptions {
    pb::TransferOptions {
        mode: mode_to_wire(spec.mode) as i32,
        compare: match spec.compare {
            Compare::SizeMtime => pb::Compare::SizeMtime,
            Compare::Checksum => pb::Compare::Checksum,
            Compare::SizeOnly => pb::Compare::SizeOnly,
            Compare::IgnoreTimes => pb::Compare::IgnoreTimes,
        } as i32,
        filter: spec
            .filter
            .rules()
            .map(|(kind, pattern)| pb::FilterRule {
                include: kind == RuleKind::Include,
                pattern: pattern.to_owned(),
            })
            .collect(),
        hard_links: spec.preserve.hard_links,
        xattrs: spec.preserve.xattrs,
        owner: spec.preserve.owner,
        max_delete: spec.limits.max_delete,
        modify_window_ns: spec.limits.modify_window_ns,
        resume: spec.resume,
        dry_run: spec.dry_run,
        workers: spec.limits.workers as u32,
        bandwidth: spec.limits.bandwidth.unwrap_or(0),
    }
}

/// Options from the network. They grant nothing privileged
/// ([`Privileges::NONE`](crate::spec::Privileges::NONE)) until the receiving end (an
/// agent's module) says otherwise.
pub fn options_from_wire(o: &pb::TransferOptions) -> Result<Options, WireError> {
    let mode = mode_from_wire(o.mode)?;
    let compare = match pb::Compare::try_from(o.compare) {
        Ok(pb::Compare::SizeMtime | pb::Compare::Unspecified) => Compare::SizeMtime,
        Ok(pb::Compare::Checksum) => Compare::Checksum,
        Ok(pb::Compare::SizeOnly) => Compare::SizeOnly,
        Ok(pb::Compare::IgnoreTimes) => Compare::IgnoreTimes,
        Err(_) => {
            return Err(WireError::Enum {
                what: "compare",
                value: o.compare,
            });
        }
    };
    let mut filter = Filter::new();
    for rule in &o.filter {
        let kind = if rule.include {
            RuleKind::Include
        } else {
            RuleKind::Exclude
        };
        filter.add(kind, &rule.pattern)?;
    }
    let mut spec = Options::default();
    // Whoever sent these options does not decide what the receiving end may do.
    spec.privileges = crate::spec::Privileges::NONE;
    spec.mode = mode;
    spec.compare = compare;
    spec.filter = filter;
    spec.preserve = Preserve {
        hard_links: o.hard_links,
        xattrs: o.xattrs,
        owner: o.owner,
    };
    spec.limits = Limits {
        workers: match o.workers {
            0 => spec.limits.workers,
            n => (n as usize).min(64),
        },
        max_delete: o.max_delete,
        modify_window_ns: o.modify_window_ns,
        bandwidth: (o.bandwidth > 0).then_some(o.bandwidth),
    };
    spec.resume = o.resume;
    spec.dry_run = o.dry_run;
    Ok(spec)
}

fn mode_to_wire(mode: Mode) -> pb::Mode {
    match mode {
        Mode::Copy => pb::Mode::Copy,
        Mode::Mirror => pb::Mode::Mirror,
        Mode::Move => pb::Mode::Move,
    }
}

fn mode_from_wire(mode: i32) -> Result<Mode, WireError> {
    match pb::Mode::try_from(mode) {
        Ok(pb::Mode::Copy | pb::Mode::Unspecified) => Ok(Mode::Copy),
        Ok(pb::Mode::Mirror) => Ok(Mode::Mirror),
        Ok(pb::Mode::Move) => Ok(Mode::Move),
        Err(_) => Err(WireError::Enum {
            what: "mode",
            value: mode,
        }),
    }
}

pub fn failure_to_wire(f: &Failure) -> pb::Failure {
    pb::Failure {
        path: f.path.as_os_str().as_bytes().to_vec(),
        operation: f.operation.to_string(),
        message: f.message.clone(),
    }
}

pub fn failure_from_wire(f: pb::Failure) -> Failure {
    Failure {
        path: PathBuf::from(OsString::from_vec(f.path)),
        operation: f.operation.into(),
        message: f.message,
    }
}

pub fn report_to_wire(r: &Report) -> pb::Report {
    pb::Report {
        mode: mode_to_wire(r.mode) as i32,
        dry_run: r.dry_run,
        entries: r.entries,
        files_copied: r.files_copied,
        bytes_copied: r.bytes_copied,
        bytes_resumed: r.bytes_resumed,
        files_skipped: r.files_skipped,
        dirs_created: r.dirs_created,
        links_created: r.links_created,
        metadata_updated: r.metadata_updated,
        deleted: r.deleted,
        sources_removed: r.sources_removed,
        failures: r.failures.iter().map(failure_to_wire).collect(),
        deletes_skipped: r.deletes_skipped.clone(),
        elapsed_seconds: r.elapsed.as_secs_f64(),
        data_plane: r.data_plane.clone(),
        streams: r.streams,
    }
}

pub fn report_from_wire(r: pb::Report) -> Report {
    let mut report = Report {
        mode: mode_from_wire(r.mode).unwrap_or_default(),
        dry_run: r.dry_run,
        entries: r.entries,
        files_copied: r.files_copied,
        bytes_copied: r.bytes_copied,
        bytes_resumed: r.bytes_resumed,
        files_skipped: r.files_skipped,
        dirs_created: r.dirs_created,
        links_created: r.links_created,
        metadata_updated: r.metadata_updated,
        deleted: r.deleted,
        sources_removed: r.sources_removed,
        failures: r.failures.into_iter().map(failure_from_wire).collect(),
        deletes_skipped: r.deletes_skipped,
        data_plane: r.data_plane,
        streams: r.streams,
        ..Report::default()
    };
    report.set_elapsed(Duration::from_secs_f64(r.elapsed_seconds.max(0.0)));
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_cross_the_wire_and_bad_names_do_not() {
        for shape in [
            Shape::Tree { name: None },
            Shape::Tree {
                name: Some("src".into()),
            },
            Shape::Single {
                name: OsString::from_vec(b"f\xff".to_vec()),
            },
        ] {
            assert_eq!(shape_from_wire(Some(shape_to_wire(&shape))).unwrap(), shape);
        }
        let evil = pb::SourceShape {
            shape: Some(pb::source_shape::Shape::Single(b"../x".to_vec())),
        };
        assert!(shape_from_wire(Some(evil)).is_err());
        let evil = pb::SourceShape {
            shape: Some(pb::source_shape::Shape::Tree(pb::TreeShape {
                name: Some(b"a/b".to_vec()),
            })),
        };
        assert!(shape_from_wire(Some(evil)).is_err());
        assert!(shape_from_wire(None).is_err());
    }

    #[test]
    fn names_and_paths_from_the_network_are_checked() {
        assert!(valid_name(b"a\xffb"));
        for bad in [&b""[..], b".", b"..", b"a/b", b"/", b"a\0b"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert_eq!(valid_rel(b"").unwrap(), PathBuf::new());
        assert_eq!(
            valid_rel(b"a/\xff/c").unwrap(),
            PathBuf::from(OsStr::from_bytes(b"a/\xff/c"))
        );
        for bad in [&b"/etc"[..], b"..", b"a/../..", b"a/..", b"a\0"] {
            assert!(valid_rel(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn entries_survive_the_wire() {
        let e = Entry {
            name: OsString::from_vec(b"n\xff".to_vec()),
            kind: EntryKind::Symlink,
            type_bits: 0o120000,
            size: 3,
            allocated: 0,
            meta: Meta {
                mode: 0o777,
                uid: 1,
                gid: 2,
                mtime: Timestamp { sec: -5, nsec: 7 },
            },
            inode: InodeId { dev: 9, ino: 10 },
            nlink: 1,
            rdev: 0,
            link_target: Some(OsString::from_vec(b"../t\xfe".to_vec())),
            hash: Some([3; 32]),
            xattrs: Some([("user.a".into(), b"v\0".to_vec())].into()),
        };
        assert_eq!(entry_from_wire(entry_to_wire(&e)).unwrap(), e);
        let mut bad = entry_to_wire(&e);
        bad.name = b"../x".to_vec();
        assert!(entry_from_wire(bad).is_err());
        for (name, len) in [
            (&b"user.a\0b"[..], 1),
            (b"", 1),
            (b"noprefix", 1),
            (b"user.a", 65537),
        ] {
            let mut bad = entry_to_wire(&e);
            bad.xattrs = Some(pb::XattrSet {
                attrs: vec![pb::Xattr {
                    name: name.to_vec(),
                    value: vec![0; len],
                }],
            });
            assert!(
                matches!(entry_from_wire(bad), Err(WireError::Xattr(_))),
                "{name:?}"
            );
        }
        let mut bad = entry_to_wire(&e);
        bad.kind = 42;
        assert!(entry_from_wire(bad).is_err());
    }
}
