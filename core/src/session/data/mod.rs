//! The data plane of a session: where the records of `wire::record` travel.
//!
//! Normally that is several raw TCP connections that the client opens to the agent's data
//! port ([`connect`]), each starting with a preface (`wire::protocol::PREFACE` and the
//! session's one-time token, see `token`) that the agent reads before handing the
//! connection to its session ([`Stream::admit`]). When no connection can be made (or
//! `--force-grpc`), the same records travel as the bytes of `Data` frames in the session's
//! gRPC stream (`frames`): one logical stream, slower, visibly reported. The bytes always
//! flow from the source role ([`Sink`], `send`) to the destination role ([`Incoming`],
//! `receive`), whichever end opened the connections. With TLS, each connection is a TLS
//! session (handshake first, then the preface inside it, see `stream`) and bytes go out
//! through rustls instead of `sendfile`, and come in without `splice`.

mod connect;
mod frames;
mod receive;
mod send;
mod stream;
mod token;

pub use connect::{NEAR_STREAMS, Streams, auto_streams, connect};
pub use frames::{FrameReader, FrameWriter};
pub use receive::Incoming;
pub use send::{Outgoing, Sink};
pub use stream::Stream;
pub use token::{new_token, random_hex, same_token};

/// Buffer of each stream, in either direction: many small files' records leave in one
/// write and arrive in one read.
const STREAM_BUFFER: usize = 1 << 20;

/// How the bytes of one session travel.
#[derive(Debug)]
pub enum DataPlane {
    /// Connected data streams (source writes, destination reads).
    Tcp(Vec<Stream>),
    /// Inside the control stream.
    Grpc,
}

impl DataPlane {
    /// "tcp" or "grpc", and the stream count, for the report.
    pub fn describe(&self) -> (String, u32) {
        match self {
            DataPlane::Tcp(s) => {
                let tls = s.iter().any(|s| !s.zero_copy());
                (if tls { "tls" } else { "tcp" }.into(), s.len() as u32)
            }
            DataPlane::Grpc => ("grpc".into(), 1),
        }
    }
}
