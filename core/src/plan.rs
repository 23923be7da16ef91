//! The planner: a pure function from what one directory holds on each side to what must
//! be done there.
//!
//! `diff` merges the two name-sorted listings of a directory. It never touches a disk, so
//! everything it decides is unit-tested here; the executor only carries actions out. The
//! tree-wide plan is the stream of per-directory plans, which keeps memory bounded on
//! trees of millions of entries.

use std::path::PathBuf;

use crate::entry::{Entry, EntryKind};
use crate::spec::Compare;

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create a directory and descend into it; `replaces` is a non-directory in the way.
    Mkdir { src: Entry, replaces: Option<Entry> },
    /// Descend into a directory present on both sides.
    Enter { src: Entry, dst: Entry },
    /// Write the file's content; `dst` is what it replaces (another file, or a type change).
    Copy { src: Entry, dst: Option<Entry> },
    /// Continue the partial file an interrupted run left for this entry.
    Resume { src: Entry, dst: Option<Entry> },
    /// Create or re-point a symlink.
    Symlink { src: Entry, dst: Option<Entry> },
    /// Create a FIFO, socket or device node.
    Special { src: Entry, dst: Option<Entry> },
    /// Link to an already transferred member of the same hard-link group (`-H`).
    HardLink { src: Entry, target: PathBuf },
    /// Content is current; fix mode, owner or mtime.
    SetMeta { src: Entry, dst: Entry },
    /// Nothing to do (`dst` is the destination entry, already up to date).
    Skip { src: Entry, dst: Entry },
    /// Remove a destination entry the source does not have (mirror only).
    Delete { dst: Entry },
}

impl Action {
    /// The source entry the action is about (`None` for a delete).
    pub fn source(&self) -> Option<&Entry> {
        match self {
            Action::Mkdir { src, .. }
            | Action::Enter { src, .. }
            | Action::Copy { src, .. }
            | Action::Resume { src, .. }
            | Action::Symlink { src, .. }
            | Action::Special { src, .. }
            | Action::HardLink { src, .. }
            | Action::SetMeta { src, .. }
            | Action::Skip { src, .. } => Some(src),
            Action::Delete { .. } => None,
        }
    }

    /// The entry name the action is about.
    pub fn name(&self) -> &std::ffi::OsStr {
        match self {
            Action::Delete { dst } => &dst.name,
            _ => self
                .source()
                .map(|e| e.name.as_os_str())
                .unwrap_or_default(),
        }
    }
}

/// The plan for one directory: its actions in name order. The tree's plan is the stream
/// of these, one per directory visited.
pub type Plan = Vec<Action>;

/// What `diff` needs to know besides the two listings.
#[derive(Debug, Clone, Copy)]
pub struct DiffOptions {
    pub compare: Compare,
    pub modify_window_ns: u64,
    /// Emit `Delete` for destination-only entries.
    pub delete: bool,
    /// Compare owner and group too.
    pub owner: bool,
}

/// Plans one directory. Both listings must be sorted by name (`entry::sort_by_name`).
/// `resumable` says whether an interrupted run left a partial file for a source entry.
pub fn diff(
    src: Vec<Entry>,
    dst: Vec<Entry>,
    opts: &DiffOptions,
    resumable: &dyn Fn(&Entry) -> bool,
) -> Plan {
    let mut actions = Vec::with_capacity(src.len());
    let mut src = src.into_iter().peekable();
    let mut dst = dst.into_iter().peekable();
    loop {
        let order = match (src.peek(), dst.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(s), Some(d)) => s.name_bytes().cmp(d.name_bytes()),
        };
        match order {
            std::cmp::Ordering::Less => {
                let s = src.next().expect("peeked");
                actions.push(create(s, None, resumable));
            }
            std::cmp::Ordering::Greater => {
                let d = dst.next().expect("peeked");
                if opts.delete {
                    actions.push(Action::Delete { dst: d });
                }
            }
            std::cmp::Ordering::Equal => {
                let (s, d) = (src.next().expect("peeked"), dst.next().expect("peeked"));
                actions.push(update(s, d, opts, resumable));
            }
        }
    }
    actions
}

/// An entry that must be created, possibly replacing `dst` of another kind.
fn create(src: Entry, dst: Option<Entry>, resumable: &dyn Fn(&Entry) -> bool) -> Action {
    match src.kind {
        EntryKind::Dir => Action::Mkdir { src, replaces: dst },
        EntryKind::File if resumable(&src) => Action::Resume { src, dst },
        EntryKind::File => Action::Copy { src, dst },
        EntryKind::Symlink => Action::Symlink { src, dst },
        EntryKind::Special => Action::Special { src, dst },
    }
}

/// An entry present on both sides.
fn update(
    src: Entry,
    dst: Entry,
    opts: &DiffOptions,
    resumable: &dyn Fn(&Entry) -> bool,
) -> Action {
    if src.kind != dst.kind {
        return create(src, Some(dst), resumable);
    }
    match src.kind {
        EntryKind::Dir => Action::Enter { src, dst },
        EntryKind::File if !same_content(&src, &dst, opts) => create(src, Some(dst), resumable),
        EntryKind::Symlink if src.link_target != dst.link_target => Action::Symlink {
            src,
            dst: Some(dst),
        },
        EntryKind::Special if src.rdev != dst.rdev || src.type_bits != dst.type_bits => {
            Action::Special {
                src,
                dst: Some(dst),
            }
        }
        _ if meta_differs(&src, &dst, opts) => Action::SetMeta { src, dst },
        _ => Action::Skip { src, dst },
    }
}

/// Whether the destination file already holds the source's content.
fn same_content(src: &Entry, dst: &Entry, opts: &DiffOptions) -> bool {
    if src.size != dst.size {
        return false;
    }
    match opts.compare {
        Compare::SizeMtime => src.meta.mtime.within(dst.meta.mtime, opts.modify_window_ns),
        Compare::SizeOnly => true,
        Compare::IgnoreTimes => false,
        Compare::Checksum => src.hash.is_some() && src.hash == dst.hash,
    }
}

/// Whether metadata (not content) needs fixing.
fn meta_differs(src: &Entry, dst: &Entry, opts: &DiffOptions) -> bool {
    let mode = src.kind != EntryKind::Symlink && src.meta.mode != dst.meta.mode;
    let owner = opts.owner && (src.meta.uid, src.meta.gid) != (dst.meta.uid, dst.meta.gid);
    let mtime =
        src.kind != EntryKind::Dir && !src.meta.mtime.within(dst.meta.mtime, opts.modify_window_ns);
    mode || owner || mtime
}

/// Pairs of (source index, destination index) of regular files with equal names and
/// sizes: the only ones `--checksum` needs to hash.
pub fn checksum_candidates(src: &[Entry], dst: &[Entry]) -> Vec<(usize, usize)> {
    let mut pairs = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < src.len() && j < dst.len() {
        match src[i].name_bytes().cmp(dst[j].name_bytes()) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                let (s, d) = (&src[i], &dst[j]);
                if s.kind == EntryKind::File && d.kind == EntryKind::File && s.size == d.size {
                    pairs.push((i, j));
                }
                i += 1;
                j += 1;
            }
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{InodeId, Meta, Timestamp};

    fn entry(name: &str, kind: EntryKind, size: u64, mtime: i64) -> Entry {
        Entry {
            name: name.into(),
            kind,
            type_bits: 0,
            size,
            allocated: size,
            meta: Meta {
                mode: 0o644,
                uid: 1,
                gid: 1,
                mtime: Timestamp {
                    sec: mtime,
                    nsec: 0,
                },
            },
            inode: InodeId::default(),
            nlink: 1,
            rdev: 0,
            link_target: (kind == EntryKind::Symlink).then(|| "target".into()),
            hash: None,
            xattrs: None,
        }
    }

    fn file(name: &str, size: u64, mtime: i64) -> Entry {
        entry(name, EntryKind::File, size, mtime)
    }

    fn opts(compare: Compare, delete: bool) -> DiffOptions {
        DiffOptions {
            compare,
            modify_window_ns: 0,
            delete,
            owner: true,
        }
    }

    fn kinds(actions: &[Action]) -> Vec<&'static str> {
        actions
            .iter()
            .map(|a| match a {
                Action::Mkdir { .. } => "mkdir",
                Action::Enter { .. } => "enter",
                Action::Copy { .. } => "copy",
                Action::Resume { .. } => "resume",
                Action::Symlink { .. } => "symlink",
                Action::Special { .. } => "special",
                Action::HardLink { .. } => "hardlink",
                Action::SetMeta { .. } => "setmeta",
                Action::Skip { .. } => "skip",
                Action::Delete { .. } => "delete",
            })
            .collect()
    }

    const NONE: &dyn Fn(&Entry) -> bool = &|_| false;

    #[test]
    fn new_changed_same_and_extra_entries() {
        let src = vec![file("a", 1, 10), file("b", 2, 10), file("c", 3, 10)];
        let dst = vec![file("b", 2, 11), file("c", 3, 10), file("d", 4, 10)];
        let plan = diff(
            src.clone(),
            dst.clone(),
            &opts(Compare::SizeMtime, false),
            NONE,
        );
        assert_eq!(kinds(&plan), ["copy", "copy", "skip"]);
        let plan = diff(src, dst, &opts(Compare::SizeMtime, true), NONE);
        assert_eq!(kinds(&plan), ["copy", "copy", "skip", "delete"]);
    }

    #[test]
    fn modify_window_tolerates_small_mtime_differences() {
        let mut o = opts(Compare::SizeMtime, false);
        let src = vec![file("a", 1, 10)];
        let dst = vec![file("a", 1, 11)];
        assert_eq!(kinds(&diff(src.clone(), dst.clone(), &o, NONE)), ["copy"]);
        o.modify_window_ns = 1_000_000_000;
        assert_eq!(kinds(&diff(src, dst, &o, NONE)), ["skip"]);
    }

    #[test]
    fn nanoseconds_count() {
        let src = vec![file("a", 1, 10)];
        let mut d = file("a", 1, 10);
        d.meta.mtime.nsec = 1;
        assert_eq!(
            kinds(&diff(src, vec![d], &opts(Compare::SizeMtime, false), NONE)),
            ["copy"]
        );
    }

    #[test]
    fn checksum_mode_uses_hashes_and_fixes_mtime_separately() {
        let o = opts(Compare::Checksum, false);
        let mut s = file("a", 1, 10);
        let mut d = file("a", 1, 10);
        s.hash = Some([1; 32]);
        d.hash = Some([2; 32]);
        assert_eq!(
            kinds(&diff(vec![s.clone()], vec![d.clone()], &o, NONE)),
            ["copy"]
        );
        d.hash = Some([1; 32]);
        assert_eq!(
            kinds(&diff(vec![s.clone()], vec![d.clone()], &o, NONE)),
            ["skip"]
        );
        d.meta.mtime.sec = 99;
        assert_eq!(kinds(&diff(vec![s], vec![d], &o, NONE)), ["setmeta"]);
    }

    #[test]
    fn size_only_and_ignore_times() {
        let src = vec![file("a", 1, 10)];
        let dst = vec![file("a", 1, 20)];
        assert_eq!(
            kinds(&diff(
                src.clone(),
                dst.clone(),
                &opts(Compare::SizeOnly, false),
                NONE
            )),
            ["setmeta"]
        );
        let same = vec![file("a", 1, 10)];
        assert_eq!(
            kinds(&diff(src, same, &opts(Compare::IgnoreTimes, false), NONE)),
            ["copy"]
        );
    }

    #[test]
    fn mode_change_alone_is_setmeta() {
        let src = vec![file("a", 1, 10)];
        let mut d = file("a", 1, 10);
        d.meta.mode = 0o600;
        assert_eq!(
            kinds(&diff(src, vec![d], &opts(Compare::SizeMtime, false), NONE)),
            ["setmeta"]
        );
    }

    #[test]
    fn type_changes_replace_the_destination() {
        let o = opts(Compare::SizeMtime, false);
        let plan = diff(
            vec![
                entry("a", EntryKind::Dir, 0, 1),
                file("b", 1, 1),
                entry("c", EntryKind::Symlink, 6, 1),
            ],
            vec![
                file("a", 1, 1),
                entry("b", EntryKind::Dir, 0, 1),
                entry("c", EntryKind::Dir, 0, 1),
            ],
            &o,
            NONE,
        );
        assert_eq!(kinds(&plan), ["mkdir", "copy", "symlink"]);
        match &plan[1] {
            Action::Copy { dst: Some(d), .. } => assert_eq!(d.kind, EntryKind::Dir),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn symlink_retarget_and_directories() {
        let o = opts(Compare::SizeMtime, false);
        let s = entry("l", EntryKind::Symlink, 6, 1);
        let mut d = s.clone();
        d.link_target = Some("elsewhere".into());
        assert_eq!(
            kinds(&diff(vec![s.clone()], vec![d], &o, NONE)),
            ["symlink"]
        );
        assert_eq!(kinds(&diff(vec![s.clone()], vec![s], &o, NONE)), ["skip"]);
        let dir = entry("d", EntryKind::Dir, 0, 1);
        let mut newer = dir.clone();
        newer.meta.mtime.sec = 50;
        assert_eq!(kinds(&diff(vec![dir], vec![newer], &o, NONE)), ["enter"]);
    }

    #[test]
    fn partial_files_become_resumes() {
        let o = opts(Compare::SizeMtime, false);
        let yes: &dyn Fn(&Entry) -> bool = &|e| e.name == "big";
        let plan = diff(
            vec![file("big", 100, 1), file("small", 1, 1)],
            vec![],
            &o,
            yes,
        );
        assert_eq!(kinds(&plan), ["resume", "copy"]);
    }

    #[test]
    fn checksum_candidates_are_equal_size_file_pairs() {
        let src = vec![
            file("a", 1, 1),
            file("b", 2, 1),
            file("c", 3, 1),
            entry("d", EntryKind::Dir, 0, 1),
        ];
        let dst = vec![
            file("a", 1, 5),
            file("b", 9, 1),
            entry("d", EntryKind::Dir, 0, 1),
        ];
        assert_eq!(checksum_candidates(&src, &dst), vec![(0, 0)]);
    }
}
