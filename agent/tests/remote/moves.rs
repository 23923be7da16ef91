//! Data safety under concurrency and lies: concurrent pushes to one path end with one
//! complete file, and a move deletes only what its session listed and the destination
//! confirmed — never a directory after a failure.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use blit_core::wire::pb;
use blit_test_support::agent::{Agent, Usage, binary};
use blit_test_support::{self as support, Fixture};
use pb::frame::Kind;

use crate::peer::{self, Peer, data_ready, pull_open};
use crate::*;

const BIG: usize = 48 << 20;

fn content(seed: u8) -> Vec<u8> {
    (0..BIG as u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8 ^ seed)
        .collect()
}

/// Temp files (`.blit-…`) in `dir`.
fn temps(dir: &Path) -> Vec<String> {
    support::names(dir)
        .into_iter()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".blit-"))
        .collect()
}

#[test]
fn concurrent_pushes_to_one_path_leave_one_complete_file() {
    let fx = Fixture::new();
    let module = fx.path("module");
    fs::create_dir(&module).unwrap();
    let (a, b) = (content(0x11), content(0x22));
    let src_a = fx.file("a/big.bin", &a);
    let src_b = fx.file("b/big.bin", &b);
    let agent = Agent::start(&[&"--root", &module]);
    let idle = agent.usage();
    let target = agent.url("default", "");
    for round in 0..3 {
        let push = |src: &Path| {
            Command::new(binary("blit"))
                .args(["copy", "--ignore-times"])
                .arg(src)
                .arg(&target)
                .env("XDG_STATE_HOME", fx.path("state"))
                .stdin(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (pa, pb) = (push(&src_a), push(&src_b));
        for p in [pa, pb] {
            let out = p.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let landed = fs::read(module.join("big.bin")).unwrap();
        assert!(
            landed == a || landed == b,
            "round {round}: the final name holds a complete file of one writer"
        );
        assert_eq!(temps(&module), Vec::<String>::new(), "round {round}");
        assert_eq!(
            fs::metadata(module.join("big.bin")).unwrap().mode() & 0o777,
            fs::metadata(&src_a).unwrap().mode() & 0o777,
            "not a temp file's private mode"
        );
    }

    // A second writer killed half-way leaves the first writer's complete file in place
    // and its own partial file beside it, never under the final name.
    ok(&blit(&fx, &[&"copy", &"--ignore-times", &src_a, &target]));
    let mut slow = Command::new(binary("blit"))
        .args(["copy", "--ignore-times", "--bwlimit", "8M"])
        .arg(&src_b)
        .arg(&target)
        .env("XDG_STATE_HOME", fx.path("state"))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while temps(&module).is_empty() {
        assert!(Instant::now() < deadline, "the second push never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let _ = slow.kill();
    let _ = slow.wait();
    assert_eq!(fs::read(module.join("big.bin")).unwrap(), a);
    // The killed push's part is resumable, and the agent keeps serving.
    ok(&blit(
        &fx,
        &[&"copy", &"--ignore-times", &"--resume", &src_b, &target],
    ));
    assert_eq!(fs::read(module.join("big.bin")).unwrap(), b);
    assert_eq!(temps(&module), Vec::<String>::new());
    // Every writer's temp file (and its lock) was let go.
    std::thread::sleep(Duration::from_millis(300));
    agent.usage().assert_within(
        Usage {
            rss_bytes: idle.rss_bytes + (256 << 20),
            threads: idle.threads + 64,
            fds: idle.fds + 4,
        },
        "after concurrent pushes",
    );
}

/// A pull-move of `path` from `agent` by a destination that confirms `confirm` (with the
/// listed metadata of the real file) and then reports `failures`. Returns the agent's
/// `SourceDone`.
async fn lying_move(
    agent: &Agent,
    path: &str,
    exclude: &[&str],
    confirm: &[(&str, &Path)],
    failures: Vec<pb::Failure>,
) -> pb::SourceDone {
    let mut open = pull_open(path);
    let mut options = peer::options();
    options.mode = pb::Mode::Move as i32;
    options.filter = exclude
        .iter()
        .map(|p| pb::FilterRule {
            include: false,
            pattern: p.to_string(),
        })
        .collect();
    open.options = Some(options);
    let mut s = Peer::open(agent, open).await.expect("the move is accepted");
    s.send(data_ready()).await;
    s.read_manifest().await;
    let entries = confirm
        .iter()
        .map(|(rel, real)| {
            let m = fs::symlink_metadata(real).unwrap();
            pb::Landed {
                path: rel.as_bytes().to_vec(),
                kind: pb::EntryKind::File as i32,
                size: m.len(),
                mtime_sec: m.mtime(),
                mtime_nsec: m.mtime_nsec() as u32,
                hash: Some(blake3::hash(&fs::read(real).unwrap()).as_bytes().to_vec()),
            }
        })
        .collect();
    s.send(Kind::Landed(pb::LandedBatch { entries })).await;
    s.send(Kind::NeedDone(pb::NeedDone {})).await;
    s.send(Kind::Summary(pb::Summary {
        report: Some(pb::Report {
            mode: pb::Mode::Move as i32,
            failures,
            ..Default::default()
        }),
    }))
    .await;
    loop {
        match s.next(Duration::from_secs(10)).await.and_then(|f| f.kind) {
            Some(Kind::SourceDone(done)) => return done,
            Some(_) => {}
            None => panic!("the session ended without SourceDone"),
        }
    }
}

#[test]
fn a_move_removes_only_what_it_listed() {
    let fx = Fixture::new();
    let module = fx.path("module");
    support::write(&module.join("a.txt"), b"a");
    support::write(&module.join("b.txt"), b"never listed");
    support::write(&module.join("dir/c.txt"), b"c");
    support::write(&module.join("dir/excluded.log"), b"x");
    let agent = Agent::start(&[&"--root", &module]);
    let rt = tokio::runtime::Runtime::new().unwrap();

    // A single-file move of a.txt; the destination confirms b.txt, which it never saw.
    let done = rt.block_on(lying_move(
        &agent,
        "a.txt",
        &[],
        &[("b.txt", &module.join("b.txt"))],
        Vec::new(),
    ));
    assert_eq!(done.sources_removed, 0);
    assert_eq!(done.failures.len(), 1, "{:?}", done.failures);
    assert!(
        done.failures[0]
            .message
            .contains("not an entry this move listed"),
        "{:?}",
        done.failures
    );
    assert!(
        module.join("b.txt").exists(),
        "an unlisted file is not deleted"
    );
    assert!(
        module.join("a.txt").exists(),
        "an unconfirmed file is not deleted"
    );

    // A tree move of dir/ excluding `unlisted/` and `*.log`: confirming entries the
    // filter kept out of its listing removes nothing; confirming its own file works.
    support::write(&module.join("dir/unlisted/d.txt"), b"d");
    let done = rt.block_on(lying_move(
        &agent,
        "dir/",
        &["unlisted/", "*.log"],
        &[
            ("unlisted/d.txt", &module.join("dir/unlisted/d.txt")),
            ("excluded.log", &module.join("dir/excluded.log")),
            ("c.txt", &module.join("dir/c.txt")),
        ],
        Vec::new(),
    ));
    assert!(
        !module.join("dir/c.txt").exists(),
        "a confirmed, listed file goes"
    );
    assert!(module.join("dir/unlisted/d.txt").exists());
    assert!(module.join("dir/excluded.log").exists());
    assert_eq!(done.sources_removed, 1, "{:?}", done.failures);
    assert_eq!(done.failures.len(), 2, "{:?}", done.failures);
}

#[test]
fn a_failed_move_removes_no_directories() {
    let fx = Fixture::new();
    let module = fx.path("module");
    fs::create_dir_all(module.join("tree/empty/nested")).unwrap();
    fs::create_dir_all(module.join("tree/other")).unwrap();
    support::write(&module.join("tree/f.txt"), b"f");
    let agent = Agent::start(&[&"--root", &module]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The destination confirms nothing and reports a failure.
    let failure = pb::Failure {
        path: b"f.txt".to_vec(),
        operation: "copy".into(),
        message: "disk full".into(),
    };
    let done = rt.block_on(lying_move(&agent, "tree", &[], &[], vec![failure]));
    assert_eq!(done.sources_removed, 0);
    for kept in ["tree/empty/nested", "tree/other", "tree/f.txt"] {
        assert!(module.join(kept).exists(), "{kept} was removed");
    }
    // The same move by an honest client that succeeds removes everything.
    let back = fx.path("back");
    ok(&blit(
        &fx,
        &[&"move", &"--yes", &agent.url("default", "tree"), &back],
    ));
    assert!(!module.join("tree").exists());
    assert!(back.join("tree/empty/nested").is_dir());
    assert_eq!(fs::read(back.join("tree/f.txt")).unwrap(), b"f");
}

#[test]
fn a_move_confirms_files_found_up_to_date_by_content() {
    // The destination's copy has the source's size and an mtime within the modify window,
    // but other bytes: a pull-move must keep the agent's file (its only copy).
    let fx = Fixture::new();
    let module = fx.path("module");
    let f = support::write(&module.join("f"), b"source data");
    support::set_mtime(&f, 1_700_000_000, 0);
    let local = support::write(&fx.path("back/f"), b"other bytes");
    support::set_mtime(&local, 1_700_000_000, 500);
    let agent = Agent::start(&[&"--root", &module]);
    let out = blit(
        &fx,
        &[
            &"move",
            &"--yes",
            &"--modify-window",
            &"1",
            &agent.url("default", "f"),
            &fx.path("back/"),
        ],
    );
    fails(&out, 1, "differs");
    assert_eq!(fs::read(&f).unwrap(), b"source data");
}
