//! Through an agent, as locally: a re-run of a push or a pull with nothing changed
//! writes nothing on the destination (no owner, mode, mtime or attribute set again, with
//! `-H -X`), and a re-run after a change writes only the entries that changed. Checked
//! through ctimes, which every write to an inode moves.

use std::fs;
use std::path::{Path, PathBuf};

use blit_test_support::agent::Agent;
use blit_test_support::rerun::{self, Ctimes, attributed_tree, dir_name};
use blit_test_support::{self as support, Fixture, assert_same_tree};

use crate::*;

const EVERYTHING: support::Compare = support::Compare {
    xattrs: true,
    hard_links: true,
    owner: false,
};

/// `blit copy -H -X FROM TO`, which must succeed; returns its summary.
fn copy(
    fx: &Fixture,
    from: &dyn AsRef<std::ffi::OsStr>,
    to: &dyn AsRef<std::ffi::OsStr>,
) -> String {
    ok(&blit(fx, &[&"copy", &"-H", &"-X", from, to]))
}

/// Runs `copy` once the ctime clock has moved; returns its summary and the entries under
/// `watched` it wrote to.
fn copy_and_watch(
    fx: &Fixture,
    from: &dyn AsRef<std::ffi::OsStr>,
    to: &dyn AsRef<std::ffi::OsStr>,
    watched: &Path,
) -> (String, Vec<PathBuf>) {
    let before = Ctimes::of(watched);
    rerun::wait_for_ctime_tick(&fx.path("probe"));
    let summary = copy(fx, from, to);
    (summary, before.changed_since(watched))
}

/// What a run that found everything up to date says.
fn assert_nothing_done(summary: &str) {
    let all = rerun::DIRS * rerun::FILES_PER_DIR;
    assert!(
        summary.contains(&format!("copied 0 files (0 B), {all} up to date"))
            && !summary.contains("metadata")
            && !summary.contains("dirs created")
            && !summary.contains("links"),
        "{summary}"
    );
}

#[test]
fn reruns_through_an_agent_write_only_what_changed() {
    let fx = Fixture::new();
    if let Err(why) = attributed_tree(&fx.src) {
        return eprintln!("skipped: {why}");
    }
    let module = fx.path("module");
    fs::create_dir(&module).unwrap();
    let agent = Agent::start(&[&"--module", &format!("m={}", module.display())]);
    let pushed = module.join("t");
    let pulled = fx.path("pulled");
    let (push_to, pull_from) = (agent.url("m", "t"), agent.url("m", "t/"));

    copy(&fx, &fx.src_contents(), &push_to);
    assert_same_tree(&fx.src, &pushed, EVERYTHING);
    let (summary, written) = copy_and_watch(&fx, &fx.src_contents(), &push_to, &pushed);
    assert_eq!(written, Vec::<PathBuf>::new(), "written by a no-op push");
    assert_nothing_done(&summary);

    copy(&fx, &pull_from, &pulled);
    assert_same_tree(&fx.src, &pulled, EVERYTHING);
    let (summary, written) = copy_and_watch(&fx, &pull_from, &pulled, &pulled);
    assert_eq!(written, Vec::<PathBuf>::new(), "written by a no-op pull");
    assert_nothing_done(&summary);

    // One directory's attribute and another's mode change: a push writes those two, and
    // so does the pull after it.
    assert!(support::set_xattr(
        &fx.src.join(dir_name(3)),
        "user.blit.dir",
        b"changed"
    ));
    support::set_mode(&fx.src.join(dir_name(5)), 0o750);
    let changed = vec![dir_name(3), dir_name(5)];
    let (_, written) = copy_and_watch(&fx, &fx.src_contents(), &push_to, &pushed);
    assert_eq!(written, changed, "written by the push");
    assert_same_tree(&fx.src, &pushed, EVERYTHING);
    let (_, written) = copy_and_watch(&fx, &pull_from, &pulled, &pulled);
    assert_eq!(written, changed, "written by the pull");
    assert_same_tree(&fx.src, &pulled, EVERYTHING);
}
