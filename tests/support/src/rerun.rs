//! Fixtures for "a re-run with nothing changed writes nothing": a tree with extended
//! attributes on every file and directory and a hard-link pair, and the ctime of every
//! entry of a tree. Every write to an inode (content, owner, mode, mtime, attributes)
//! sets its ctime to the current time, and no run can set a ctime back, so a tree whose
//! ctimes are unchanged after a run was not written to by it.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Directories in [`attributed_tree`].
pub const DIRS: usize = 10;
/// Names in each directory of [`attributed_tree`].
pub const FILES_PER_DIR: usize = 20;

/// The name of directory `d` of [`attributed_tree`].
pub fn dir_name(d: usize) -> PathBuf {
    PathBuf::from(format!("d{d}"))
}

/// The path of file `f` in directory `d` of [`attributed_tree`].
pub fn file_name(d: usize, f: usize) -> PathBuf {
    dir_name(d).join(format!("f{f:02}"))
}

/// Builds, under the existing directory `root`, [`DIRS`] directories of
/// [`FILES_PER_DIR`] files each, every file and directory with a `user.*` attribute of
/// its own. The last file of the last directory is a hard link to the first file of the
/// first one (so the tree holds one hard-link pair). `Err` says why, when the filesystem
/// refuses user attributes.
pub fn attributed_tree(root: &Path) -> Result<(), String> {
    for d in 0..DIRS {
        let dir = root.join(dir_name(d));
        fs::create_dir(&dir).expect("mkdir");
        if !crate::set_xattr(&dir, "user.blit.dir", format!("dir {d}").as_bytes()) {
            return Err(format!(
                "the filesystem under {} does not support user xattrs",
                root.display()
            ));
        }
        for f in 0..FILES_PER_DIR {
            let path = root.join(file_name(d, f));
            if (d, f) == (DIRS - 1, FILES_PER_DIR - 1) {
                fs::hard_link(root.join(file_name(0, 0)), &path).expect("hard link");
                continue;
            }
            let content: Vec<u8> = (0..1000 + d * 31 + f).map(|i| (i * 7 + d) as u8).collect();
            crate::write(&path, &content);
            let value = format!("file {d}/{f}");
            assert!(crate::set_xattr(&path, "user.blit.file", value.as_bytes()));
        }
    }
    Ok(())
}

/// The ctime (seconds, nanoseconds) of every entry under a root, the root itself
/// included (as the empty path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ctimes(BTreeMap<PathBuf, (i64, i64)>);

impl Ctimes {
    /// Reads the ctimes of every entry under `root`, without following symlinks.
    pub fn of(root: &Path) -> Ctimes {
        let mut all = BTreeMap::new();
        let mut pending = vec![PathBuf::new()];
        while let Some(rel) = pending.pop() {
            let path = root.join(&rel);
            let md = fs::symlink_metadata(&path).expect("stat");
            all.insert(rel.clone(), (md.ctime(), md.ctime_nsec()));
            if md.is_dir() {
                for entry in fs::read_dir(&path).expect("read_dir") {
                    pending.push(rel.join(entry.expect("dir entry").file_name()));
                }
            }
        }
        Ctimes(all)
    }

    /// How many entries were read.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries under `root` whose ctime is not the one recorded here (or which
    /// appeared or disappeared since), in path order.
    pub fn changed_since(&self, root: &Path) -> Vec<PathBuf> {
        let now = Ctimes::of(root);
        let mut changed: Vec<PathBuf> = now
            .0
            .iter()
            .filter(|(rel, ctime)| self.0.get(*rel) != Some(ctime))
            .map(|(rel, _)| rel.clone())
            .collect();
        changed.extend(
            self.0
                .keys()
                .filter(|rel| !now.0.contains_key(*rel))
                .cloned(),
        );
        changed.sort();
        changed
    }
}

/// Waits until the clock that stamps ctimes has moved past every ctime recorded so far,
/// so that a write from now on is seen as a new ctime. `probe` is a scratch file outside
/// the trees being watched: it is changed until its ctime moves, which proves the
/// granularity has passed (whatever it is on this filesystem).
pub fn wait_for_ctime_tick(probe: &Path) {
    crate::write(probe, b"probe");
    let ctime = |p: &Path| {
        let md = fs::symlink_metadata(p).expect("stat probe");
        (md.ctime(), md.ctime_nsec())
    };
    let before = ctime(probe);
    for _ in 0..500 {
        std::thread::sleep(Duration::from_millis(5));
        crate::set_mode(probe, 0o644);
        if ctime(probe) != before {
            return;
        }
    }
    panic!("the ctime of {} never moved", probe.display());
}
