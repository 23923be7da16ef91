//! Transfers cut short — the server end's session cancelled, a data connection shut, the
//! client gone — stop both ends and never leave a half-written file under its final
//! name; a large file's partial copy stays for `--resume`, which continues it.
//!
//! The sender is throttled so that each transfer is still running when it is cut: the
//! file is 24 MiB at 16 MiB/s (a burst of 4 MiB first), cut once 4 MiB are on disk,
//! more than a second before it could end.

use blit_core::resume::BLOCK;

use super::*;

const BIG: usize = 24 << 20;
const RATE: u64 = 16 << 20;

/// One stream, so the partial file grows from its start.
const ONE_STREAM: DataOptions = DataOptions {
    streams: Some(1),
    force_grpc: false,
};

/// Writes the big file (no two MiB alike) into `dir`.
fn big_file(dir: &Path) -> Vec<u8> {
    let pattern: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let mut content = Vec::with_capacity(BIG);
    for mib in 0..BIG >> 20 {
        content.extend_from_slice(&pattern);
        content[mib << 20] = mib as u8;
    }
    support::write(&dir.join("big"), &content);
    content
}

/// Waits until a `.part` file in `dir` holds at least `bytes`; returns its path.
async fn part_with(dir: &Path, bytes: u64) -> PathBuf {
    loop {
        let part = fs::read_dir(dir).ok().and_then(|entries| {
            entries.flatten().map(|e| e.path()).find(|p| {
                p.to_string_lossy().ends_with(".part")
                    && fs::metadata(p).is_ok_and(|m| m.len() >= bytes)
            })
        });
        if let Some(part) = part {
            return part;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Pushes the big file, and cancels the server end's session once 4 MiB of it landed
/// (as an agent ends a session that idled or outlived its shutdown). Returns the
/// client's outcome and the server end's.
async fn interrupted_push(
    area: &Area,
) -> (Result<Report, SessionError>, Result<Report, SessionError>) {
    let throttled = options(|o| o.limits.bandwidth = Some(RATE));
    let contents = area.fx.src_contents();
    let client = push(&area.server, &contents, "d", &throttled, ONE_STREAM);
    let server = async {
        let mut served = area.server.next_session().await;
        part_with(&area.module.join("d"), 4 << 20).await;
        served.lifetime.cancel.cancel("the test ended the session");
        served.outcome().await
    };
    within(10, async { tokio::join!(client, server) }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_session_stops_both_ends_and_publishes_nothing() {
    let area = Area::new();
    big_file(&area.fx.src);
    let (client, server) = interrupted_push(&area).await;
    let client = client.unwrap_err().to_string();
    assert!(client.contains("the test ended the session"), "{client}");
    let server = server.unwrap_err().to_string();
    assert!(server.contains("the test ended the session"), "{server}");
    let landed = area.module.join("d");
    assert!(!landed.join("big").exists(), "nothing under its final name");
    assert_eq!(
        temp_files(&landed).len(),
        1,
        "the partial file is kept for --resume"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_push_is_resumed() {
    let area = Area::new();
    let content = big_file(&area.fx.src);
    let (client, _) = interrupted_push(&area).await;
    assert!(client.is_err());
    let resume = options(|o| o.resume = true);
    let contents = area.fx.src_contents();
    let report = within(10, push(&area.server, &contents, "d", &resume, ONE_STREAM))
        .await
        .unwrap();
    assert_clean(&report);
    assert!(report.bytes_resumed >= BLOCK, "{report:?}");
    assert_eq!(report.bytes_resumed + report.bytes_copied, BIG as u64);
    let landed = area.module.join("d");
    assert!(fs::read(landed.join("big")).unwrap() == content);
    assert!(temp_files(&landed).is_empty(), "{:?}", temp_files(&landed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_data_stream_fails_the_session_cleanly() {
    let area = Area::new();
    big_file(&area.fx.src);
    let throttled = options(|o| o.limits.bandwidth = Some(RATE));
    let contents = area.fx.src_contents();
    let two = DataOptions {
        streams: Some(2),
        force_grpc: false,
    };
    let client = push(&area.server, &contents, "d", &throttled, two);
    let server = async {
        let mut served = area.server.next_session().await;
        part_with(&area.module.join("d"), 4 << 20).await;
        assert_eq!(served.cut_data_streams(), 2);
        served.outcome().await
    };
    let (client, server) = within(10, async { tokio::join!(client, server) }).await;
    let server = server.unwrap_err().to_string();
    assert!(server.starts_with("data stream: "), "{server}");
    let client = client.unwrap_err().to_string();
    assert!(client.contains("data stream"), "{client}");
    assert!(
        !area.module.join("d/big").exists(),
        "nothing under its final name"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_ends_the_server_end() {
    let area = Area::new();
    big_file(&area.module);
    fs::create_dir(&area.fx.dst).unwrap();
    let throttled = options(|o| o.limits.bandwidth = Some(RATE));
    let client = pull(&area.server, "big", &area.fx.dst, &throttled, ONE_STREAM);
    // The pull is dropped (as a client stopped with ^C drops it) once 4 MiB landed.
    let gone = async {
        tokio::select! {
            outcome = client => panic!("the pull finished first: {outcome:?}"),
            _ = part_with(&area.fx.dst, 4 << 20) => {}
        }
    };
    within(10, gone).await;
    let mut served = area.server.next_session().await;
    let outcome = within(10, served.outcome()).await;
    assert!(outcome.is_err(), "{outcome:?}");
    assert!(
        !area.fx.dst.join("big").exists(),
        "nothing under its final name"
    );
    assert_eq!(
        temp_files(&area.fx.dst).len(),
        1,
        "the partial file is kept"
    );
}
