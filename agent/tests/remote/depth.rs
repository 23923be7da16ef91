//! Issue 11, row 4: a directory chain deeper than any stack or path limit. `blit du`,
//! `find` and `rm -r` on a 6,000-level chain used to overflow blitd's stack (the client
//! then blamed TLS); now they answer, and the agent keeps serving with its memory,
//! threads and descriptors where they were. The same chain goes both ways through a
//! transfer, with every level's metadata intact, though its paths are three times what
//! the kernel takes in one call.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use blit_test_support::agent::{Agent, Usage, binary};
use blit_test_support::{self as support, Fixture, chain};

use crate::*;

/// Levels of the chain: 12,000 bytes of path, past `PATH_MAX` (4,096) three times, and
/// deep enough that the recursive walks overflowed blitd's 2 MiB stacks.
const DEPTH: usize = 6_000;

/// What the walks of `du`, `find` and `rm` may add to the agent: a frame and a name per
/// level (about a megabyte here; with a path per level it was 36 MB) and at most a
/// cursor's worth of descriptors.
const WALK_RSS: u64 = 24 << 20;

/// What a transfer of the chain may add: each directory's batch names it in full, so
/// 36 MB of paths go through the agent (the protocol's cost, linear in what is sent).
const TRANSFER_RSS: u64 = 64 << 20;

fn bound(before: Usage, rss: u64) -> Usage {
    Usage {
        rss_bytes: before.rss_bytes + rss,
        threads: before.threads + 8,
        fds: before.fds + 24,
    }
}

/// Runs `blit` and returns its output, checking the time it took.
fn timed(fx: &Fixture, args: &[&dyn AsRef<std::ffi::OsStr>]) -> std::process::Output {
    let started = Instant::now();
    let out = blit(fx, args);
    // Each of these is well under a second here; minutes meant quadratic work.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "blit {:?} took {:?}",
        args.iter()
            .map(|a| a.as_ref().to_owned())
            .collect::<Vec<_>>(),
        started.elapsed()
    );
    out
}

#[test]
fn du_find_and_rm_walk_a_deep_chain_and_the_agent_keeps_serving() {
    let fx = Fixture::new();
    let module = fx.path("module");
    let _cleanup = chain::Cleanup(vec![module.clone()]);
    std::fs::create_dir(&module).unwrap();
    chain::make(&module, "chain", DEPTH);
    let mut agent = Agent::start(&[&"--module", &format!("m={}", module.display())]);
    ok(&blit(&fx, &[&"ls", &agent.url("m", "")]));
    let before = agent.usage();

    let du = timed(&fx, &[&"du", &"-d", &"2", &agent.url("m", "")]);
    ok(&du);
    let rows = String::from_utf8_lossy(&du.stdout).into_owned();
    let lines: Vec<&str> = rows.lines().collect();
    assert_eq!(lines.len(), 3, "chain/d, chain and the total: {rows}");
    assert!(
        lines.iter().all(|l| l.contains(" 1 files ")),
        "the leaf counted at every level: {rows}"
    );
    assert!(lines[2].ends_with("  ."), "{rows}");
    agent
        .usage()
        .assert_within(bound(before, WALK_RSS), "after du");

    let find = timed(&fx, &[&"find", &agent.url("m", ""), &"leaf"]);
    ok(&find);
    let found = String::from_utf8_lossy(&find.stdout).into_owned();
    assert_eq!(
        found.trim_end(),
        chain::path("chain", DEPTH).join("leaf").to_string_lossy(),
        "the one match, 6,000 levels down"
    );
    agent
        .usage()
        .assert_within(bound(before, WALK_RSS), "after find");

    let refused = timed(&fx, &[&"rm", &"--yes", &agent.url("m", "chain")]);
    fails(&refused, 2, &format!("({} entries)", DEPTH + 1));
    let removed = timed(&fx, &[&"rm", &"--yes", &"-r", &agent.url("m", "chain")]);
    ok(&removed);
    assert!(
        String::from_utf8_lossy(&removed.stdout).contains(&format!("removed {}", DEPTH + 1)),
        "{:?}",
        removed
    );
    assert!(!module.join("chain").exists());
    assert!(agent.alive(), "the agent survived every walk");
    agent
        .usage()
        .assert_within(bound(before, WALK_RSS), "after rm -r");

    // And it still serves a transfer.
    fx.file("after/f", b"still here");
    ok(&blit(
        &fx,
        &[&"copy", &fx.src_contents(), &agent.url("m", "")],
    ));
    assert_eq!(
        std::fs::read(module.join("after/f")).unwrap(),
        b"still here"
    );
}

#[test]
fn a_chain_deeper_than_path_max_is_pushed_and_pulled_intact() {
    let fx = Fixture::new();
    let module = fx.path("module");
    let pulled = fx.path("pulled");
    let _cleanup = chain::Cleanup(vec![fx.src.clone(), module.clone(), pulled.clone()]);
    chain::make(&fx.src, "chain", DEPTH);
    std::fs::create_dir(&module).unwrap();
    let agent = Agent::start(&[&"--module", &format!("m={}", module.display())]);
    // A small push and pull first: the threads and buffers any transfer leaves warm are
    // the baseline, what the chain adds is the question.
    let warm = fx.path("warm");
    support::write(&warm.join("f"), b"warm");
    ok(&blit(&fx, &[&"copy", &warm, &agent.url("m", "")]));
    ok(&blit(
        &fx,
        &[&"copy", &agent.url("m", "warm"), &fx.path("warm-back")],
    ));
    let before = agent.usage();

    ok(&timed(
        &fx,
        &[&"copy", &fx.src_contents(), &agent.url("m", "pushed")],
    ));
    chain::assert_copied(&module.join("pushed"), "chain", DEPTH);
    agent
        .usage()
        .assert_within(bound(before, TRANSFER_RSS), "after the push");

    ok(&timed(&fx, &[&"copy", &agent.url("m", "pushed/"), &pulled]));
    chain::assert_copied(&pulled, "chain", DEPTH);
    agent
        .usage()
        .assert_within(bound(before, TRANSFER_RSS), "after the pull");
}

/// Levels of the comb: a spine with a side directory at every level.
const COMB: usize = 2_000;

#[test]
fn a_comb_is_copied_with_few_descriptors() {
    // One worker takes its own queued visits last-in first-out: the side directories
    // ("a" sorts before the spine's "d", so they are queued first) wait while the spine
    // is walked. Each used to keep its parent open on both sides: 3,967 descriptors for
    // this comb. (A local copy: the same walk and visits run in an agent's sessions.)
    let fx = Fixture::new();
    let copied = fx.path("copied");
    let _cleanup = chain::Cleanup(vec![fx.src.clone(), copied.clone()]);
    chain::make(&fx.src, "comb", COMB);
    chain::add_sides(&fx.src, "comb", COMB, "a");
    let mut c = Command::new(binary("blit"));
    c.env("XDG_STATE_HOME", fx.path("state"))
        .env_remove("BLIT_TOKEN")
        .args(["copy", "--workers", "1"])
        .arg(fx.src_contents())
        .arg(&copied)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("blit runs");
    let mut most = 0;
    let started = Instant::now();
    while child.try_wait().expect("blit is waited for").is_none() {
        let held = std::fs::read_dir(format!("/proc/{}/fd", child.id())).map_or(0, |d| d.count());
        most = most.max(held);
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the copy hangs"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    ok(&child.wait_with_output().expect("blit's output"));
    chain::assert_copied(&copied, "comb", COMB);
    assert!(most < 64, "the copy held {most} descriptors");
}
