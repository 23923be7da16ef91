//! The session roles end to end inside one process: the client end
//! (`session::initiate`) against server ends hosted by `session::in_process::InProcess`
//! on scratch directories, with the records on real loopback data connections. Every
//! test checks the files on disk; none needs a binary, and each runs in milliseconds
//! (the interrupted transfers in a fraction of a second).

use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use blit_core::session::SessionError;
use blit_core::session::in_process::InProcess;
use blit_core::session::initiate::{self, DataOptions};
use blit_core::wire::pb;
use blit_core::{Mode, Options, Quiet, Report, Stats};
use blit_test_support::{self as support, Fixture, assert_same_tree};

mod interrupt;
mod moves;
mod token;
mod trees;

/// What the trees are compared by: the server ends own what they write (a module's
/// defaults), so owners are not compared.
const PLAIN: support::Compare = support::Compare {
    xattrs: false,
    hard_links: false,
    owner: false,
};

/// A scratch area and a server serving its `module` directory.
struct Area {
    fx: Fixture,
    module: PathBuf,
    server: InProcess,
}

impl Area {
    fn new() -> Area {
        Area::with(|server| server)
    }

    /// An area whose server is set up by `setup`.
    fn with(setup: impl FnOnce(InProcess) -> InProcess) -> Area {
        let fx = Fixture::new();
        let module = fx.path("module");
        fs::create_dir(&module).unwrap();
        let server = setup(InProcess::new(&module).unwrap());
        Area { fx, module, server }
    }

    /// Writes a small tree into the source: files at three depths, an empty directory
    /// and a symlink.
    fn small_tree(&self) {
        self.fx.file("a.txt", b"alpha");
        self.fx.file("d/b.txt", b"bravo");
        self.fx.file("d/e/c.txt", &[7u8; 70_000]);
        self.fx.dir("empty");
        self.fx.symlink("link", "a.txt");
    }
}

/// A location in the served directory.
fn at(path: &str) -> pb::Location {
    pb::Location {
        module: "m".into(),
        path: path.as_bytes().to_vec(),
    }
}

/// Sends the local `src` to `dst` on `server`.
async fn push(
    server: &InProcess,
    src: &Path,
    dst: &str,
    options: &Options,
    data: DataOptions,
) -> Result<Report, SessionError> {
    let stats = Arc::new(Stats::default());
    initiate::push(server, src, at(dst), options, data, stats).await
}

/// Fetches `src` from `server` into the local `dst`.
async fn pull(
    server: &InProcess,
    src: &str,
    dst: &Path,
    options: &Options,
    data: DataOptions,
) -> Result<Report, SessionError> {
    let stats = Arc::new(Stats::default());
    initiate::pull(server, at(src), dst, options, data, stats, Arc::new(Quiet)).await
}

fn options(tweak: impl FnOnce(&mut Options)) -> Options {
    let mut o = Options::default();
    tweak(&mut o);
    o
}

fn assert_clean(report: &Report) {
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(report.deletes_skipped.is_none(), "{report:?}");
}

/// `f`, which must finish within `secs` seconds.
async fn within<T>(secs: u64, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("finished in time")
}

/// Names of temp files (`.blit-…`) anywhere under `root`.
fn temp_files(root: &Path) -> Vec<PathBuf> {
    support::snapshot(root, PLAIN)
        .into_keys()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".blit-"))
        })
        .collect()
}
