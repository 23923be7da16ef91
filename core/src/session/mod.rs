//! A transfer session between two machines: the same engine, split by role.
//!
//! ```text
//!  SOURCE role (source.rs)                     DESTINATION role (destination.rs)
//!  walk::Walk ── DirBatch frames ───────────▶  per batch, on a pool: list the local dir,
//!   (one per directory, as walked)              plan::diff, apply (Destination::visit)
//!                ◀────────── NeedBatch frames   Copy/Resume → a Need (id, path) + pending
//!  senders, one per data stream:
//!   open beneath the root, sendfile/pread ─▶  receivers, one per stream: stage (temp),
//!   records (wire::record)                      pwrite, publish (rename/linkat), metadata
//!                ◀────────── Summary            end of run (Destination::finish) → Report
//! ```
//!
//! The destination's half that talks to the data plane (needs out, records in, files
//! staged and published) is `fetcher`; the half that takes the manifest in and runs the
//! visits is `planner`; both reach the engine only through its door for a remote
//! source, `transfer::remote` (a `Destination`: visit, stage, publish, finish). Each
//! session has a `lifetime`: a cancellation that reaches every wait of both roles, and a
//! budget of memory the peer can make it hold.
//!
//! The roles are not named push or pull: whichever end is the source runs `source::run`,
//! the other `destination::run`, each on a `job` built from its opened root
//! (`crate::roots`), over a [`Link`] of frames (a gRPC stream, either way round) and a
//! [`data::DataPlane`] (raw TCP streams, or the same records inside `Data` frames when
//! no connection could be made). The client end opens a session in either role through
//! a [`transport::Transport`] (`initiate::push`, `initiate::pull`); the server end checks
//! the `Open` and runs the role asked for (`serve`), hosted by an agent's `Session`
//! service or, in this process, by `in_process` (the transport tests use). The agent
//! client (`crate::agent`) is one transport. `link` forwards a gRPC stream's frames into
//! a link, for either end.

pub mod data;
pub mod destination;
mod fetcher;
pub mod in_process;
pub mod initiate;
pub mod job;
pub mod lifetime;
pub mod link;
mod planner;
pub mod serve;
pub mod source;
pub mod throttle;
pub mod transport;

use tokio::sync::mpsc;

use crate::wire::pb;

/// The two directions of a session's control stream.
pub struct Link {
    pub tx: mpsc::Sender<pb::Frame>,
    pub rx: mpsc::Receiver<pb::Frame>,
}

/// Frames buffered in each direction: enough to keep both ends busy, few enough that a
/// 10-million-entry manifest never sits in memory.
pub const LINK_DEPTH: usize = 64;

/// Why a session ended without a report.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the peer ended the session: {0}")]
    Aborted(String),
    #[error("the peer closed the session unexpectedly")]
    Closed,
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error(transparent)]
    Wire(#[from] crate::wire::WireError),
    #[error("data stream: {0}")]
    Data(#[source] std::io::Error),
    #[error(transparent)]
    Transfer(#[from] crate::error::Error),
    #[error("cancelled")]
    Cancelled,
    /// The peer made the session hold more than its limits allow.
    #[error("{0}")]
    Limit(String),
    /// The session was ended from outside its role code (idle, shut down, its peer gone,
    /// or an error elsewhere in it); the reason is a whole sentence.
    #[error("{0}")]
    Ended(String),
    #[error("cannot connect to {0}")]
    Connect(String),
    #[error("{}", crate::agent::status_text(.0))]
    Rpc(tonic::Status),
}

impl SessionError {
    pub fn unexpected(frame: &pb::Frame, while_: &str) -> SessionError {
        let what = match &frame.kind {
            Some(kind) => format!("{kind:?}")
                .split('(')
                .next()
                .unwrap_or_default()
                .to_owned(),
            None => "empty frame".to_owned(),
        };
        SessionError::Protocol(format!("unexpected {what} while {while_}"))
    }
}

/// Wraps a frame kind.
pub fn frame(kind: pb::frame::Kind) -> pb::Frame {
    pb::Frame { kind: Some(kind) }
}

/// Sends an abort to the peer (best effort) and returns the error.
pub async fn abort(tx: &mpsc::Sender<pb::Frame>, error: SessionError) -> SessionError {
    let message = match &error {
        SessionError::Aborted(m) => m.clone(),
        other => other.to_string(),
    };
    let _ = tx
        .send(frame(pb::frame::Kind::Abort(pb::Abort { message })))
        .await;
    error
}
