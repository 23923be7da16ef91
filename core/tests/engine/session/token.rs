//! Data connections are admitted by their session's one-time token only: one that
//! presents another token is closed before the session sees it, and the session fails
//! with a clear reason once its own connections did not come (as with an agent).

use std::io;

use blit_core::session::data::{Stream, Streams};
use blit_core::session::transport::Transport;
use blit_core::session::{Link, SessionError};

use super::*;

/// A client whose data connections present a token one bit off the one granted.
struct WrongToken<'a>(&'a InProcess);

#[tonic::async_trait]
impl Transport for WrongToken<'_> {
    async fn open(&self, open: pb::Open) -> Result<(Link, pb::Accept), SessionError> {
        self.0.open(open).await
    }

    async fn connect_data(&self, accept: &pb::Accept, streams: Streams) -> io::Result<Vec<Stream>> {
        let mut forged = accept.clone();
        forged.data_token[0] ^= 1;
        self.0.connect_data(&forged, streams).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_with_a_wrong_token_is_refused_and_the_session_fails_cleanly() {
    let area = Area::with(|s| s.with_connect_timeout(Duration::from_millis(300)));
    area.small_tree();
    let two = DataOptions {
        streams: Some(2),
        force_grpc: false,
    };
    let client = WrongToken(&area.server);
    let contents = area.fx.src_contents();
    let (o, stats) = (Options::default(), Arc::new(Stats::default()));
    let pushed = initiate::push(&client, &contents, at("d"), &o, two, stats);
    let served = async {
        let mut served = area.server.next_session().await;
        let outcome = served.outcome().await;
        assert_eq!(served.data_streams(), 0, "the session got no connection");
        outcome
    };
    let (pushed, served) = within(10, async { tokio::join!(pushed, served) }).await;
    let server = served.unwrap_err().to_string();
    assert_eq!(
        server,
        "protocol error: the client's data connections did not arrive"
    );
    let client = pushed.unwrap_err().to_string();
    assert!(client.contains("did not arrive"), "{client}");
    assert_eq!(area.server.refused(), 2, "both connections refused");
    assert!(
        support::snapshot(&area.module, PLAIN)
            .keys()
            .all(|p| p.as_os_str().is_empty() || p == Path::new("d")),
        "nothing written"
    );

    // The same server serves a client with the right token at once.
    let report = within(
        10,
        push(&area.server, &contents, "d", &Options::default(), two),
    )
    .await
    .unwrap();
    assert_clean(&report);
    assert_same_tree(&area.fx.src, &area.module.join("d"), PLAIN);
    assert_eq!(area.server.next_session().await.data_streams(), 2);
}
