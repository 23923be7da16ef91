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
//! Nothing here is named push or pull: whichever end is the source runs `source::run`,
//! the other `destination::run`, over a [`Link`] of frames (a gRPC stream, either way
//! round) and a [`data::DataPlane`] (raw TCP streams, or the same records inside `Data`
//! frames when no connection could be made). `client` opens a session against an agent
//! from either role; the agent's server side uses the same two functions.

pub mod client;
pub mod data;
pub mod destination;
mod fetcher;
pub mod lifetime;
mod planner;
pub mod shape;
pub mod source;
pub mod throttle;

use tokio::sync::mpsc;

use crate::wire::pb;

pub use shape::Shape;

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
    #[error("{}", rpc_message(.0))]
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

/// A failed call as a message, with a hint when it says something about the cause. The
/// call came after the agent's hello (`client::Remote::connect` waits for it), so a
/// closed connection here is not a TLS mismatch.
pub fn rpc_message(s: &tonic::Status) -> String {
    status_message(s, Stage::Answered)
}

/// A failed call at `stage` as a message: the status, its causes, and a hint.
pub fn status_message(s: &tonic::Status, stage: Stage) -> String {
    let mut message = format!("{} ({:?})", s.message(), s.code());
    if let Some(cause) = std::error::Error::source(s) {
        let cause = client::causes(cause);
        if !message.contains(&cause) {
            message = format!("{message}: {cause}");
        }
    }
    let hint = tls_hint(&message, stage);
    message + hint
}

/// Where on a connection a failure happened, as far as hints go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before the agent answered anything. A connection closed now is what a TLS
    /// mismatch looks like from the plain side (a TLS agent drops a client that does not
    /// say hello in TLS).
    Greeting,
    /// After the agent answered: it spoke this client's protocol, so a closed connection
    /// means it stopped, crashed or dropped the call — a TLS hint would mislead.
    Answered,
}

/// What to try when `message` looks like one end speaking TLS and the other not, or a
/// certificate the client does not trust; or, for a connection closed after the agent
/// had answered, that the agent went away.
pub fn tls_hint(message: &str, stage: Stage) -> &'static str {
    let has = |needle: &str| message.contains(needle);
    if has("UnknownIssuer") || has("invalid peer certificate") {
        " — the agent's certificate is not signed by a CA this client trusts (--tls-ca)"
    } else if has("InvalidContentType") || has("CorruptMessage") {
        " — the agent does not seem to speak TLS (drop --tls*)"
    } else if has("CertificateRequired") || has("certificate required") {
        " — the agent requires a client certificate (--tls-cert, --tls-key)"
    } else if !closed(message) {
        ""
    } else if stage == Stage::Greeting {
        " — the agent closed the connection before answering: does it require TLS (--tls-ca \
         PEM, or --tls for the system's roots) or a client certificate (--tls-cert, --tls-key)?"
    } else {
        " — the agent closed the connection (it may have stopped or crashed; its log says why)"
    }
}

/// Whether `message` says the connection was closed or broken under the call (as hyper
/// and h2 word it), or that the peer sent something that is not HTTP/2 (a TLS record).
fn closed(message: &str) -> bool {
    [
        "broken pipe",
        "connection closed",
        "connection reset",
        "error reading a body",
        "connection was not ready",
        "frame with invalid size",
        "h2 protocol error",
    ]
    .iter()
    .any(|needle| message.contains(needle))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What a plain client saw from a TLS agent (several runs), and what a client saw
    /// when the agent crashed in the middle of a unary call and of a stream.
    const TLS_MISMATCH: &[&str] = &[
        "h2 protocol error: http2 error (Unknown): transport error: http2 error: connection \
         error detected: frame with invalid size",
        "operation was canceled (Cancelled): transport error: operation was canceled: \
         connection closed",
        "operation was canceled (Cancelled): transport error: operation was canceled: \
         connection was not ready",
        "transport error (Unknown): transport error: connection error: stream closed because \
         of a broken pipe",
    ];
    const CRASHED: &[&str] = &[
        "transport error (Unknown): transport error: connection error: stream closed because \
         of a broken pipe",
        "h2 protocol error: error reading a body from connection (Unknown): error reading a \
         body from connection: stream closed because of a broken pipe",
    ];

    #[test]
    fn a_tls_hint_only_before_the_agent_answered() {
        for m in TLS_MISMATCH {
            assert!(
                tls_hint(m, Stage::Greeting).contains("does it require TLS"),
                "{m}"
            );
        }
        for m in CRASHED {
            let hint = tls_hint(m, Stage::Answered);
            assert!(
                !hint.contains("TLS") && !hint.contains("--tls"),
                "{m}: {hint}"
            );
            assert!(hint.contains("closed the connection"), "{m}: {hint}");
        }
        assert_eq!(tls_hint("not found (NotFound)", Stage::Answered), "");
        assert!(
            tls_hint("invalid peer certificate: UnknownIssuer", Stage::Answered)
                .contains("--tls-ca")
        );
    }
}
