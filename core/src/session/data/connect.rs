//! The client's side of the data plane: how many streams to open, and opening them to the
//! agent's data port, each with the preface and the session's token, all or none.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Duration;

use super::Stream;
use crate::tls::DataTls;
use crate::wire::protocol::{MAX_STREAMS, PREFACE};

/// How many data streams to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Streams {
    Fixed(u32),
    /// Adapted to the link's round trip, at most `max` (what the agent granted).
    Auto {
        max: u32,
    },
}

/// Streams on a link with no real delay (loopback, a LAN): there the CPUs of both ends
/// are the limit. Each stream's receiver applies its files one after another, so a few
/// per core keep both ends busy (on two cores, loopback W1: 8 streams 1.65–1.95 s, 4
/// streams 1.84–2.60 s, 12 or 16 no better than 8).
pub const NEAR_STREAMS: u32 = 8;

/// Streams for a link whose round trip is `rtt`. One TCP stream carries at most its
/// window per round trip (Linux grows a window to a few MiB by default), so a long link
/// needs more streams in flight to fill: one more per 5 ms of round trip, up to
/// [`MAX_STREAMS`].
pub fn auto_streams(rtt: Duration) -> u32 {
    let extra = rtt.as_micros() / 5_000;
    (NEAR_STREAMS + u32::try_from(extra).unwrap_or(MAX_STREAMS)).min(MAX_STREAMS)
}

/// Opens data connections to `addr`, presenting `token` on each: a fixed number, or as
/// many as suit the round trip measured while connecting the first. All or nothing: an
/// error means the caller falls back to the gRPC stream.
pub fn connect(
    addr: SocketAddr,
    tls: Option<&DataTls>,
    token: &[u8],
    streams: Streams,
) -> io::Result<Vec<Stream>> {
    let open = || -> io::Result<Stream> {
        let mut s = Stream::connect(addr, tls)?;
        s.write_all(PREFACE)?;
        s.write_all(token)?;
        s.flush()?;
        Ok(s)
    };
    let started = std::time::Instant::now();
    let first = open()?;
    let n = match streams {
        Streams::Fixed(n) => n,
        // The TCP handshake took one round trip (the TLS one more, counted too: a
        // generous estimate only adds streams).
        Streams::Auto { max } => auto_streams(started.elapsed()).min(max),
    };
    let mut all = vec![first];
    for _ in 1..n.clamp(1, MAX_STREAMS) {
        all.push(open()?);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_streams_for_longer_round_trips() {
        let ms = Duration::from_millis;
        assert_eq!(auto_streams(Duration::from_micros(40)), NEAR_STREAMS);
        assert_eq!(auto_streams(ms(4)), NEAR_STREAMS);
        assert_eq!(auto_streams(ms(20)), NEAR_STREAMS + 4);
        assert_eq!(auto_streams(ms(300)), MAX_STREAMS);
    }
}
