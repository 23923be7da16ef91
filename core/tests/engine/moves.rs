//! `move`: a source entry goes only once its copy is confirmed, by content where the
//! comparison did not read it, and no source directory goes after a failure.

use std::fs;

use blit_core::{Compare, Mode};
use blit_test_support::{self as support, Fixture};

use crate::*;

#[test]
fn move_removes_sources_after_success() {
    let fx = Fixture::new();
    fx.file("a", b"a");
    fx.file("dir/b", b"bb");
    fx.dir("dir/empty");
    fx.symlink("link", "a");
    let reference = fx.path("reference");
    transfer(&fx.src, &reference, |_| {});
    let report = transfer(&fx.src, &fx.dst, |s| s.mode = Mode::Move);
    assert_clean(&report);
    assert_eq!(report.sources_removed, 3);
    assert_same_tree(&reference, &fx.dst, PLAIN);
    assert!(
        support::names(&fx.src).is_empty(),
        "left in source: {:?}",
        support::names(&fx.src)
    );
}

#[test]
fn move_keeps_sources_whose_copy_failed() {
    let fx = Fixture::new();
    fx.file("ok/a", b"a");
    fx.file("blocked/b", b"b");
    fs::create_dir_all(fx.dst.join("blocked")).unwrap();
    // An immutable directory refuses new entries even to root.
    let Some(_guard) = support::Immutable::set(&fx.dst.join("blocked")) else {
        eprintln!("skipped: cannot set the immutable flag here");
        return;
    };
    let report = transfer(&fx.src, &fx.dst, |s| s.mode = Mode::Move);
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.path == Path::new("blocked/b") && f.operation == "copy"),
        "{:?}",
        report.failures
    );
    assert!(!fx.src.join("ok/a").exists(), "the good file moved");
    assert_eq!(
        fs::read(fx.src.join("blocked/b")).unwrap(),
        b"b",
        "the failed one stayed"
    );
}

#[test]
fn move_with_size_only_confirms_by_content() {
    let fx = Fixture::new();
    let f = fx.file("f", b"source data");
    set_mtime(&f, 1_700_000_000, 0);
    support::write(&fx.dst.join("f"), b"other bytes");
    let report = transfer(&fx.src, &fx.dst, |s| {
        s.mode = Mode::Move;
        s.compare = Compare::SizeOnly;
    });
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.operation == "remove source"),
        "{report:?}"
    );
    assert_eq!(
        fs::read(&f).unwrap(),
        b"source data",
        "the only copy of the data stays"
    );
}

#[test]
fn move_confirms_every_file_it_did_not_write_by_content() {
    // Same size, mtimes within the modify window: the comparison calls it up to date, but
    // the bytes differ, so the source is the only copy of its data and must stay.
    let fx = Fixture::new();
    let f = fx.file("f", b"source data");
    set_mtime(&f, 1_700_000_000, 0);
    let d = support::write(&fx.dst.join("f"), b"other bytes");
    set_mtime(&d, 1_700_000_000, 500);
    let report = transfer(&fx.src, &fx.dst, |s| {
        s.mode = Mode::Move;
        s.limits.modify_window_ns = 1_000_000_000;
    });
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.operation == "remove source"),
        "{report:?}"
    );
    assert_eq!(fs::read(&f).unwrap(), b"source data");
}

#[test]
fn a_move_with_failures_removes_no_source_directories() {
    let fx = Fixture::new();
    fx.file("ok/a", b"a");
    fx.dir("empty/nested");
    fx.file("blocked/b", b"b");
    fs::create_dir_all(fx.dst.join("blocked")).unwrap();
    let Some(_guard) = support::Immutable::set(&fx.dst.join("blocked")) else {
        eprintln!("skipped: cannot set the immutable flag here");
        return;
    };
    let report = transfer(&fx.src, &fx.dst, |s| s.mode = Mode::Move);
    assert!(!report.failures.is_empty());
    assert!(!fx.src.join("ok/a").exists(), "the good file moved");
    assert!(
        fx.src.join("ok").is_dir() && fx.src.join("empty/nested").is_dir(),
        "no directory is removed after a failure"
    );
}
