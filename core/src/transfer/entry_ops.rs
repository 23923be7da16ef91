//! The filesystem operations on one entry that `action` carries out: write a file so that
//! it appears only when complete (stage, fill, publish), create links and special files,
//! fix metadata, and (for a move) remove the source once its copy is confirmed.

use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};

use super::context::{Ctx, Names};
use super::policy;
use crate::entry::{Entry, EntryKind, Meta};
use crate::spec::Mode;
use crate::sys::file;
use crate::sys::meta::{self, MetaPolicy};
use crate::sys::temp::{self, TempSuffix};
use crate::sys::{dir, xattr};
use crate::{checksum, delete, resume};

/// Files at least this large are written under a `.part` name that survives a crash, so
/// `--resume` can continue them; smaller ones are cheaper to redo.
pub const RESUMABLE_MIN: u64 = 16 << 20;

/// Where an action happens: the directory pair and the entry's names on both sides.
#[derive(Clone, Copy)]
pub struct Place<'a> {
    /// Directory path relative to the transfer roots.
    pub rel: &'a Path,
    /// The source directory, when it is on this machine.
    pub src: Option<BorrowedFd<'a>>,
    pub dst: BorrowedFd<'a>,
    /// The destination directory again, for work that outlives this call.
    pub dst_dir: &'a Arc<OwnedFd>,
    pub names: Names<'a>,
    /// The partial file an earlier run left for this entry, which a Resume continues.
    pub part: Option<&'a OsStr>,
    /// The destination directory has the setgid bit, so new files inherit its group.
    pub dst_setgid: bool,
}

impl<'a> Place<'a> {
    /// The source directory; an error when the source is on another machine.
    pub fn src(&self) -> io::Result<BorrowedFd<'a>> {
        self.src.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                "the source is on another machine",
            )
        })
    }
}

/// How a new file's content is staged before it is published under its final name.
enum Staging {
    /// `O_TMPFILE`: no name until `linkat`.
    Unnamed,
    /// A hidden temp name in the same directory, renamed over the target.
    Named(std::ffi::OsString),
}

/// What writing one file did.
pub struct Written {
    pub bytes: u64,
    pub reused: u64,
}

/// Writes `src` to the destination, replacing `replaces` if given; with `resume`, the
/// claimed partial file of an earlier run is continued.
pub fn copy_file(
    ctx: &Ctx<'_>,
    at: Place<'_>,
    src: &Entry,
    replaces: Option<&Entry>,
    resume: Option<temp::Owned>,
) -> io::Result<Written> {
    let src_fd = file::open_source(at.src()?, at.names.src)?;
    let resuming = resume.is_some();
    let staged = stage(ctx, at, src, replaces.is_some(), resume)?;
    let result = fill(ctx, src_fd.as_fd(), staged.fd.as_fd(), src, resuming).and_then(|written| {
        publish_file(ctx, at, src, &staged, Some(src_fd.as_fd()), replaces)?;
        Ok(written)
    });
    if result.is_err() {
        discard(at, &staged, src);
    }
    result
}

/// A file being written: its descriptor and how it will get its final name. A named one
/// is locked by this writer (`sys::temp`) until it is dropped.
pub struct Staged {
    pub fd: OwnedFd,
    staging: Staging,
    /// The mode it was created with (to know whether a `chmod` is still needed).
    created_mode: u32,
}

/// Finishes a file whose content is complete: metadata (xattrs copied from `src_fd` when
/// the source is local), then — only now — clears a directory in its way, and gives it
/// its final name.
pub fn publish_file(
    ctx: &Ctx<'_>,
    at: Place<'_>,
    src: &Entry,
    staged: &Staged,
    src_fd: Option<BorrowedFd<'_>>,
    replaces: Option<&Entry>,
) -> io::Result<()> {
    // A move confirms this file to its source, which then deletes its copy: the data
    // must be on disk first, whichever end the bytes came from.
    if ctx.settings.options.mode == Mode::Move {
        file::sync_data(staged.fd.as_fd())?;
    }
    finish_meta(ctx, at, src, src_fd, staged.fd.as_fd(), staged.created_mode)?;
    if let Some(old) = replaces.filter(|e| e.kind == EntryKind::Dir) {
        clear_dir_in_the_way(ctx, at, old)?;
    }
    publish(at, staged.fd.as_fd(), &staged.staging)
}

/// Drops a file that failed. A partial large file is kept for `--resume`; anything else
/// is garbage.
pub fn discard(at: Place<'_>, staged: &Staged, src: &Entry) {
    if let Staging::Named(tmp) = &staged.staging
        && src.size < RESUMABLE_MIN
    {
        let _ = dir::unlink_at(at.dst, tmp);
    }
}

/// Opens the file the content is written to: the claimed partial file when resuming, an
/// unnamed `O_TMPFILE` for a new small file, a temp file of this writer's own otherwise
/// (`.part`, kept for `--resume`, for large files).
pub fn stage(
    ctx: &Ctx<'_>,
    at: Place<'_>,
    src: &Entry,
    replacing: bool,
    resume: Option<temp::Owned>,
) -> io::Result<Staged> {
    let named = |owned: temp::Owned| Staged {
        fd: owned.fd,
        staging: Staging::Named(owned.name),
        created_mode: u32::MAX,
    };
    if let Some(part) = resume {
        return Ok(named(part));
    }
    if src.size >= RESUMABLE_MIN {
        return temp::create(at.dst, at.names.dst, TempSuffix::Part).map(named);
    }
    let mode = src.meta.mode;
    if !replacing && ctx.settings.unnamed_ok.load(Ordering::Relaxed) {
        match file::create_unnamed(at.dst, mode)? {
            Some(fd) => {
                return Ok(Staged {
                    fd,
                    staging: Staging::Unnamed,
                    created_mode: mode & !ctx.settings.umask,
                });
            }
            None => ctx.settings.unnamed_ok.store(false, Ordering::Relaxed),
        }
    }
    temp::create(at.dst, at.names.dst, TempSuffix::Tmp).map(named)
}

/// Writes the content; with `resume`, keeps the verified blocks of a partial file.
fn fill(
    ctx: &Ctx<'_>,
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    entry: &Entry,
    resume: bool,
) -> io::Result<Written> {
    if resume {
        let reused = resume::complete(&ctx.settings.copier, src, dst, entry.size)?;
        return Ok(Written {
            bytes: entry.size - reused,
            reused,
        });
    }
    ctx.settings
        .copier
        .copy_file(src, dst, entry.size, entry.is_sparse())?;
    Ok(Written {
        bytes: entry.size,
        reused: 0,
    })
}

/// Owner, mode, xattrs and mtime on the open destination file, in that order, as far as
/// the destination's privileges allow (see `policy`).
fn finish_meta(
    ctx: &Ctx<'_>,
    at: Place<'_>,
    src: &Entry,
    src_fd: Option<BorrowedFd<'_>>,
    fd: BorrowedFd<'_>,
    created_mode: u32,
) -> io::Result<()> {
    let wanted = policy::meta(&ctx.settings.options.privileges, src.kind, &src.meta);
    let owner = ctx.settings.owner && (at.dst_setgid || wanted.uid != 0 || wanted.gid != 0);
    let meta_policy = MetaPolicy {
        owner,
        // Writing a file clears its setuid/setgid bits unless the writer has CAP_FSETID
        // (a module's identity does not): set a mode with them again.
        mode: created_mode != wanted.mode || wanted.mode & 0o6000 != 0,
    };
    meta::set_owner_mode(fd, &wanted, meta_policy)?;
    if ctx.settings.options.preserve.xattrs {
        let scope = ctx.xattr_scope();
        match (&src.xattrs, src_fd) {
            (Some(set), _) => xattr::set_new(set, fd, scope)?,
            (None, Some(src_fd)) => xattr::copy_to_new(src_fd, fd, scope)?,
            (None, None) => {}
        }
    }
    meta::set_mtime(fd, &wanted)
}

/// Gives the finished file its final name, atomically.
fn publish(at: Place<'_>, fd: BorrowedFd<'_>, staging: &Staging) -> io::Result<()> {
    match staging {
        Staging::Named(tmp) => dir::rename_in(at.dst, tmp, at.names.dst),
        Staging::Unnamed => match file::link_unnamed(fd, at.dst, at.names.dst) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // Something appeared under the name while we copied: replace it atomically,
                // through a temp name that is visibly in use from the moment it exists.
                temp::lock_unnamed(fd);
                let tmp = temp::unique_name(at.names.dst, TempSuffix::Tmp);
                file::link_unnamed(fd, at.dst, &tmp)?;
                dir::rename_in(at.dst, &tmp, at.names.dst).inspect_err(|_| {
                    let _ = dir::unlink_at(at.dst, &tmp);
                })
            }
            other => other,
        },
    }
}

/// Clears a directory that stands where a non-directory must go (a type change). A copy
/// or a move never deletes: it removes the directory only if it is empty. A mirror removes
/// it with its contents, keeping what the filter protects and counting against
/// `--max-delete`.
fn clear_dir_in_the_way(ctx: &Ctx<'_>, at: Place<'_>, old: &Entry) -> io::Result<()> {
    let name = at.names.dst;
    if ctx.settings.options.mode != Mode::Mirror {
        return match dir::rmdir_at(at.dst, name) {
            Ok(()) => {
                ctx.count(|t| &t.deleted, 1);
                Ok(())
            }
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTEMPTY.raw_os_error()) => Err(
                io::Error::other("a non-empty directory is in the way (only mirror deletes)"),
            ),
            Err(e) => Err(e),
        };
    }
    let rel = at.rel.join(name);
    let protect = |p: &Path, is_dir: bool| ctx.settings.filter.excludes(p, is_dir);
    let n = delete::count(at.dst, name, old.kind, &rel, &protect)?;
    if !ctx.reserve_deletes(n) {
        return Err(io::Error::other(format!(
            "replacing the directory in the way would delete {n} entries, past the delete limit"
        )));
    }
    let removed = delete::remove(at.dst, name, old.kind, &rel, &protect)?;
    ctx.count(|t| &t.deleted, removed);
    if dir::stat_at(at.dst, name).is_ok() {
        return Err(io::Error::other(
            "excluded entries inside the directory in the way keep it in place",
        ));
    }
    Ok(())
}

/// Creates (or re-points) a symlink or special file, atomically replacing what was there.
/// A kind of special file the destination's privileges refuse fails here, before anything
/// is touched.
pub fn make_node(
    ctx: &Ctx<'_>,
    at: Place<'_>,
    src: &Entry,
    replaces: Option<&Entry>,
) -> io::Result<()> {
    policy::may_create(&ctx.settings.options.privileges, src)?;
    let wanted = policy::meta(&ctx.settings.options.privileges, src.kind, &src.meta);
    // With something in the way, build the node under a temp name of its own first.
    let tmp = temp::unique_name(at.names.dst, TempSuffix::Tmp);
    let name: &OsStr = if replaces.is_some() {
        &tmp
    } else {
        at.names.dst
    };
    match src.kind {
        EntryKind::Symlink => {
            let target = src.link_target.as_deref().unwrap_or_default();
            file::symlink(target, at.dst, name)?;
        }
        _ => file::make_special(at.dst, name, src.type_bits | wanted.mode, src.rdev)?,
    }
    let placed = meta::apply_at(at.dst, name, &wanted, node_policy(ctx, src)).and_then(|()| {
        if let Some(old) = replaces.filter(|e| e.kind == EntryKind::Dir) {
            clear_dir_in_the_way(ctx, at, old)?;
        }
        match replaces {
            Some(_) => dir::rename_in(at.dst, &tmp, at.names.dst),
            None => Ok(()),
        }
    });
    if placed.is_err() && replaces.is_some() {
        let _ = dir::unlink_at(at.dst, &tmp);
    }
    placed
}

/// Metadata to set on a symlink or special file (a symlink has no mode of its own).
fn node_policy(ctx: &Ctx<'_>, src: &Entry) -> MetaPolicy {
    MetaPolicy {
        owner: ctx.settings.owner,
        mode: src.kind != EntryKind::Symlink,
    }
}

/// Fixes metadata of an entry whose content is current, as far as the destination's
/// privileges allow: only the parts that differ between the source's and `current` (the
/// destination's, as listed when the visit planned this) are written.
pub fn set_meta(ctx: &Ctx<'_>, at: Place<'_>, src: &Entry, current: &Meta) -> io::Result<()> {
    let wanted = policy::meta(&ctx.settings.options.privileges, src.kind, &src.meta);
    match src.kind {
        EntryKind::Symlink | EntryKind::Special => {
            let (dir, name) = (at.dst, at.names.dst);
            let needed = node_policy(ctx, src).narrowed(current, &wanted);
            meta::set_owner_mode_at(dir, name, &wanted, needed)?;
            meta::update_mtime_at(dir, name, current, &wanted)
        }
        EntryKind::File | EntryKind::Dir => {
            let fd = file::open_read(at.dst, at.names.dst)?;
            let meta_policy = MetaPolicy {
                owner: ctx.settings.owner,
                mode: true,
            };
            let needed = meta_policy.narrowed(current, &wanted);
            meta::set_owner_mode(fd.as_fd(), &wanted, needed)?;
            if ctx.settings.options.preserve.xattrs {
                sync_xattrs_of(ctx, at, src, fd.as_fd())?;
            }
            meta::update_mtime(fd.as_fd(), current, &wanted)
        }
    }
}

/// `-X` on an up-to-date file: makes its extended attributes equal to the source's.
/// Returns whether anything changed.
pub fn sync_xattrs(ctx: &Ctx<'_>, at: Place<'_>, src: &Entry) -> io::Result<bool> {
    let dst_fd = file::open_read(at.dst, at.names.dst)?;
    sync_xattrs_of(ctx, at, src, dst_fd.as_fd())
}

/// Makes `dst`'s extended attributes those of `src` (within the carried namespaces): the
/// set it carries (a remote source), or read from the local source file.
fn sync_xattrs_of(
    ctx: &Ctx<'_>,
    at: Place<'_>,
    src: &Entry,
    dst: BorrowedFd<'_>,
) -> io::Result<bool> {
    let scope = ctx.xattr_scope();
    match &src.xattrs {
        Some(wanted) => xattr::sync_to(wanted, dst, scope),
        None => {
            let src_fd = file::open_source(at.src()?, at.names.src)?;
            xattr::sync(src_fd.as_fd(), dst, scope)
        }
    }
}

/// For a move: confirms the destination holds the source's content, durably, and that
/// the source has not changed since it was read, then removes the source entry. Size and
/// mtime confirm a file this run wrote; a file it did not write (found up to date, by
/// whatever comparison) is confirmed by BLAKE3, as is every file with `--checksum`. The
/// copy's data is on disk first (`publish_file` synced what this run wrote; a file found
/// up to date is synced here), and its directory was synced by the caller.
pub fn remove_source(ctx: &Ctx<'_>, at: Place<'_>, src: &Entry, written: bool) -> io::Result<()> {
    let landed = dir::stat_at(at.dst, at.names.dst)?;
    let now = dir::stat_at(at.src()?, at.names.src)?;
    let unchanged =
        now.size == src.size && now.meta.mtime == src.meta.mtime && now.kind == src.kind;
    let same = landed.kind == src.kind
        && landed.size == src.size
        && (src.kind != EntryKind::File || landed.meta.mtime == src.meta.mtime)
        && landed.link_target == src.link_target;
    if !unchanged {
        return Err(io::Error::other(
            "source changed during the move; left in place",
        ));
    }
    if !same {
        return Err(io::Error::other(
            "destination does not match the source; source left in place",
        ));
    }
    // A copy this run wrote was synced before it was published.
    if src.kind == EntryKind::File && !written {
        let copy = file::open_read(at.dst, at.names.dst)?;
        file::sync_data(copy.as_fd())?;
    }
    let by_hash = ctx.checksum() || !written;
    if by_hash && src.kind == EntryKind::File {
        let a = checksum::hash_file_at(at.src()?, at.names.src)?;
        let b = checksum::hash_file_at(at.dst, at.names.dst)?;
        if a != b {
            return Err(io::Error::other(
                "destination content differs from the source; source left in place",
            ));
        }
    }
    dir::unlink_at(at.src()?, at.names.src)?;
    ctx.count(|t| &t.sources_removed, 1);
    Ok(())
}
