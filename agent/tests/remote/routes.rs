//! The same trees through every route, mirror, move, resume, fallback and limits.

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use blit_test_support::agent::{Agent, binary};
use blit_test_support::{self as support, Fixture, assert_same_tree};

use crate::*;

#[test]
fn every_route_gives_the_same_tree() {
    let fx = Fixture::new();
    rich_tree(&fx);
    let module = fx.path("module");
    fs::create_dir(&module).unwrap();
    let agent = Agent::start(&[&"--module", &format!("m={}", module.display())]);

    // local → local, the reference.
    let local = fx.path("local");
    ok(&blit(&fx, &[&"copy", &"-H", &fx.src_contents(), &local]));
    assert_same_tree(&fx.src, &local, FULL);

    // local → agent, with more streams than a near link gets: the 40 MiB file is cut
    // into chunks that several streams carry.
    let err = ok(&blit(
        &fx,
        &[
            &"copy",
            &"-H",
            &"--streams",
            &"12",
            &fx.src_contents(),
            &agent.url("m", "pushed"),
        ],
    ));
    assert!(
        err.contains("over 12 tcp streams"),
        "data plane used: {err}"
    );
    assert_same_tree(&fx.src, &module.join("pushed"), FULL);
    assert_sparse(&module.join("pushed/sparse.img"));

    // agent → local (from what was pushed), with the stream count a near link gets.
    let pulled = fx.path("pulled");
    let err = ok(&blit(
        &fx,
        &[&"copy", &"-H", &agent.url("m", "pushed/"), &pulled],
    ));
    let near = blit_core::session::data::NEAR_STREAMS;
    assert!(err.contains(&format!("over {near} tcp streams")), "{err}");
    assert_same_tree(&fx.src, &pulled, FULL);
    assert_sparse(&pulled.join("sparse.img"));

    // agent → agent: a second agent pulls from the first; the client only watches.
    let other = fx.path("other");
    fs::create_dir(&other).unwrap();
    let agent_b = Agent::start(&[
        &"--module",
        &format!("n={}", other.display()),
        &"--job-source",
        &format!("127.0.0.1:{}", agent.port),
    ]);
    ok(&blit(
        &fx,
        &[
            &"copy",
            &"-H",
            &agent.url("m", "pushed/"),
            &agent_b.url("n", "copied"),
        ],
    ));
    assert_same_tree(&fx.src, &other.join("copied"), FULL);
    assert_sparse(&other.join("copied/sparse.img"));

    // A second run over each result changes nothing.
    let again = ok(&blit(
        &fx,
        &[
            &"copy",
            &"-H",
            &fx.src_contents(),
            &agent.url("m", "pushed"),
        ],
    ));
    assert!(again.contains("copied 0 files"), "{again}");
    let again = ok(&blit(
        &fx,
        &[&"copy", &"-H", &agent.url("m", "pushed/"), &pulled],
    ));
    assert!(again.contains("copied 0 files"), "{again}");
}

#[test]
fn trailing_slash_and_single_files_over_the_network() {
    let fx = Fixture::new();
    fx.file("a/f", b"x");
    fx.file("one.txt", b"single");
    let module = fx.path("module");
    fs::create_dir(&module).unwrap();
    let agent = Agent::start(&[&"--root", &module]);
    ok(&blit(&fx, &[&"copy", &fx.src, &agent.url("default", "")]));
    assert!(
        module.join("src/a/f").is_file(),
        "src itself lands in the module"
    );
    ok(&blit(
        &fx,
        &[
            &"copy",
            &fx.src.join("one.txt"),
            &agent.url("default", "renamed.txt"),
        ],
    ));
    assert_eq!(fs::read(module.join("renamed.txt")).unwrap(), b"single");
    ok(&blit(
        &fx,
        &[
            &"copy",
            &fx.src.join("one.txt"),
            &agent.url("default", "src/"),
        ],
    ));
    assert!(module.join("src/one.txt").is_file());
    let out = fx.path("out");
    fs::create_dir(&out).unwrap();
    ok(&blit(
        &fx,
        &[&"copy", &agent.url("default", "renamed.txt"), &out],
    ));
    assert_eq!(fs::read(out.join("renamed.txt")).unwrap(), b"single");
    ok(&blit(&fx, &[&"copy", &agent.url("default", "src"), &out]));
    assert!(out.join("src/a/f").is_file());
}

#[test]
fn remote_mirror_deletes_only_inside_the_destination() {
    let fx = Fixture::new();
    fx.file("keep", b"k");
    fx.file("sub/keep2", b"k");
    let module = fx.path("module");
    let outside = fx.path("outside");
    fs::create_dir_all(module.join("dst/old-dir/inner")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("precious"), b"p").unwrap();
    fs::write(module.join("dst/stale"), b"s").unwrap();
    fs::write(module.join("dst/old-dir/inner/x"), b"x").unwrap();
    std::os::unix::fs::symlink(&outside, module.join("dst/link-out")).unwrap();
    let agent = Agent::start(&[&"--module", &format!("m={}", module.display())]);

    let over = blit(
        &fx,
        &[
            &"mirror",
            &"--yes",
            &"--max-delete",
            &"2",
            &fx.src_contents(),
            &agent.url("m", "dst"),
        ],
    );
    assert_eq!(
        over.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&over.stderr)
    );
    assert!(
        module.join("dst/stale").exists(),
        "nothing deleted past --max-delete"
    );

    ok(&blit(
        &fx,
        &[
            &"mirror",
            &"--yes",
            &fx.src_contents(),
            &agent.url("m", "dst"),
        ],
    ));
    assert_same_tree(&fx.src, &module.join("dst"), FULL);
    assert_eq!(
        fs::read(outside.join("precious")).unwrap(),
        b"p",
        "the symlink was removed, not followed"
    );

    // Mirror from the agent into a local directory.
    let local = fx.path("local");
    fs::create_dir_all(local.join("extra")).unwrap();
    ok(&blit(
        &fx,
        &[&"mirror", &"--yes", &agent.url("m", "dst/"), &local],
    ));
    assert_same_tree(&fx.src, &local, FULL);
}

#[test]
fn forced_grpc_fallback_gives_the_same_result_and_says_so() {
    let fx = Fixture::new();
    rich_tree(&fx);
    let module = fx.path("module");
    fs::create_dir(&module).unwrap();
    let agent = Agent::start(&[&"--root", &module]);
    let err = ok(&blit(
        &fx,
        &[
            &"copy",
            &"-H",
            &"--force-grpc",
            &fx.src_contents(),
            &agent.url("default", "d"),
        ],
    ));
    assert!(err.contains("gRPC stream"), "{err}");
    assert_same_tree(&fx.src, &module.join("d"), FULL);
    let back = fx.path("back");
    let err = ok(&blit(
        &fx,
        &[
            &"copy",
            &"-H",
            &"--force-grpc",
            &agent.url("default", "d/"),
            &back,
        ],
    ));
    assert!(err.contains("gRPC stream"), "{err}");
    assert_same_tree(&fx.src, &back, FULL);
}

#[test]
fn a_killed_agent_leaves_no_partial_file_and_resume_completes() {
    let fx = Fixture::new();
    let big = fx.src.join("big");
    let f = fs::File::create(&big).unwrap();
    // Real data (not a hole) so the copy takes a moment.
    let chunk = vec![0x5au8; 1 << 20];
    let mut w = std::io::BufWriter::new(f);
    for _ in 0..1024 {
        w.write_all(&chunk).unwrap();
    }
    drop(w);
    fx.file("small", b"s");
    let module = fx.path("module");
    fs::create_dir(&module).unwrap();
    let mut agent = Agent::start(&[&"--root", &module]);
    let mut child = Command::new(binary("blit"))
        .args(["copy", "--streams", "1"])
        .arg(fx.src_contents())
        .arg(agent.url("default", "d"))
        .env("XDG_STATE_HOME", fx.path("state"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let part = loop {
        let found = fs::read_dir(module.join("d")).ok().and_then(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with(".part"))
        });
        if let Some(p) = found
            && fs::metadata(&p).map(|m| m.len()).unwrap_or(0) > 0
        {
            break p;
        }
        assert!(Instant::now() < deadline, "no .part file appeared");
        std::thread::sleep(Duration::from_millis(5));
    };
    agent.kill();
    let _ = child.wait();
    assert!(
        !module.join("d/big").exists(),
        "nothing incomplete under the final name"
    );
    assert!(part.exists(), "the partial file is kept for --resume");

    let agent = Agent::start(&[&"--root", &module]);
    ok(&blit(
        &fx,
        &[
            &"copy",
            &"--resume",
            &fx.src_contents(),
            &agent.url("default", "d"),
        ],
    ));
    assert_same_tree(&fx.src, &module.join("d"), FULL);
    let leftovers: Vec<PathBuf> = fs::read_dir(module.join("d"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".blit-")
        })
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn move_over_the_network_removes_confirmed_sources() {
    let fx = Fixture::new();
    let module = fx.path("module");
    fs::create_dir(&module).unwrap();
    let agent = Agent::start(&[&"--root", &module]);

    // local → agent: the source tree goes away, directory included.
    let local = fx.path("tomove");
    let reference = movable_tree(&fx, &local);
    let err = ok(&blit(
        &fx,
        &[&"move", &"--yes", &local, &agent.url("default", "")],
    ));
    assert_same_tree(&reference, &module.join("tomove"), FULL);
    assert!(!local.exists(), "moved source removed: {err}");
    assert!(err.contains("sources removed"), "{err}");

    // agent → local, contents only: the module keeps the emptied directory's root.
    let back = fx.path("back");
    ok(&blit(
        &fx,
        &[&"move", &"--yes", &agent.url("default", "tomove/"), &back],
    ));
    assert_same_tree(&reference, &back, FULL);
    assert_eq!(
        fs::read_dir(module.join("tomove")).unwrap().count(),
        0,
        "everything moved out"
    );

    // agent → agent (with --checksum: the destination's hashes are checked at the source).
    let other = fx.path("other");
    fs::create_dir(&other).unwrap();
    let agent_b = Agent::start(&[
        &"--root",
        &other,
        &"--job-source",
        &format!("127.0.0.1:{}", agent.port),
    ]);
    let staged = module.join("again");
    let reference = movable_tree(&fx, &staged);
    ok(&blit(
        &fx,
        &[
            &"move",
            &"--yes",
            &"-c",
            &agent.url("default", "again"),
            &agent_b.url("default", ""),
        ],
    ));
    assert_same_tree(&reference, &other.join("again"), FULL);
    assert!(!staged.exists(), "moved from the source agent");
}

#[test]
fn a_bandwidth_limit_holds_the_sender_back() {
    let fx = Fixture::new();
    fx.file("three-mib", &vec![7u8; 3 << 20]);
    let module = fx.path("module");
    fs::create_dir(&module).unwrap();
    let agent = Agent::start(&[&"--root", &module]);
    let started = Instant::now();
    ok(&blit(
        &fx,
        &[
            &"copy",
            &"--bwlimit",
            &"1M",
            &fx.src_contents(),
            &agent.url("default", "d"),
        ],
    ));
    let took = started.elapsed();
    // 1 MiB/s with a quarter-second burst: at least 2.5 s for 3 MiB, on any machine.
    assert!(
        took >= Duration::from_millis(2500),
        "3 MiB at 1 MiB/s took only {took:?}"
    );
    assert_eq!(fs::read(module.join("d/three-mib")).unwrap().len(), 3 << 20);
    let o = blit(
        &fx,
        &[
            &"copy",
            &"--bwlimit",
            &"fast",
            &fx.src_contents(),
            &agent.url("default", "e"),
        ],
    );
    fails(&o, 2, "not a positive number");
}

#[test]
fn more_files_than_the_in_flight_limit_in_one_directory() {
    // The destination asks for at most 8,192 files before some are written: a directory
    // with more exercises the wait (and the source flushing what it buffered).
    let fx = Fixture::new();
    let wide = fx.src.join("wide");
    fs::create_dir_all(&wide).unwrap();
    for i in 0..9000 {
        fs::write(wide.join(format!("f{i:05}")), [b'x'; 1]).unwrap();
    }
    let module = fx.path("module");
    fs::create_dir(&module).unwrap();
    let agent = Agent::start(&[&"--root", &module]);
    ok(&blit(
        &fx,
        &[&"copy", &fx.src_contents(), &agent.url("default", "d")],
    ));
    assert_eq!(fs::read_dir(module.join("d/wide")).unwrap().count(), 9000);
    let back = fx.path("back");
    ok(&blit(&fx, &[&"copy", &agent.url("default", "d/"), &back]));
    assert_same_tree(&fx.src, &back, FULL);
}

#[test]
fn extended_attributes_travel_every_route_with_x() {
    let fx = Fixture::new();
    let f = fx.file("f", b"x");
    let d = fx.file("d/inner", b"y");
    if !support::set_xattr(&f, "user.blit.test", b"value\0with nul") {
        eprintln!(
            "skipped: the filesystem under {} does not support user xattrs",
            fx.src.display()
        );
        return;
    }
    let big = vec![7u8; 4000];
    assert!(support::set_xattr(&d, "user.blit.big", &big));
    assert!(support::set_xattr(
        &fx.src.join("d"),
        "user.blit.dir",
        b"dir value"
    ));
    assert!(support::set_xattr(&fx.src, "user.blit.root", b"root value"));
    let with = support::Compare {
        xattrs: true,
        ..FULL
    };
    let module = fx.path("module");
    fs::create_dir(&module).unwrap();
    let agent = Agent::start(&[&"--module", &format!("m={}", module.display())]);
    let pushed = module.join("pushed");
    ok(&blit(
        &fx,
        &[
            &"copy",
            &"-X",
            &fx.src_contents(),
            &agent.url("m", "pushed"),
        ],
    ));
    assert_same_tree(&fx.src, &pushed, with);

    // Only the attributes changed: the file is not copied again, its attributes are.
    assert!(support::set_xattr(&f, "user.blit.test", b"new value"));
    rustix::fs::lremovexattr(&d, "user.blit.big").unwrap();
    let err = ok(&blit(
        &fx,
        &[
            &"copy",
            &"-X",
            &fx.src_contents(),
            &agent.url("m", "pushed"),
        ],
    ));
    assert!(err.contains("copied 0 files"), "{err}");
    assert_same_tree(&fx.src, &pushed, with);

    let pulled = fx.path("pulled");
    ok(&blit(
        &fx,
        &[&"copy", &"-X", &agent.url("m", "pushed/"), &pulled],
    ));
    assert_same_tree(&fx.src, &pulled, with);

    let other = fx.path("other");
    fs::create_dir(&other).unwrap();
    let agent_b = Agent::start(&[
        &"--module",
        &format!("n={}", other.display()),
        &"--job-source",
        &format!("127.0.0.1:{}", agent.port),
    ]);
    ok(&blit(
        &fx,
        &[
            &"copy",
            &"-X",
            &agent.url("m", "pushed/"),
            &agent_b.url("n", "copied"),
        ],
    ));
    assert_same_tree(&fx.src, &other.join("copied"), with);

    // Without -X nothing is carried.
    let plain = fx.path("plain");
    ok(&blit(&fx, &[&"copy", &agent.url("m", "pushed/"), &plain]));
    assert!(
        support::snapshot(&plain, with)[std::path::Path::new("f")]
            .xattrs
            .is_empty()
    );
}
