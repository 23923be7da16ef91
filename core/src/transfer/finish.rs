//! The end of a run, after every copy: hard links, mirror deletes, directory metadata, and
//! a move's emptied source directories — in that order, because each step changes what
//! the next one sees (deleting changes a directory's mtime; a read-only mode would block
//! deletes inside it).

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};

use super::context::{Ctx, PendingDelete};
use crate::delete;
use crate::report::Change;
use crate::roots::WholeDir;
use crate::spec::Mode;
use crate::sync::lock;
use crate::sys::cursor::{Cursor, tree_order};
use crate::sys::dir;
use crate::sys::file;
use crate::sys::meta::{self, MetaPolicy};
use crate::sys::temp::{self, TempSuffix};
use crate::sys::xattr;

fn split(rel: &Path) -> (&Path, &OsStr) {
    (
        rel.parent().unwrap_or(Path::new("")),
        rel.file_name().unwrap_or_default(),
    )
}

/// Creates the hard links deferred by `-H`.
pub fn hard_links(ctx: &Ctx<'_>, dst_root: BorrowedFd<'_>) {
    let links = std::mem::take(&mut *lock(&ctx.deferred.links));
    for link in links {
        let (dir_rel, name) = split(&link.rel);
        let result = (|| -> io::Result<(bool, Arc<OwnedFd>)> {
            let (target_rel, target_name) = split(&link.target);
            let dir_fd = Arc::new(dir::open_beneath(dst_root, dir_rel)?);
            let target_dir = dir::open_beneath(dst_root, target_rel)?;
            let target = dir::stat_at(target_dir.as_fd(), target_name)?;
            let created = match dir::stat_at(dir_fd.as_fd(), name) {
                Ok(existing) if existing.inode == target.inode => false,
                Ok(_) => {
                    let tmp = temp::unique_name(name, TempSuffix::Tmp);
                    file::hard_link(target_dir.as_fd(), target_name, dir_fd.as_fd(), &tmp)?;
                    dir::rename_in(dir_fd.as_fd(), &tmp, name).inspect_err(|_| {
                        let _ = dir::unlink_at(dir_fd.as_fd(), &tmp);
                    })?;
                    true
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    file::hard_link(target_dir.as_fd(), target_name, dir_fd.as_fd(), name)?;
                    true
                }
                Err(e) => return Err(e),
            };
            Ok((created, dir_fd))
        })();
        match result {
            Ok((created, dir_fd)) => {
                if created {
                    ctx.count(|t| &t.links_created, 1);
                    ctx.emit(
                        dir_rel,
                        name,
                        Change::Link {
                            target: link.target.clone(),
                        },
                    );
                }
                match (ctx.settings.options.mode, ctx.settings.landing) {
                    (Mode::Move, Some(landing)) => {
                        landing.landed(link.rel.clone(), &link.src, None, &dir_fd)
                    }
                    (Mode::Move, None) => remove_moved_link(ctx, dir_rel, name),
                    _ => {}
                }
            }
            Err(e) => ctx.fail(dir_rel, name, "hard link", &e),
        }
    }
}

/// A move's hard-link members: once linked, the source name goes too.
fn remove_moved_link(ctx: &Ctx<'_>, dir_rel: &Path, name: &OsStr) {
    let removed = ctx
        .src_root()
        .and_then(|root| dir::open_beneath(root, dir_rel))
        .and_then(|fd| dir::unlink_at(fd.as_fd(), name));
    match removed {
        Ok(()) => ctx.count(|t| &t.sources_removed, 1),
        Err(e) => ctx.fail(dir_rel, name, "remove source", &e),
    }
}

/// Carries out mirror deletes, unless a copy failed (a source we could not read must not
/// look like a source that lost its files) or the count exceeds `--max-delete`.
/// Returns why deletes were skipped, if they were.
pub fn deletes(ctx: &Ctx<'_>, dst_root: BorrowedFd<'_>) -> Option<String> {
    let mut pending = std::mem::take(&mut *lock(&ctx.deferred.deletes));
    if pending.is_empty() {
        return None;
    }
    if ctx.has_failures() {
        return Some(format!(
            "{} deletion(s) skipped because of the errors above; nothing was deleted",
            pending.len()
        ));
    }
    // One directory open at a time, however many deletes there are.
    pending.sort_by(|a, b| tree_order(&a.dir, &b.dir));
    let protect = |p: &Path, is_dir: bool| ctx.settings.filter.excludes(p, is_dir);
    if let Some(limit) = ctx.settings.options.limits.max_delete {
        let mut total = ctx.deletes_reserved();
        for_each_in_dir(ctx, dst_root, &pending, |fd, d| {
            let rel = d.dir.join(&d.entry.name);
            total += delete::count(fd, &d.entry.name, d.entry.kind, &rel, &protect).unwrap_or(1);
        });
        if total > limit {
            return Some(format!(
                "refusing to delete {total} entries: more than the delete limit ({limit}); nothing was deleted"
            ));
        }
    }
    for_each_in_dir(ctx, dst_root, &pending, |fd, d| {
        let rel = d.dir.join(&d.entry.name);
        match delete::remove(fd, &d.entry.name, d.entry.kind, &rel, &protect) {
            Ok(n) => {
                ctx.count(|t| &t.deleted, n);
                ctx.emit(&d.dir, &d.entry.name, Change::Delete { kind: d.entry.kind });
            }
            Err(e) => ctx.fail(&d.dir, &d.entry.name, "delete", &e),
        }
    });
    None
}

/// Calls `f` for each pending delete (sorted by directory) with its directory open. One
/// cursor goes from directory to directory in path order, so each step is short.
fn for_each_in_dir(
    ctx: &Ctx<'_>,
    dst_root: BorrowedFd<'_>,
    pending: &[PendingDelete],
    mut f: impl FnMut(BorrowedFd<'_>, &PendingDelete),
) {
    let mut cursor = Cursor::new(dst_root);
    for group in pending.chunk_by(|a, b| a.dir == b.dir) {
        let dir_rel = &group[0].dir;
        match cursor.go(dir_rel) {
            Ok(()) => group.iter().for_each(|d| f(cursor.fd(), d)),
            Err(e) => ctx.fail(dir_rel, "".as_ref(), "open directory for deletes", &e),
        }
    }
}

/// Sets directory metadata, each directory after everything below it, now that nothing
/// inside will change. Only what differs from the source is written (a directory whose
/// contents changed has a new mtime, so that is set again).
///
/// Reverse path order does both jobs: every directory comes after its subtree, and the
/// next one is always near, so a cursor reaches it in a step or two where opening it
/// from the root would cost its depth. The cursor stops at the parent and the directory
/// itself is opened from there: once its final mode is set it may no longer be
/// searchable, and the cursor must still be able to climb out.
pub fn directories(ctx: &Ctx<'_>, dst_root: BorrowedFd<'_>) {
    let mut dirs = std::mem::take(&mut *lock(&ctx.deferred.dirs));
    dirs.sort_by(|a, b| tree_order(&b.rel, &a.rel));
    let mut dst = Cursor::new(dst_root);
    let mut src = ctx.src_root().ok().map(Cursor::new);
    let policy = MetaPolicy {
        owner: ctx.settings.owner,
        mode: true,
    };
    for d in dirs {
        let result = open_in_parent(&mut dst, &d.rel).and_then(|fd| {
            let fd = fd.as_ref().map_or(dst_root, |fd| fd.as_fd());
            // Neither the mode, the owner nor the attributes touch the mtime, so this one
            // look serves all three comparisons.
            let current = meta::read(fd)?;
            meta::set_owner_mode(fd, &d.meta, policy.narrowed(&current, &d.meta))?;
            if ctx.settings.options.preserve.xattrs {
                match (&d.xattrs, &mut src) {
                    (Some(wanted), _) => xattr::sync_to(wanted, fd, ctx.xattr_scope())?,
                    (None, Some(src)) => {
                        src.go(&d.rel)?;
                        xattr::sync(src.fd(), fd, ctx.xattr_scope())?
                    }
                    // No local source and no attributes sent: `src_root` says why.
                    (None, None) => {
                        ctx.src_root()?;
                        false
                    }
                };
            }
            meta::update_mtime(fd, &current, &d.meta)
        });
        if let Err(e) = result {
            let (parent, name) = split(&d.rel);
            ctx.fail(parent, name, "set directory metadata", &e);
        }
    }
}

/// Moves `cursor` to the parent of `rel` and opens `rel` from there; `None` for the root
/// itself (the caller has it).
fn open_in_parent(cursor: &mut Cursor<BorrowedFd<'_>>, rel: &Path) -> io::Result<Option<OwnedFd>> {
    if rel.as_os_str().is_empty() {
        return Ok(None);
    }
    let (parent, name) = split(rel);
    cursor.go(parent)?;
    dir::open_dir_at(cursor.fd(), name).map(Some)
}

/// A move removes the source directories it emptied, each after everything below it
/// (reverse path order, one cursor: see `directories`). Directories that still hold
/// something (excluded or failed entries) stay, silently; after any failure, all of them
/// stay (a directory the run could not read completely must not go). The tree's own
/// directory goes last, when it was named without a trailing slash (`whole_dir`).
pub fn emptied_sources(ctx: &Ctx<'_>, whole_dir: Option<&WholeDir>) {
    if ctx.has_failures() {
        return;
    }
    let mut dirs: Vec<PathBuf> = std::mem::take(&mut *lock(&ctx.deferred.src_dirs));
    dirs.sort_by(|a, b| tree_order(b, a));
    if let Ok(root) = ctx.src_root() {
        let mut cursor = Cursor::new(root);
        for rel in dirs.iter().filter(|r| !r.as_os_str().is_empty()) {
            let (parent, name) = split(rel);
            let _ = cursor
                .go(parent)
                .and_then(|()| dir::rmdir_at(cursor.fd(), name));
        }
    }
    if let Some(whole) = whole_dir
        && !ctx.has_failures()
    {
        let _ = dir::rmdir_at(whole.parent.as_fd(), &whole.name);
    }
}
