//! Carrying out one planned action for a directory's visit — or, in a dry run, saying
//! what it would do — and recording the outcome once, for both cases, in the report.

use std::io;
use std::path::Path;

use rustix::fd::BorrowedFd;

use super::apply::{self, Place};
use super::context::{Ctx, PendingDelete, PendingLink, lock};
use crate::delete;
use crate::entry::{Entry, EntryKind};
use crate::plan::Action;
use crate::report::Change;
use crate::spec::Mode;

/// What an action amounted to.
enum Outcome {
    Changed(Change),
    /// The entry was already up to date.
    UpToDate(EntryKind),
    /// Queued for the end of the run (hard links, mirror deletes).
    Deferred,
}

/// Carries out `action` at `at`; in a dry run only previews it (`at` is `None` when the
/// destination directory does not exist yet).
pub fn act(ctx: &Ctx<'_>, rel: &Path, at: Option<Place<'_>>, action: &Action) {
    let name = at.map_or(action.name(), |a| a.names.dst);
    let outcome = match at {
        _ if ctx.dry_run() => Ok(preview(ctx, rel, at.map(|a| a.dst), action)),
        Some(at) => apply(ctx, at, action),
        None => unreachable!("the destination directory is open outside dry runs"),
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => return ctx.fail(rel, name, operation(action), &e),
    };
    if let Outcome::Changed(change) = &outcome {
        record(ctx, change);
        ctx.emit(rel, name, change.clone());
    } else if let Outcome::UpToDate(EntryKind::File) = outcome {
        ctx.count(|t| &t.files_skipped, 1);
    }
    // A remote source removes its own files, once told they landed.
    let local_source = at.is_some_and(|a| a.src.is_some());
    if let (Mode::Move, false, true, Some(at), Some(src)) = (
        ctx.spec.mode,
        ctx.dry_run(),
        local_source,
        at,
        moved(action),
    ) {
        let written = matches!(action, Action::Copy { .. } | Action::Resume { .. });
        match apply::remove_source(ctx, at, src, written) {
            Ok(()) => ctx.emit(rel, name, Change::RemoveSource),
            Err(e) => ctx.fail(rel, name, "remove source", &e),
        }
    }
    // A remote source learns what landed; fetched files are reported once written.
    if let (Mode::Move, false, Some(landing), Some(at), Some(src)) =
        (ctx.spec.mode, ctx.dry_run(), ctx.landing, at, moved(action))
        && !matches!(action, Action::Copy { .. } | Action::Resume { .. })
    {
        land(ctx, landing, at, src, false);
    }
}

/// Applies an action to the destination.
fn apply(ctx: &Ctx<'_>, at: Place<'_>, action: &Action) -> io::Result<Outcome> {
    Ok(match action {
        Action::Copy { src, dst } | Action::Resume { src, dst } => {
            let resume = matches!(action, Action::Resume { .. });
            ctx.file_planned(src.size);
            if let Some(fetch) = ctx.fetch {
                fetch.fetch(ctx, at, src, dst.as_ref(), resume)?;
                return Ok(Outcome::Deferred);
            }
            let written = apply::copy_file(ctx, at, src, dst.as_ref(), resume)?;
            Outcome::Changed(match (resume, dst) {
                (true, _) => Change::Resume {
                    bytes: written.bytes,
                    reused: written.reused,
                },
                _ => file_change(dst.as_ref(), written.bytes),
            })
        }
        Action::Symlink { src, dst } | Action::Special { src, dst } => {
            apply::make_node(ctx, at, src, dst.as_ref())?;
            Outcome::Changed(Change::Create {
                kind: src.kind,
                bytes: 0,
            })
        }
        Action::SetMeta { src, .. } => {
            apply::set_meta(ctx, at, src)?;
            Outcome::Changed(Change::Meta)
        }
        Action::Skip { src, .. } if ctx.spec.preserve.xattrs && src.kind == EntryKind::File => {
            match apply::sync_xattrs(ctx, at, src)? {
                true => Outcome::Changed(Change::Meta),
                false => Outcome::UpToDate(src.kind),
            }
        }
        Action::Skip { src, .. } => Outcome::UpToDate(src.kind),
        Action::HardLink { target, .. } => {
            lock(&ctx.links).push(PendingLink {
                rel: at.rel.join(at.names.dst),
                target: target.clone(),
                src: action.source().cloned().expect("a hard link has a source"),
            });
            Outcome::Deferred
        }
        Action::Delete { dst } => {
            lock(&ctx.deletes).push(PendingDelete {
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
            let protect = |p: &Path, is_dir: bool| ctx.filter.excludes(p, is_dir);
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
/// the comparison needs content (as `apply::remove_source` decides for a local source).
pub fn land(
    ctx: &Ctx<'_>,
    landing: &dyn super::Landing,
    at: apply::Place<'_>,
    src: &Entry,
    written: bool,
) {
    let by_hash =
        ctx.checksum() || (!written && ctx.spec.compare == crate::spec::Compare::SizeOnly);
    let hash = if by_hash && src.kind == EntryKind::File {
        match crate::checksum::hash_file_at(at.dst, at.names.dst) {
            Ok(h) => Some(h),
            Err(e) => return ctx.fail(at.rel, at.names.dst, "checksum", &e),
        }
    } else {
        None
    };
    landing.landed(at.rel.join(at.names.src), src, hash);
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
