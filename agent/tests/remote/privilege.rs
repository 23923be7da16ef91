//! What a root agent does on a client's behalf, and as whom (issue 11, rows 14 and 15):
//! device nodes, setuid bits, owners and system attributes only in modules that allow
//! them; a module's files read and written as its identity, never leaking to another
//! session; jobs that pull only from listed sources, refused without a connection and with
//! one text, and finished jobs that do not pile up.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use blit_agent::jobs::{SOURCE_REFUSED, SOURCE_UNREACHABLE};
use blit_core::wire::pb;
use blit_test_support::agent::{Agent, Usage};
use blit_test_support::{self as support, Fixture};
use rustix::fs::{CWD, FileType, Mode};

use crate::*;

/// The unprivileged identity modules act as here (`nobody` on most systems).
const NOBODY: u32 = 65534;

/// Skips (with a note) a test that needs root; true when it may run.
fn root_or_skip(what: &str) -> bool {
    let root = support::is_root();
    if !root {
        eprintln!("skipped: {what} needs the tests to run as root");
    }
    root
}

fn xattr_names(path: &Path) -> Vec<String> {
    let mut buf = vec![0u8; 4096];
    let n = rustix::fs::llistxattr(path, &mut buf[..]).unwrap_or(0);
    let mut names: Vec<String> = buf[..n]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    names.sort();
    names
}

fn mknod(path: &Path, kind: FileType, mode: u32, dev: u64) {
    rustix::fs::mknodat(CWD, path, kind, Mode::from_raw_mode(mode), dev).expect("mknod");
}

/// The things only root may create, in `fx.src`: a character device, a FIFO, a setuid-
/// and setgid-root file, a file owned by someone else, and a file with `user.*`,
/// `trusted.*` and `security.*` attributes. Returns whether the system attributes could
/// be set here.
fn privileged_tree(fx: &Fixture) -> bool {
    fx.file("plain", b"plain");
    mknod(
        &fx.src.join("null"),
        FileType::CharacterDevice,
        0o666,
        rustix::fs::makedev(1, 3),
    );
    mknod(&fx.src.join("fifo"), FileType::Fifo, 0o644, 0);
    let suid = fx.file("suid", b"#!/bin/sh\nid\n");
    support::set_mode(&suid, 0o6755);
    let owned = fx.file("owned", b"someone else's");
    std::os::unix::fs::chown(&owned, Some(1234), Some(1234)).unwrap();
    let attrs = fx.file("attrs", b"labelled");
    assert!(support::set_xattr(&attrs, "user.kept", b"u"));
    support::set_xattr(&attrs, "trusted.secret", b"t")
        && support::set_xattr(&attrs, "security.label", b"s")
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

fn owner(path: &Path) -> (u32, u32) {
    let m = fs::symlink_metadata(path).unwrap();
    (m.uid(), m.gid())
}

/// Every entry below `root` (itself included).
fn all_entries(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_owned()];
    let mut i = 0;
    while i < out.len() {
        if fs::symlink_metadata(&out[i]).unwrap().is_dir() {
            let mut children: Vec<PathBuf> = fs::read_dir(&out[i])
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            children.sort();
            out.extend(children);
        }
        i += 1;
    }
    out
}

/// A directory an identity may write: created here, given to it.
fn dir_owned_by(path: &Path, id: u32) -> PathBuf {
    fs::create_dir_all(path).unwrap();
    std::os::unix::fs::chown(path, Some(id), Some(id)).unwrap();
    path.to_owned()
}

/// Resident memory, threads and fds may grow this much over a test (the first sessions
/// warm pools and allocator arenas; a leak per session would pass it within a few).
fn bound(before: Usage) -> Usage {
    Usage {
        rss_bytes: before.rss_bytes + (64 << 20),
        threads: before.threads + 16,
        fds: before.fds + 8,
    }
}

#[test]
fn a_default_module_refuses_what_only_root_may_create_and_an_allowing_one_gets_it() {
    if !root_or_skip("creating device nodes and setuid-root files") {
        return;
    }
    let fx = Fixture::new();
    let system_xattrs = privileged_tree(&fx);
    if !system_xattrs {
        eprintln!("note: trusted.*/security.* attributes unsupported here; not checked");
    }
    let plain = fx.path("plain-module");
    let open = fx.path("open-module");
    fs::create_dir_all(&plain).unwrap();
    fs::create_dir_all(&open).unwrap();
    let agent = Agent::start(&[
        &"--module",
        &format!("plain={}", plain.display()),
        &"--module",
        &format!(
            "open={}:allow=devices,specials,setuid,owner,system-xattrs",
            open.display()
        ),
    ]);

    // The default: nothing privileged. Devices and FIFOs fail as entries, the rest lands
    // trimmed, and the run says which entries failed and why.
    let o = blit(
        &fx,
        &[&"copy", &"-X", &fx.src_contents(), &agent.url("plain", "t")],
    );
    // After the first session (which starts the pools), sessions must not grow anything.
    let before = agent.usage();
    fails(
        &o,
        1,
        "create null: device nodes are not allowed at this destination",
    );
    fails(
        &o,
        1,
        "create fifo: FIFOs and sockets are not allowed at this destination",
    );
    let t = plain.join("t");
    assert!(!t.join("null").exists() && !t.join("fifo").exists());
    assert_eq!(fs::read(t.join("plain")).unwrap(), b"plain");
    assert_eq!(
        mode(&t.join("suid")),
        0o755,
        "setuid and setgid bits dropped"
    );
    assert_eq!(fs::read(t.join("suid")).unwrap(), b"#!/bin/sh\nid\n");
    assert_eq!(
        owner(&t.join("owned")),
        (0, 0),
        "owned by the writer, not 1234"
    );
    assert_eq!(
        xattr_names(&t.join("attrs")),
        ["user.kept"],
        "only user.* attributes"
    );
    // Trimmed is what the module wants, so a second run finds the files up to date: only
    // the refused entries fail again.
    let again = blit(
        &fx,
        &[&"copy", &"-X", &fx.src_contents(), &agent.url("plain", "t")],
    );
    fails(&again, 1, "device nodes are not allowed");
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("copied 0 files") && !err.contains("metadata updates"),
        "{err}"
    );

    // A module that allows them gets everything as sent.
    let o = blit(
        &fx,
        &[&"copy", &"-X", &fx.src_contents(), &agent.url("open", "t")],
    );
    ok(&o);
    let t = open.join("t");
    let null = fs::symlink_metadata(t.join("null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    assert!(
        fs::symlink_metadata(t.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_eq!(mode(&t.join("suid")), 0o6755);
    assert_eq!(owner(&t.join("suid")), (0, 0));
    assert_eq!(owner(&t.join("owned")), (1234, 1234));
    let mut want = vec!["user.kept"];
    if system_xattrs {
        want = vec!["security.label", "trusted.secret", "user.kept"];
    }
    assert_eq!(xattr_names(&t.join("attrs")), want);

    // A pull from the allowing module of the setuid file keeps it (the client is not
    // limited by the module), a pull of the attributes from the default one carries only
    // user.* even if they were there.
    let pulled = fx.path("pulled");
    ok(&blit(
        &fx,
        &[&"copy", &"-X", &agent.url("open", "t/attrs"), &pulled],
    ));
    assert_eq!(xattr_names(&pulled), want);
    if system_xattrs {
        assert!(support::set_xattr(
            &plain.join("t/attrs"),
            "trusted.secret",
            b"t"
        ));
        let from_plain = fx.path("from-plain");
        ok(&blit(
            &fx,
            &[&"copy", &"-X", &agent.url("plain", "t/attrs"), &from_plain],
        ));
        assert_eq!(
            xattr_names(&from_plain),
            ["user.kept"],
            "a module without system-xattrs does not send trusted.*"
        );
    }
    let after = agent.usage();
    eprintln!("agent after the first push: {before:?}; after five more sessions: {after:?}");
    after.assert_within(bound(before), "after privileged pushes");
}

#[test]
fn a_module_identity_owns_what_it_writes_and_cannot_touch_what_it_may_not() {
    if !root_or_skip("acting as another user") {
        return;
    }
    let fx = Fixture::new();
    fx.file("a.txt", b"a");
    fx.file("sub/b.txt", b"bb");
    let suid = fx.file("sub/tool", b"#!/bin/sh\n");
    support::set_mode(&suid, 0o4755);
    let module = dir_owned_by(&fx.path("id-module"), NOBODY);
    // Root's, inside the module: the identity may enter and read, not write.
    fs::create_dir(module.join("locked")).unwrap();
    fs::write(module.join("locked/keep"), b"root's").unwrap();
    fs::write(module.join("secret"), b"root only").unwrap();
    support::set_mode(&module.join("secret"), 0o600);
    let agent = Agent::start(&[
        &"--module",
        &format!(
            "id={}:uid={NOBODY}:gid={NOBODY}:allow=setuid",
            module.display()
        ),
    ]);

    // A push (asking for owners, as blit does by default) writes everything as the
    // identity; allowed setuid bits stay, on a file that belongs to it.
    ok(&blit(
        &fx,
        &[&"copy", &fx.src_contents(), &agent.url("id", "pushed")],
    ));
    let before = agent.usage();
    for p in all_entries(&module.join("pushed")) {
        assert_eq!(owner(&p), (NOBODY, NOBODY), "{}", p.display());
    }
    assert_eq!(mode(&module.join("pushed/sub/tool")), 0o4755);

    // Where the identity may not write, the push fails cleanly and writes nothing.
    let o = blit(
        &fx,
        &[&"copy", &fx.src_contents(), &agent.url("id", "locked/new")],
    );
    fails(&o, 2, "Permission denied");
    assert!(!module.join("locked/new").exists());
    let o = blit(
        &fx,
        &[
            &"copy",
            &fx.file("c.txt", b"c"),
            &agent.url("id", "locked/"),
        ],
    );
    assert_ne!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!module.join("locked/c.txt").exists());
    // What it may not read, it cannot pull; what it may not delete, rm cannot remove.
    let o = blit(
        &fx,
        &[&"copy", &agent.url("id", "secret"), &fx.path("secret")],
    );
    fails(&o, 1, "Permission denied");
    assert!(!fx.path("secret").exists());
    let o = blit(&fx, &[&"rm", &"-r", &"-y", &agent.url("id", "locked")]);
    fails(&o, 2, "Permission denied");
    assert!(module.join("locked/keep").exists());
    // And what it wrote, it reads back.
    let back = fx.path("back");
    ok(&blit(&fx, &[&"copy", &agent.url("id", "pushed/"), &back]));
    assert_eq!(fs::read(back.join("sub/b.txt")).unwrap(), b"bb");
    let after = agent.usage();
    eprintln!("agent after the first push: {before:?}; after six more sessions: {after:?}");
    after.assert_within(bound(before), "after identity sessions");
}

#[test]
fn an_identity_never_leaks_into_another_session() {
    if !root_or_skip("acting as another user") {
        return;
    }
    let fx = Fixture::new();
    for i in 0..40 {
        fx.file(format!("d{}/f{i}", i % 4), format!("file {i}").as_bytes());
    }
    fx.file("big", &vec![3u8; 8 << 20]);
    let id_module = dir_owned_by(&fx.path("id-module"), NOBODY);
    let root_module = fx.path("root-module");
    fs::create_dir(&root_module).unwrap();
    // Readable by root only: a root session pulls it, an identity session cannot.
    fs::write(root_module.join("root-only"), b"r").unwrap();
    support::set_mode(&root_module.join("root-only"), 0o600);
    let agent = Agent::start(&[
        &"--module",
        &format!("id={}:uid={NOBODY}:gid={NOBODY}", id_module.display()),
        &"--module",
        &format!("root={}", root_module.display()),
    ]);
    let idle = agent.usage();
    // Sessions of both kinds at once, several rounds: the agent's shared threads (the
    // async workers, the blocking pool) serve both in turn.
    let mut warm = None;
    for round in 0..4 {
        std::thread::scope(|s| {
            let runs: Vec<_> = (0..6)
                .map(|i| {
                    let (fx, agent) = (&fx, &agent);
                    s.spawn(move || {
                        let module = if i % 2 == 0 { "id" } else { "root" };
                        let dest = format!("r{round}-{i}");
                        ok(&blit(
                            fx,
                            &[&"copy", &fx.src_contents(), &agent.url(module, &dest)],
                        ));
                        let pulled = fx.path(format!("pulled-{round}-{i}"));
                        let o = blit(fx, &[&"copy", &agent.url("root", "root-only"), &pulled]);
                        ok(&o);
                    })
                })
                .collect();
            for r in runs {
                r.join().unwrap();
            }
        });
        // The first rounds grow the pools and the allocator's arenas; later rounds must
        // not grow anything.
        if round == 1 {
            warm = Some(agent.usage());
        }
    }
    for p in all_entries(&id_module).into_iter().skip(1) {
        assert_eq!(owner(&p), (NOBODY, NOBODY), "{}", p.display());
    }
    for p in all_entries(&root_module).into_iter().skip(1) {
        assert_eq!(owner(&p), (0, 0), "{}", p.display());
    }
    let o = blit(
        &fx,
        &[&"copy", &agent.url("id", "r0-0/big"), &fx.path("big-back")],
    );
    ok(&o);
    let after = agent.usage();
    eprintln!("agent idle: {idle:?}, after round 2: {warm:?}, after round 4: {after:?}");
    // Memory and descriptors now; threads below, once the blocking pool's idle ones have
    // timed out: how many the pool holds right after the rounds depends on how the
    // sessions happened to overlap (a loaded machine overlaps them more), not on what they
    // left behind.
    let limit = Usage {
        threads: u64::MAX,
        ..bound(warm.unwrap())
    };
    after.assert_within(limit, "after 48 mixed sessions");
    // Every session's threads are gone once the blocking pool's idle ones time out (10 s):
    // no session left a pool or a receiver behind.
    let deadline = Instant::now() + Duration::from_secs(20);
    while agent.usage().threads > idle.threads + 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    let settled = agent.usage();
    eprintln!("agent settled: {settled:?}");
    assert!(
        settled.threads <= idle.threads + 4 && settled.fds <= idle.fds + 2,
        "idle {idle:?}, settled {settled:?}"
    );
}

/// A job pulling `src_path` from `address` into `dst_path`, with the caller's token.
fn start(key: &str, address: &str, src_path: &str, dst_path: &str) -> pb::StartTransferRequest {
    crate::jobs::start_request(key, address, "the-callers-token", src_path, dst_path)
}

/// Watches a job to its end.
async fn finish(c: &mut crate::jobs::Client, id: &str) -> pb::Job {
    let mut stream = c
        .watch_job(pb::WatchJobRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(j) = stream.message().await.unwrap() {
        last = Some(j);
    }
    last.expect("at least one report")
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn jobs_pull_only_from_listed_sources_and_never_dial_others() {
    let fx = Fixture::new();
    let src = fx.path("a");
    let dst = fx.path("b");
    support::write(&src.join("tree/f"), b"from a");
    fs::create_dir_all(&dst).unwrap();
    let a = Agent::start(&[&"--root", &src]);
    // Listed but unreachable: a closed port, and an open one that is not an agent.
    let (closed, not_an_agent) = (closed_port(), TcpListener::bind("127.0.0.1:0").unwrap());
    let not_an_agent_port = not_an_agent.local_addr().unwrap().port();
    let garbage = std::thread::spawn(move || {
        // Answers whatever comes with something that is not HTTP/2, then hangs up.
        let (mut conn, _) = not_an_agent.accept().unwrap();
        let _ = std::io::Write::write_all(&mut conn, b"HTTP/1.1 400 Bad Request\r\n\r\n");
    });
    let b = Agent::start(&[
        &"--root",
        &dst,
        &"--job-source",
        &format!("127.0.0.1:{}", a.port),
        &"--job-source",
        &format!("127.0.0.1:{closed}"),
        &"--job-source",
        &format!("127.0.0.1:{not_an_agent_port}"),
    ]);
    // An unlisted port that is open (and watched), and one that is closed.
    let watched = TcpListener::bind("127.0.0.1:0").unwrap();
    watched.set_nonblocking(true).unwrap();
    let open_port = watched.local_addr().unwrap().port();
    let unlisted_closed = closed_port();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = crate::jobs::client(&b).await;
        let before = b.usage();
        let mut answers = Vec::new();
        let started = Instant::now();
        for (i, address) in [
            format!("127.0.0.1:{open_port}"),
            format!("127.0.0.1:{unlisted_closed}"),
            format!("localhost:{}", a.port), // a name, even for a listed address
            format!("[::1]:{}", a.port),
            format!("127.0.0.2:{}", a.port),
            format!("127.0.0.1:{}", a.port + 1),
        ]
        .iter()
        .enumerate()
        {
            let refused = c
                .start_transfer(start(&format!("no-{i}"), address, "tree/", "x"))
                .await
                .expect_err(address);
            answers.push((refused.code(), refused.message().to_owned()));
        }
        for _ in 0..200 {
            let _ = c
                .start_transfer(start(
                    "many",
                    &format!("127.0.0.1:{open_port}"),
                    "tree/",
                    "x",
                ))
                .await;
        }
        eprintln!("206 refused starts in {:?}", started.elapsed());
        assert!(
            answers
                .iter()
                .all(|a| *a == (tonic::Code::PermissionDenied, SOURCE_REFUSED.to_owned())),
            "one answer for every unlisted address, open or closed: {answers:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            watched.accept().map(|_| ()).unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock,
            "nothing dialled the unlisted open port (so no token or certificate went there)"
        );
        let jobs = c
            .list_jobs(pb::ListJobsRequest {})
            .await
            .unwrap()
            .into_inner()
            .jobs;
        assert!(jobs.is_empty(), "refused starts leave no job: {jobs:?}");
        let after = b.usage();
        eprintln!("agent before refused starts: {before:?}; after 206: {after:?}");
        after.assert_within(bound(before), "after 206 refused starts");

        // Listed but unreachable: one message, whether refused or answered by a stranger.
        for (key, port) in [("closed", closed), ("stranger", not_an_agent_port)] {
            let job = c
                .start_transfer(start(key, &format!("127.0.0.1:{port}"), "tree/", key))
                .await
                .unwrap()
                .into_inner();
            let end = finish(&mut c, &job.id).await;
            assert_eq!(end.stage, pb::JobStage::Failed as i32, "{key}");
            assert_eq!(end.message, SOURCE_UNREACHABLE, "{key}");
        }

        // A listed agent works.
        let job = c
            .start_transfer(start(
                "good",
                &format!("127.0.0.1:{}", a.port),
                "tree/",
                "copy",
            ))
            .await
            .unwrap()
            .into_inner();
        let end = finish(&mut c, &job.id).await;
        assert_eq!(end.stage, pb::JobStage::Succeeded as i32, "{}", end.message);
    });
    garbage.join().unwrap();
    assert_eq!(fs::read(dst.join("copy/f")).unwrap(), b"from a");
    // The client's route says why, too.
    let other = fx.path("c");
    fs::create_dir(&other).unwrap();
    let c = Agent::start(&[&"--root", &other]);
    let o = blit(
        &fx,
        &[&"copy", &a.url("default", "tree/"), &c.url("default", "x")],
    );
    fails(&o, 2, "[jobs] sources");
}

#[test]
fn finished_jobs_are_pruned_by_count_and_by_age() {
    let fx = Fixture::new();
    let src = fx.path("a");
    support::write(&src.join("tree/f"), b"f");
    let a = Agent::start(&[&"--root", &src]);
    let config = |name: &str, settings: &str| {
        let path = fx.path(format!("{name}.toml"));
        let text = format!("[jobs]\nsources = [\"127.0.0.1:{}\"]\n{settings}\n", a.port);
        fs::write(&path, text).unwrap();
        let dst = fx.path(name);
        fs::create_dir(&dst).unwrap();
        Agent::start(&[&"--config", &path, &"--root", &dst])
    };
    let by_count = config("by-count", "keep_finished = 3");
    let by_age = config("by-age", "keep_finished_secs = 2");
    let source = format!("127.0.0.1:{}", a.port);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = crate::jobs::client(&by_count).await;
        let mut ids = Vec::new();
        let mut after_first = None;
        for i in 0..7 {
            let key = format!("job-{i}");
            let job = c
                .start_transfer(start(&key, &source, "tree/", &key))
                .await
                .unwrap()
                .into_inner();
            let end = finish(&mut c, &job.id).await;
            assert_eq!(end.stage, pb::JobStage::Succeeded as i32, "{}", end.message);
            ids.push(job.id);
            after_first.get_or_insert_with(|| by_count.usage());
        }
        let listed = c
            .list_jobs(pb::ListJobsRequest {})
            .await
            .unwrap()
            .into_inner()
            .jobs;
        let keys: Vec<&str> = listed.iter().map(|j| j.idempotency_key.as_str()).collect();
        assert_eq!(
            keys,
            ["job-4", "job-5", "job-6"],
            "the newest 3 finished jobs kept"
        );
        // A pruned job is gone, and its key with it: the same key starts a new job.
        assert_eq!(
            c.watch_job(pb::WatchJobRequest { id: ids[0].clone() })
                .await
                .unwrap_err()
                .code(),
            tonic::Code::NotFound
        );
        let again = c
            .start_transfer(start("job-0", &source, "tree/", "job-0"))
            .await
            .unwrap()
            .into_inner();
        assert_ne!(again.id, ids[0]);
        finish(&mut c, &again.id).await;
        let after = by_count.usage();
        eprintln!("agent after 1 job: {after_first:?}; after 8: {after:?}");
        after.assert_within(bound(after_first.unwrap()), "after 8 jobs");

        let mut c = crate::jobs::client(&by_age).await;
        let job = c
            .start_transfer(start("aged", &source, "tree/", "aged"))
            .await
            .unwrap()
            .into_inner();
        finish(&mut c, &job.id).await;
        let listed = c
            .list_jobs(pb::ListJobsRequest {})
            .await
            .unwrap()
            .into_inner()
            .jobs;
        assert_eq!(listed.len(), 1, "kept while young");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let listed = c
            .list_jobs(pb::ListJobsRequest {})
            .await
            .unwrap()
            .into_inner()
            .jobs;
        assert!(
            listed.is_empty(),
            "gone once older than keep_finished_secs: {listed:?}"
        );
    });
}
