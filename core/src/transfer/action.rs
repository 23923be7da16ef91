//! One planned action of a directory's visit: carried out (through `entry_ops`) — or, in a
//! dry run, only described — and its outcome recorded once, for both cases, in the
//! report. A move's source removal and a remote source's landing confirmations start
//! here too.

use std::io;
use std::path::Path;

use rustix::fd::BorrowedFd;

use super::context::{Ctx, PendingDelete, PendingLink};
use super::entry_ops::{self, Place};
use super::remote::{Landing, Target};
use crate::delete;
use crate::entry::{Entry, EntryKind};
use crate::plan::Action;
use crate::report::Change;
use crate::spec::Mode;
use crate::sync::lock;
use crate::sys::temp;

/// What an action amounted to.
enum Outcome {
    Changed(Change),
    /// The entry was already up to date.
    UpToDate(EntryKind),
    /// Queued for the end of the run (hard links, mirror deletes).
    Deferred,
}

/// A local move's source entry whose copy is in place: removed by [`remove_confirmed`]
/// once the destination directory's names are on disk.
pub struct Confirmed<'a> {
    at: Place<'a>,
    src: &'a Entry,
    /// This run wrote the destination copy (rather than finding it up to date).
    written: bool,
}

/// Carries out `action` at `at`; in a dry run only previews it (`at` is `None` when the
/// destination directory does not exist yet). For a local move, returns the source entry
/// to remove once the whole directory is done.
pub fn carry_out<'a>(
    ctx: &Ctx<'_>,
    rel: &Path,
    at: Option<Place<'a>>,
    action: &'a Action,
) -> Option<Confirmed<'a>> {
    let name = at.map_or(action.name(), |a| a.names.dst);
    let outcome = match at {
        _ if ctx.dry_run() => Ok(preview(ctx, rel, at.map(|a| a.dst), action)),
        Some(at) => apply(ctx, at, action),
        None => unreachable!("the destination directory is open outside dry runs"),
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            ctx.fail(rel, name, operation(action), &e);
            return None;
        }
    };
    if let Outcome::Changed(change) = &outcome {
        record(ctx, change);
        ctx.emit(rel, name, change.clone());
    } else if let Outcome::UpToDate(EntryKind::File) = outcome {
        ctx.count(|t| &t.files_skipped, 1);
    }
    // A remote source learns what landed; fetched files are reported once written.
    if let (Mode::Move, false, Some(landing), Some(at), Some(src)) = (
        ctx.settings.options.mode,
        ctx.dry_run(),
        ctx.settings.landing,
        at,
        moved(action),
    ) && !matches!(action, Action::Copy { .. } | Action::Resume { .. })
    {
        land(ctx, landing, at, src, false);
    }
    // A local source is removed here, once its directory is done.
    let local_source = at.is_some_and(|a| a.src.is_some());
    match (
        ctx.settings.options.mode,
        ctx.dry_run(),
        local_source,
        at,
        moved(action),
    ) {
        (Mode::Move, false, true, Some(at), Some(src)) => Some(Confirmed {
            at,
            src,
            written: matches!(action, Action::Copy { .. } | Action::Resume { .. }),
        }),
        _ => None,
    }
}

/// A local move's removals for one directory: the destination directory is synced once
/// (the new names must survive a crash before the old ones go), then each source entry is
/// removed if its copy is confirmed (`entry_ops::remove_source`).
pub fn remove_confirmed(
    ctx: &Ctx<'_>,
    rel: &Path,
    dst: BorrowedFd<'_>,
    confirmed: Vec<Confirmed<'_>>,
) {
    if confirmed.is_empty() {
        return;
    }
    if let Err(e) = crate::sys::file::sync_dir(dst) {
        for c in &confirmed {
            ctx.fail(rel, c.at.names.dst, "remove source", &e);
        }
        return;
    }
    for c in confirmed {
        match entry_ops::remove_source(ctx, c.at, c.src, c.written) {
            Ok(()) => ctx.emit(rel, c.at.names.dst, Change::RemoveSource),
            Err(e) => ctx.fail(rel, c.at.names.dst, "remove source", &e),
        }
    }
}

/// Applies an action to the destination.
fn apply(ctx: &Ctx<'_>, at: Place<'_>, action: &Action) -> io::Result<Outcome> {
    Ok(match action {
        Action::Copy { src, dst } | Action::Resume { src, dst } => {
            let resume = matches!(action, Action::Resume { .. });
            ctx.file_planned(src.size);
            // The partial file is taken over only if no other run is writing it; if one
            // is, this run starts a file of its own.
            let part = match (resume, at.part) {
                (true, Some(part)) => temp::claim(at.dst, part)?,
                _ => None,
            };
            if let Some(fetch) = ctx.settings.fetch {
                fetch.fetch(Target::of(at), src, dst.as_ref(), part)?;
                return Ok(Outcome::Deferred);
            }
            let written = entry_ops::copy_file(ctx, at, src, dst.as_ref(), part)?;
            Outcome::Changed(match (resume, dst) {
                (true, _) => Change::Resume {
                    bytes: written.bytes,
                    reused: written.reused,
                },
                _ => file_change(dst.as_ref(), written.bytes),
            })
        }
        Action::Symlink { src, dst } | Action::Special { src, dst } => {
            entry_ops::make_node(ctx, at, src, dst.as_ref())?;
            Outcome::Changed(Change::Create {
                kind: src.kind,
                bytes: 0,
            })
        }
        Action::SetMeta { src, dst } => {
            entry_ops::set_meta(ctx, at, src, &dst.meta)?;
            Outcome::Changed(Change::Meta)
        }
        Action::Skip { src, .. }
            if ctx.settings.options.preserve.xattrs && src.kind == EntryKind::File =>
        {
            match entry_ops::sync_xattrs(ctx, at, src)? {
                true => Outcome::Changed(Change::Meta),
                false => Outcome::UpToDate(src.kind),
            }
        }
        Action::Skip { src, .. } => Outcome::UpToDate(src.kind),
        Action::HardLink { target, .. } => {
            lock(&ctx.deferred.links).push(PendingLink {
                rel: at.rel.join(at.names.dst),
                target: target.clone(),
                src: action.source().cloned().expect("a hard link has a source"),
            });
            Outcome::Deferred
        }
        Action::Delete { dst } => {
            lock(&ctx.deferred.deletes).push(PendingDelete {
                dir: at.rel.to_owned(),
                entry: dst.clone(),
            });
            Outcome::Deferred
        }
        Action::Mkdir { .. } | Action::Enter { .. } => {
            unreachable!("directories are handled by visit")
        }
    })
}

/// What an action would do, changing nothing.
fn preview(ctx: &Ctx<'_>, rel: &Path, dst: Option<BorrowedFd<'_>>, action: &Action) -> Outcome {
    match action {
        Action::Copy { src, dst } | Action::Resume { src, dst } => {
            ctx.file_planned(src.size);
            Outcome::Changed(file_change(dst.as_ref(), src.size))
        }
        Action::Symlink { src, .. } | Action::Special { src, .. } => {
            Outcome::Changed(Change::Create {
                kind: src.kind,
                bytes: 0,
            })
        }
        Action::HardLink { target, .. } => Outcome::Changed(Change::Link {
            target: target.clone(),
        }),
        Action::SetMeta { .. } => Outcome::Changed(Change::Meta),
        Action::Skip { src, .. } => Outcome::UpToDate(src.kind),
        Action::Delete { dst: old } => {
            let protect = |p: &Path, is_dir: bool| ctx.settings.filter.excludes(p, is_dir);
            let entry_rel = rel.join(&old.name);
            let n = dst.map_or(Ok(1), |fd| {
                delete::count(fd, &old.name, old.kind, &entry_rel, &protect)
            });
            ctx.count(|t| &t.deleted, n.unwrap_or(1));
            Outcome::Changed(Change::Delete { kind: old.kind })
        }
        Action::Mkdir { .. } | Action::Enter { .. } => {
            unreachable!("directories are handled by visit")
        }
    }
}

/// Tells a remote source that `src` landed at `at`, with the destination copy's hash when
/// the comparison needs content (as `entry_ops::remove_source` decides for a local source).
pub fn land(ctx: &Ctx<'_>, landing: &dyn Landing, at: Place<'_>, src: &Entry, written: bool) {
    let hash = if src.kind == EntryKind::File {
        match confirm_landed(ctx, at, written) {
            Ok(h) => h,
            Err(e) => return ctx.fail(at.rel, at.names.dst, "confirm", &e),
        }
    } else {
        None
    };
    landing.landed(at.rel.join(at.names.src), src, hash, at.dst_dir);
}

/// Makes a landed file's copy durable and says how it is confirmed: a file this run did
/// not write (found up to date, by whatever comparison) is confirmed by its BLAKE3, as is
/// every file with `--checksum`; a file this run wrote was synced before it was published.
fn confirm_landed(ctx: &Ctx<'_>, at: Place<'_>, written: bool) -> io::Result<Option<[u8; 32]>> {
    if written && !ctx.checksum() {
        return Ok(None);
    }
    let fd = crate::sys::file::open_read(at.dst, at.names.dst)?;
    if !written {
        crate::sys::file::sync_data(rustix::fd::AsFd::as_fd(&fd))?;
    }
    crate::checksum::hash_file(rustix::fd::AsFd::as_fd(&fd)).map(Some)
}

/// Records a file whose content arrived later (from a remote source) and was published.
pub fn file_done(
    ctx: &Ctx<'_>,
    rel: &Path,
    name: &std::ffi::OsStr,
    replaced: Option<&Entry>,
    bytes: u64,
    reused: u64,
) {
    let change = match reused {
        0 => file_change(replaced, bytes),
        reused => Change::Resume { bytes, reused },
    };
    record(ctx, &change);
    ctx.emit(rel, name, change);
}

/// A file written: new, or replacing an older file (or something else in the way).
fn file_change(replaced: Option<&Entry>, bytes: u64) -> Change {
    match replaced {
        Some(old) if old.kind == EntryKind::File => Change::Update { bytes },
        _ => Change::Create {
            kind: EntryKind::File,
            bytes,
        },
    }
}

/// Counts a change in the report. (Deletes are counted where they happen.)
fn record(ctx: &Ctx<'_>, change: &Change) {
    match change {
        Change::Create {
            kind: EntryKind::File,
            bytes,
        }
        | Change::Update { bytes } => ctx.file_written(*bytes, 0),
        Change::Resume { bytes, reused } => ctx.file_written(*bytes, *reused),
        Change::Create { .. } | Change::Link { .. } => ctx.count(|t| &t.links_created, 1),
        Change::Meta => ctx.count(|t| &t.metadata_updated, 1),
        Change::Delete { .. } | Change::RemoveSource | Change::Fail { .. } => {}
    }
}

/// The source entry a move removes once this action succeeded. Directories go at the end
/// of the run; hard-link members once their link exists.
fn moved(action: &Action) -> Option<&Entry> {
    match action {
        Action::Mkdir { .. } | Action::Enter { .. } | Action::HardLink { .. } => None,
        _ => action.source(),
    }
}

fn operation(action: &Action) -> &'static str {
    match action {
        Action::SetMeta { .. } | Action::Skip { .. } => "set metadata",
        Action::Symlink { .. } | Action::Special { .. } => "create",
        _ => "copy",
    }
}
