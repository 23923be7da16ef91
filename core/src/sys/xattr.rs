//! Extended attributes (`-X`): read the full set from one open file (or a set that came
//! over the network) and make another file's set equal to it — within a [`Scope`]: names
//! outside it are neither read, nor set, nor removed.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use rustix::fd::{AsFd, BorrowedFd};
use rustix::fs::{Mode, OFlags, XattrFlags};

use super::io_err;

/// An attribute set: name → value.
pub type Xattrs = BTreeMap<OsString, Vec<u8>>;

/// Which attribute namespaces a transfer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `user.*` only: what any file owner may set.
    User,
    /// Every namespace this thread may set: all of them as root (`security.*`,
    /// `trusted.*`, `system.*`), `user.*` otherwise.
    All,
}

impl Scope {
    /// Whether `name` is carried in this scope.
    pub fn admits(self, name: &[u8]) -> bool {
        name.starts_with(b"user.") || (self == Scope::All && super::is_root())
    }
}

/// Reads every extended attribute of an open file within `scope`.
pub fn read(fd: BorrowedFd<'_>, scope: Scope) -> io::Result<Xattrs> {
    let mut attrs = Xattrs::new();
    let size = match rustix::fs::flistxattr_query(fd) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Ok(attrs),
        Err(e) => return Err(io_err(e)),
    };
    if size == 0 {
        return Ok(attrs);
    }
    let mut list = vec![0u8; size];
    let n = rustix::fs::flistxattr(fd, &mut list[..]).map_err(io_err)?;
    for name in list[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if !scope.admits(name) {
            continue;
        }
        let cname = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        let len = match rustix::fs::fgetxattr_query(fd, cname.as_c_str()) {
            Ok(len) => len,
            Err(rustix::io::Errno::NODATA) => continue,
            Err(e) => return Err(io_err(e)),
        };
        let mut value = vec![0u8; len];
        let got = rustix::fs::fgetxattr(fd, cname.as_c_str(), &mut value[..]).map_err(io_err)?;
        value.truncate(got);
        attrs.insert(OsString::from_vec(name.to_vec()), value);
    }
    Ok(attrs)
}

/// Turns `current` (the attributes `dst` has) into `wanted`: sets what differs, removes
/// extras.
fn write(dst: BorrowedFd<'_>, wanted: &Xattrs, current: &Xattrs) -> io::Result<()> {
    for (name, value) in wanted {
        if current.get(name) != Some(value) {
            rustix::fs::fsetxattr(dst, name.as_os_str(), value, XattrFlags::empty())
                .map_err(io_err)?;
        }
    }
    for name in current.keys().filter(|n| !wanted.contains_key(*n)) {
        rustix::fs::fremovexattr(dst, name.as_os_str()).map_err(io_err)?;
    }
    Ok(())
}

/// Reads the attributes of file or directory `name` in `dir` (not following a symlink).
pub fn read_at(dir: BorrowedFd<'_>, name: &OsStr, scope: Scope) -> io::Result<Xattrs> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, name, flags, Mode::empty()).map_err(io_err)?;
    read(fd.as_fd(), scope)
}

/// The part of `set` within `scope`.
pub fn within(set: &Xattrs, scope: Scope) -> Xattrs {
    set.iter()
        .filter(|(name, _)| scope.admits(name.as_bytes()))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

/// Gives a file this run just created the attributes of `src` (it has none to remove).
pub fn copy_to_new(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, scope: Scope) -> io::Result<()> {
    set_new(&read(src, scope)?, dst, scope)
}

/// Gives a file this run just created the attributes in `wanted`.
pub fn set_new(wanted: &Xattrs, dst: BorrowedFd<'_>, scope: Scope) -> io::Result<()> {
    write(dst, &within(wanted, scope), &Xattrs::new())
}

/// Makes the attributes of an existing `dst` equal to those of `src`. Returns whether
/// anything changed.
pub fn sync(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, scope: Scope) -> io::Result<bool> {
    sync_to(&read(src, scope)?, dst, scope)
}

/// Makes the attributes of an existing `dst` equal to `wanted`, within `scope`: names
/// outside it stay as they are on `dst`. Only the names whose value differs are set, and
/// only the names `wanted` lacks are removed. Returns whether anything changed.
pub fn sync_to(wanted: &Xattrs, dst: BorrowedFd<'_>, scope: Scope) -> io::Result<bool> {
    let current = read(dst, scope)?;
    if same(wanted, &current, scope) {
        return Ok(false);
    }
    write(dst, &within(wanted, scope), &current)?;
    Ok(true)
}

/// Whether the attributes of `dst` differ from `wanted` within `scope` (what [`sync_to`]
/// would change), writing nothing.
pub fn differs(wanted: &Xattrs, dst: BorrowedFd<'_>, scope: Scope) -> io::Result<bool> {
    Ok(!same(wanted, &read(dst, scope)?, scope))
}

/// Whether `current` (read within `scope`) equals the part of `wanted` within `scope`.
fn same(wanted: &Xattrs, current: &Xattrs, scope: Scope) -> bool {
    wanted
        .iter()
        .filter(|(name, _)| scope.admits(name.as_bytes()))
        .eq(current.iter())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &[u8])]) -> Xattrs {
        pairs
            .iter()
            .map(|(n, v)| (OsString::from(n), v.to_vec()))
            .collect()
    }

    /// `sync_to` changes the values that differ, removes the names that are gone, leaves
    /// names outside its scope alone, and says whether it changed anything; `differs`
    /// agrees with it without writing.
    #[test]
    fn sync_writes_only_what_differs() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let fd = file.as_fd();
        let have = set(&[("user.same", b"1"), ("user.old", b"2"), ("user.gone", b"3")]);
        if set_new(&have, fd, Scope::User).is_err() {
            return eprintln!("skipped: no user xattrs under {}", tmp.path().display());
        }
        let wanted = set(&[
            ("user.same", b"1"),
            ("user.old", b"new"),
            ("user.added", b"4"),
        ]);
        // Outside the scope: neither compared nor removed.
        let with_foreign = {
            let mut w = wanted.clone();
            w.insert("trusted.x".into(), b"t".to_vec());
            w
        };
        assert!(differs(&wanted, fd, Scope::User).unwrap());
        assert!(sync_to(&wanted, fd, Scope::User).unwrap());
        assert_eq!(read(fd, Scope::User).unwrap(), wanted);
        assert!(!differs(&with_foreign, fd, Scope::User).unwrap());
        assert!(!sync_to(&with_foreign, fd, Scope::User).unwrap());
        assert_eq!(read(fd, Scope::User).unwrap(), wanted);
    }
}
