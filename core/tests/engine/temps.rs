//! Temp files and `--resume`: a leftover is resumed or removed only once its writer is
//! gone, and concurrent writers of one path end with one complete file.

use std::fs;
use std::path::PathBuf;

use blit_core::Compare;
use blit_core::sys::temp;
use blit_test_support::{self as support, Fixture};

use crate::*;

#[test]
fn resume_keeps_verified_blocks_and_rewrites_bad_ones() {
    let fx = Fixture::new();
    let block = blit_core::resume::BLOCK as usize;
    let content: Vec<u8> = (0..10 * block).map(|i| (i * 7 + i / 4096) as u8).collect();
    fx.file("big.bin", &content);
    fs::create_dir_all(&fx.dst).unwrap();
    // An interrupted run left six blocks, one of them damaged.
    let mut partial = content[..6 * block].to_vec();
    partial[block + 10] ^= 0xff;
    let part = fx.dst.join(temp::unique_name(
        "big.bin".as_ref(),
        temp::TempSuffix::Part,
    ));
    fs::write(&part, &partial).unwrap();

    let report = transfer(&fx.src, &fx.dst, |s| s.resume = true);
    assert_clean(&report);
    assert_eq!(report.bytes_resumed, 5 * block as u64);
    assert_eq!(report.bytes_copied, 5 * block as u64);
    assert_eq!(fs::read(fx.dst.join("big.bin")).unwrap(), content);
    assert!(!part.exists());
}

#[test]
fn leftover_temp_files_are_removed_without_resume() {
    let fx = Fixture::new();
    fx.file(
        "big.bin",
        &vec![1u8; (blit_core::transfer::RESUMABLE_MIN + 1) as usize],
    );
    fs::create_dir_all(&fx.dst).unwrap();
    let part = fx.dst.join(temp::unique_name(
        "big.bin".as_ref(),
        temp::TempSuffix::Part,
    ));
    let tmp = fx
        .dst
        .join(temp::unique_name("gone".as_ref(), temp::TempSuffix::Tmp));
    fs::write(&part, b"stale").unwrap();
    fs::write(&tmp, b"stale").unwrap();
    let report = copy(&fx);
    assert_clean(&report);
    assert_eq!(report.bytes_resumed, 0);
    assert_eq!(
        support::names(&fx.dst),
        vec![std::ffi::OsString::from("big.bin")]
    );
}

#[test]
fn a_temp_file_another_run_is_writing_is_left_alone() {
    let fx = Fixture::new();
    let size = (blit_core::transfer::RESUMABLE_MIN + 1) as usize;
    fx.file("big.bin", &vec![7u8; size]);
    fs::create_dir_all(&fx.dst).unwrap();
    // Another writer holds temp files for the same target: a partial large file and a
    // small one. Neither may be resumed, truncated or removed by this run.
    let dst = blit_core::sys::dir::open_root(&fx.dst).unwrap();
    let dst = rustix::fd::AsFd::as_fd(&dst);
    let held = temp::create(dst, "big.bin".as_ref(), temp::TempSuffix::Part).unwrap();
    let small = temp::create(dst, "x".as_ref(), temp::TempSuffix::Tmp).unwrap();
    rustix::io::write(&held.fd, b"someone else's bytes").unwrap();
    let report = transfer(&fx.src, &fx.dst, |s| s.resume = true);
    assert_clean(&report);
    assert_eq!(report.bytes_resumed, 0, "a held part is not taken over");
    assert_eq!(fs::read(fx.dst.join("big.bin")).unwrap(), vec![7u8; size]);
    assert_eq!(
        fs::read(fx.dst.join(&held.name)).unwrap(),
        b"someone else's bytes"
    );
    assert!(fx.dst.join(&small.name).exists());
    // Once its writer is gone, a leftover is garbage for the next run.
    drop((held, small));
    assert_clean(&copy(&fx));
    assert_eq!(
        support::names(&fx.dst),
        vec![std::ffi::OsString::from("big.bin")]
    );
}

#[test]
fn concurrent_runs_to_one_path_end_with_one_complete_file() {
    let fx = Fixture::new();
    let size = (blit_core::transfer::RESUMABLE_MIN as usize) * 2;
    let contents: Vec<Vec<u8>> = (0..4u8)
        .map(|k| (0..size).map(|i| (i as u8).wrapping_mul(k + 3)).collect())
        .collect();
    let sources: Vec<PathBuf> = contents
        .iter()
        .enumerate()
        .map(|(k, c)| fx.file(format!("s{k}/big.bin"), c))
        .collect();
    let small: Vec<PathBuf> = (0..4)
        .map(|k| fx.file(format!("t{k}/small.txt"), format!("small {k}").as_bytes()))
        .collect();
    fs::create_dir_all(&fx.dst).unwrap();
    for round in 0..3 {
        // Four writers of the same two targets at once, large files and small ones.
        std::thread::scope(|scope| {
            for (big, little) in sources.iter().zip(&small) {
                let dst = fx.dst.clone();
                scope.spawn(move || {
                    let mut s = spec(big, &dst);
                    s.options.compare = Compare::IgnoreTimes;
                    assert_clean(&run_spec(s));
                    let mut s = spec(little, &dst);
                    s.options.compare = Compare::IgnoreTimes;
                    assert_clean(&run_spec(s));
                });
            }
        });
        let landed = fs::read(fx.dst.join("big.bin")).unwrap();
        assert!(
            contents.contains(&landed),
            "round {round}: the final name holds a complete file of one writer"
        );
        let text = fs::read_to_string(fx.dst.join("small.txt")).unwrap();
        assert!(text.starts_with("small "), "{text:?}");
        assert_eq!(
            support::names(&fx.dst),
            vec![
                std::ffi::OsString::from("big.bin"),
                std::ffi::OsString::from("small.txt")
            ],
            "round {round}: no temp file is left behind"
        );
    }
}

#[test]
fn a_single_file_resumes_too() {
    let fx = Fixture::new();
    let block = blit_core::resume::BLOCK as usize;
    let content: Vec<u8> = (0..5 * block).map(|i| (i % 253) as u8).collect();
    let f = fx.file("disk.img", &content);
    fs::create_dir_all(&fx.dst).unwrap();
    let part = fx.dst.join(temp::unique_name(
        "disk.img".as_ref(),
        temp::TempSuffix::Part,
    ));
    fs::write(&part, &content[..3 * block]).unwrap();
    let mut s = spec(&f, &fx.dst);
    s.options.resume = true;
    let report = run_spec(s);
    assert_clean(&report);
    assert_eq!(report.bytes_resumed, 3 * block as u64);
    assert_eq!(fs::read(fx.dst.join("disk.img")).unwrap(), content);
    assert!(!part.exists());
}

#[test]
fn a_name_that_looks_like_a_temp_file_is_still_copied() {
    let fx = Fixture::new();
    let name = ".blit-0123456789abcdef.tmp";
    fx.file(name, b"a user file with an unlucky name");
    for _ in 0..3 {
        assert_clean(&copy(&fx));
        assert_eq!(
            fs::read(fx.dst.join(name)).unwrap(),
            b"a user file with an unlucky name"
        );
    }
}
