//! The destination side of a local transfer: the `walk::Visitor` that receives each
//! source directory's listing, lists the matching destination directory, plans with
//! `plan::diff`, and carries the plan out.
//!
//! Subdirectories are handed to the walk before this directory's files are copied, so
//! idle workers pick them up while this one copies.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};

use super::action;
use super::context::{Ctx, PendingDir, names};
use super::entry_ops::{Place, RESUMABLE_MIN};
use crate::checksum;
use crate::entry::{Entry, EntryKind, Meta, Xattrs, sort_by_name};
use crate::plan::{self, Action};
use crate::report::Change;
use crate::roots::Rename;
use crate::spec::Mode;
use crate::sync::lock;
use crate::sys::meta::{self, MetaPolicy};
use crate::sys::temp::{self, TempSuffix};
use crate::sys::{dir, reopen, xattr};
use crate::walk::{Listed, Subdirs, Visitor};

/// The destination side of a directory being visited.
pub enum DstDir {
    /// Not opened yet: a queued visit holds only its parent, and that weakly (see
    /// `sys::reopen`: a comb-shaped tree must not hold a descriptor per level). `meta` is
    /// `Some` if the directory existed before this run, `None` if this run created it.
    Child {
        parent: Weak<OwnedFd>,
        meta: Option<Meta>,
    },
    /// It existed before this run: list it and diff.
    Existing(Arc<OwnedFd>, Meta),
    /// This run just created it: it is empty, no need to list it.
    Created(Arc<OwnedFd>),
    /// Dry run and it does not exist.
    Absent,
}

/// What a directory's visit needs besides the source listing.
pub struct DirState {
    pub(super) dst: DstDir,
    pub(super) src_meta: Meta,
    /// The source directory's extended attributes, when they came over the network.
    pub(super) src_xattrs: Option<Xattrs>,
    /// Set metadata of this directory at the end (false for the parent of a single file).
    pub(super) finalize: bool,
    /// Single-file transfers: the source name and the destination name it gets.
    pub(super) rename: Option<Rename>,
}

impl DirState {
    /// The state of a subdirectory's visit. Its destination side is opened from `parent`
    /// when the visit starts (no parent: it does not exist, in a dry run); `existing` is its
    /// metadata if it existed before this run.
    fn subdir(parent: Option<&Arc<OwnedFd>>, existing: Option<Meta>, src: Entry) -> DirState {
        let dst = parent.map_or(DstDir::Absent, |parent| DstDir::Child {
            parent: Arc::downgrade(parent),
            meta: existing,
        });
        DirState {
            dst,
            src_meta: src.meta,
            src_xattrs: src.xattrs,
            finalize: true,
            rename: None,
        }
    }
}

/// One source directory's entries (sorted by name), and the directory itself when the
/// source is on this machine.
pub struct Batch {
    pub rel: PathBuf,
    pub src: Option<Arc<OwnedFd>>,
    pub entries: Vec<Entry>,
}

/// Queues the visit of a subdirectory: on the local walk's pool, or — for a remote
/// source — until its batch arrives.
pub trait Descend {
    fn descend(&self, name: &OsStr, state: DirState);
}

impl<'s> Descend for Subdirs<'_, 's, Ctx<'s>> {
    fn descend(&self, name: &OsStr, state: DirState) {
        Subdirs::descend(self, name, state);
    }
}

impl<'a> Visitor for Ctx<'a> {
    type State = DirState;

    fn visit<'s>(&'s self, dir: Listed, state: DirState, subdirs: &Subdirs<'_, 's, Self>) {
        let batch = Batch {
            rel: dir.rel,
            src: Some(dir.fd),
            entries: dir.entries,
        };
        visit(self, batch, state, subdirs);
    }

    fn failed(&self, rel: &Path, name: &OsStr, operation: &'static str, error: &io::Error) {
        self.fail(rel, name, operation, error);
    }
}

/// Opens a queued directory's destination side.
fn open_dst(ctx: &Ctx<'_>, rel: &Path, dst: DstDir) -> Option<DstDir> {
    let DstDir::Child { parent, meta } = dst else {
        return Some(dst);
    };
    let name = rel.file_name().unwrap_or_default();
    let parent_rel = rel.parent().unwrap_or(Path::new(""));
    let opened = match &ctx.settings.dst_root {
        Some(root) => reopen::open_child(root.as_fd(), &parent, parent_rel, name),
        None => Err(io::Error::from(io::ErrorKind::NotFound)),
    };
    match opened {
        Ok(fd) => Some(match meta {
            Some(m) => DstDir::Existing(Arc::new(fd), m),
            None => DstDir::Created(Arc::new(fd)),
        }),
        Err(e) => {
            ctx.fail(rel, "".as_ref(), "open destination directory", &e);
            None
        }
    }
}

/// Visits one directory: plan against the destination, queue subdirectories, apply.
pub fn visit(ctx: &Ctx<'_>, batch: Batch, state: DirState, subdirs: &impl Descend) {
    let Batch { rel, src, entries } = batch;
    let Some(dst) = open_dst(ctx, &rel, state.dst) else {
        return;
    };
    let state = DirState { dst, ..state };
    let rename = state.rename.as_ref();
    let mut src_entries = entries;
    if let Some(r) = rename {
        src_entries.iter_mut().for_each(|e| e.name = r.dst.clone());
    }
    ctx.count(|t| &t.entries, src_entries.len() as u64);
    let dst_fd = match &state.dst {
        DstDir::Existing(fd, _) | DstDir::Created(fd) => Some(fd.clone()),
        DstDir::Absent | DstDir::Child { .. } => None,
    };
    let Some((mut dst_entries, leftovers)) = list_destination(ctx, &rel, &state, &src_entries)
    else {
        return;
    };
    let src_fd = src.as_deref().map(|fd| fd.as_fd());
    if ctx.checksum()
        && let Some(dst) = &dst_fd
    {
        hash_candidates(
            ctx,
            &rel,
            src_fd,
            dst.as_fd(),
            rename,
            &mut src_entries,
            &mut dst_entries,
        );
    }
    let parts = leftovers.resumable(ctx.settings.options.resume);
    let part_of = |name: &OsStr| parts.get(temp::key(name).as_bytes());
    let is_resumable =
        |e: &Entry| !parts.is_empty() && e.size >= RESUMABLE_MIN && part_of(&e.name).is_some();
    let actions = plan::diff(src_entries, dst_entries, &ctx.diff_options(), &is_resumable);
    let actions = link_groups(ctx, &rel, actions);
    // The partial file each Resume continues (and which this visit must not remove).
    let resumed: HashMap<OsString, OsString> = actions
        .iter()
        .filter(|a| matches!(a, Action::Resume { .. }))
        .filter_map(|a| Some((a.name().to_owned(), part_of(a.name())?.clone())))
        .collect();

    let mut changed = !leftovers.names.is_empty() | lend_write_access(ctx, &state);
    let rest = descend(ctx, subdirs, &rel, dst_fd.as_ref(), actions, &mut changed);
    let setgid = match &state.dst {
        DstDir::Existing(_, m) => m.mode & 0o2000 != 0,
        _ => state.src_meta.mode & 0o2000 != 0,
    };
    let mut confirmed = Vec::new();
    for action in &rest {
        changed |= !matches!(action, Action::Skip { .. });
        let at = dst_fd.as_ref().map(|dst| Place {
            rel: &rel,
            src: src_fd,
            dst: dst.as_fd(),
            dst_dir: dst,
            names: names(rename, action.name()),
            part: resumed.get(action.name()).map(OsString::as_os_str),
            dst_setgid: setgid,
        });
        confirmed.extend(action::carry_out(ctx, &rel, at, action));
    }
    if let Some(dst) = &dst_fd {
        action::remove_confirmed(ctx, &rel, dst.as_fd(), confirmed);
    }
    if let (false, Some(dst)) = (ctx.dry_run(), &dst_fd) {
        // Leftover temps go, except partial files chosen for a resume (a remote one still
        // needs its part for the data to come; a failed one keeps it for the next run)
        // and temp files another run is writing right now (`sys::temp` tells them apart).
        let chosen: HashSet<&OsString> = resumed.values().collect();
        for tmp in leftovers.names.iter().filter(|t| !chosen.contains(t)) {
            let _ = temp::remove_if_abandoned(dst.as_fd(), tmp);
        }
    }
    finish_dir(ctx, &rel, &state, src_fd, changed);
}

/// Creates and queues the subdirectories of a plan; returns the other actions.
fn descend(
    ctx: &Ctx<'_>,
    subdirs: &impl Descend,
    rel: &Path,
    dst_fd: Option<&Arc<OwnedFd>>,
    actions: Vec<Action>,
    changed: &mut bool,
) -> Vec<Action> {
    let mut rest = Vec::with_capacity(actions.len());
    for action in actions {
        match action {
            Action::Mkdir { src, replaces } => {
                *changed = true;
                make_subdir(ctx, subdirs, rel, dst_fd, src, replaces);
            }
            Action::Enter { src, dst } => {
                let name = src.name.clone();
                subdirs.descend(&name, DirState::subdir(dst_fd, Some(dst.meta), src));
            }
            other => rest.push(other),
        }
    }
    rest
}

/// Without root, nothing can be created or deleted in a directory that lacks owner
/// write and search permission: lend them for the visit (the real mode is set at the
/// end of the run). Returns whether it did.
fn lend_write_access(ctx: &Ctx<'_>, state: &DirState) -> bool {
    let DstDir::Existing(fd, meta) = &state.dst else {
        return false;
    };
    if ctx.dry_run() || crate::sys::is_root() || meta.mode & 0o700 == 0o700 {
        return false;
    }
    let lent = crate::entry::Meta {
        mode: meta.mode | 0o700,
        ..*meta
    };
    let policy = MetaPolicy {
        owner: false,
        mode: true,
    };
    meta::set_owner_mode(fd.as_fd(), &lent, policy).is_ok()
}

/// Temp files found in a destination directory: left by earlier runs, or being written
/// by another run right now.
#[derive(Default)]
struct Leftovers {
    /// Their names, with the size of each partial (`.part`) file.
    names: Vec<OsString>,
    parts: Vec<(OsString, u64)>,
}

impl Leftovers {
    fn add(&mut self, name: OsString, size: u64) {
        if temp::parse(&name).is_some_and(|p| p.suffix == TempSuffix::Part) {
            self.parts.push((name.clone(), size));
        }
        self.names.push(name);
    }

    /// With `--resume`: for each target (by its temp key), the largest partial file.
    fn resumable(&self, resume: bool) -> HashMap<Vec<u8>, OsString> {
        let mut best: HashMap<Vec<u8>, (OsString, u64)> = HashMap::new();
        for (name, size) in self.parts.iter().filter(|_| resume) {
            let key = temp::parse(name).map_or(Vec::new(), |p| p.key.to_vec());
            match best.get(&key) {
                Some((_, have)) if have >= size => {}
                _ => {
                    best.insert(key, (name.clone(), *size));
                }
            }
        }
        best.into_iter().map(|(k, (name, _))| (k, name)).collect()
    }
}

/// Lists the destination side: its entries (minus those the filter protects) and the
/// temp files found there. `None` if it could not be read — then nothing in it may be
/// planned, least of all deleted.
fn list_destination(
    ctx: &Ctx<'_>,
    rel: &Path,
    state: &DirState,
    src_entries: &[Entry],
) -> Option<(Vec<Entry>, Leftovers)> {
    let DstDir::Existing(fd, _) = &state.dst else {
        return Some((Vec::new(), Leftovers::default()));
    };
    if let Some(r) = &state.rename {
        let temps = single_target_temps(fd.as_fd(), &r.dst);
        return match dir::stat_at(fd.as_fd(), &r.dst) {
            Ok(e) => Some((vec![e], temps)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Some((Vec::new(), temps)),
            Err(e) => {
                ctx.fail(rel, &r.dst, "stat destination", &e);
                None
            }
        };
    }
    let listing = match dir::list(fd.as_fd()) {
        Ok(l) => l,
        Err(e) => {
            ctx.fail(rel, "".as_ref(), "read destination directory", &e);
            return None;
        }
    };
    for (name, e) in &listing.errors {
        ctx.fail(rel, name, "stat destination", e);
    }
    // A name that looks like a temp file but exists in the source is the user's file.
    let in_source = |name: &OsStr| {
        src_entries
            .binary_search_by(|e| e.name_bytes().cmp(name.as_encoded_bytes()))
            .is_ok()
    };
    let (temps, mut entries): (Vec<Entry>, Vec<Entry>) =
        listing.entries.into_iter().partition(|e| {
            e.kind == EntryKind::File && temp::is_temp_name(&e.name) && !in_source(&e.name)
        });
    if !ctx.settings.filter.is_empty() {
        entries.retain(|e| !ctx.settings.filter.excludes(&rel.join(&e.name), e.is_dir()));
    }
    sort_by_name(&mut entries);
    let mut leftovers = Leftovers::default();
    for t in temps {
        leftovers.add(t.name, t.size);
    }
    Some((entries, leftovers))
}

/// The temp files standing in for `target` in `dir` (a single-file transfer): found by
/// the key in their names, so the directory's names are read but nothing else is stat'ed.
fn single_target_temps(dir: BorrowedFd<'_>, target: &OsStr) -> Leftovers {
    let key = temp::key(target);
    let mut leftovers = Leftovers::default();
    for name in dir::read_names(dir).unwrap_or_default() {
        if temp::parse(&name).is_some_and(|p| p.key == key.as_bytes())
            && let Ok(e) = dir::stat_at(dir, &name)
            && e.kind == EntryKind::File
        {
            leftovers.add(name, e.size);
        }
    }
    leftovers
}

/// `--checksum`: hashes both sides of every equal-size file pair (a remote source sends
/// its hashes with the entries).
fn hash_candidates(
    ctx: &Ctx<'_>,
    rel: &Path,
    src: Option<BorrowedFd<'_>>,
    dst: BorrowedFd<'_>,
    rename: Option<&Rename>,
    src_entries: &mut [Entry],
    dst_entries: &mut [Entry],
) {
    for (i, j) in plan::checksum_candidates(src_entries, dst_entries) {
        let names = names(rename, &src_entries[i].name);
        let src_hash = match (src, src_entries[i].hash) {
            (Some(src), _) => checksum::hash_file_at(src, names.src),
            (None, Some(hash)) => Ok(hash),
            (None, None) => continue,
        };
        match (src_hash, checksum::hash_file_at(dst, names.dst)) {
            (Ok(a), Ok(b)) => {
                src_entries[i].hash = Some(a);
                dst_entries[j].hash = Some(b);
            }
            (Err(e), _) | (_, Err(e)) => ctx.fail(rel, names.dst, "checksum", &e),
        }
    }
}

/// `-H`: the first member of a hard-link group is copied; the others become links to it,
/// created at the end once it exists — unless the destination already has them linked to
/// the first member's up-to-date inode, in which case there is nothing to do.
fn link_groups(ctx: &Ctx<'_>, rel: &Path, actions: Vec<Action>) -> Vec<Action> {
    if !ctx.settings.options.preserve.hard_links {
        return actions;
    }
    actions
        .into_iter()
        .map(|action| {
            let (src, dst) = match &action {
                Action::Copy { src, .. } | Action::Resume { src, .. }
                    if src.kind == EntryKind::File && src.nlink > 1 =>
                {
                    (src.clone(), None)
                }
                Action::Skip { src, dst } | Action::SetMeta { src, dst }
                    if src.kind == EntryKind::File && src.nlink > 1 =>
                {
                    (src.clone(), Some(dst.inode))
                }
                _ => return action,
            };
            let mut groups = lock(&ctx.deferred.link_groups);
            match groups.get(&src.inode) {
                None => {
                    groups.insert(src.inode, (rel.join(&src.name), dst));
                    action
                }
                Some((_, Some(first))) if dst == Some(*first) => action,
                Some((target, _)) => Action::HardLink {
                    target: target.clone(),
                    src,
                },
            }
        })
        .collect()
}

/// Creates a subdirectory (replacing a non-directory in the way) and queues its visit.
fn make_subdir(
    ctx: &Ctx<'_>,
    subdirs: &impl Descend,
    rel: &Path,
    dst: Option<&Arc<OwnedFd>>,
    src: Entry,
    replaces: Option<Entry>,
) {
    ctx.count(|t| &t.dirs_created, 1);
    ctx.emit(
        rel,
        &src.name,
        Change::Create {
            kind: EntryKind::Dir,
            bytes: 0,
        },
    );
    let parent = match dst {
        Some(fd) if !ctx.dry_run() => {
            let made = replaces
                .map_or(Ok(()), |old| dir::unlink_at(fd.as_fd(), &old.name))
                .and_then(|()| dir::make_dir_at(fd.as_fd(), &src.name, src.meta.mode));
            if let Err(e) = made {
                ctx.fail(rel, &src.name, "create directory", &e);
                return;
            }
            Some(fd)
        }
        _ => None,
    };
    let name = src.name.clone();
    subdirs.descend(&name, DirState::subdir(parent, None, src));
}

/// Queues the directory's own metadata for the end of the run if anything in it may
/// need writing (its contents changed, or its owner, mode, mtime or — with `-X` —
/// attributes differ from the source's), and remembers it for a move's cleanup. A
/// directory found up to date is not queued: nothing of it is written.
fn finish_dir(
    ctx: &Ctx<'_>,
    rel: &Path,
    state: &DirState,
    src: Option<BorrowedFd<'_>>,
    changed: bool,
) {
    if ctx.settings.options.mode == Mode::Move && state.rename.is_none() {
        lock(&ctx.deferred.src_dirs).push(rel.to_owned());
    }
    if ctx.dry_run() || !state.finalize {
        return;
    }
    let differs = match &state.dst {
        DstDir::Existing(fd, m) => {
            m.mode != state.src_meta.mode
                || m.mtime != state.src_meta.mtime
                || (ctx.settings.owner
                    && (m.uid, m.gid) != (state.src_meta.uid, state.src_meta.gid))
                || (ctx.settings.options.preserve.xattrs
                    && xattrs_differ(ctx, state, src, fd.as_fd()))
        }
        DstDir::Created(_) => true,
        DstDir::Absent | DstDir::Child { .. } => false,
    };
    if changed || differs {
        lock(&ctx.deferred.dirs).push(PendingDir {
            rel: rel.to_owned(),
            meta: state.src_meta,
            xattrs: state.src_xattrs.clone(),
        });
    }
}

/// `-X`: whether an existing destination directory's attributes differ from its
/// source's (sent with the entry, or read from the local source directory). When that
/// cannot be told, they count as different: the end of the run syncs them and reports
/// what fails.
fn xattrs_differ(
    ctx: &Ctx<'_>,
    state: &DirState,
    src: Option<BorrowedFd<'_>>,
    dst: BorrowedFd<'_>,
) -> bool {
    let scope = ctx.xattr_scope();
    let differs = match (&state.src_xattrs, src) {
        (Some(wanted), _) => xattr::differs(wanted, dst, scope),
        (None, Some(src)) => xattr::read(src, scope).and_then(|w| xattr::differs(&w, dst, scope)),
        (None, None) => return true,
    };
    differs.unwrap_or(true)
}
