//! End-to-end tests of the engine on real files: every tree is built on disk, transferred
//! with `Transfer::run`, and compared entry by entry (content, mode, nanosecond mtime,
//! symlink target, xattrs, hard links). `session` runs the same trees through the two
//! roles of a session inside this process (client end against an in-process server end).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use blit_core::{Compare, Endpoint, Mode, Options, Quiet, Report, Transfer, TransferSpec};
use blit_test_support::{
    self as support, Fixture, assert_same_tree, bytes_path, set_mode, set_mtime, with_slash,
};

const PLAIN: support::Compare = support::Compare {
    xattrs: false,
    hard_links: false,
    owner: false,
};

fn spec(src: &Path, dst: &Path) -> TransferSpec {
    TransferSpec::new(
        Endpoint::Local(src.to_owned()),
        Endpoint::Local(dst.to_owned()),
    )
}

fn run_spec(spec: TransferSpec) -> Report {
    Transfer::new(spec).run(&Quiet).expect("transfer runs")
}

/// Copies the contents of `src` into `dst` with options set by `tweak`.
fn transfer(src: &Path, dst: &Path, tweak: impl FnOnce(&mut Options)) -> Report {
    let mut s = spec(&with_slash(src), dst);
    tweak(&mut s.options);
    run_spec(s)
}

fn copy(fx: &Fixture) -> Report {
    transfer(&fx.src, &fx.dst, |_| {})
}

fn mirror(fx: &Fixture) -> Report {
    transfer(&fx.src, &fx.dst, |s| s.mode = Mode::Mirror)
}

fn assert_clean(report: &Report) {
    assert!(
        report.failures.is_empty(),
        "failures: {:?}",
        report.failures
    );
    assert!(
        report.deletes_skipped.is_none(),
        "{:?}",
        report.deletes_skipped
    );
}

mod deep;
mod moves;
mod rerun;
mod session;
mod temps;

#[test]
fn awkward_names_survive() {
    let fx = Fixture::new();
    fx.file(bytes_path(b"caf\xe9-latin1.txt"), b"latin1");
    fx.file(bytes_path(b"dir-\xff\xfe/inner"), b"inside a non-UTF-8 dir");
    fx.file("new\nline", b"newline");
    fx.file("-leading-dash", b"dash");
    fx.file("--", b"double dash");
    fx.file("x".repeat(255), b"long name");
    fx.file(
        format!("{}/{}", "d".repeat(255), "e".repeat(255)),
        b"long dir and file",
    );
    fx.file("spaces and\ttabs", b"ws");
    let report = copy(&fx);
    assert_clean(&report);
    assert_eq!(report.files_copied, 8);
    assert_same_tree(&fx.src, &fx.dst, PLAIN);
}

#[test]
fn symlinks_are_kept_as_links() {
    let fx = Fixture::new();
    fx.file("target.txt", b"t");
    fx.dir("somedir");
    fx.symlink("relative", "target.txt");
    fx.symlink("to-dir", "somedir");
    fx.symlink("absolute", "/etc/hostname");
    fx.symlink("dangling", "does/not/exist");
    fx.symlink(bytes_path(b"odd-\xfe"), bytes_path(b"target-\xfe"));
    let report = copy(&fx);
    assert_clean(&report);
    assert_same_tree(&fx.src, &fx.dst, PLAIN);
    assert!(
        fs::symlink_metadata(fx.dst.join("to-dir"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        fs::read_link(fx.dst.join("absolute")).unwrap(),
        Path::new("/etc/hostname")
    );
    // Re-pointing a link is picked up.
    fs::remove_file(fx.src.join("relative")).unwrap();
    std::os::unix::fs::symlink("somedir", fx.src.join("relative")).unwrap();
    assert_clean(&copy(&fx));
    assert_eq!(
        fs::read_link(fx.dst.join("relative")).unwrap(),
        Path::new("somedir")
    );
}

#[test]
fn empty_directories_are_created() {
    let fx = Fixture::new();
    fx.dir("a/b/c");
    fx.dir("empty");
    let report = copy(&fx);
    assert_clean(&report);
    assert_eq!(report.dirs_created, 4);
    assert_same_tree(&fx.src, &fx.dst, PLAIN);
}

#[test]
fn hard_links_are_preserved_with_the_flag() {
    let fx = Fixture::new();
    let first = fx.file("a/first", b"shared content");
    fx.dir("b");
    fs::hard_link(&first, fx.src.join("b/second")).unwrap();
    fs::hard_link(&first, fx.src.join("third")).unwrap();
    fx.file("alone", b"x");
    let links = support::Compare {
        hard_links: true,
        ..PLAIN
    };

    let report = transfer(&fx.src, &fx.dst, |s| s.preserve.hard_links = true);
    assert_clean(&report);
    assert_eq!(
        report.files_copied, 2,
        "one copy per group plus the lone file"
    );
    assert_same_tree(&fx.src, &fx.dst, links);
    assert_eq!(fs::metadata(fx.dst.join("third")).unwrap().nlink(), 3);

    // Without -H, they are independent files.
    let plain = fx.path("plain");
    transfer(&fx.src, &plain, |_| {});
    assert_eq!(fs::metadata(plain.join("third")).unwrap().nlink(), 1);

    // A re-run with -H finds nothing to do, and a dry run says so.
    let again = transfer(&fx.src, &fx.dst, |s| s.preserve.hard_links = true);
    assert_eq!((again.files_copied, again.links_created), (0, 0));
    let preview = transfer(&fx.src, &fx.dst, |s| {
        s.preserve.hard_links = true;
        s.dry_run = true;
    });
    assert_eq!((preview.files_copied, preview.links_created), (0, 0));

    // A member that lost its link (a separate copy now) is linked again.
    fs::remove_file(fx.dst.join("third")).unwrap();
    fs::copy(fx.dst.join("a/first"), fx.dst.join("third")).unwrap();
    let mtime = fs::metadata(fx.src.join("third")).unwrap();
    set_mtime(
        &fx.dst.join("third"),
        mtime.mtime(),
        mtime.mtime_nsec() as u32,
    );
    let relink = transfer(&fx.src, &fx.dst, |s| s.preserve.hard_links = true);
    assert_clean(&relink);
    // Which member the parallel walk meets first decides whether one or two are relinked.
    assert!((1..=2).contains(&relink.links_created), "{relink:?}");
    assert_same_tree(&fx.src, &fx.dst, links);
}

#[test]
fn sparse_file_stays_sparse() {
    let fx = Fixture::new();
    let path = fx.src.join("sparse.img");
    let f = fs::File::create(&path).unwrap();
    f.set_len(1 << 30).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"head", 0).unwrap();
    f.write_all_at(&[7u8; 65536], 512 << 20).unwrap();
    f.write_all_at(b"tail", (1 << 30) - 4).unwrap();
    drop(f);
    let report = copy(&fx);
    assert_clean(&report);
    let copied = fx.dst.join("sparse.img");
    assert_eq!(fs::metadata(&copied).unwrap().len(), 1 << 30);
    let allocated = support::allocated_bytes(&copied);
    assert!(
        allocated < 8 << 20,
        "1 GiB sparse file took {allocated} bytes on disk"
    );
    assert_same_tree(&fx.src, &fx.dst, PLAIN);
}

#[test]
fn modes_and_nanosecond_mtimes_are_kept() {
    let fx = Fixture::new();
    let mut cases = vec![
        ("private", 0o600),
        ("exec", 0o755),
        ("odd", 0o4751),
        ("readonly", 0o444),
    ];
    if support::is_root() {
        // Only root can read a file with no permissions at all.
        cases.push(("none", 0o000));
    }
    for (i, (name, mode)) in cases.iter().enumerate() {
        let p = fx.file(format!("d/{name}"), name.as_bytes());
        set_mode(&p, *mode);
        set_mtime(&p, 1_500_000_000 + i as i64, 123_456_789 + i as u32);
    }
    let ro_dir = fx.dir("ro-dir");
    fx.file("ro-dir/inside", b"written before the dir became read-only");
    set_mode(&ro_dir, 0o555);
    set_mtime(&ro_dir, 1_400_000_000, 999_999_999);
    set_mtime(&fx.src.join("d"), 1_300_000_000, 1);
    let report = copy(&fx);
    assert_clean(&report);
    assert_same_tree(&fx.src, &fx.dst, PLAIN);
    let md = fs::metadata(fx.dst.join("d/exec")).unwrap();
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_500_000_001, 123_456_790));
}

#[test]
fn ownership_is_kept_when_root_unless_disabled() {
    if !support::is_root() {
        eprintln!("skipped: only root can give files away");
        return;
    }
    let fx = Fixture::new();
    let f = fx.file("d/owned", b"x");
    let d = fx.src.join("d");
    std::os::unix::fs::lchown(&f, Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::lchown(&d, Some(4321), Some(8765)).unwrap();
    let link = fx.symlink("d/link", "owned");
    std::os::unix::fs::lchown(&link, Some(1111), Some(2222)).unwrap();
    let owners = support::Compare {
        owner: true,
        ..PLAIN
    };
    assert_clean(&copy(&fx));
    assert_same_tree(&fx.src, &fx.dst, owners);

    let mine = fx.path("mine");
    assert_clean(&transfer(&fx.src, &mine, |s| s.preserve.owner = false));
    assert_eq!(fs::metadata(mine.join("d/owned")).unwrap().uid(), 0);
}

#[test]
fn reflink_always_clones_or_fails_each_file_cleanly() {
    let fx = Fixture::new();
    fx.file("a", b"some content");
    fx.file("d/b", &[9u8; 100_000]);
    let report = transfer(&fx.src, &fx.dst, |s| s.reflink = blit_core::Reflink::Always);
    if report.failures.is_empty() {
        // This filesystem clones: the copies must be exact.
        assert_same_tree(&fx.src, &fx.dst, PLAIN);
    } else {
        // It does not (ext4): every file fails with a clear reason and none appears.
        assert_eq!(report.failures.len(), 2, "{:?}", report.failures);
        assert!(
            report
                .failures
                .iter()
                .all(|f| f.message.contains("reflinks are required"))
        );
        assert!(!fx.dst.join("a").exists() && !fx.dst.join("d/b").exists());
        assert!(
            support::names(&fx.dst.join("d")).is_empty(),
            "no temp files left behind"
        );
    }
}

#[test]
fn reflinks_share_blocks_where_the_filesystem_can() {
    let fx = Fixture::new();
    let xfs = match support::ReflinkFs::mount(fx.dir.path()) {
        Ok(fs) => fs,
        Err(why) => return eprintln!("skipped: {why}"),
    };
    let src = xfs.mount.join("src");
    let content: Vec<u8> = (0..64u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    support::write(&src.join("big"), &content);
    support::write(&src.join("d/small"), b"small");
    let before = xfs.used_bytes();
    let dst = xfs.mount.join("dst");
    // The default (--reflink=auto) must find and use the clone.
    let report = transfer(&src, &dst, |_| {});
    assert_clean(&report);
    assert_same_tree(&src, &dst, PLAIN);
    let grew = xfs.used_bytes().saturating_sub(before);
    assert!(grew < 8 << 20, "a 64 MiB clone used {grew} new bytes");

    // --reflink=never writes real copies (copy_file_range would clone here too).
    let before = xfs.used_bytes();
    let copies = xfs.mount.join("copies");
    assert_clean(&transfer(&src, &copies, |s| {
        s.reflink = blit_core::Reflink::Never
    }));
    assert_same_tree(&src, &copies, PLAIN);
    let grew = xfs.used_bytes().saturating_sub(before);
    assert!(
        grew >= 64 << 20,
        "--reflink=never used only {grew} new bytes"
    );
}

#[test]
fn fifos_are_recreated() {
    let fx = Fixture::new();
    let fifo = fx.src.join("pipe");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    set_mtime(&fifo, 1_234_567_890, 42);
    assert_clean(&copy(&fx));
    use std::os::unix::fs::FileTypeExt;
    assert!(
        fs::symlink_metadata(fx.dst.join("pipe"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_same_tree(&fx.src, &fx.dst, PLAIN);
}

#[test]
fn device_nodes_are_recreated_as_root() {
    if !support::is_root() {
        eprintln!("skipped: only root can create device nodes");
        return;
    }
    let fx = Fixture::new();
    let dev = fx.src.join("null-like");
    let rdev = rustix::fs::makedev(1, 3);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &dev,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o620),
        rdev,
    )
    .unwrap();
    assert_clean(&copy(&fx));
    use std::os::unix::fs::FileTypeExt;
    let md = fs::symlink_metadata(fx.dst.join("null-like")).unwrap();
    assert!(md.file_type().is_char_device());
    assert_eq!(md.rdev(), rdev);
    assert_same_tree(&fx.src, &fx.dst, PLAIN);
    // Unchanged on a re-run.
    assert_eq!(copy(&fx).links_created, 0);
}

#[test]
fn xattrs_are_copied_with_the_flag() {
    let fx = Fixture::new();
    let f = fx.file("f", b"x");
    let d = fx.dir("d");
    if !support::set_xattr(&f, "user.blit.test", b"value\0with nul") {
        eprintln!(
            "skipped: the filesystem under {} does not support user xattrs",
            fx.src.display()
        );
        return;
    }
    assert!(support::set_xattr(&d, "user.blit.dir", b"dir value"));
    let with = support::Compare {
        xattrs: true,
        ..PLAIN
    };
    assert_clean(&transfer(&fx.src, &fx.dst, |s| s.preserve.xattrs = true));
    assert_same_tree(&fx.src, &fx.dst, with);

    // A changed attribute on an otherwise unchanged file is picked up.
    assert!(support::set_xattr(&f, "user.blit.test", b"new value"));
    let report = transfer(&fx.src, &fx.dst, |s| s.preserve.xattrs = true);
    assert_eq!((report.files_copied, report.metadata_updated), (0, 1));
    assert_same_tree(&fx.src, &fx.dst, with);

    let without = fx.path("without");
    transfer(&fx.src, &without, |_| {});
    assert!(
        support::snapshot(&without, with)[Path::new("f")]
            .xattrs
            .is_empty()
    );
}

#[test]
fn mirror_deletes_only_inside_the_destination() {
    let fx = Fixture::new();
    fx.file("keep/a", b"a");
    fx.file("same", b"s");
    let outside = fx.path("outside");
    support::write(&outside.join("precious"), b"must survive");
    support::write(&outside.join("sub/also"), b"must survive too");
    assert_clean(&copy(&fx));

    support::write(&fx.dst.join("extra-file"), b"x");
    support::write(&fx.dst.join("extra-dir/deep/f"), b"x");
    support::write(&fx.dst.join("keep/extra"), b"x");
    std::os::unix::fs::symlink(&outside, fx.dst.join("link-out")).unwrap();
    std::os::unix::fs::symlink(&outside, fx.dst.join("keep/link-out")).unwrap();
    let report = mirror(&fx);
    assert_clean(&report);
    // extra-file, extra-dir with deep/ and f (3), keep/extra, link-out, keep/link-out.
    assert_eq!(report.deleted, 7, "{report:?}");
    assert_same_tree(&fx.src, &fx.dst, PLAIN);
    assert_eq!(fs::read(outside.join("precious")).unwrap(), b"must survive");
    assert_eq!(
        fs::read(outside.join("sub/also")).unwrap(),
        b"must survive too"
    );
}

#[test]
fn a_symlinked_directory_in_the_destination_is_replaced_not_followed() {
    let fx = Fixture::new();
    fx.file("data/file", b"new");
    let outside = fx.path("outside");
    support::write(&outside.join("file"), b"outside, untouched");
    fs::create_dir_all(&fx.dst).unwrap();
    std::os::unix::fs::symlink(&outside, fx.dst.join("data")).unwrap();
    assert_clean(&mirror(&fx));
    assert!(fs::symlink_metadata(fx.dst.join("data")).unwrap().is_dir());
    assert_eq!(
        fs::read(outside.join("file")).unwrap(),
        b"outside, untouched"
    );
    assert_same_tree(&fx.src, &fx.dst, PLAIN);
}

#[test]
fn max_delete_refuses_and_deletes_nothing() {
    let fx = Fixture::new();
    fx.file("a", b"a");
    assert_clean(&copy(&fx));
    for i in 0..5 {
        support::write(&fx.dst.join(format!("extra{i}")), b"x");
    }
    let report = transfer(&fx.src, &fx.dst, |s| {
        s.mode = Mode::Mirror;
        s.limits.max_delete = Some(3);
    });
    assert!(
        report
            .deletes_skipped
            .as_deref()
            .unwrap()
            .contains("the delete limit (3)")
    );
    assert!(report.is_partial());
    assert_eq!(support::names(&fx.dst).len(), 6);
    let report = transfer(&fx.src, &fx.dst, |s| {
        s.mode = Mode::Mirror;
        s.limits.max_delete = Some(5);
    });
    assert_clean(&report);
    assert_eq!(report.deleted, 5);
}

#[test]
fn type_changes_between_runs() {
    let fx = Fixture::new();
    fx.file("a", b"file first");
    fx.file("b/inner", b"dir first");
    fx.dir("c");
    fx.symlink("d", "a");
    fx.file("e", b"file then link");
    assert_clean(&copy(&fx));

    fs::remove_file(fx.src.join("a")).unwrap();
    fx.file("a/now-inside", b"dir now");
    fs::remove_dir_all(fx.src.join("b")).unwrap();
    fx.file("b", b"file now");
    fs::remove_dir(fx.src.join("c")).unwrap();
    fx.symlink("c", "b");
    fs::remove_file(fx.src.join("d")).unwrap();
    fx.dir("d/sub");
    fs::remove_file(fx.src.join("e")).unwrap();
    fx.symlink("e", "b");
    let report = mirror(&fx);
    assert_clean(&report);
    assert_same_tree(&fx.src, &fx.dst, PLAIN);
}

#[test]
fn same_size_changes_are_found_by_mtime_and_by_checksum_only_when_mtime_matches() {
    let fx = Fixture::new();
    let f = fx.file("f", b"version one");
    set_mtime(&f, 1_600_000_000, 5);
    assert_clean(&copy(&fx));

    // Same size, new mtime: the default comparison sees it.
    fs::write(&f, b"version two").unwrap();
    set_mtime(&f, 1_600_000_001, 5);
    assert_eq!(copy(&fx).files_copied, 1);
    assert_eq!(fs::read(fx.dst.join("f")).unwrap(), b"version two");

    // Same size and same mtime: invisible to size+mtime, found by --checksum.
    fs::write(&f, b"version 333").unwrap();
    set_mtime(&f, 1_600_000_001, 5);
    assert_eq!(copy(&fx).files_copied, 0);
    assert_eq!(fs::read(fx.dst.join("f")).unwrap(), b"version two");
    let report = transfer(&fx.src, &fx.dst, |s| s.compare = Compare::Checksum);
    assert_eq!(report.files_copied, 1);
    assert_eq!(fs::read(fx.dst.join("f")).unwrap(), b"version 333");
    assert_same_tree(&fx.src, &fx.dst, PLAIN);
}

#[test]
fn unchanged_rerun_does_nothing() {
    let fx = Fixture::new();
    for i in 0..50 {
        fx.file(format!("d{}/f{i}", i % 5), format!("{i}").as_bytes());
    }
    assert_clean(&copy(&fx));
    let before = support::snapshot(&fx.dst, PLAIN);
    let again = mirror(&fx);
    assert_clean(&again);
    assert_eq!(
        (again.files_copied, again.deleted, again.metadata_updated),
        (0, 0, 0)
    );
    assert_eq!(again.files_skipped, 50);
    assert_eq!(before, support::snapshot(&fx.dst, PLAIN));
}

#[test]
fn filters_exclude_and_protect() {
    let fx = Fixture::new();
    fx.file("src/main.rs", b"code");
    fx.file("src/debug.log", b"log");
    fx.file("keep.log", b"important log");
    fx.file("build/out.o", b"obj");
    fx.file("nested/build/kept", b"only the root build is excluded");
    fx.file("cache/x", b"cache dir");
    fx.file("notcache/cache", b"a file named cache is not a dir");
    let rules = |s: &mut Options| {
        s.filter
            .add(blit_core::RuleKind::Include, "keep.log")
            .unwrap();
        s.filter.add(blit_core::RuleKind::Exclude, "*.log").unwrap();
        s.filter
            .add(blit_core::RuleKind::Exclude, "/build")
            .unwrap();
        s.filter
            .add(blit_core::RuleKind::Exclude, "cache/")
            .unwrap();
    };
    assert_clean(&transfer(&fx.src, &fx.dst, rules));
    let got: Vec<PathBuf> = support::snapshot(&fx.dst, PLAIN).into_keys().collect();
    let want: Vec<PathBuf> = [
        "keep.log",
        "nested",
        "nested/build",
        "nested/build/kept",
        "notcache",
        "notcache/cache",
        "src",
        "src/main.rs",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    assert_eq!(got, want);

    // Excluded destination entries are protected from mirror deletion.
    support::write(&fx.dst.join("local.log"), b"destination's own log");
    support::write(&fx.dst.join("cache/local"), b"destination's own cache");
    support::write(&fx.dst.join("stray"), b"not protected");
    let report = transfer(&fx.src, &fx.dst, |s| {
        rules(s);
        s.mode = Mode::Mirror;
    });
    assert_clean(&report);
    assert!(fx.dst.join("local.log").exists());
    assert!(fx.dst.join("cache/local").exists());
    assert!(!fx.dst.join("stray").exists());
}

#[test]
fn dry_run_changes_nothing() {
    let fx = Fixture::new();
    fx.file("a", b"a");
    fx.file("dir/b", b"bb");
    assert_clean(&copy(&fx));
    fx.file("new", b"new file");
    fs::write(fx.src.join("a"), b"changed").unwrap();
    support::write(&fx.dst.join("extra/x"), b"x");
    let before = support::snapshot(fx.dir.path(), PLAIN);
    let report = transfer(&fx.src, &fx.dst, |s| {
        s.mode = Mode::Mirror;
        s.dry_run = true;
    });
    assert_clean(&report);
    assert!(report.dry_run);
    assert_eq!(report.files_copied, 2);
    assert_eq!(report.bytes_copied, 8 + 7);
    assert_eq!(report.deleted, 2);
    assert_eq!(before, support::snapshot(fx.dir.path(), PLAIN));

    // A dry run into a destination that does not exist does not create it.
    let nowhere = fx.path("nowhere");
    let report = transfer(&fx.src, &nowhere, |s| s.dry_run = true);
    assert_eq!(report.files_copied, 3);
    assert!(!nowhere.exists());
}

#[test]
fn single_files_follow_the_destination_rules() {
    let fx = Fixture::new();
    let f = fx.file("one.txt", b"one");
    fs::create_dir_all(&fx.dst).unwrap();
    assert_clean(&run_spec(spec(&f, &fx.dst)));
    assert_eq!(fs::read(fx.dst.join("one.txt")).unwrap(), b"one");
    assert_clean(&run_spec(spec(&f, &fx.dst.join("renamed.txt"))));
    assert_eq!(fs::read(fx.dst.join("renamed.txt")).unwrap(), b"one");
}

#[test]
fn a_file_replacing_a_directory_deletes_only_in_a_mirror() {
    let fx = Fixture::new();
    fx.file("x", b"now a file");
    support::write(&fx.dst.join("x/inside"), b"old directory content");

    // copy never deletes: the non-empty directory stays, the entry fails, nothing is lost.
    let report = copy(&fx);
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    assert!(report.failures[0].message.contains("non-empty directory"));
    assert_eq!(
        fs::read(fx.dst.join("x/inside")).unwrap(),
        b"old directory content"
    );

    // mirror keeps what a filter protects, and then cannot replace the directory.
    support::write(&fx.dst.join("x/keep.log"), b"protected");
    let report = transfer(&fx.src, &fx.dst, |s| {
        s.mode = Mode::Mirror;
        s.filter.add(blit_core::RuleKind::Exclude, "*.log").unwrap();
    });
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.message.contains("excluded entries"))
    );
    assert_eq!(fs::read(fx.dst.join("x/keep.log")).unwrap(), b"protected");

    // Without protection, mirror replaces it.
    assert_clean(&mirror(&fx));
    assert_eq!(fs::read(fx.dst.join("x")).unwrap(), b"now a file");
}

#[test]
fn anchored_filters_follow_rsync_without_a_trailing_slash() {
    let fx = Fixture::new();
    fx.file("build/out", b"x");
    fx.file("keep/build/out", b"x");
    let report = run_spec({
        let mut s = spec(&fx.src, &fx.dst);
        s.options
            .filter
            .add(blit_core::RuleKind::Exclude, "/src/build")
            .unwrap();
        s
    });
    assert_clean(&report);
    assert!(!fx.dst.join("src/build").exists());
    assert!(fx.dst.join("src/keep/build/out").exists());
}

#[test]
fn overlapping_roots_are_refused() {
    let fx = Fixture::new();
    fx.file("a", b"a");
    let inside = Transfer::new(spec(&fx.src_contents(), &fx.src.join("sub"))).run(&Quiet);
    assert!(
        matches!(
            inside,
            Err(blit_core::Error::DestinationInsideSource { .. })
        ),
        "{inside:?}"
    );
    let same = Transfer::new(spec(&fx.src_contents(), &fx.src)).run(&Quiet);
    assert!(
        matches!(same, Err(blit_core::Error::SameSourceAndDestination { .. })),
        "{same:?}"
    );
    let mut into_parent = spec(&fx.src_contents(), fx.dir.path());
    into_parent.options.mode = Mode::Mirror;
    let mirror_up = Transfer::new(into_parent).run(&Quiet);
    assert!(
        matches!(
            mirror_up,
            Err(blit_core::Error::SourceInsideDestination { .. })
        ),
        "{mirror_up:?}"
    );
    assert!(fx.src.join("a").exists());
    let missing = Transfer::new(spec(&fx.path("missing"), &fx.dst)).run(&Quiet);
    assert!(
        matches!(missing, Err(blit_core::Error::Source { .. })),
        "{missing:?}"
    );
}

#[test]
fn the_trailing_slash_decides_where_a_directory_lands() {
    let fx = Fixture::new();
    fx.file("f", b"x");
    assert_clean(&run_spec(spec(&fx.src, &fx.dst)));
    assert!(fx.dst.join("src/f").exists());
    let contents = fx.path("contents");
    assert_clean(&run_spec(spec(&fx.src_contents(), &contents)));
    assert!(contents.join("f").exists());
}

mod random_trees {
    //! Property test: random trees (names with odd bytes, files, symlinks, empty
    //! directories, modes, nanosecond mtimes) copy exactly, and a second random tree
    //! mirrored over the first leaves an exact copy of the second.

    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Node {
        File(Vec<u8>, u32, u32),
        Link(Vec<u8>),
        Dir(Vec<(Vec<u8>, Node)>),
    }

    fn name() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![
                Just(b'a'),
                Just(b'Z'),
                Just(b'-'),
                Just(b'\n'),
                Just(0xe9u8),
                Just(0xffu8),
                Just(b' ')
            ],
            1..6,
        )
        .prop_filter("not . or ..", |n| n != b"." && n != b"..")
    }

    fn node() -> impl Strategy<Value = Node> {
        let leaf = prop_oneof![
            (
                prop::collection::vec(any::<u8>(), 0..3000),
                prop_oneof![Just(0o644u32), Just(0o600), Just(0o755), Just(0o400)],
                0u32..1_000_000_000
            )
                .prop_map(|(c, m, ns)| Node::File(c, m, ns)),
            name().prop_map(Node::Link),
            Just(Node::Dir(Vec::new())),
        ];
        leaf.prop_recursive(3, 40, 6, |inner| {
            prop::collection::vec((name(), inner), 0..6).prop_map(Node::Dir)
        })
    }

    fn build(root: &Path, children: &[(Vec<u8>, Node)]) {
        fs::create_dir_all(root).unwrap();
        let mut seen = std::collections::HashSet::new();
        for (n, node) in children {
            if !seen.insert(n.clone()) {
                continue;
            }
            let p = root.join(bytes_path(n));
            match node {
                Node::File(content, mode, ns) => {
                    fs::write(&p, content).unwrap();
                    set_mode(&p, *mode);
                    set_mtime(&p, 1_000_000_000 + i64::from(*ns % 1000), *ns);
                }
                Node::Link(target) => std::os::unix::fs::symlink(bytes_path(target), &p).unwrap(),
                Node::Dir(kids) => build(&p, kids),
            }
        }
    }

    fn tree() -> impl Strategy<Value = Vec<(Vec<u8>, Node)>> {
        prop::collection::vec((name(), node()), 0..8)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        #[test]
        fn random_trees_copy_and_mirror_exactly(first in tree(), second in tree()) {
            let fx = Fixture::new();
            fs::remove_dir(&fx.src).unwrap();
            build(&fx.src, &first);
            let report = copy(&fx);
            prop_assert!(report.failures.is_empty(), "{:?}", report.failures);
            assert_same_tree(&fx.src, &fx.dst, PLAIN);

            fs::remove_dir_all(&fx.src).unwrap();
            build(&fx.src, &second);
            let report = mirror(&fx);
            prop_assert!(report.failures.is_empty(), "{:?}", report.failures);
            assert_same_tree(&fx.src, &fx.dst, PLAIN);
        }
    }
}
