//! Directory chains deeper than the kernel's path limit, in linear time.

use blit_core::Mode;
use blit_test_support::{self as support, Fixture};

use crate::*;

/// Levels of the deep chain below: its paths (8,000 bytes) are twice what the kernel
/// takes in one call, and opening each directory from the root made a copy of it take
/// 25 s (quadratic in the depth).
const DEEP: usize = 4_000;

#[test]
fn a_deep_chain_is_copied_mirrored_and_moved_in_linear_time() {
    use blit_test_support::chain;
    use std::time::{Duration, Instant};
    let fx = Fixture::new();
    let moved = fx.path("moved");
    let _cleanup = chain::Cleanup(vec![fx.src.clone(), fx.dst.clone(), moved.clone()]);
    chain::make(&fx.src, "chain", DEEP);
    // Well above what linear work takes here (under a second), well below quadratic.
    let linear = Duration::from_secs(10);

    let started = Instant::now();
    let report = copy(&fx);
    assert!(
        started.elapsed() < linear,
        "copy took {:?}",
        started.elapsed()
    );
    assert_clean(&report);
    assert_eq!(report.dirs_created, DEEP as u64);
    chain::assert_copied(&fx.dst, "chain", DEEP);

    // Strays deep in the destination: a mirror deletes them there and touches nothing else.
    let level = chain::open_level(&fx.dst, "chain", DEEP - 10);
    for d in ["stray-dir", "stray-dir/x", "stray-dir/x/y"] {
        rustix::fs::mkdirat(&level, d, rustix::fs::Mode::from_raw_mode(0o755)).unwrap();
    }
    drop(level);
    let started = Instant::now();
    let report = mirror(&fx);
    assert!(
        started.elapsed() < linear,
        "mirror took {:?}",
        started.elapsed()
    );
    assert_clean(&report);
    assert_eq!(report.deleted, 3, "stray-dir with x and y");
    chain::assert_copied(&fx.dst, "chain", DEEP);

    let started = Instant::now();
    let report = transfer(&fx.src, &moved, |s| s.mode = Mode::Move);
    assert!(
        started.elapsed() < linear,
        "move took {:?}",
        started.elapsed()
    );
    assert_clean(&report);
    chain::assert_copied(&moved, "chain", DEEP);
    assert_eq!(
        support::names(&fx.src),
        Vec::<std::ffi::OsString>::new(),
        "the emptied chain is gone from the source"
    );
}
