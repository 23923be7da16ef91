//! A test client that speaks the session protocol frame by frame, for attacks `blit`
//! cannot be made to carry out (a destination that confirms what it never received, a
//! session that reports failure after confirming nothing).

use blit_core::session::client::{Credentials, Remote};
use blit_core::wire::pb;
use pb::frame::Kind;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// One open session with an agent.
pub struct RawSession {
    tx: mpsc::Sender<pb::Frame>,
    rx: tonic::Streaming<pb::Frame>,
}

pub fn frame(kind: Kind) -> pb::Frame {
    pb::Frame { kind: Some(kind) }
}

/// Transfer options with the protocol's defaults and `mode`.
pub fn options(mode: pb::Mode) -> pb::TransferOptions {
    pb::TransferOptions {
        mode: mode as i32,
        compare: pb::Compare::SizeMtime as i32,
        ..Default::default()
    }
}

impl RawSession {
    /// Connects to the agent on `port` and sends `open` (the protocol version filled in).
    pub async fn open(port: u16, mut open: pb::Open) -> RawSession {
        let remote = Remote {
            host: "127.0.0.1".into(),
            port,
            token: None,
            tls: None,
        };
        let conn = remote.connect().await.expect("the agent answers");
        let creds = Credentials::new(None).unwrap();
        let mut client =
            pb::session_client::SessionClient::with_interceptor(conn.channel.clone(), creds);
        open.protocol_major = pb::PROTOCOL_MAJOR;
        open.protocol_minor = pb::PROTOCOL_MINOR;
        let (tx, out) = mpsc::channel(64);
        tx.send(frame(Kind::Open(open))).await.unwrap();
        let rx = client
            .transfer(ReceiverStream::new(out))
            .await
            .expect("the agent accepts the session")
            .into_inner();
        RawSession { tx, rx }
    }

    pub async fn send(&self, kind: Kind) {
        self.tx
            .send(frame(kind))
            .await
            .expect("the session is open");
    }

    /// The next frame from the agent; `None` once the session ended.
    pub async fn recv(&mut self) -> Option<Kind> {
        match self.rx.message().await {
            Ok(Some(f)) => f.kind,
            Ok(None) => None,
            Err(status) => panic!("the session failed: {status}"),
        }
    }

    /// Receives until a frame `want` accepts, returning it (panics if the session ends).
    pub async fn until<T>(&mut self, mut want: impl FnMut(Kind) -> Option<T>) -> T {
        loop {
            let kind = self.recv().await.expect("the session ended early");
            if let Some(t) = want(kind) {
                return t;
            }
        }
    }
}
