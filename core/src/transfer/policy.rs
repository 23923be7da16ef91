//! Holding a destination to its [`Privileges`]. Entries from a remote source are trimmed
//! to what the destination may create before they are planned — setuid/setgid bits off,
//! attributes outside the allowed namespaces dropped — so a refused privilege is not a
//! difference found again on every run. What cannot be trimmed (a device node, a FIFO)
//! fails when it is about to be created, as a per-entry failure.

use std::io;
use std::os::unix::ffi::OsStrExt;

use rustix::fs::FileType;

use crate::entry::{Entry, EntryKind, Meta};
use crate::spec::Privileges;

/// The setuid and setgid bits.
const SETID: u32 = 0o6000;

/// Trims `entry` to what `p` allows: mode bits and carried attributes.
pub fn sanitize(p: &Privileges, entry: &mut Entry) {
    entry.meta = meta(p, entry.kind, &entry.meta);
    if let Some(set) = &mut entry.xattrs {
        let scope = p.xattr_scope();
        set.retain(|name, _| scope.admits(name.as_bytes()));
    }
}

/// The metadata of an entry of `kind` as `p` allows it to be set.
pub fn meta(p: &Privileges, kind: EntryKind, meta: &Meta) -> Meta {
    let mode = if p.setid || kind == EntryKind::Dir {
        meta.mode
    } else {
        meta.mode & !SETID
    };
    Meta { mode, ..*meta }
}

/// Whether `p` allows creating the special file `entry` (a symlink always is); the error
/// says what is refused.
pub fn may_create(p: &Privileges, entry: &Entry) -> io::Result<()> {
    if entry.kind != EntryKind::Special {
        return Ok(());
    }
    let (allowed, what) = match FileType::from_raw_mode(entry.type_bits) {
        FileType::CharacterDevice | FileType::BlockDevice => (p.devices, "device nodes"),
        _ => (p.specials, "FIFOs and sockets"),
    };
    if allowed {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{what} are not allowed at this destination"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn special(type_bits: u32) -> Entry {
        Entry {
            name: "n".into(),
            kind: EntryKind::Special,
            type_bits,
            size: 0,
            allocated: 0,
            meta: Meta {
                mode: 0o4755,
                ..Meta::default()
            },
            inode: Default::default(),
            nlink: 1,
            rdev: 0,
            link_target: None,
            hash: None,
            xattrs: None,
        }
    }

    #[test]
    fn refused_privileges_trim_or_fail() {
        let none = Privileges::NONE;
        let all = Privileges::ALL;
        let chr = special(0o020000);
        let fifo = special(0o010000);
        let err = may_create(&none, &chr).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("device nodes"), "{err}");
        assert!(
            may_create(&none, &fifo)
                .unwrap_err()
                .to_string()
                .contains("FIFO")
        );
        assert!(may_create(&all, &chr).is_ok() && may_create(&all, &fifo).is_ok());
        let devices_only = Privileges {
            devices: true,
            ..none
        };
        assert!(may_create(&devices_only, &chr).is_ok());
        assert!(may_create(&devices_only, &fifo).is_err());

        let mut file = special(0);
        file.kind = EntryKind::File;
        file.xattrs = Some(
            [("user.a", b"1"), ("trusted.b", b"2"), ("security.c", b"3")]
                .into_iter()
                .map(|(n, v)| (n.into(), v.to_vec()))
                .collect(),
        );
        let mut trimmed = file.clone();
        sanitize(&none, &mut trimmed);
        assert_eq!(trimmed.meta.mode, 0o755, "setuid dropped");
        let names: Vec<_> = trimmed.xattrs.unwrap().into_keys().collect();
        assert_eq!(names, ["user.a"], "only user.* kept");
        let mut kept = file.clone();
        sanitize(&all, &mut kept);
        assert_eq!(kept.meta.mode, 0o4755);
        let mut dir = file;
        dir.kind = EntryKind::Dir;
        dir.meta.mode = 0o2775;
        sanitize(&none, &mut dir);
        assert_eq!(dir.meta.mode, 0o2775, "a directory keeps setgid");
    }
}
