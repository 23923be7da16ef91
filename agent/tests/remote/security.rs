//! Bad input gets a clear error and the agent keeps serving: tokens, paths that try to
//! leave their module, read-only modules, garbage on the ports, version mismatches.

use std::fs;
use std::io::Write;
use std::time::Duration;

use blit_test_support::agent::Agent;
use blit_test_support::{self as support, Fixture};

use crate::*;

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
fn sigterm_stops_the_agent_cleanly() {
    let fx = Fixture::new();
    let module = fx.path("module");
    fs::create_dir(&module).unwrap();
    let mut agent = Agent::start(&[&"--root", &module]);
    let status = agent.terminate();
    assert!(status.success(), "blitd exits 0 on SIGTERM: {status}");
}

#[test]
fn a_protocol_version_mismatch_is_a_clear_error() {
    use blit_core::agent::CallHeaders;
    use blit_core::wire::pb;
    let fx = Fixture::new();
    let module = fx.path("module");
    fs::create_dir(&module).unwrap();
    let agent = Agent::start(&[&"--root", &module]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let conn = connect(&agent).await;
        let hello = |major, minor| {
            let creds = CallHeaders::with_version(None, major, minor).unwrap();
            let mut c = pb::admin_client::AdminClient::with_interceptor(conn.channel(), creds);
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
