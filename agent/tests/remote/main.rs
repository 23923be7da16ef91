//! Remote transfers with real `blitd` processes on `127.0.0.1:0` and the real `blit`
//! binary: the same fixtures through every route must give identical trees, and bad
//! input (tokens, paths, frames, versions) gets a clear error while the agent keeps
//! serving.

mod admin;
mod client;
mod depth;
mod flood;
mod jobs;
mod lifetime;
mod moves;
mod netns;
mod peer;
mod privilege;
mod rerun;
mod routes;
mod security;
mod tls;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use blit_test_support::agent::binary;
use blit_test_support::{self as support, Fixture};

pub const FULL: support::Compare = support::Compare {
    xattrs: false,
    hard_links: true,
    owner: false,
};

/// A control connection to `agent` (no token, no TLS).
pub async fn connect(agent: &blit_test_support::agent::Agent) -> blit_core::agent::AgentClient {
    let address = blit_core::agent::Address::new("127.0.0.1", agent.port);
    blit_core::agent::AgentClient::connect(&address, &Default::default())
        .await
        .expect("the agent accepts connections")
}

pub fn blit(fx: &Fixture, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = Command::new(binary("blit"));
    c.env("XDG_STATE_HOME", fx.path("state"))
        .stdin(Stdio::null());
    c.env_remove("BLIT_TOKEN");
    for a in args {
        c.arg(a);
    }
    c.output().expect("blit runs")
}

pub fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "blit failed ({}): {err}", o.status);
    err
}

pub fn fails(o: &Output, code: i32, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

/// A tree with everything the engine must carry: odd names, links of every kind, empty
/// directories, hard links, a sparse file, a file large enough to be cut into chunks
/// across streams (when more than 8 carry it), an empty file, modes and nanosecond mtimes.
pub fn rich_tree(fx: &Fixture) {
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

pub fn assert_sparse(path: &Path) {
    let allocated = support::allocated_bytes(path);
    assert!(
        allocated < 8 << 20,
        "{} allocates {allocated} bytes",
        path.display()
    );
}

/// A small tree to move, and a reference copy of it to compare the result with.
pub fn movable_tree(fx: &Fixture, at: &Path) -> PathBuf {
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
