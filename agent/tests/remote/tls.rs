//! TLS on both planes: the same trees as plain TCP, a wrong CA or a missing client
//! certificate is refused with a clear error and nothing written, and a plain client or a
//! plain data connection gets nowhere while the agent keeps serving.

use std::fs;
use std::io::{Read, Write};
use std::time::Duration;

use blit_test_support::agent::Agent;
use blit_test_support::tls::Pki;
use blit_test_support::{Fixture, assert_same_tree};

use crate::*;

/// An agent serving TLS with the test PKI's agent certificate, plus `args`.
fn tls_agent(pki: &Pki, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Agent {
    let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> =
        vec![&"--tls-cert", &pki.agent_cert, &"--tls-key", &pki.agent_key];
    all.extend_from_slice(args);
    Agent::start(&all)
}

#[test]
fn tls_carries_every_route_and_refuses_strangers() {
    let fx = Fixture::new();
    rich_tree(&fx);
    let pki = Pki::new(&fx.path("pki"));
    let module = fx.path("module");
    fs::create_dir(&module).unwrap();
    let agent = tls_agent(&pki, &[&"--module", &format!("m={}", module.display())]);

    // local → agent and back, encrypted on both planes.
    let err = ok(&blit(
        &fx,
        &[
            &"copy",
            &"-H",
            &"--tls-ca",
            &pki.ca,
            &fx.src_contents(),
            &agent.url("m", "pushed"),
        ],
    ));
    assert!(err.contains("tls stream"), "data plane used: {err}");
    assert_same_tree(&fx.src, &module.join("pushed"), FULL);
    let pulled = fx.path("pulled");
    let err = ok(&blit(
        &fx,
        &[
            &"copy",
            &"-H",
            &"--tls-ca",
            &pki.ca,
            &agent.url("m", "pushed/"),
            &pulled,
        ],
    ));
    assert!(err.contains("tls stream"), "data plane used: {err}");
    assert_same_tree(&fx.src, &pulled, FULL);

    // A CA that did not sign the agent's certificate: refused, nothing written.
    let wrong = blit(
        &fx,
        &[
            &"copy",
            &"--tls-ca",
            &pki.other_ca,
            &fx.src_contents(),
            &agent.url("m", "wrong-ca"),
        ],
    );
    fails(&wrong, 2, "not signed by a CA this client trusts");
    let ls = blit(
        &fx,
        &[&"ls", &"--tls-ca", &pki.other_ca, &agent.url("m", "")],
    );
    fails(&ls, 2, "certificate");
    // A client that does not speak TLS at all.
    let plain = blit(
        &fx,
        &[&"copy", &fx.src_contents(), &agent.url("m", "plain")],
    );
    fails(&plain, 2, "does it require TLS");
    assert!(!module.join("wrong-ca").exists() && !module.join("plain").exists());

    // A plain connection to the data port: no handshake, no token check, dropped.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", agent.data_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut preface = b"BLITDAT1".to_vec();
    preface.extend([0u8; 32]);
    let _ = s.write_all(&preface);
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    assert!(
        n == 0 || buf[0] == 0x15,
        "a TLS alert or a close, not data: {:?}",
        &buf[..n]
    );

    // The agent still serves, and agent → agent works over TLS too.
    let other = fx.path("other");
    fs::create_dir(&other).unwrap();
    let agent_b = tls_agent(
        &pki,
        &[
            &"--module",
            &format!("n={}", other.display()),
            &"--tls-ca",
            &pki.ca,
            &"--job-source",
            &format!("127.0.0.1:{}", agent.port),
        ],
    );
    ok(&blit(
        &fx,
        &[
            &"copy",
            &"-H",
            &"--tls-ca",
            &pki.ca,
            &agent.url("m", "pushed/"),
            &agent_b.url("n", "copied"),
        ],
    ));
    assert_same_tree(&fx.src, &other.join("copied"), FULL);
}

#[test]
fn mutual_tls_requires_a_client_certificate() {
    let fx = Fixture::new();
    fx.file("f", b"payload");
    let pki = Pki::new(&fx.path("pki"));
    let module = fx.path("module");
    fs::create_dir(&module).unwrap();
    let agent = tls_agent(&pki, &[&"--root", &module, &"--tls-client-ca", &pki.ca]);
    let anonymous = blit(
        &fx,
        &[
            &"copy",
            &"--tls-ca",
            &pki.ca,
            &fx.src_contents(),
            &agent.url("default", "anon"),
        ],
    );
    fails(&anonymous, 2, "client certificate (--tls-cert, --tls-key)");
    assert!(!module.join("anon").exists());
    let err = ok(&blit(
        &fx,
        &[
            &"copy",
            &"--tls-ca",
            &pki.ca,
            &"--tls-cert",
            &pki.client_cert,
            &"--tls-key",
            &pki.client_key,
            &fx.src_contents(),
            &agent.url("default", "d"),
        ],
    ));
    assert!(err.contains("tls stream"), "{err}");
    assert_eq!(fs::read(module.join("d/f")).unwrap(), b"payload");
}
