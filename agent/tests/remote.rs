//! Remote transfers with real `blitd` processes on `127.0.0.1:0` and the real `blit`
//! binary: the same fixtures through every route must give identical trees, and bad
//! input (tokens, paths, frames, versions) gets a clear error while the agent keeps
//! serving.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use blit_test_support::agent::{Agent, binary};
use blit_test_support::{self as support, Fixture, assert_same_tree};

const FULL: support::Compare = support::Compare {
    xattrs: false,
    hard_links: true,
    owner: false,
};

fn blit(fx: &Fixture, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = Command::new(binary("blit"));
    c.env("XDG_STATE_HOME", fx.path("state"))
        .stdin(Stdio::null());
    c.env_remove("BLIT_TOKEN");
    for a in args {
        c.arg(a);
    }
    c.output().expect("blit runs")
}

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "blit failed ({}): {err}", o.status);
    err
}

fn fails(o: &Output, code: i32, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

/// A tree with everything the engine must carry: odd names, links of every kind, empty
/// directories, hard links, a sparse file, a file large enough to be cut into chunks
/// across streams, an empty file, modes and nanosecond mtimes.
fn rich_tree(fx: &Fixture) {
    fx.file("plain.txt", b"hello");
    fx.file("empty", b"");
    fx.file(support::bytes_path(b"odd-\xff\xfe-name"), b"non-utf8");
    fx.file("dir with spaces/\nnewline", b"nl");
    fx.file("deep/a/b/c/d.txt", b"deep");
    fx.dir("empty-dir/nested-empty");
    fx.symlink("rel-link", "plain.txt");
    fx.symlink("abs-link", "/etc/hostname");
    fx.symlink("dangling", "does/not/exist");
    fx.symlink("dir-link", "deep/a");
    let first = fx.file("links/first", b"linked content");
    fs::hard_link(&first, fx.src.join("links/second")).unwrap();
    fs::hard_link(&first, fx.src.join("third")).unwrap();
    let big: Vec<u8> = (0..40u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    fx.file("big.bin", &big);
    let sparse = fx.src.join("sparse.img");
    let f = fs::File::create(&sparse).unwrap();
    f.set_len(256 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"start", 0).unwrap();
    f.write_all_at(b"middle", 100 << 20).unwrap();
    drop(f);
    let exec = fx.file("bin/tool", b"#!/bin/sh\n");
    support::set_mode(&exec, 0o750);
    support::set_mode(&fx.src.join("deep/a"), 0o700);
    support::set_mtime(&fx.src.join("plain.txt"), 1_600_000_000, 123_456_789);
    support::set_mtime(&fx.src.join("deep/a/b"), 1_500_000_000, 987_654_321);
}

fn assert_sparse(path: &Path) {
    let allocated = support::allocated_bytes(path);
    assert!(
        allocated < 8 << 20,
        "{} allocates {allocated} bytes",
        path.display()
    );
}

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

    // local → agent.
    let err = ok(&blit(
        &fx,
        &[
            &"copy",
            &"-H",
            &fx.src_contents(),
            &agent.url("m", "pushed"),
        ],
    ));
    assert!(err.contains("tcp stream"), "data plane used: {err}");
    assert_same_tree(&fx.src, &module.join("pushed"), FULL);
    assert_sparse(&module.join("pushed/sparse.img"));

    // agent → local (from what was pushed).
    let pulled = fx.path("pulled");
    ok(&blit(
        &fx,
        &[&"copy", &"-H", &agent.url("m", "pushed/"), &pulled],
    ));
    assert_same_tree(&fx.src, &pulled, FULL);
    assert_sparse(&pulled.join("sparse.img"));

    // agent → agent: a second agent pulls from the first; the client only watches.
    let other = fx.path("other");
    fs::create_dir(&other).unwrap();
    let agent_b = Agent::start(&[&"--module", &format!("n={}", other.display())]);
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
fn tokens_are_required_when_configured() {
    let fx = Fixture::new();
    fx.file("f", b"x");
    let module = fx.path("module");
    fs::create_dir(&module).unwrap();
    let agent = Agent::start(&[&"--root", &module, &"--token", &"s3cret"]);
    let none = blit(
        &fx,
        &[&"copy", &fx.src_contents(), &agent.url("default", "d")],
    );
    fails(&none, 2, "requires a token");
    let wrong = blit(
        &fx,
        &[
            &"copy",
            &"--token",
            &"nope",
            &fx.src_contents(),
            &agent.url("default", "d"),
        ],
    );
    fails(&wrong, 2, "not valid");
    let ls = blit(&fx, &[&"ls", &agent.url("default", "")]);
    fails(&ls, 2, "Unauthenticated");
    assert!(
        !module.join("d").exists(),
        "nothing written without a valid token"
    );
    ok(&blit(
        &fx,
        &[
            &"copy",
            &"--token",
            &"s3cret",
            &fx.src_contents(),
            &agent.url("default", "d"),
        ],
    ));
    assert!(module.join("d/f").exists());
}

#[test]
fn paths_cannot_escape_their_module() {
    let fx = Fixture::new();
    fx.file("f", b"x");
    let module = fx.path("module");
    fs::create_dir_all(module.join("inside")).unwrap();
    fs::write(fx.path("secret"), b"outside the module").unwrap();
    std::os::unix::fs::symlink(fx.path(""), module.join("out")).unwrap();
    std::os::unix::fs::symlink("/", module.join("root")).unwrap();
    std::os::unix::fs::symlink("inside", module.join("in")).unwrap();
    let agent = Agent::start(&[&"--root", &module]);
    let escapes = [
        "../secret",
        "inside/../../secret",
        "out/secret",
        "root/etc/hostname",
        "out/",
    ];
    for bad in escapes {
        let pulled = fx.path("pulled");
        let o = blit(&fx, &[&"copy", &agent.url("default", bad), &pulled]);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{bad}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!pulled.join("secret").exists(), "{bad} leaked the secret");
        let o = blit(
            &fx,
            &[&"copy", &fx.src_contents(), &agent.url("default", bad)],
        );
        assert_eq!(
            o.status.code(),
            Some(2),
            "push to {bad}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let o = blit(&fx, &[&"ls", &agent.url("default", bad)]);
        assert_eq!(o.status.code(), Some(2), "ls {bad}");
    }
    // Non-UTF-8 bytes and a NUL in the path are refused or stay inside.
    let o = blit(
        &fx,
        &[
            &"ls",
            &support::bytes_path(format!("127.0.0.1:{}:/default/\u{ff}..", agent.port).as_bytes()),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(fs::read(fx.path("secret")).unwrap(), b"outside the module");
    assert!(!module.parent().unwrap().join("f").exists());
    // A symlink that stays inside works.
    ok(&blit(
        &fx,
        &[&"copy", &fx.src_contents(), &agent.url("default", "in/")],
    ));
    assert!(module.join("inside/f").exists());
}

#[test]
fn read_only_modules_refuse_writes_and_deletes() {
    let fx = Fixture::new();
    fx.file("f", b"x");
    let module = fx.path("module");
    fs::create_dir(&module).unwrap();
    fs::write(module.join("existing"), b"e").unwrap();
    let agent = Agent::start(&[&"--module", &format!("ro={}:ro", module.display())]);
    let o = blit(&fx, &[&"copy", &fx.src_contents(), &agent.url("ro", "")]);
    fails(&o, 2, "read-only");
    let o = blit(&fx, &[&"rm", &"--yes", &agent.url("ro", "existing")]);
    fails(&o, 2, "read-only");
    assert!(module.join("existing").exists());
    let out = fx.path("out");
    ok(&blit(&fx, &[&"copy", &agent.url("ro", ""), &out]));
    assert!(
        out.join("existing").exists(),
        "reading a read-only module works"
    );
}

#[test]
fn the_agent_survives_garbage_and_keeps_serving() {
    let fx = Fixture::new();
    fx.file("f", b"x");
    let module = fx.path("module");
    fs::create_dir(&module).unwrap();
    let mut agent = Agent::start(&[&"--root", &module]);
    // Garbage on the data port, on the control port, and a data connection with a wrong token.
    for port in [agent.data_port, agent.port] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _ = s.write_all(&[0xffu8; 4096]);
    }
    let mut s = std::net::TcpStream::connect(("127.0.0.1", agent.data_port)).unwrap();
    let _ = s.write_all(b"BLITDAT1");
    let _ = s.write_all(&[7u8; 32]);
    drop(s);
    std::thread::sleep(Duration::from_millis(200));
    assert!(agent.alive());
    ok(&blit(
        &fx,
        &[&"copy", &fx.src_contents(), &agent.url("default", "d")],
    ));
    assert!(module.join("d/f").exists());
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
        if let Some(p) = found {
            if fs::metadata(&p).map(|m| m.len()).unwrap_or(0) > 0 {
                break p;
            }
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
fn sigterm_stops_the_agent_cleanly() {
    let fx = Fixture::new();
    let module = fx.path("module");
    fs::create_dir(&module).unwrap();
    let mut agent = Agent::start(&[&"--root", &module]);
    let status = agent.terminate();
    assert!(status.success(), "blitd exits 0 on SIGTERM: {status}");
}

#[test]
fn admin_commands_against_an_agent() {
    let fx = Fixture::new();
    let module = fx.path("module");
    fs::create_dir_all(module.join("logs/old")).unwrap();
    fs::write(module.join("logs/a.log"), b"aaaa").unwrap();
    fs::write(module.join("logs/old/b.log"), b"bb").unwrap();
    fs::write(module.join("readme"), b"r").unwrap();
    fs::set_permissions(module.join("readme"), fs::Permissions::from_mode(0o644)).unwrap();
    let agent = Agent::start(&[
        &"--module",
        &format!("data={}", module.display()),
        &"--module",
        &format!("ro={}:ro", module.display()),
    ]);
    let host = format!("127.0.0.1:{}", agent.port);
    let o = blit(&fx, &[&"list", &host]);
    let listed = String::from_utf8_lossy(&o.stdout).into_owned();
    ok(&o);
    assert!(
        listed.contains("data") && listed.contains("ro "),
        "{listed}"
    );

    let o = blit(&fx, &[&"ls", &agent.url("data", "")]);
    ok(&o);
    let ls = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        ls.contains("logs") && ls.contains("readme") && ls.contains("-0644"),
        "{ls}"
    );

    let o = blit(&fx, &[&"find", &agent.url("data", ""), &"*.log"]);
    ok(&o);
    let found = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        found.lines().collect::<Vec<_>>(),
        ["logs/a.log", "logs/old/b.log"],
        "{found}"
    );

    let o = blit(&fx, &[&"du", &"-d", &"1", &agent.url("data", "")]);
    ok(&o);
    let du = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(du.contains("logs") && du.lines().count() == 2, "{du}");

    ok(&blit(&fx, &[&"df", &agent.url("data", "")]));

    let o = blit(&fx, &[&"rm", &agent.url("data", "readme")]);
    fails(&o, 2, "pass --yes");
    assert!(module.join("readme").exists());
    let o = blit(&fx, &[&"rm", &"--yes", &agent.url("data", "logs")]);
    fails(&o, 2, "recursively");
    ok(&blit(
        &fx,
        &[&"rm", &"--yes", &"-r", &agent.url("data", "logs")],
    ));
    assert!(!module.join("logs").exists());
    let o = blit(&fx, &[&"rm", &"--yes", &"-r", &agent.url("data", "")]);
    fails(&o, 2, "module root");
}

#[test]
fn a_protocol_version_mismatch_is_a_clear_error() {
    use blit_core::session::client::{Credentials, Remote};
    use blit_core::wire::pb;
    let fx = Fixture::new();
    let module = fx.path("module");
    fs::create_dir(&module).unwrap();
    let agent = Agent::start(&[&"--root", &module]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let remote = Remote {
            host: "127.0.0.1".into(),
            port: agent.port,
            token: None,
        };
        let conn = remote.connect().await.unwrap();
        let hello = |major, minor| {
            let creds = Credentials::with_version(None, major, minor).unwrap();
            let mut c =
                pb::admin_client::AdminClient::with_interceptor(conn.channel.clone(), creds);
            async move {
                c.hello(pb::HelloRequest {
                    protocol_major: major,
                    protocol_minor: minor,
                })
                .await
            }
        };
        let newer_minor = hello(pb::PROTOCOL_MAJOR, pb::PROTOCOL_MINOR + 7)
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            newer_minor.protocol_major,
            pb::PROTOCOL_MAJOR,
            "a newer minor version works"
        );
        let err = hello(pb::PROTOCOL_MAJOR + 1, 0).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        assert!(err.message().contains("not supported"), "{}", err.message());
    });
}

mod jobs {
    use super::*;
    use blit_core::session::client::{Credentials, Remote};
    use blit_core::wire::pb;

    type Client = pb::jobs_client::JobsClient<
        tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Credentials>,
    >;

    async fn client(agent: &Agent) -> Client {
        let conn = Remote {
            host: "127.0.0.1".into(),
            port: agent.port,
            token: None,
        }
        .connect()
        .await
        .unwrap();
        pb::jobs_client::JobsClient::with_interceptor(conn.channel, conn.credentials)
    }

    fn request(
        key: &str,
        source: &Agent,
        src_path: &str,
        dst_path: &str,
    ) -> pb::StartTransferRequest {
        let spec = blit_core::TransferSpec::new(
            blit_core::Endpoint::Local("a".into()),
            blit_core::Endpoint::Local("b".into()),
        );
        pb::StartTransferRequest {
            idempotency_key: key.into(),
            source: Some(pb::RemoteSource {
                address: format!("127.0.0.1:{}", source.port),
                location: Some(pb::Location {
                    module: "default".into(),
                    path: src_path.as_bytes().to_vec(),
                }),
                token: String::new(),
            }),
            destination: Some(pb::Location {
                module: "default".into(),
                path: dst_path.as_bytes().to_vec(),
            }),
            options: Some(blit_core::wire::options_to_wire(&spec)),
            streams: 1,
            force_grpc: false,
        }
    }

    /// A source agent serving one large file of real data, and an empty destination agent.
    fn two_agents(fx: &Fixture, size_mib: usize) -> (Agent, Agent, PathBuf) {
        let src = fx.path("a");
        let dst = fx.path("b");
        fs::create_dir_all(src.join("tree")).unwrap();
        fs::create_dir_all(&dst).unwrap();
        let mut w = std::io::BufWriter::new(fs::File::create(src.join("tree/big")).unwrap());
        let chunk = vec![0xa5u8; 1 << 20];
        for _ in 0..size_mib {
            w.write_all(&chunk).unwrap();
        }
        drop(w);
        fs::write(src.join("tree/small"), b"s").unwrap();
        (
            Agent::start(&[&"--root", &src]),
            Agent::start(&[&"--root", &dst]),
            dst,
        )
    }

    #[test]
    fn the_same_key_gives_one_job_and_progress_is_monotonic() {
        let fx = Fixture::new();
        let (a, b, dst) = two_agents(&fx, 256);
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let mut c = client(&b).await;
            let first = c
                .start_transfer(request("key-1", &a, "tree/", "copy"))
                .await
                .unwrap()
                .into_inner();
            let again = c
                .start_transfer(request("key-1", &a, "tree/", "copy"))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(first.id, again.id, "a retried start returns the same job");
            let mut stream = c
                .watch_job(pb::WatchJobRequest {
                    id: first.id.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            let mut seen = Vec::new();
            while let Some(j) = stream.message().await.unwrap() {
                seen.push(j);
            }
            let bytes: Vec<u64> = seen.iter().map(|j| j.bytes_done).collect();
            assert!(
                bytes.windows(2).all(|w| w[0] <= w[1]),
                "monotonic: {bytes:?}"
            );
            let last = seen.last().unwrap();
            assert_eq!(
                last.stage,
                pb::JobStage::Succeeded as i32,
                "{}",
                last.message
            );
            assert_eq!(last.bytes_done, (256 << 20) + 1);
            let listed = c
                .list_jobs(pb::ListJobsRequest {})
                .await
                .unwrap()
                .into_inner()
                .jobs;
            assert_eq!(listed.len(), 1, "one job for two starts");
        });
        assert_eq!(fs::metadata(dst.join("copy/big")).unwrap().len(), 256 << 20);
    }

    #[test]
    fn cancel_stops_a_job_cleanly() {
        let fx = Fixture::new();
        let (a, b, dst) = two_agents(&fx, 2048);
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let mut c = client(&b).await;
            let job = c
                .start_transfer(request("k", &a, "tree/", "copy"))
                .await
                .unwrap()
                .into_inner();
            // Wait until bytes are flowing, then cancel.
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let jobs = c
                    .list_jobs(pb::ListJobsRequest {})
                    .await
                    .unwrap()
                    .into_inner()
                    .jobs;
                if jobs[0].bytes_done > 0 {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the job never started moving bytes"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let cancelled = c
                .cancel_job(pb::CancelJobRequest { id: job.id.clone() })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(
                cancelled.stage,
                pb::JobStage::Cancelled as i32,
                "{}",
                cancelled.message
            );
        });
        assert!(
            !dst.join("copy/big").exists(),
            "nothing incomplete under its final name"
        );
        // Both agents keep serving.
        let out = fx.path("after");
        ok(&blit(
            &fx,
            &[&"copy", &a.url("default", "tree/small"), &out],
        ));
        ok(&blit(&fx, &[&"ls", &b.url("default", "")]));
    }
}

/// A small tree to move, and a reference copy of it to compare the result with.
fn movable_tree(fx: &Fixture, at: &Path) -> PathBuf {
    for (rel, content) in [
        ("a.txt", &b"a"[..]),
        ("sub/b.txt", b"bb"),
        ("sub/deeper/c", b"ccc"),
    ] {
        support::write(&at.join(rel), content);
    }
    fs::create_dir_all(at.join("empty")).unwrap();
    std::os::unix::fs::symlink("a.txt", at.join("link")).unwrap();
    let reference = fx.path(format!(
        "reference-{}",
        at.file_name().unwrap().to_string_lossy()
    ));
    ok(&blit(fx, &[&"copy", &support::with_slash(at), &reference]));
    reference
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
    let agent_b = Agent::start(&[&"--root", &other]);
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
fn move_from_a_read_only_module_is_refused() {
    let fx = Fixture::new();
    let module = fx.path("module");
    fs::create_dir(&module).unwrap();
    fs::write(module.join("f"), b"x").unwrap();
    let agent = Agent::start(&[&"--module", &format!("ro={}:ro", module.display())]);
    let o = blit(
        &fx,
        &[&"move", &"--yes", &agent.url("ro", "f"), &fx.path("out")],
    );
    fails(&o, 2, "read-only");
    assert!(module.join("f").exists());
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
fn remote_paths_complete_in_the_shell() {
    let fx = Fixture::new();
    let module = fx.path("module");
    fs::create_dir_all(module.join("logs/old")).unwrap();
    fs::write(module.join("logs/a.log"), b"a").unwrap();
    fs::write(module.join("lone"), b"l").unwrap();
    let agent = Agent::start(&[&"--module", &format!("data={}", module.display())]);
    let host = format!("127.0.0.1:{}", agent.port);
    let complete = |word: &str| {
        let o = blit(&fx, &[&"complete-remote", &word]);
        ok(&o);
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(complete(&format!("{host}:/da")), [format!("{host}:/data/")]);
    assert_eq!(
        complete(&format!("{host}:/data/lo")),
        [format!("{host}:/data/logs/"), format!("{host}:/data/lone")]
    );
    assert_eq!(
        complete(&format!("{host}:/data/logs/")),
        [
            format!("{host}:/data/logs/a.log"),
            format!("{host}:/data/logs/old/")
        ]
    );
    assert_eq!(
        complete(&format!("blit://{host}/data/logs/o")),
        [format!("blit://{host}/data/logs/old/")]
    );
    assert!(
        complete(&format!("{host}:/data/../")).is_empty(),
        "no escape, and no noise"
    );

    // The bash script asks blit for them (readline splits words at ':').
    let script = blit(&fx, &[&"completions", &"bash"]);
    ok(&script);
    let script_path = fx.path("blit.bash");
    fs::write(&script_path, &script.stdout).unwrap();
    let bin_dir = binary("blit").parent().unwrap().to_owned();
    let line = format!("blit copy {host}:/data/lo");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}; COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}; COMP_WORDS=(blit copy x); COMP_CWORD=2; _blit_remote; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script_path.display()
        ))
        .env("PATH", format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default()))
        .output()
        .unwrap();
    let replies = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        replies.lines().collect::<Vec<_>>(),
        ["/data/logs/", "/data/lone"],
        "{replies} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two network namespaces joined by a veth pair, removed when dropped.
struct Netns {
    names: [String; 2],
    addrs: [String; 2],
}

impl Netns {
    /// `None` (with the reason printed) when this cannot run here.
    fn create() -> Option<Netns> {
        if !support::is_root() {
            eprintln!("skipped: network namespaces need root");
            return None;
        }
        let id = std::process::id() % 200 + 20;
        let names = [format!("blit-a-{id}"), format!("blit-b-{id}")];
        let addrs = [format!("10.231.{id}.1"), format!("10.231.{id}.2")];
        let ip = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        let (a, b) = (&names[0], &names[1]);
        let (va, vb) = (format!("vba{id}"), format!("vbb{id}"));
        let steps: Vec<Vec<&str>> = vec![
            vec!["netns", "add", a],
            vec!["netns", "add", b],
            vec!["link", "add", &va, "type", "veth", "peer", "name", &vb],
            vec!["link", "set", &va, "netns", a],
            vec!["link", "set", &vb, "netns", b],
        ];
        let ns = Netns {
            names: names.clone(),
            addrs: addrs.clone(),
        };
        if !steps.iter().all(|s| ip(s)) {
            eprintln!("skipped: could not create network namespaces (no `ip`, or not permitted)");
            return None;
        }
        let a_cidr = format!("{}/24", addrs[0]);
        let b_cidr = format!("{}/24", addrs[1]);
        let inside: Vec<Vec<&str>> = vec![
            vec!["netns", "exec", a, "ip", "addr", "add", &a_cidr, "dev", &va],
            vec!["netns", "exec", b, "ip", "addr", "add", &b_cidr, "dev", &vb],
            vec!["netns", "exec", a, "ip", "link", "set", &va, "up"],
            vec!["netns", "exec", b, "ip", "link", "set", &vb, "up"],
            vec!["netns", "exec", a, "ip", "link", "set", "lo", "up"],
            vec!["netns", "exec", b, "ip", "link", "set", "lo", "up"],
        ];
        if !inside.iter().all(|s| ip(s)) {
            eprintln!("skipped: could not configure the namespaces");
            return None;
        }
        Some(ns)
    }

    fn exec(&self, i: usize) -> [&str; 4] {
        ["ip", "netns", "exec", &self.names[i]]
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "delete", n]).status();
        }
    }
}

#[test]
fn agents_in_separate_network_namespaces() {
    let Some(ns) = Netns::create() else {
        return;
    };
    let fx = Fixture::new();
    rich_tree(&fx);
    let (mod_a, mod_b) = (fx.path("a"), fx.path("b"));
    fs::create_dir_all(&mod_a).unwrap();
    fs::create_dir_all(&mod_b).unwrap();
    let a = Agent::start_with(&ns.exec(0), &[&"--bind", &ns.addrs[0], &"--root", &mod_a]);
    let b = Agent::start_with(&ns.exec(1), &[&"--bind", &ns.addrs[1], &"--root", &mod_b]);
    let in_b = |args: &[&dyn AsRef<std::ffi::OsStr>]| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &ns.names[1]]).arg(binary("blit"));
        c.env("XDG_STATE_HOME", fx.path("state"))
            .stdin(Stdio::null());
        for a in args {
            c.arg(a);
        }
        c.output().unwrap()
    };
    // A client in namespace B pushes across the veth to the agent in namespace A…
    let url_a = |p: &str| format!("{}:{}:/default/{p}", ns.addrs[0], a.port);
    let url_b = |p: &str| format!("{}:{}:/default/{p}", ns.addrs[1], b.port);
    let err = ok(&in_b(&[
        &"copy",
        &"-H",
        &fx.src_contents(),
        &url_a("pushed"),
    ]));
    assert!(err.contains("tcp stream"), "{err}");
    assert_same_tree(&fx.src, &mod_a.join("pushed"), FULL);
    // …and agent B pulls from agent A on the client's behalf.
    ok(&in_b(&[
        &"copy",
        &"-H",
        &url_a("pushed/"),
        &url_b("copied"),
    ]));
    assert_same_tree(&fx.src, &mod_b.join("copied"), FULL);
    // The loopback-bound default would not be reachable from the other namespace.
    let o = in_b(&[&"ls", &format!("127.0.0.1:{}:/default/", a.port)]);
    assert_eq!(o.status.code(), Some(2));
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
