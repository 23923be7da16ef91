//! How the client end of a session reaches the other end: open the session's control
//! stream, then connect the data streams the other end granted. An agent is reached over
//! gRPC and TCP (`agent::AgentClient`); tests reach a server role in the same process
//! (`session::in_process`). The client role (`initiate`) is written against this trait only, so
//! it is the same code in both.

use std::io;

use super::data::{Stream, Streams};
use super::{Link, SessionError};
use crate::wire::pb;

/// A way to open sessions with one server end.
#[tonic::async_trait]
pub trait Transport: Send + Sync {
    /// Sends `open` and waits for the first answer: the link of the session once the
    /// other end accepted it (its `Accept` frame is returned, not left on the link).
    async fn open(&self, open: pb::Open) -> Result<(Link, pb::Accept), SessionError>;

    /// Connects `streams` data streams to the port `accept` granted, presenting its
    /// token on each. All or nothing: an error makes the session fall back to carrying
    /// its records in the control stream.
    async fn connect_data(&self, accept: &pb::Accept, streams: Streams) -> io::Result<Vec<Stream>>;
}
