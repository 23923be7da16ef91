//! Resolving untrusted paths beneath a root directory (a module of the agent): no `..`,
//! no absolute paths, and no escape through symlinks. `openat2` with `RESOLVE_BENEATH`
//! does it in the kernel (symlinks that stay inside still work); where the kernel lacks
//! `openat2`, the path is walked one component at a time without following any symlink.

use std::io;
use std::path::{Component, Path};

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags, ResolveFlags};

use super::{dir, io_err};

/// What a path must look like before it is even tried: relative, no `..`.
pub fn check(rel: &Path) -> io::Result<()> {
    if rel
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("path {} leaves its module", rel.display()),
        ))
    }
}

fn resolve_flags() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS
}

/// Opens `rel` beneath `root` with `flags`; `EXDEV` (an escape) becomes a clear error.
pub fn open(root: BorrowedFd<'_>, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    check(rel)?;
    let path = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    match rustix::fs::openat2(
        root,
        path,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        resolve_flags(),
    ) {
        Ok(fd) => Ok(fd),
        Err(rustix::io::Errno::XDEV) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("path {} leaves its module", rel.display()),
        )),
        Err(rustix::io::Errno::NOSYS) => fallback(root, rel, flags),
        Err(e) => Err(io_err(e)),
    }
}

/// Without `openat2`: every component opened with `O_NOFOLLOW`.
fn fallback(root: BorrowedFd<'_>, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let (parent, name) = match (rel.parent(), rel.file_name()) {
        (Some(parent), Some(name)) => (parent, name),
        _ => return dir::open_beneath(root, rel),
    };
    let dir = dir::open_beneath(root, parent)?;
    rustix::fs::openat(
        dir.as_fd(),
        name,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err)
}

/// Opens the directory `rel` beneath `root`.
pub fn open_dir(root: BorrowedFd<'_>, rel: &Path) -> io::Result<OwnedFd> {
    open(root, rel, OFlags::RDONLY | OFlags::DIRECTORY)
}

/// Opens the directory `rel` beneath `root`, creating the missing directories on the way
/// (each checked to stay beneath `root`).
///
/// Each component is opened from the one before without following symlinks; only a
/// component that is a symlink is resolved again from `root` (where the kernel checks it
/// stays beneath), so a long path costs one open per component, not one per prefix.
pub fn create_dirs(root: BorrowedFd<'_>, rel: &Path, mode: u32) -> io::Result<OwnedFd> {
    check(rel)?;
    match open_dir(root, rel) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }
    let mut current = open_dir(root, Path::new(""))?;
    let mut so_far = std::path::PathBuf::new();
    for component in rel.components() {
        let Component::Normal(name) = component else {
            continue;
        };
        so_far.push(name);
        current = match dir::open_dir_at(current.as_fd(), name) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match dir::make_dir_at(current.as_fd(), name, mode) {
                    Ok(fd) => fd,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => open_dir(root, &so_far)?,
                    Err(e) => return Err(e),
                }
            }
            // A symlink (ELOOP with O_NOFOLLOW) or not a directory: let the kernel resolve
            // it beneath the root, which refuses an escape.
            Err(_) => open_dir(root, &so_far)?,
        };
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_leave_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root_path = tmp.path().join("module");
        std::fs::create_dir_all(root_path.join("inside/deeper")).unwrap();
        std::fs::write(tmp.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink("../secret", root_path.join("out")).unwrap();
        std::os::unix::fs::symlink("/", root_path.join("abs")).unwrap();
        std::os::unix::fs::symlink("inside/deeper", root_path.join("in")).unwrap();
        let root = dir::open_root(&root_path).unwrap();
        let root = root.as_fd();

        assert!(open_dir(root, Path::new("inside/deeper")).is_ok());
        assert!(
            open_dir(root, Path::new("in")).is_ok(),
            "a symlink that stays inside"
        );
        for bad in ["../", "..", "inside/../..", "/etc", "out", "abs", "abs/etc"] {
            let err = open(root, Path::new(bad), OFlags::RDONLY).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{bad}: {err}");
        }
        let made = create_dirs(root, Path::new("new/a/b"), 0o755).unwrap();
        drop(made);
        assert!(root_path.join("new/a/b").is_dir());
        assert!(create_dirs(root, Path::new("abs/x"), 0o755).is_err());
        assert!(!Path::new("/x").exists());
    }
}
