//! A re-run with nothing changed writes nothing — no owner, mode, mtime or attribute is
//! set again, on files, symlinks or directories, with `-H -X` — and a re-run after a few changes
//! writes exactly the entries that changed. Checked through ctimes, which every write to
//! an inode moves.

use std::path::PathBuf;

use blit_core::{Options, Report};
use blit_test_support::rerun::{self, Ctimes, attributed_tree, dir_name, file_name};
use blit_test_support::{self as support, Fixture, assert_same_tree};

use crate::*;

const EVERYTHING: support::Compare = support::Compare {
    xattrs: true,
    hard_links: true,
    owner: false,
};

/// `-H -X`.
fn links_and_attributes(s: &mut Options) {
    s.preserve.hard_links = true;
    s.preserve.xattrs = true;
}

/// A fixture holding [`attributed_tree`] and a symlink in `src`, copied once to `dst`;
/// `None` (after saying why) when this filesystem refuses user attributes.
fn copied_tree() -> Option<Fixture> {
    let fx = Fixture::new();
    if let Err(why) = attributed_tree(&fx.src) {
        eprintln!("skipped: {why}");
        return None;
    }
    fx.symlink("link", file_name(0, 0));
    let first = transfer(&fx.src, &fx.dst, links_and_attributes);
    assert_clean(&first);
    assert_eq!(
        (first.files_copied, first.dirs_created),
        (
            (rerun::DIRS * rerun::FILES_PER_DIR - 1) as u64,
            rerun::DIRS as u64
        )
    );
    assert_same_tree(&fx.src, &fx.dst, EVERYTHING);
    Some(fx)
}

/// Runs `-H -X` again once the ctime clock has moved; returns the report and the
/// destination entries the run wrote to.
fn rerun_and_watch(fx: &Fixture) -> (Report, Vec<PathBuf>) {
    let before = Ctimes::of(&fx.dst);
    assert_eq!(before.len(), 2 + rerun::DIRS * (1 + rerun::FILES_PER_DIR));
    rerun::wait_for_ctime_tick(&fx.path("probe"));
    let report = transfer(&fx.src, &fx.dst, links_and_attributes);
    assert_clean(&report);
    (report, before.changed_since(&fx.dst))
}

#[test]
fn a_rerun_with_nothing_changed_writes_nothing() {
    let Some(fx) = copied_tree() else { return };
    let (report, written) = rerun_and_watch(&fx);
    assert_eq!(
        written,
        Vec::<PathBuf>::new(),
        "entries written by a no-op run"
    );
    assert_eq!(
        (
            report.files_copied,
            report.metadata_updated,
            report.dirs_created,
            report.links_created,
            report.deleted,
        ),
        (0, 0, 0, 0, 0)
    );
    assert_eq!(
        report.files_skipped,
        (rerun::DIRS * rerun::FILES_PER_DIR) as u64
    );
    assert_same_tree(&fx.src, &fx.dst, EVERYTHING);
}

#[test]
fn a_rerun_writes_only_the_entries_that_changed() {
    let Some(fx) = copied_tree() else { return };
    // Directories: an attribute, a mode, and new contents under an mtime put back as it
    // was (the copy's mtime still moved when the file was created in it, so it is set).
    let attr_dir = fx.src.join(dir_name(3));
    assert!(support::set_xattr(&attr_dir, "user.blit.dir", b"changed"));
    support::set_mode(&fx.src.join(dir_name(5)), 0o750);
    let grown = fx.src.join(dir_name(7));
    let grown_mtime = std::fs::symlink_metadata(&grown).unwrap();
    support::write(&grown.join("new"), b"new file");
    support::set_mtime(&grown, grown_mtime.mtime(), grown_mtime.mtime_nsec() as u32);
    // Files: an attribute, and a mode; a symlink's mtime.
    assert!(support::set_xattr(
        &fx.src.join(file_name(1, 5)),
        "user.blit.file",
        b"changed"
    ));
    support::set_mode(&fx.src.join(file_name(2, 3)), 0o600);
    support::set_mtime(&fx.src.join("link"), 1_600_000_000, 5);

    let (report, written) = rerun_and_watch(&fx);
    let expected: Vec<PathBuf> = vec![
        file_name(1, 5),
        file_name(2, 3),
        dir_name(3),
        dir_name(5),
        dir_name(7),
        dir_name(7).join("new"),
        PathBuf::from("link"),
    ];
    assert_eq!(written, expected);
    assert_eq!((report.files_copied, report.metadata_updated), (1, 3));
    assert_same_tree(&fx.src, &fx.dst, EVERYTHING);
}
