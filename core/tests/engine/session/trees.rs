//! Whole trees through a session: pushed, pulled, from one server end to another, in the
//! control stream when asked, mirrored (and a mirror refused by `--max-delete`), and the
//! requests a server end refuses before any role runs.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_tree_lands_beneath_the_served_directory() {
    let area = Area::new();
    area.small_tree();
    let o = Options::default();
    let contents = area.fx.src_contents();
    let report = within(
        10,
        push(&area.server, &contents, "/d", &o, DataOptions::default()),
    )
    .await
    .unwrap();
    assert_clean(&report);
    assert_eq!(
        (report.files_copied, report.data_plane.as_str()),
        (3, "tcp")
    );
    assert_same_tree(&area.fx.src, &area.module.join("d"), PLAIN);

    // Without a trailing slash the directory itself goes; a single file lands by name.
    let whole = within(
        10,
        push(&area.server, &area.fx.src, "d2", &o, DataOptions::default()),
    );
    assert_clean(&whole.await.unwrap());
    assert_same_tree(&area.fx.src, &area.module.join("d2/src"), PLAIN);
    let one = area.fx.src.join("a.txt");
    let renamed = within(
        10,
        push(&area.server, &one, "d2/renamed", &o, DataOptions::default()),
    );
    assert_clean(&renamed.await.unwrap());
    assert_eq!(fs::read(area.module.join("d2/renamed")).unwrap(), b"alpha");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pulled_tree_lands_in_the_local_directory() {
    let area = Area::new();
    area.small_tree();
    fs::rename(&area.fx.src, area.module.join("t")).unwrap();
    let o = Options::default();
    let report = within(
        10,
        pull(&area.server, "t/", &area.fx.dst, &o, DataOptions::default()),
    )
    .await
    .unwrap();
    assert_clean(&report);
    assert_eq!(report.files_copied, 3);
    assert_same_tree(&area.module.join("t"), &area.fx.dst, PLAIN);

    let one = within(
        10,
        pull(
            &area.server,
            "/t/d/b.txt",
            &area.fx.dst,
            &o,
            DataOptions::default(),
        ),
    );
    assert_clean(&one.await.unwrap());
    assert_eq!(fs::read(area.fx.dst.join("b.txt")).unwrap(), b"bravo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_end_pulls_from_another_as_an_agent_job_does() {
    let source = Area::new();
    source.small_tree();
    fs::rename(&source.fx.src, source.module.join("t")).unwrap();
    let destination = Area::new();
    let report = within(
        10,
        destination.server.pull_from(
            &source.server,
            at("t/"),
            Path::new("copy"),
            &Options::default(),
            DataOptions::default(),
        ),
    )
    .await
    .unwrap();
    assert_clean(&report);
    assert_eq!(report.files_copied, 3);
    assert_same_tree(
        &source.module.join("t"),
        &destination.module.join("copy"),
        PLAIN,
    );
    // Both sessions were served, and ended well.
    assert!(source.server.next_session().await.outcome().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_data_connections_the_records_travel_in_the_control_stream() {
    let area = Area::new();
    area.small_tree();
    let grpc = DataOptions {
        streams: None,
        force_grpc: true,
    };
    let contents = area.fx.src_contents();
    let report = within(
        10,
        push(&area.server, &contents, "d", &Options::default(), grpc),
    )
    .await
    .unwrap();
    assert_clean(&report);
    assert_eq!(report.data_plane, "grpc");
    assert_same_tree(&area.fx.src, &area.module.join("d"), PLAIN);
    let back = area.fx.path("back");
    let report = within(
        10,
        pull(&area.server, "d/", &back, &Options::default(), grpc),
    )
    .await
    .unwrap();
    assert_eq!(report.data_plane, "grpc");
    assert_same_tree(&area.fx.src, &back, PLAIN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_deletes_what_the_source_lacks_and_max_delete_refuses() {
    let area = Area::new();
    area.small_tree();
    let contents = area.fx.src_contents();
    let copy = Options::default();
    assert_clean(
        &within(
            10,
            push(&area.server, &contents, "d", &copy, DataOptions::default()),
        )
        .await
        .unwrap(),
    );
    let dst = area.module.join("d");
    for extra in ["x1", "d/x2", "gone/deep/x3"] {
        support::write(&dst.join(extra), b"extra");
    }
    let outside = area.fx.path("outside");
    support::write(&outside.join("precious"), b"kept");
    std::os::unix::fs::symlink(&outside, dst.join("link-out")).unwrap();

    // More deletes than allowed: nothing is deleted, and the report says why.
    let bounded = options(|o| {
        o.mode = Mode::Mirror;
        o.limits.max_delete = Some(2);
    });
    let refused = within(
        10,
        push(
            &area.server,
            &contents,
            "d",
            &bounded,
            DataOptions::default(),
        ),
    )
    .await
    .unwrap();
    assert!(refused.deletes_skipped.is_some(), "{refused:?}");
    assert!(dst.join("x1").exists() && dst.join("gone/deep/x3").exists());

    let mirror = options(|o| o.mode = Mode::Mirror);
    let report = within(
        10,
        push(
            &area.server,
            &contents,
            "d",
            &mirror,
            DataOptions::default(),
        ),
    )
    .await
    .unwrap();
    assert_clean(&report);
    // x1, d/x2, gone with deep/ and x3, link-out.
    assert_eq!(report.deleted, 6, "{report:?}");
    assert_same_tree(&area.fx.src, &dst, PLAIN);
    assert_eq!(fs::read(outside.join("precious")).unwrap(), b"kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_end_refuses_what_it_must_not_serve() {
    let area = Area::with(InProcess::read_only);
    area.small_tree();
    let o = Options::default();
    let code = |r: Result<Report, SessionError>| match r {
        Err(SessionError::Rpc(status)) => (status.code(), status.message().to_owned()),
        other => panic!("not refused: {other:?}"),
    };
    let contents = area.fx.src_contents();
    let (status, message) =
        code(push(&area.server, &contents, "d", &o, DataOptions::default()).await);
    assert_eq!(status, tonic::Code::PermissionDenied, "{message}");
    assert!(message.contains("read-only"), "{message}");
    assert!(support::names(&area.module).is_empty(), "nothing written");

    let (status, message) = code(
        pull(
            &area.server,
            "../outside",
            &area.fx.dst,
            &o,
            DataOptions::default(),
        )
        .await,
    );
    assert_eq!(status, tonic::Code::PermissionDenied, "{message}");
    let (status, message) = code(
        pull(
            &area.server,
            "missing",
            &area.fx.dst,
            &o,
            DataOptions::default(),
        )
        .await,
    );
    assert_eq!(
        (status, message.as_str()),
        (
            tonic::Code::NotFound,
            "source missing: No such file or directory (os error 2)"
        )
    );
    // A read-only module is no source for a move either.
    fs::create_dir(area.module.join("t")).unwrap();
    let moving = options(|o| o.mode = Mode::Move);
    let (status, _) = code(
        pull(
            &area.server,
            "t/",
            &area.fx.dst,
            &moving,
            DataOptions::default(),
        )
        .await,
    );
    assert_eq!(status, tonic::Code::PermissionDenied);
    assert!(area.module.join("t").exists());
}
