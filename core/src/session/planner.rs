//! The destination's planner: takes the source's manifest in (directory batches, in
//! parts for large directories, and the source's failures), and runs each directory's
//! visit (`transfer::remote::Destination::visit`) on the worker pool once both its batch
//! and the state its parent's visit hands down are here.
//!
//! The manifest comes from the network, so what it makes us hold is bounded: a batch
//! carries at most [`BATCH_ENTRIES`](super::source::BATCH_ENTRIES) entries (the dispatcher refuses more), only a directory its parent listed may
//! arrive (and only once), at most [`MAX_HELD`] batches wait to be visited, and every
//! byte held for the peer — batches, the directory arriving in parts, the directories
//! announced and not yet arrived, failures reported — is charged to the session's
//! budget, which ends the session with a clear error when exceeded.
//!
//! The manifest is taken in on the calling thread, never on a pool worker: a worker
//! waiting for the next batch (or for room) could be the one the queued visits need,
//! which with one worker is a deadlock.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::SessionError;
use super::fetcher::Fetcher;
use super::lifetime::{Budget, Cancel, Held, entry_bytes};
use crate::entry::Entry;
use crate::sync::lock;
use crate::transfer::remote::{Descend, Destination, DirState};
use crate::wire::pb;

/// Directory batches held at most before the planner stops taking the manifest in.
const MAX_HELD: usize = 128;

/// How often a planner waiting for room looks whether the session was cancelled.
const WAIT_SLICE: Duration = Duration::from_millis(100);

/// What a directory announced by its parent costs until its batch arrives: the path,
/// and the visit state its parent hands down (open directory handle included).
const ANNOUNCED_COST: u64 = 256;

/// What the session's dispatcher hands the planner.
pub(super) enum Inbound {
    Dir {
        rel: PathBuf,
        entries: Vec<Entry>,
        partial: bool,
        /// The source root's own entry (root batch only).
        root: Option<Entry>,
    },
    Done,
    SourceFailure(pb::Failure),
}

/// Matches arriving directory batches with the visit states their parents hand down, and
/// runs each visit on the pool once it has both.
pub(super) struct Planner<'c> {
    dest: &'c Destination<'c>,
    fetcher: &'c Fetcher,
    cancel: Cancel,
    budget: Arc<Budget>,
    slots: Mutex<Slots>,
    /// Directory batches received and not yet visited (queued, or waiting for their
    /// parent's visit): the manifest is taken in only as fast as it is planned.
    held: Mutex<usize>,
    room: Condvar,
}

#[derive(Default)]
struct Slots {
    waiting: HashMap<PathBuf, Slot>,
    /// Directories the destination does not enter (creation failed, or a dry run's
    /// missing ones are still entered): their batches are dropped.
    skipped: HashSet<PathBuf>,
}

enum Slot {
    State(DirState),
    Batch(Vec<Entry>, Held),
}

/// The intake's own state (only the thread taking the manifest in touches it).
struct Intake {
    /// A directory arriving in parts, so far.
    parts: Option<(PathBuf, Vec<Entry>, Held)>,
    /// Directories listed by an arrived parent whose own batch has not come yet: the only
    /// ones that may come.
    announced: HashSet<PathBuf>,
    announced_held: Held,
    root_seen: bool,
    /// The source's failures, kept for the report.
    failures_held: Held,
}

impl<'c> Planner<'c> {
    pub(super) fn new(
        dest: &'c Destination<'c>,
        fetcher: &'c Fetcher,
        cancel: Cancel,
        budget: Arc<Budget>,
    ) -> Planner<'c> {
        Planner {
            dest,
            fetcher,
            cancel,
            budget,
            slots: Mutex::default(),
            held: Mutex::new(0),
            room: Condvar::new(),
        }
    }

    /// Takes batches until the manifest is complete; returns once every visit is done.
    pub(super) fn run(
        &'c self,
        pool: &rayon::ThreadPool,
        inbound: &mut mpsc::Receiver<Inbound>,
        root: DirState,
    ) -> Result<(), SessionError> {
        lock(&self.slots)
            .waiting
            .insert(PathBuf::new(), Slot::State(root));
        let mut intake = Intake {
            parts: None,
            announced: HashSet::new(),
            announced_held: self.budget.take(0, "directories announced")?,
            root_seen: false,
            failures_held: self.budget.take(0, "failures reported by the source")?,
        };
        pool.in_place_scope(|scope| {
            let taken = self.take_all(scope, inbound, &mut intake);
            if let Err(e) = &taken {
                // Before the scope waits for the visits under way: one may be waiting
                // for data or room that only the session's end will release.
                self.cancel.cancel(e.to_string());
            }
            taken
        })
    }

    /// The manifest, batch by batch, until its end.
    fn take_all(
        &'c self,
        scope: &rayon::Scope<'c>,
        inbound: &mut mpsc::Receiver<Inbound>,
        intake: &mut Intake,
    ) -> Result<(), SessionError> {
        loop {
            match inbound.blocking_recv() {
                Some(Inbound::Dir {
                    rel,
                    entries,
                    partial,
                    root,
                }) => {
                    if let Some(root) = root {
                        self.root_entry(root);
                    }
                    let Some((rel, entries, held)) = self.take_in(intake, rel, entries, partial)?
                    else {
                        continue;
                    };
                    self.hold()?;
                    self.arrive(scope, rel, entries, held);
                }
                Some(Inbound::SourceFailure(f)) => {
                    intake.failures_held.grow(
                        (f.path.len() + f.operation.len() + f.message.len()) as u64
                            + std::mem::size_of::<crate::report::Failure>() as u64,
                    )?;
                    let path = PathBuf::from(OsString::from_vec(f.path));
                    self.dest.source_failed(path, f.operation.into(), f.message);
                }
                Some(Inbound::Done) if intake.parts.is_some() => {
                    return Err(SessionError::Protocol(
                        "the manifest ended in the middle of a directory".into(),
                    ));
                }
                Some(Inbound::Done) => return Ok(()),
                None => return Err(self.cancel.or(SessionError::Closed)),
            }
        }
    }

    /// Checks one arriving batch (or part) against what may come, charges it to the
    /// budget, and returns the directory once it is complete.
    fn take_in(
        &self,
        intake: &mut Intake,
        rel: PathBuf,
        entries: Vec<Entry>,
        partial: bool,
    ) -> Result<Option<(PathBuf, Vec<Entry>, Held)>, SessionError> {
        let bytes = entries.iter().map(entry_bytes).sum();
        let continued = match &intake.parts {
            Some((r, _, _)) if *r == rel => true,
            Some(_) => {
                return Err(SessionError::Protocol(
                    "a directory's parts were interleaved".into(),
                ));
            }
            None => false,
        };
        if !continued {
            self.admit(intake, &rel)?;
        }
        for e in entries.iter().filter(|e| e.is_dir()) {
            let sub = rel.join(&e.name);
            intake
                .announced_held
                .grow(ANNOUNCED_COST + sub.as_os_str().len() as u64)?;
            if !intake.announced.insert(sub) {
                return Err(SessionError::Protocol(format!(
                    "directory {:?} is listed twice",
                    rel.join(&e.name)
                )));
            }
        }
        let (rel, entries, held) = match intake.parts.take() {
            Some((rel, mut earlier, mut held)) => {
                held.grow(bytes)?;
                earlier.extend(entries);
                (rel, earlier, held)
            }
            None => (rel, entries, self.budget.take(bytes, "directory batches")?),
        };
        if partial {
            intake.parts = Some((rel, entries, held));
            return Ok(None);
        }
        Ok(Some((rel, entries, held)))
    }

    /// A directory may arrive once: the root first, any other after its parent listed
    /// it. (A batch whose parent never comes would wait forever, holding its memory.)
    fn admit(&self, intake: &mut Intake, rel: &Path) -> Result<(), SessionError> {
        if rel.as_os_str().is_empty() {
            if std::mem::replace(&mut intake.root_seen, true) {
                return Err(SessionError::Protocol(
                    "the root directory was sent twice".into(),
                ));
            }
            return Ok(());
        }
        if !intake.root_seen || !intake.announced.remove(rel) {
            return Err(SessionError::Protocol(format!(
                "a batch for directory {rel:?}, which its parent did not list (or which was \
                 sent before its parent, or twice)"
            )));
        }
        intake
            .announced_held
            .shrink(ANNOUNCED_COST + rel.as_os_str().len() as u64);
        Ok(())
    }

    /// The source root's metadata (and xattrs): the destination root gets them at the end (a single
    /// file's directory is not part of the transfer and keeps its own).
    fn root_entry(&self, root: Entry) {
        if let Some(Slot::State(state)) = lock(&self.slots).waiting.get_mut(Path::new("")) {
            self.dest.root_arrived(state, root);
        }
    }

    /// Counts one more batch held, first waiting while too many are.
    fn hold(&self) -> Result<(), SessionError> {
        let mut held = lock(&self.held);
        while *held >= MAX_HELD {
            self.cancel.check()?;
            held = self
                .room
                .wait_timeout(held, WAIT_SLICE)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *held += 1;
        Ok(())
    }

    /// `n` held batches were visited or dropped.
    fn release(&self, n: usize) {
        let mut held = lock(&self.held);
        *held = held.saturating_sub(n);
        self.room.notify_all();
    }

    fn arrive(
        &'c self,
        scope: &rayon::Scope<'c>,
        rel: PathBuf,
        mut entries: Vec<Entry>,
        held: Held,
    ) {
        self.dest.prepare_batch(&mut entries);
        let mut slots = lock(&self.slots);
        let parent_skipped = rel.parent().is_some_and(|p| slots.skipped.contains(p));
        if parent_skipped || slots.skipped.contains(&rel) {
            slots.skipped.insert(rel);
            drop(slots);
            return self.release(1);
        }
        match slots.waiting.remove(&rel) {
            Some(Slot::State(state)) => {
                drop(slots);
                self.spawn(scope, rel, entries, held, state);
            }
            // Admission lets each directory in once, so nothing else can be in its slot.
            _ => {
                slots.waiting.insert(rel, Slot::Batch(entries, held));
            }
        }
    }

    fn spawn(
        &'c self,
        scope: &rayon::Scope<'c>,
        rel: PathBuf,
        entries: Vec<Entry>,
        held: Held,
        state: DirState,
    ) {
        scope.spawn(move |scope| {
            if self.cancel.is_cancelled() {
                drop((entries, held));
                return self.release(1);
            }
            let dirs: Vec<OsString> = entries
                .iter()
                .filter(|e| e.is_dir())
                .map(|e| e.name.clone())
                .collect();
            let descend = Subdirs {
                planner: self,
                scope,
                rel: &rel,
                entered: RefCell::new(HashSet::new()),
            };
            self.dest.visit(rel.clone(), entries, state, &descend);
            drop(held);
            self.fetcher.flush();
            let entered = descend.entered.into_inner();
            let mut dropped = 0;
            let mut slots = lock(&self.slots);
            for name in dirs.iter().filter(|n| !entered.contains(*n)) {
                let skipped = rel.join(name);
                slots.waiting.retain(|k, slot| {
                    let keep = !k.starts_with(&skipped);
                    dropped += usize::from(!keep && matches!(slot, Slot::Batch(..)));
                    keep
                });
                slots.skipped.insert(skipped);
            }
            drop(slots);
            self.release(1 + dropped);
        });
    }
}

/// `Descend` for a remote source: the subdirectory's batch may already be here, or will
/// come.
struct Subdirs<'p, 'c> {
    planner: &'c Planner<'c>,
    scope: &'p rayon::Scope<'c>,
    rel: &'p Path,
    entered: RefCell<HashSet<OsString>>,
}

impl Descend for Subdirs<'_, '_> {
    fn descend(&self, name: &std::ffi::OsStr, state: DirState) {
        self.entered.borrow_mut().insert(name.to_owned());
        let rel = self.rel.join(name);
        let mut slots = lock(&self.planner.slots);
        match slots.waiting.remove(&rel) {
            Some(Slot::Batch(entries, held)) => {
                drop(slots);
                self.planner.spawn(self.scope, rel, entries, held, state);
            }
            _ => {
                slots.waiting.insert(rel, Slot::State(state));
            }
        }
    }
}
