//! Sessions end and let go of what they hold: idle sessions and waits for a slot are
//! bounded, a peer cannot make a session hold unbounded memory (directory parts, batches
//! whose parent never comes, oversized batches, endless needs or failures), cancellation
//! reaches a throttled sender, a FIFO asked for never blocks a thread, and `--workers 1`
//! does not hang. Where `blit` cannot misbehave, a small client speaks the protocol.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use blit_core::session::frame;
use blit_core::wire::{self, pb};
use blit_test_support::agent::{Agent, Usage, assert_not_starved, binary};
use blit_test_support::{Fixture, assert_same_tree};
use pb::frame::Kind;

use crate::*;

use crate::peer::{Peer, batch, data_ready, dir, file, long_name, need, pull_open, push_open};

/// Slack for timings on a shared, noisy machine.
const SLACK: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------
// Row 7: idle sessions and the wait for a slot.

#[test]
fn idle_sessions_are_ended_and_their_slots_freed() {
    let fx = small_tree();
    let (agent, _module) = agent_with(
        &fx,
        "concurrent_transfers = 2\nidle_timeout = 1\nqueue_timeout = 30",
    );
    let unloaded = legit_copy(&fx, &agent, "unloaded");
    let baseline = agent.usage();
    runtime().block_on(async {
        // Both slots taken: one client silent after DataReady, one sending only Progress.
        let mut silent = Peer::open(&agent, push_open("a")).await.unwrap();
        silent.send(data_ready()).await;
        let mut chatty = Peer::open(&agent, push_open("b")).await.unwrap();
        chatty.send(data_ready()).await;
        let tx = chatty.tx.clone();
        let chatter = tokio::spawn(async move {
            while tx
                .send(frame(Kind::Progress(pb::Progress::default())))
                .await
                .is_ok()
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let started = Instant::now();
        let legit = legit_copy_in_background(&fx, &agent, "loaded");
        for peer in [&mut silent, &mut chatty] {
            let message = peer.abort_message(Duration::from_secs(10)).await;
            assert!(message.contains("no progress for 1 s"), "{message}");
        }
        chatter.abort();
        let ended = started.elapsed();
        eprintln!("row 7: idle sessions ended after {ended:?}");
        assert!(
            ended < Duration::from_secs(4),
            "idle sessions ended after {ended:?}"
        );
        let loaded = legit.await.unwrap();
        eprintln!("row 7: legit copy {unloaded:?} unloaded, {loaded:?} with both slots held");
        assert_not_starved(unloaded, loaded, SLACK);
    });
    assert!(
        wait_for_no_sessions(&agent),
        "the idle sessions' slots were freed"
    );
    assert_bounded(&agent, baseline, 64 << 20, "after idle sessions");
    assert_same_tree(&fx.src, &agent_module(&fx).join("loaded"), FULL);
}

#[test]
fn a_session_waits_for_a_slot_only_so_long_and_is_told_the_agent_is_busy() {
    let fx = small_tree();
    let (agent, _module) = agent_with(
        &fx,
        "concurrent_transfers = 1\nidle_timeout = 30\nqueue_timeout = 1",
    );
    runtime().block_on(async {
        let holder = Peer::open(&agent, push_open("held")).await.unwrap();
        holder.send(data_ready()).await;
        let started = Instant::now();
        let refused = Peer::open(&agent, push_open("waiting"))
            .await
            .err()
            .expect("a session beyond the slots is refused once its wait is over");
        let waited = started.elapsed();
        eprintln!("row 7: refused as busy after {waited:?}");
        assert_eq!(
            refused.code(),
            tonic::Code::ResourceExhausted,
            "{refused:?}"
        );
        assert!(refused.message().contains("busy"), "{}", refused.message());
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
            "waited {waited:?}"
        );
        // Its slot comes back as soon as the holder goes.
        drop(holder);
    });
    assert!(wait_for_no_sessions(&agent));
    legit_copy(&fx, &agent, "after");
}

// ---------------------------------------------------------------------------------------
// Rows 8, 9, 10: what a peer can make a destination hold.

#[test]
fn a_directory_sent_in_endless_parts_ends_at_the_session_memory_limit() {
    let fx = small_tree();
    let (agent, module) = agent_with(&fx, "session_memory = \"16M\"");
    let attack = Attack::start(&fx, &agent);
    runtime().block_on(async {
        let mut peer = Peer::open(&agent, push_open("parts")).await.unwrap();
        peer.send(data_ready()).await;
        // 2,000 entries with 100-byte names per part, the same directory forever: 400
        // parts would be about 100 MiB on the wire.
        let part = batch("", (0..2000).map(|i| file(&long_name(i))).collect(), true);
        let sender = peer.send_many((0..400).map(move |_| part.clone()));
        let message = peer.abort_message(Duration::from_secs(60)).await;
        sender.abort();
        assert!(message.contains("memory limit of 16 MiB"), "{message}");
    });
    attack.end(&fx, &agent, 160 << 20, "after endless parts");
    assert!(!module.join("parts").join(long_name(0)).exists());
}

#[test]
fn batches_whose_parent_never_comes_are_refused_and_nothing_stays_behind() {
    let fx = small_tree();
    let (agent, _module) = agent_with(&fx, "");
    let attack = Attack::start(&fx, &agent);
    runtime().block_on(async {
        // The root lists `a`, which never comes; 300 batches below it do.
        let mut peer = Peer::open(&agent, push_open("orphans")).await.unwrap();
        peer.send(data_ready()).await;
        peer.send(batch("", vec![dir("a")], false)).await;
        let orphans = (0..300).map(|i| {
            batch(
                &format!("a/x{i}"),
                (0..2000).map(|j| file(&long_name(j))).collect(),
                false,
            )
        });
        let sender = peer.send_many(orphans);
        let message = peer.abort_message(Duration::from_secs(30)).await;
        sender.abort();
        assert!(message.contains("did not list"), "{message}");

        // The same while a directory's visit waits for file data that never comes (more
        // files asked for than may be in flight): the refusal must not wait for it.
        let mut peer = Peer::open(&agent, push_open("waiting")).await.unwrap();
        peer.send(data_ready()).await;
        for part in 0..5 {
            let files = (part * 2000..(part + 1) * 2000).map(|i| file(&format!("f{i}")));
            peer.send(batch("", files.collect(), part < 4)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let refused = Instant::now();
        peer.send(batch("never/listed", vec![file("f")], false))
            .await;
        let message = peer.abort_message(Duration::from_secs(30)).await;
        assert!(message.contains("did not list"), "{message}");
        let took = refused.elapsed();
        eprintln!("row 9: refused {took:?} after the orphan, a visit waiting for data");
        assert!(took < Duration::from_secs(5), "{took:?}");
        drop(peer);

        // Then what a client cancels: each time a session holding a large directory in
        // parts is given up (an Abort, then the connection dropped); each must end, and
        // what it held must not add up across sessions.
        for round in 0..3 {
            let peer = Peer::open(&agent, push_open(&format!("held{round}")))
                .await
                .unwrap();
            peer.send(data_ready()).await;
            for _ in 0..20 {
                let part = batch("", (0..2000).map(|i| file(&long_name(i))).collect(), true);
                peer.send(part).await;
            }
            peer.send(Kind::Abort(pb::Abort {
                message: "cancelled by the user".into(),
            }))
            .await;
            drop(peer);
            assert!(
                wait_for_no_sessions(&agent),
                "round {round}: the session ended"
            );
        }
    });
    attack.end(&fx, &agent, 200 << 20, "after orphans and cancels");
}

#[test]
fn a_batch_of_more_entries_than_a_source_sends_is_refused() {
    let fx = small_tree();
    let (agent, _module) = agent_with(&fx, "");
    let attack = Attack::start(&fx, &agent);
    runtime().block_on(async {
        let mut peer = Peer::open(&agent, push_open("big")).await.unwrap();
        peer.send(data_ready()).await;
        // 200,000 tiny entries (about 3 MiB on the wire) in one batch.
        let entries = (0..200_000).map(|i| file(&format!("{i:x}"))).collect();
        peer.send(batch("", entries, false)).await;
        let message = peer.abort_message(Duration::from_secs(30)).await;
        assert!(message.contains("at most 2000"), "{message}");
    });
    attack.end(&fx, &agent, 200 << 20, "after an oversized batch");
}

#[test]
fn a_large_directory_arrives_in_one_piece_beside_many_small_ones() {
    // The destination refuses a directory whose parts are mixed with other batches, so
    // the source must not let other workers' batches in between them.
    let fx = Fixture::new();
    for big in 0..3 {
        for i in 0..5000 {
            fx.file(format!("big{big}/f{i}"), b"");
        }
    }
    for d in 0..500 {
        fx.file(format!("small{d}/f"), b"x");
    }
    let (agent, module) = agent_with(&fx, "");
    for round in 0..3 {
        let to = agent.url("default", &format!("round{round}"));
        ok(&blit(
            &fx,
            &[&"copy", &"--workers", &"8", &fx.src_contents(), &to],
        ));
    }
    assert_same_tree(&fx.src, &module.join("round2"), FULL);
}

// ---------------------------------------------------------------------------------------
// "Also": the need queue of a source and the failures a destination keeps.

#[test]
fn endless_needs_and_failures_end_the_session_instead_of_growing_it() {
    let fx = small_tree();
    let (agent, module) = agent_with(&fx, "session_memory = \"16M\"");
    fs::write(module.join("big"), vec![7u8; 32 << 20]).unwrap();
    let listed = fs::symlink_metadata(module.join("big")).unwrap();
    let attack = Attack::start(&fx, &agent);
    runtime().block_on(async {
        // A destination that asks for the same 32 MiB file over and over on a data
        // stream it never reads: the senders block, the needs pile up.
        let mut open = pull_open("big");
        open.force_grpc = false;
        let mut peer = Peer::open(&agent, open).await.unwrap();
        let streams = peer.connect_data(&agent).await;
        peer.send(Kind::DataReady(pb::DataReady { streams: 1 }))
            .await;
        peer.read_manifest().await;
        let needs = (0..64u64).map(move |b| {
            Kind::Need(pb::NeedBatch {
                needs: (0..1024)
                    .map(|i| need(b * 1024 + i, "big", &listed))
                    .collect(),
            })
        });
        let sender = peer.send_many(needs);
        let message = peer.abort_message(Duration::from_secs(30)).await;
        sender.abort();
        drop(streams);
        assert!(
            message.contains("more than 32768 files at once"),
            "{message}"
        );

        // A source that reports failure after failure, 64 KiB each.
        let mut peer = Peer::open(&agent, push_open("failures")).await.unwrap();
        peer.send(data_ready()).await;
        peer.send(batch("", vec![file("f")], false)).await;
        let failures = (0..2000).map(|i| {
            Kind::SourceFailure(pb::Failure {
                path: format!("f{i}").into_bytes(),
                operation: "read".into(),
                message: "x".repeat(64 << 10),
            })
        });
        let sender = peer.send_many(failures);
        let message = peer.abort_message(Duration::from_secs(30)).await;
        sender.abort();
        assert!(message.contains("memory limit of 16 MiB"), "{message}");
    });
    attack.end(&fx, &agent, 200 << 20, "after endless needs and failures");
}

// ---------------------------------------------------------------------------------------
// Row 12: a FIFO asked for.

#[test]
fn a_fifo_asked_for_is_refused_without_blocking_and_sigterm_is_prompt() {
    let fx = small_tree();
    let (mut agent, module) = agent_with(&fx, "");
    // A FIFO in the module (pushing one takes a module that allows special files).
    make_fifo(&module.join("pipe"));
    let listed = fs::symlink_metadata(module.join("pipe")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&listed.file_type()));
    legit_copy(&fx, &agent, "warm");
    let baseline = agent.usage();
    runtime().block_on(async {
        // Then ask for it as if it were a file (same size and mtime as listed).
        let mut peer = Peer::open(&agent, pull_open("")).await.unwrap();
        peer.send(data_ready()).await;
        peer.read_manifest().await;
        let asked = Instant::now();
        peer.send(Kind::Need(pb::NeedBatch {
            needs: vec![need(1, "pipe", &listed)],
        }))
        .await;
        peer.send(Kind::NeedDone(pb::NeedDone {})).await;
        let records = peer.read_records(Duration::from_secs(10)).await;
        assert_eq!(records.len(), 1, "{records:?}");
        let (id, failure) = &records[0];
        assert_eq!(*id, 1);
        assert!(failure.contains("not a regular file"), "{failure}");
        assert!(asked.elapsed() < Duration::from_secs(5));
        // The source ends normally on the summary.
        peer.send(Kind::Summary(pb::Summary {
            report: Some(wire::report_to_wire(&Default::default())),
        }))
        .await;
        while peer.next(Duration::from_secs(10)).await.is_some() {}
    });
    assert!(wait_for_no_sessions(&agent), "the session ended");
    assert_bounded(&agent, baseline, 64 << 20, "after a FIFO need");
    legit_copy(&fx, &agent, "after");
    let stopping = Instant::now();
    assert!(agent.terminate().success());
    let took = stopping.elapsed();
    eprintln!("row 12: SIGTERM took {took:?}");
    assert!(took < Duration::from_secs(3), "SIGTERM took {took:?}");
}

#[test]
fn a_local_copy_refuses_a_fifo_in_place_of_a_file_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    make_fifo(&dir.path().join("pipe"));
    let root = blit_core::sys::dir::open_root(dir.path()).unwrap();
    let started = Instant::now();
    let err = blit_core::sys::file::open_source(
        rustix::fd::AsFd::as_fd(&root),
        std::ffi::OsStr::new("pipe"),
    )
    .expect_err("a FIFO is not read as a file");
    assert!(err.to_string().contains("not a regular file"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

// ---------------------------------------------------------------------------------------
// Row 13: a throttled sender and cancellation.

#[test]
fn a_throttled_pull_ends_promptly_when_cancelled_or_its_client_goes() {
    let fx = small_tree();
    let (mut agent, module) = agent_with(&fx, "");
    fs::write(module.join("big"), vec![1u8; 4 << 20]).unwrap();
    let listed = fs::symlink_metadata(module.join("big")).unwrap();
    let unloaded = legit_copy(&fx, &agent, "unloaded");
    let baseline = agent.usage();
    runtime().block_on(async {
        // One byte per second, asked for the 4 MiB file, then cancelled.
        let mut open = pull_open("big");
        open.options.as_mut().unwrap().bandwidth = 1;
        let mut peer = Peer::open(&agent, open).await.unwrap();
        peer.send(data_ready()).await;
        peer.read_manifest().await;
        peer.send(Kind::Need(pb::NeedBatch {
            needs: vec![need(1, "big", &listed)],
        }))
        .await;
        peer.send(Kind::NeedDone(pb::NeedDone {})).await;
        // The first burst arrives; then the sender waits.
        assert!(matches!(
            peer.next(Duration::from_secs(10))
                .await
                .and_then(|f| f.kind),
            Some(Kind::Data(_))
        ));
        let loaded = legit_copy_in_background(&fx, &agent, "loaded")
            .await
            .unwrap();
        eprintln!("row 13: legit copy {unloaded:?} unloaded, {loaded:?} beside the throttled pull");
        assert_not_starved(unloaded, loaded, SLACK);
        assert_eq!(
            active_sessions(&agent),
            1,
            "the throttled session is running"
        );
        let cancelled = Instant::now();
        peer.send(Kind::Abort(pb::Abort {
            message: "cancelled by the user".into(),
        }))
        .await;
        while peer.next(Duration::from_secs(10)).await.is_some() {}
        assert!(wait_for_no_sessions(&agent));
        let took = cancelled.elapsed();
        eprintln!("row 13: the session ended {took:?} after its cancel");
        assert!(
            took < Duration::from_secs(2),
            "the session ended {took:?} after its cancel"
        );
    });
    assert_bounded(
        &agent,
        baseline,
        64 << 20,
        "after a cancelled throttled pull",
    );

    // The same with `blit` itself, killed mid-transfer: the agent notices the client is
    // gone. Then one more left running while the agent is stopped.
    let out = fx.path("throttled");
    let mut client = blit_child(
        &fx,
        &[
            &"copy",
            &"--bwlimit",
            &"1",
            &agent.url("default", "big"),
            &out,
        ],
    );
    assert!(wait_until(Duration::from_secs(10), || active_sessions(
        &agent
    ) == 1));
    std::thread::sleep(Duration::from_millis(500));
    let _ = client.kill();
    let _ = client.wait();
    let gone = Instant::now();
    assert!(wait_for_no_sessions(&agent));
    assert!(
        gone.elapsed() < Duration::from_secs(3),
        "{:?}",
        gone.elapsed()
    );
    let mut running = blit_child(
        &fx,
        &[
            &"copy",
            &"--bwlimit",
            &"1",
            &agent.url("default", "big"),
            &out,
        ],
    );
    assert!(wait_until(Duration::from_secs(10), || active_sessions(
        &agent
    ) == 1));
    let stopping = Instant::now();
    assert!(agent.terminate().success());
    let took = stopping.elapsed();
    eprintln!("row 13: SIGTERM with a throttled session running took {took:?}");
    assert!(took < Duration::from_secs(3), "SIGTERM took {took:?}");
    let status = running.wait().unwrap();
    assert!(!status.success(), "the client is told its session ended");
    assert!(!out.exists(), "nothing incomplete under the final name");
}

// ---------------------------------------------------------------------------------------
// Row 16: one worker.

#[test]
fn one_worker_copies_a_two_hundred_directory_tree_both_ways() {
    let fx = Fixture::new();
    for d in 0..200 {
        fx.file(format!("d{d:03}/f"), format!("{d}").as_bytes());
    }
    fx.dir("d007/deeper/still");
    let (agent, module) = agent_with(&fx, "");
    for (from, to) in [
        (
            fx.src_contents(),
            PathBuf::from(agent.url("default", "pushed")),
        ),
        (
            PathBuf::from(agent.url("default", "pushed/")),
            fx.path("pulled"),
        ),
    ] {
        let started = Instant::now();
        let mut child = blit_child(&fx, &[&"copy", &"--workers", &"1", &from, &to]);
        let finished = wait_until(Duration::from_secs(60), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        eprintln!("row 16: {from:?} → {to:?} took {:?}", started.elapsed());
        if !finished {
            let _ = child.kill();
        }
        assert!(finished, "copy --workers 1 {from:?} → {to:?} hung");
        assert!(child.wait().unwrap().success());
    }
    assert_same_tree(&fx.src, &module.join("pushed"), FULL);
    assert_same_tree(&fx.src, &fx.path("pulled"), FULL);
}

// ---------------------------------------------------------------------------------------
// Fixtures.

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

fn make_fifo(path: &Path) {
    let parent = rustix::fs::CWD;
    rustix::fs::mknodat(
        parent,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .expect("mkfifo");
}

/// A fixture whose source is a small tree: the legitimate transfer of every test.
fn small_tree() -> Fixture {
    let fx = Fixture::new();
    for i in 0..50 {
        fx.file(format!("dir{}/file{i}", i % 5), &vec![b'x'; 1000 + i]);
    }
    fx
}

fn agent_module(fx: &Fixture) -> PathBuf {
    fx.path("module")
}

/// An agent serving `module` (as "default") with these `[limits]`, and /metrics.
fn agent_with(fx: &Fixture, limits: &str) -> (Agent, PathBuf) {
    let module = agent_module(fx);
    fs::create_dir_all(&module).unwrap();
    let config = fx.path("blitd.toml");
    fs::write(&config, format!("[limits]\n{limits}\n")).unwrap();
    let agent = Agent::start(&[
        &"--config",
        &config,
        &"--root",
        &module,
        &"--http-port",
        &"0",
    ]);
    (agent, module)
}

/// Copies the fixture's tree to `name` in the module; how long it took.
fn legit_copy(fx: &Fixture, agent: &Agent, name: &str) -> Duration {
    let started = Instant::now();
    ok(&blit(
        fx,
        &[&"copy", &fx.src_contents(), &agent.url("default", name)],
    ));
    started.elapsed()
}

/// [`legit_copy`] on a thread of its own.
fn legit_copy_in_background(
    fx: &Fixture,
    agent: &Agent,
    name: &str,
) -> tokio::task::JoinHandle<Duration> {
    let (src, url, state) = (
        fx.src_contents(),
        agent.url("default", name),
        fx.path("state"),
    );
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let o = Command::new(binary("blit"))
            .env("XDG_STATE_HOME", state)
            .env_remove("BLIT_TOKEN")
            .arg("copy")
            .arg(src)
            .arg(url)
            .stdin(Stdio::null())
            .output()
            .expect("blit runs");
        ok(&o);
        started.elapsed()
    })
}

/// `blit ARGS` running in the background.
fn blit_child(fx: &Fixture, args: &[&dyn AsRef<std::ffi::OsStr>]) -> std::process::Child {
    let mut c = Command::new(binary("blit"));
    c.env("XDG_STATE_HOME", fx.path("state"))
        .env_remove("BLIT_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for a in args {
        c.arg(a);
    }
    c.spawn().expect("blit starts")
}

/// The agent's `blit_agent_active_transfers`.
fn active_sessions(agent: &Agent) -> u64 {
    let port = agent.http_port.expect("started with --http-port");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix("blit_agent_active_transfers "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the active-transfers gauge")
}

fn wait_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

/// Whether every session has ended within a few seconds.
fn wait_for_no_sessions(agent: &Agent) -> bool {
    wait_until(Duration::from_secs(5), || active_sessions(agent) == 0)
}

/// The agent's use, `extra_rss` above `baseline` at most, and threads and descriptors
/// back near it (blocking threads linger idle for a while, so a margin).
fn assert_bounded(agent: &Agent, baseline: Usage, extra_rss: u64, what: &str) {
    let limit = Usage {
        rss_bytes: baseline.rss_bytes + extra_rss,
        threads: baseline.threads + 48,
        fds: baseline.fds + 16,
    };
    let settled = wait_until(Duration::from_secs(5), || {
        let now = agent.usage();
        now.threads <= limit.threads && now.fds <= limit.fds
    });
    let now = agent.usage();
    assert!(settled, "{what}: {now:?} against {baseline:?}");
    now.assert_within(limit, what);
}

/// An attack on an agent warmed by one legitimate copy: its use before, and the highest
/// use while the attack runs.
struct Attack {
    baseline: Usage,
    peak: Peak,
}

impl Attack {
    fn start(fx: &Fixture, agent: &Agent) -> Attack {
        legit_copy(fx, agent, "warm");
        let baseline = agent.usage();
        Attack {
            baseline,
            peak: Peak::watch(agent),
        }
    }

    /// Ends the watch and checks the agent came through: no session stays, its peak and
    /// its settled use stay within `extra_rss` of the baseline, and a legitimate copy
    /// works.
    fn end(self, fx: &Fixture, agent: &Agent, extra_rss: u64, what: &str) {
        let (baseline, peak) = (self.baseline, self.peak.stop());
        eprintln!(
            "{what}: baseline {baseline:?}, peak {peak:?}, now {:?}",
            agent.usage()
        );
        assert!(wait_for_no_sessions(agent));
        assert!(
            peak.rss_bytes < baseline.rss_bytes + extra_rss,
            "peak {peak:?} against {baseline:?}"
        );
        assert_bounded(agent, baseline, extra_rss, what);
        legit_copy(fx, agent, "after");
    }
}

/// The highest use seen while it runs.
struct Peak {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Usage>,
}

impl Peak {
    fn watch(agent: &Agent) -> Peak {
        let pid = agent.pid();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut peak = Usage::of(pid);
                while !stop.load(Ordering::Relaxed) {
                    let now = Usage::of(pid);
                    peak = Usage {
                        rss_bytes: peak.rss_bytes.max(now.rss_bytes),
                        threads: peak.threads.max(now.threads),
                        fds: peak.fds.max(now.fds),
                    };
                    std::thread::sleep(Duration::from_millis(20));
                }
                peak
            })
        };
        Peak { stop, thread }
    }

    fn stop(self) -> Usage {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}
