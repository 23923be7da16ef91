//! A test client that speaks the session protocol frame by frame, where `blit` cannot be
//! made to misbehave, and the frames the attacks are made of.

use std::fs;
use std::time::{Duration, Instant};

use blit_core::session::frame;
use blit_core::spec::{Endpoint, TransferSpec};
use blit_core::wire::record::{Kind as Record, RecordReader};
use blit_core::wire::{self, pb};
use blit_test_support::agent::Agent;
use pb::frame::Kind;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// A client end of one session, speaking the protocol frame by frame.
pub(crate) struct Peer {
    pub(crate) tx: mpsc::Sender<pb::Frame>,
    rx: tonic::Streaming<pb::Frame>,
    accept: pb::Accept,
    /// Kept for as long as the session: a dropped channel may close the connection
    /// while a large frame is still on its way.
    _channel: tonic::transport::Channel,
}

impl Peer {
    /// Opens a session; the agent's refusal as its status.
    pub(crate) async fn open(agent: &Agent, open: pb::Open) -> Result<Peer, tonic::Status> {
        let conn = crate::connect(agent).await;
        let mut client = pb::session_client::SessionClient::new(conn.authorized())
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        let (tx, out) = mpsc::channel(16);
        tx.send(frame(Kind::Open(open))).await.unwrap();
        let mut rx = client
            .transfer(ReceiverStream::new(out))
            .await?
            .into_inner();
        let first = rx.message().await?.expect("an answer to the Open");
        let Some(Kind::Accept(accept)) = first.kind else {
            panic!("expected Accept, got {first:?}");
        };
        Ok(Peer {
            tx,
            rx,
            accept,
            _channel: conn.channel(),
        })
    }

    pub(crate) async fn send(&self, kind: Kind) -> bool {
        self.tx.send(frame(kind)).await.is_ok()
    }

    /// Sends `frames` from a task of their own (the agent may stop reading them).
    pub(crate) fn send_many(
        &self,
        frames: impl Iterator<Item = Kind> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            for kind in frames {
                if tx.send(frame(kind)).await.is_err() {
                    break;
                }
            }
        })
    }

    /// The next frame, `None` once the agent ended the stream.
    pub(crate) async fn next(&mut self, within: Duration) -> Option<pb::Frame> {
        tokio::time::timeout(within, self.rx.message())
            .await
            .expect("the agent answers in time")
            .ok()
            .flatten()
    }

    /// Reads until the agent's Abort and returns its message.
    pub(crate) async fn abort_message(&mut self, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await.and_then(|f| f.kind) {
                Some(Kind::Abort(a)) => return a.message,
                Some(_) => {}
                None => panic!("the session ended without an Abort"),
            }
        }
    }

    /// Reads the manifest of a pull up to its end.
    pub(crate) async fn read_manifest(&mut self) {
        loop {
            match self
                .next(Duration::from_secs(10))
                .await
                .and_then(|f| f.kind)
            {
                Some(Kind::ManifestDone(_)) => return,
                Some(Kind::Dir(_) | Kind::SourceFailure(_)) => {}
                other => panic!("unexpected {other:?} in the manifest"),
            }
        }
    }

    /// Reads `Data` frames up to the end record; returns the `Fail` records (id, message).
    pub(crate) async fn read_records(&mut self, within: Duration) -> Vec<(u64, String)> {
        let mut bytes = Vec::new();
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await.and_then(|f| f.kind) {
                Some(Kind::Data(d)) => bytes.extend(d),
                Some(Kind::Progress(_)) => {}
                other => panic!("unexpected {other:?} among the data"),
            }
            // Parsed from the start each time: the records so far, up to the end record
            // (`None`) or to where the bytes stop for now (an error).
            let mut reader = RecordReader::new(bytes.as_slice());
            let mut fails = Vec::new();
            loop {
                match reader.next_header() {
                    Ok(Some(h)) if h.kind == Record::Fail => match reader.payload() {
                        Ok(message) => {
                            let message = String::from_utf8_lossy(message).into_owned();
                            fails.push((h.id, message));
                        }
                        Err(_) => break,
                    },
                    Ok(Some(_)) => {}
                    Ok(None) => return fails,
                    Err(_) => break,
                }
            }
        }
    }

    /// Connects one data stream as granted (and never reads it).
    pub(crate) async fn connect_data(
        &self,
        agent: &Agent,
    ) -> Vec<blit_core::session::data::Stream> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], agent.data_port));
        let token = self.accept.data_token.clone();
        tokio::task::spawn_blocking(move || {
            blit_core::session::data::connect(
                addr,
                None,
                &token,
                blit_core::session::data::Streams::Fixed(1),
            )
        })
        .await
        .unwrap()
        .expect("the data stream connects")
    }
}

pub(crate) fn options() -> pb::TransferOptions {
    let spec = TransferSpec::new(Endpoint::Local("from".into()), Endpoint::Local("to".into()));
    wire::options_to_wire(&spec.options)
}

/// An Open for a push into `path` of the module (the agent is the destination).
pub(crate) fn push_open(path: &str) -> pb::Open {
    pb::Open {
        server_role: pb::Role::Destination as i32,
        source: Some(blit_core::wire::shape_to_wire(
            &blit_core::roots::Shape::Tree { name: None },
        )),
        ..open(path)
    }
}

/// An Open for a pull of `path` of the module (the agent is the source).
pub(crate) fn pull_open(path: &str) -> pb::Open {
    pb::Open {
        server_role: pb::Role::Source as i32,
        ..open(path)
    }
}

pub(crate) fn open(path: &str) -> pb::Open {
    pb::Open {
        protocol_major: pb::PROTOCOL_MAJOR,
        protocol_minor: pb::PROTOCOL_MINOR,
        capabilities: Vec::new(),
        server_role: pb::Role::Unspecified as i32,
        location: Some(pb::Location {
            module: "default".into(),
            path: path.as_bytes().to_vec(),
        }),
        options: Some(options()),
        source: None,
        streams: 0,
        force_grpc: true,
    }
}

/// No data connections: the bytes travel in the session's stream.
pub(crate) fn data_ready() -> Kind {
    Kind::DataReady(pb::DataReady { streams: 0 })
}

pub(crate) fn batch(rel: &str, entries: Vec<pb::Entry>, partial: bool) -> Kind {
    Kind::Dir(pb::DirBatch {
        rel: rel.as_bytes().to_vec(),
        entries,
        partial,
        dir: None,
    })
}

pub(crate) fn file(name: &str) -> pb::Entry {
    pb::Entry {
        name: name.as_bytes().to_vec(),
        kind: pb::EntryKind::File as i32,
        type_bits: 0o100000,
        mode: 0o644,
        mtime_sec: 1_600_000_000,
        nlink: 1,
        ..Default::default()
    }
}

pub(crate) fn dir(name: &str) -> pb::Entry {
    pb::Entry {
        kind: pb::EntryKind::Dir as i32,
        type_bits: 0o040000,
        mode: 0o755,
        ..file(name)
    }
}

/// A 100-byte name, distinct for each `i`.
pub(crate) fn long_name(i: usize) -> String {
    format!("{i:0>100}")
}

/// A need for `path` as the source listed it.
pub(crate) fn need(id: u64, path: &str, listed: &fs::Metadata) -> pb::Need {
    use std::os::unix::fs::MetadataExt;
    pb::Need {
        id,
        path: path.as_bytes().to_vec(),
        size: listed.len(),
        mtime_sec: listed.mtime(),
        mtime_nsec: listed.mtime_nsec() as u32,
        ..Default::default()
    }
}
