//! Directory chains `top/d/d/…/d/leaf` deeper than the kernel's path limit: built,
//! checked and removed one level at a time relative to directory descriptors, since
//! their paths (two bytes a level) cannot be used whole past 4,096 bytes, and std's
//! `remove_dir_all` recurses and holds a descriptor per level.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{CWD, Mode, OFlags, Timespec, Timestamps};

/// Level `n` (0 for `top`) gets mtime `MTIME + n`, so that a copy proves every level's
/// metadata arrived.
pub const MTIME: i64 = 1_500_000_000;

/// What the bottom file holds.
pub const LEAF: &[u8] = b"at the bottom";

fn open_dir(parent: impl AsFd, name: &OsStr) -> OwnedFd {
    rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .unwrap_or_else(|e| panic!("open {name:?}: {e}"))
}

/// Opens level `level` (0: `top` itself) of the chain below `root`.
pub fn open_level(root: &Path, top: &str, level: usize) -> OwnedFd {
    let base = open_dir(CWD, root.as_os_str());
    let mut fd = open_dir(&base, OsStr::new(top));
    for _ in 0..level {
        fd = open_dir(&fd, OsStr::new("d"));
    }
    fd
}

/// Makes `root/top` a chain of `depth` directories with `leaf` in the deepest.
pub fn make(root: &Path, top: &str, depth: usize) {
    let base = open_dir(CWD, root.as_os_str());
    let mkdir = |parent: &OwnedFd, name: &str| {
        rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o755)).expect("mkdirat");
        open_dir(parent, OsStr::new(name))
    };
    let mut fd = mkdir(&base, top);
    for _ in 1..depth {
        fd = mkdir(&fd, "d");
    }
    let leaf = rustix::fs::openat(
        &fd,
        "leaf",
        OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .expect("create the leaf");
    rustix::io::write(&leaf, LEAF).expect("write the leaf");
    // Once nothing more is created inside them (that would change them), the mtimes.
    let mut fd = open_dir(&base, OsStr::new(top));
    for level in 0..depth {
        set_mtime(&fd, level);
        if level + 1 < depth {
            fd = open_dir(&fd, OsStr::new("d"));
        }
    }
}

/// Gives level `level` its mtime.
fn set_mtime(fd: &OwnedFd, level: usize) {
    let t = Timespec {
        tv_sec: MTIME + level as i64,
        tv_nsec: 0,
    };
    let times = Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::futimens(fd, &times).expect("futimens");
}

/// Adds an empty directory `side` at every level of the chain `root/top`, making it a
/// comb (each level keeps its mtime).
pub fn add_sides(root: &Path, top: &str, depth: usize, side: &str) {
    let mut fd = open_level(root, top, 0);
    for level in 0..depth {
        rustix::fs::mkdirat(&fd, side, Mode::from_raw_mode(0o755)).expect("mkdirat");
        set_mtime(&fd, level);
        if level + 1 < depth {
            fd = open_dir(&fd, OsStr::new("d"));
        }
    }
}

/// Checks that `root/top` is a chain of `depth` levels, each with its mtime, and the
/// leaf with its content at the bottom.
pub fn assert_copied(root: &Path, top: &str, depth: usize) {
    let base = open_dir(CWD, root.as_os_str());
    let mut fd = open_dir(&base, OsStr::new(top));
    for level in 0..depth {
        let mtime = rustix::fs::fstat(&fd).expect("fstat").st_mtime;
        assert_eq!(
            mtime,
            MTIME + level as i64,
            "the mtime of level {level} below {}",
            root.display()
        );
        if level + 1 < depth {
            fd = open_dir(&fd, OsStr::new("d"));
        }
    }
    let leaf = rustix::fs::openat(&fd, "leaf", OFlags::RDONLY, Mode::empty()).expect("leaf");
    let mut buf = [0u8; 64];
    let n = rustix::io::read(&leaf, &mut buf).expect("read the leaf");
    assert_eq!(&buf[..n], LEAF);
}

/// `top/d/…/d` (`depth` levels), as tools print the deepest directory.
pub fn path(top: &str, depth: usize) -> PathBuf {
    let mut p = PathBuf::from(top);
    for _ in 1..depth {
        p.push("d");
    }
    p
}

/// Removes a tree however deep (`rm -rf` walks without recursion).
pub fn remove(path: &Path) {
    let status = std::process::Command::new("rm")
        .arg("-rf")
        .arg(path)
        .status()
        .expect("rm runs");
    assert!(status.success(), "rm -rf {}", path.display());
}

/// Removes deep trees when dropped, whether the test passed or not: declared after the
/// fixture, it runs before the fixture's own removal would meet them.
pub struct Cleanup(pub Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::process::Command::new("rm")
                .arg("-rf")
                .arg(path)
                .status();
        }
    }
}
