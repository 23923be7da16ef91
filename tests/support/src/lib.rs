//! Test support for Blit: build source trees on disk in a sentence or two, and compare two
//! trees entry by entry — kind, content, mode, nanosecond mtime, symlink target, extended
//! attributes and hard-link structure — without following symlinks.

pub mod agent;
pub mod chain;
pub mod rerun;
pub mod tls;

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, Timespec, Timestamps};

/// A scratch area with a `src` and a `dst` directory, removed when dropped.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub src: PathBuf,
    pub dst: PathBuf,
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("blit-test-")
            .tempdir()
            .expect("tempdir");
        let src = dir.path().join("src");
        let dst = dir.path().join("dst");
        fs::create_dir(&src).expect("mkdir src");
        Fixture { dir, src, dst }
    }

    /// `src/` with the trailing slash: "the contents of src".
    pub fn src_contents(&self) -> PathBuf {
        with_slash(&self.src)
    }

    /// A path inside the fixture area (outside both trees).
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a file under the source tree, creating parents.
    pub fn file(&self, rel: impl AsRef<Path>, content: &[u8]) -> PathBuf {
        write(&self.src.join(rel), content)
    }

    pub fn dir(&self, rel: impl AsRef<Path>) -> PathBuf {
        let p = self.src.join(rel);
        fs::create_dir_all(&p).expect("mkdir");
        p
    }

    pub fn symlink(&self, rel: impl AsRef<Path>, target: impl AsRef<Path>) -> PathBuf {
        let p = self.src.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        std::os::unix::fs::symlink(target, &p).expect("symlink");
        p
    }
}

/// Appends a `/` to a path.
pub fn with_slash(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push("/");
    PathBuf::from(s)
}

/// Writes `content` to `path`, creating parent directories.
pub fn write(path: &Path, content: &[u8]) -> PathBuf {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("mkdir");
    }
    fs::write(path, content).expect("write");
    path.to_owned()
}

/// Sets a path's mtime (without following symlinks) to `sec.nsec`.
pub fn set_mtime(path: &Path, sec: i64, nsec: u32) {
    let t = Timestamps {
        last_access: Timespec {
            tv_sec: sec,
            tv_nsec: i64::from(nsec) as _,
        },
        last_modification: Timespec {
            tv_sec: sec,
            tv_nsec: i64::from(nsec) as _,
        },
    };
    rustix::fs::utimensat(CWD, path, &t, AtFlags::SYMLINK_NOFOLLOW).expect("utimensat");
}

pub fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Sets an extended attribute; returns false if the filesystem does not support them.
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) -> bool {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty()).is_ok()
}

/// A path from raw bytes (for non-UTF-8 names).
pub fn bytes_path(b: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(b.to_vec()))
}

/// What a tree entry looks like, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    /// Directories' mtimes are compared too: Blit sets them after their contents.
    pub mtime: (i64, i64),
    pub size: u64,
    pub hash: Option<String>,
    pub link: Option<OsString>,
    pub xattrs: BTreeMap<OsString, Vec<u8>>,
    /// Index of the hard-link group (by first path in sorted order), if nlink > 1.
    pub link_group: Option<PathBuf>,
    pub uid: u32,
    pub gid: u32,
}

/// Options for `snapshot`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Compare {
    pub xattrs: bool,
    pub hard_links: bool,
    pub owner: bool,
}

/// Every entry below `root` (not `root` itself unless `with_root`), keyed by relative path.
pub fn snapshot(root: &Path, opts: Compare) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut groups: HashMap<(u64, u64), PathBuf> = HashMap::new();
    walk(root, Path::new(""), opts, &mut out, &mut groups);
    out
}

fn walk(
    root: &Path,
    rel: &Path,
    opts: Compare,
    out: &mut BTreeMap<PathBuf, Node>,
    groups: &mut HashMap<(u64, u64), PathBuf>,
) {
    let mut names: Vec<OsString> = fs::read_dir(root.join(rel))
        .expect("read_dir")
        .map(|e| e.expect("dirent").file_name())
        .collect();
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let child = rel.join(&name);
        let path = root.join(&child);
        let md = fs::symlink_metadata(&path).expect("lstat");
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "file"
        } else {
            "special"
        };
        let hash = ft.is_file().then(|| {
            blake3::hash(&fs::read(&path).expect("read"))
                .to_hex()
                .to_string()
        });
        let link = ft
            .is_symlink()
            .then(|| fs::read_link(&path).expect("readlink").into_os_string());
        let link_group = (opts.hard_links && ft.is_file() && md.nlink() > 1).then(|| {
            groups
                .entry((md.dev(), md.ino()))
                .or_insert_with(|| child.clone())
                .clone()
        });
        out.insert(
            child.clone(),
            Node {
                kind,
                mode: if ft.is_symlink() {
                    0
                } else {
                    md.mode() & 0o7777
                },
                mtime: (md.mtime(), md.mtime_nsec()),
                size: if ft.is_dir() { 0 } else { md.size() },
                hash,
                link,
                xattrs: if opts.xattrs && !ft.is_symlink() {
                    xattrs(&path)
                } else {
                    BTreeMap::new()
                },
                link_group,
                uid: if opts.owner { md.uid() } else { 0 },
                gid: if opts.owner { md.gid() } else { 0 },
            },
        );
        if ft.is_dir() {
            walk(root, &child, opts, out, groups);
        }
    }
}

fn xattrs(path: &Path) -> BTreeMap<OsString, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut list = vec![0u8; 65536];
    let Ok(n) = rustix::fs::llistxattr(path, &mut list[..]) else {
        return out;
    };
    for name in list[..n]
        .split(|&b| b == 0)
        .filter(|n| n.starts_with(b"user."))
    {
        let mut value = vec![0u8; 65536];
        if let Ok(len) = rustix::fs::lgetxattr(path, OsStr::from_bytes(name), &mut value[..]) {
            value.truncate(len);
            out.insert(OsString::from_vec(name.to_vec()), value);
        }
    }
    out
}

/// Asserts that two trees are identical in everything `opts` covers, with a readable diff.
pub fn assert_same_tree(a: &Path, b: &Path, opts: Compare) {
    let sa = snapshot(a, opts);
    let sb = snapshot(b, opts);
    let only_a: Vec<_> = sa.keys().filter(|k| !sb.contains_key(*k)).collect();
    let only_b: Vec<_> = sb.keys().filter(|k| !sa.contains_key(*k)).collect();
    assert!(
        only_a.is_empty() && only_b.is_empty(),
        "only in {}: {only_a:?}; only in {}: {only_b:?}",
        a.display(),
        b.display()
    );
    for (path, na) in &sa {
        assert_eq!(
            Some(na),
            sb.get(path),
            "entry {path:?} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

/// Bytes actually allocated on disk for a file.
pub fn allocated_bytes(path: &Path) -> u64 {
    fs::metadata(path).expect("stat").blocks() * 512
}

/// Names of the entries directly in `dir`, sorted by bytes.
pub fn names(dir: &Path) -> Vec<OsString> {
    let mut v: Vec<OsString> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("dirent").file_name())
        .collect();
    v.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    v
}

/// Sets the immutable flag on a directory for as long as the guard lives, so that even
/// root cannot create entries in it: a way to make one copy fail on purpose.
pub struct Immutable {
    path: PathBuf,
}

impl Immutable {
    /// `None` if the flag cannot be set here (not root, or the filesystem lacks it).
    pub fn set(path: &Path) -> Option<Immutable> {
        set_immutable(path, true).then(|| Immutable {
            path: path.to_owned(),
        })
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        set_immutable(&self.path, false);
    }
}

fn set_immutable(path: &Path, on: bool) -> bool {
    use rustix::fs::{IFlags, Mode, OFlags};
    let Ok(fd) = rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()) else {
        return false;
    };
    let Ok(mut flags) = rustix::fs::ioctl_getflags(&fd) else {
        return false;
    };
    flags.set(IFlags::IMMUTABLE, on);
    rustix::fs::ioctl_setflags(&fd, flags).is_ok()
}

/// Whether the tests run as root (root bypasses permission checks, so some failure
/// tests need another way to fail).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A small XFS filesystem with reflink support, loop-mounted for as long as the guard
/// lives: the way to test copy-on-write clones on a machine whose disk is ext4.
pub struct ReflinkFs {
    pub mount: PathBuf,
}

impl ReflinkFs {
    /// Creates and mounts the filesystem under `dir`. Returns why not when it cannot be
    /// done here (not root, no mkfs.xfs, no loop devices).
    pub fn mount(dir: &Path) -> Result<ReflinkFs, String> {
        if !is_root() {
            return Err("mounting a loop filesystem needs root".into());
        }
        let image = dir.join("xfs.img");
        let mount = dir.join("xfs");
        fs::create_dir_all(&mount).map_err(|e| e.to_string())?;
        fs::File::create(&image)
            .and_then(|f| f.set_len(512 << 20))
            .map_err(|e| e.to_string())?;
        run_tool(
            "mkfs.xfs",
            &[
                "-q".as_ref(),
                "-m".as_ref(),
                "reflink=1".as_ref(),
                image.as_os_str(),
            ],
        )?;
        run_tool(
            "mount",
            &[
                "-o".as_ref(),
                "loop".as_ref(),
                image.as_os_str(),
                mount.as_os_str(),
            ],
        )?;
        Ok(ReflinkFs { mount })
    }

    /// Bytes in use on the filesystem, once everything written so far is allocated.
    pub fn used_bytes(&self) -> u64 {
        let dir = fs::File::open(&self.mount).expect("open mount");
        rustix::fs::syncfs(&dir).expect("syncfs");
        let st = rustix::fs::statvfs(&self.mount).expect("statvfs");
        (st.f_blocks - st.f_bfree) * st.f_frsize
    }
}

impl Drop for ReflinkFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(&self.mount)
            .status();
    }
}

fn run_tool(tool: &str, args: &[&std::ffi::OsStr]) -> Result<(), String> {
    match std::process::Command::new(tool).args(args).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "{tool} failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("{tool} is not available: {e}")),
    }
}
