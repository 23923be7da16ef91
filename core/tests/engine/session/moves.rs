//! Moves through a session: a source entry goes only once the destination confirmed its
//! copy landed, and a move with any failure leaves every source directory in place.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_move_removes_the_sources_and_their_directory() {
    let area = Area::new();
    area.small_tree();
    let reference = area.fx.path("reference");
    fs::create_dir(&reference).unwrap();
    let copy = support::with_slash(&area.fx.src);
    let local = blit_core::Transfer::new(blit_core::TransferSpec::new(
        blit_core::Endpoint::Local(copy),
        blit_core::Endpoint::Local(reference.clone()),
    ));
    assert_clean(&local.run(&Quiet).unwrap());

    let moving = options(|o| o.mode = Mode::Move);
    let report = within(
        10,
        push(
            &area.server,
            &area.fx.src,
            "m",
            &moving,
            DataOptions::default(),
        ),
    )
    .await
    .unwrap();
    assert_clean(&report);
    // Three files and the symlink.
    assert_eq!(report.sources_removed, 4, "{report:?}");
    assert_same_tree(&reference, &area.module.join("m/src"), PLAIN);
    assert!(!area.fx.src.exists(), "the directory named goes too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pulled_move_removes_the_sources_beneath_the_served_directory() {
    let area = Area::new();
    area.small_tree();
    let tree = area.module.join("t");
    fs::rename(&area.fx.src, &tree).unwrap();
    let moving = options(|o| o.mode = Mode::Move);
    let report = within(
        10,
        pull(
            &area.server,
            "t",
            &area.fx.dst,
            &moving,
            DataOptions::default(),
        ),
    )
    .await
    .unwrap();
    assert_clean(&report);
    assert_eq!(report.sources_removed, 4, "{report:?}");
    assert!(area.fx.dst.join("t/d/e/c.txt").exists());
    assert!(!tree.exists(), "{:?}", support::names(&area.module));
    let mut served = area.server.next_session().await;
    assert!(served.outcome().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_with_a_failure_keeps_what_did_not_land_and_every_directory() {
    let area = Area::new();
    area.fx
        .file("x", b"a file where the destination has a directory");
    area.fx.file("d/y", b"moves");
    // Copy never deletes: the non-empty directory stays and `x` fails.
    support::write(&area.module.join("m/x/inside"), b"in the way");
    let moving = options(|o| o.mode = Mode::Move);
    let contents = area.fx.src_contents();
    let report = within(
        10,
        push(
            &area.server,
            &contents,
            "m",
            &moving,
            DataOptions::default(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    assert_eq!(report.sources_removed, 1);
    assert_eq!(fs::read(area.module.join("m/d/y")).unwrap(), b"moves");
    assert!(area.fx.src.join("x").exists(), "its copy never landed");
    assert!(!area.fx.src.join("d/y").exists(), "its copy landed");
    assert!(
        area.fx.src.join("d").is_dir(),
        "directories stay after a failure"
    );
    assert!(area.module.join("m/x/inside").exists());
}
