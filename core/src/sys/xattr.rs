//! Extended attributes (`-X`): read the full set from one open file and make another
//! file's set equal to it.

use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::io;
use std::os::unix::ffi::OsStringExt;

use rustix::fd::BorrowedFd;
use rustix::fs::XattrFlags;

use super::io_err;

/// An attribute set: name → value.
pub type Xattrs = BTreeMap<OsString, Vec<u8>>;

/// Reads every extended attribute of an open file.
pub fn read(fd: BorrowedFd<'_>) -> io::Result<Xattrs> {
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
        if !settable(name) {
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

/// Whether this process can set attributes of this namespace: root can set all of them,
/// others only `user.*` (as rsync does).
fn settable(name: &[u8]) -> bool {
    name.starts_with(b"user.") || super::is_root()
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

/// Gives a file this run just created the attributes of `src` (it has none to remove).
pub fn copy_to_new(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> io::Result<()> {
    for (name, value) in read(src)? {
        rustix::fs::fsetxattr(dst, name.as_os_str(), &value, XattrFlags::empty())
            .map_err(io_err)?;
    }
    Ok(())
}

/// Makes the attributes of an existing `dst` equal to those of `src`. Returns whether
/// anything changed.
pub fn sync(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> io::Result<bool> {
    let wanted = read(src)?;
    let current = read(dst)?;
    if wanted == current {
        return Ok(false);
    }
    write(dst, &wanted, &current)?;
    Ok(true)
}
