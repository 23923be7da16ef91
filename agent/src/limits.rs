//! What the agent grants a peer before and around authentication, in one place: how long
//! a connection may take to prove itself, how many may be waiting at once, how large a
//! gRPC message may be and how long one may stall. Each number says why it is what it is.
//!
//! A peer that has not authenticated yet costs the agent a socket, a small task and a
//! few buffers; these limits keep that cost bounded however many connections arrive,
//! while a legitimate client, which authenticates within a round trip or two of
//! connecting, is not slowed.

use std::time::Duration;

/// How long a data connection has, from accept, to finish its TLS handshake and present
/// its preface and token. A client sends its preface right after connecting (one round
/// trip, two or three with TLS), so 10 s covers any real link; a connection that
/// trickles bytes to stay open is closed when it runs out.
pub const DATA_ADMISSION_DEADLINE: Duration = Duration::from_secs(10);

/// Data connections one peer address may have waiting to authenticate. A session opens
/// at most 16 (`MAX_STREAMS`), each waiting only a round trip; 64 lets four sessions of
/// one host (or of hosts behind one NAT address) connect at the same instant. When a
/// peer is over, its oldest waiting connection is closed: a flood only displaces itself.
pub const DATA_PENDING_PER_PEER: usize = 64;

/// Data connections waiting to authenticate, all peers together (at most an eighth of
/// the descriptors, see [`share_of_descriptors`]). At the cap the oldest waiting
/// connection of the peer with the most is closed.
pub const DATA_PENDING_TOTAL: usize = 512;

/// How long a control-plane (gRPC) connection has, from accept, to complete its TLS
/// handshake and make its first authenticated request. Clients connect to make a
/// request and make it at once; 10 s covers slow links and TLS.
pub const CONTROL_FIRST_REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// Control connections one peer address may have that have not authenticated yet. Each
/// `blit` command opens one and authenticates within a round trip; 32 lets a busy host
/// run that many commands at the same instant.
pub const CONTROL_PENDING_PER_PEER: usize = 32;

/// Control connections that have not authenticated yet, all peers together (at most an
/// eighth of the descriptors).
pub const CONTROL_PENDING_TOTAL: usize = 256;

/// Control connections in all, authenticated or not (at most a quarter of the
/// descriptors, leaving the rest to sessions' files and data streams). At the cap the
/// oldest unauthenticated connection goes, else the one idle the longest; a connection
/// with a call in progress is never closed for room.
pub const CONTROL_CONNECTIONS: usize = 1024;

/// The TLS handshake of a control connection (tonic's own timeout, inside
/// [`CONTROL_FIRST_REQUEST_DEADLINE`]).
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/2 keepalive: a ping after this long without frames, so a peer that vanished
/// (a node lost, a partition) does not hold its connection and its sessions forever.
pub const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// How long a keepalive ping may go unanswered before the connection is closed: many
/// round trips of any real link, short enough to free a dead peer's resources soon.
pub const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Concurrent gRPC calls on one connection. A client runs one `Transfer` per session
/// and a few short calls beside it; past the cap, HTTP/2 clients queue their calls
/// rather than fail. It bounds what one connection can hold in unfinished messages to
/// 16 × [`SESSION_MESSAGE`].
pub const MAX_CONCURRENT_STREAMS: u32 = 16;

/// Request headers of one call: a path, a bearer token and a few gRPC headers fit many
/// times over.
pub const MAX_HEADER_LIST: u32 = 16 << 10;

/// Largest message the agent accepts on a `Transfer` stream. The largest the protocol
/// sends is a `DirBatch` of 2,000 entries (`BATCH_ENTRIES` in `blit_core::session::source`): at
/// worst 2,000 symlinks with 255-byte names and 4,095-byte targets and a hash, about
/// 8.6 MiB encoded (see the test below), or, with `-X`, 2,000 files whose attributes
/// fill one 4 KiB ext4 block each, about 8.4 MiB. 16 MiB covers both with room; a batch
/// whose entries carry more than ~8 KiB of extended attributes each on average (XFS,
/// btrfs) is refused with OUT_OF_RANGE naming the limit, as are the lists the protocol
/// does not cut by size: a `Summary` of more than ~100,000 failures, a `NeedBatch`
/// resuming more than ~1.9 TiB of partial files (34 bytes per 4 MiB block).
pub const SESSION_MESSAGE: usize = 16 << 20;

/// Largest message the agent sends on a `Transfer` stream: what blit's client accepts
/// (64 MiB). Sending is not something a peer can use to make the agent hold more than
/// its own tree and report, and a `Summary` lists every failure of a transfer while a
/// pull's batches carry `-X` attributes, so this stays as large as the other end takes.
pub const SESSION_MESSAGE_SENT: usize = 64 << 20;

/// Largest message of the small services (`Admin`, `Jobs`, health): a module name, a
/// path, a glob, a filter list.
pub const CONTROL_MESSAGE: usize = 1 << 20;

/// How long a gRPC message may sit unfinished with nothing arriving while the agent
/// waits for the rest of it. The agent reads as fast as bytes come, so a sender blocked
/// by flow control is never mistaken for a stalled one; 20 s of silence in the middle
/// of a message means a dead link or a peer holding memory on purpose, and closes its
/// connection.
pub const MESSAGE_STALL_TIMEOUT: Duration = Duration::from_secs(20);

/// Bytes of unfinished gRPC messages held at once, all connections together. Each
/// message in flight is buffered until complete; 128 MiB is eight messages of the
/// largest size, or a hundred sessions' typical batches, arriving at the same moment. A
/// stream that would go over is refused with RESOURCE_EXHAUSTED.
pub const UNFINISHED_MESSAGES_BUDGET: u64 = 128 << 20;

/// How long a call that should answer quickly may take to answer: the `Open` of a
/// session (until its `Accept`), `Hello`, listing modules, file-system stats,
/// completions, starting, cancelling and listing jobs, health checks. Calls whose work
/// grows with a tree (`ListDir`, `Find`, `DiskUsage`, `Remove`) and the transfer and
/// job streams themselves have none.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// First pause of an accept loop after an error such as EMFILE; it doubles up to
/// [`ACCEPT_BACKOFF_MAX`] while errors go on, so a full descriptor table is not polled
/// in a busy loop.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);

/// Longest pause of an accept loop between attempts while errors go on: short enough
/// that the agent accepts again within a second of descriptors freeing up.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Repeated warnings (refused connections, failed authentications) are logged at most
/// once per this interval each, with a count and the peer that caused most.
pub const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// `cap`, lowered to `1 / fraction` of this process's descriptor limit, so that waiting
/// connections never use the descriptors sessions need.
pub fn share_of_descriptors(cap: usize, fraction: u64) -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    match limit {
        Some(n) => cap.min(usize::try_from(n / fraction).unwrap_or(usize::MAX).max(1)),
        None => cap,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blit_core::wire::pb;
    use prost::Message;

    /// An entry with every number at its widest, a 255-byte name and a hash.
    fn widest(kind: pb::EntryKind) -> pb::Entry {
        pb::Entry {
            name: vec![b'n'; 255],
            kind: kind as i32,
            type_bits: u32::MAX,
            size: u64::MAX,
            allocated: u64::MAX,
            mode: u32::MAX,
            uid: u32::MAX,
            gid: u32::MAX,
            mtime_sec: i64::MIN,
            mtime_nsec: u32::MAX,
            dev: u64::MAX,
            ino: u64::MAX,
            nlink: u32::MAX,
            rdev: u64::MAX,
            link_target: None,
            hash: Some(vec![0; 32]),
            xattrs: None,
        }
    }

    /// A `Frame` carrying one `DirBatch` of 2,000 copies of `entry`, encoded.
    fn batch_of(entry: pb::Entry) -> usize {
        let batch = pb::DirBatch {
            rel: vec![b'd'; 4095],
            entries: vec![entry; 2000],
            partial: true,
            dir: None,
        };
        pb::Frame {
            kind: Some(pb::frame::Kind::Dir(batch)),
        }
        .encoded_len()
    }

    /// The worst batches the protocol sends fit [`SESSION_MESSAGE`] with room: 2,000
    /// symlinks with the longest target Linux allows, and (`-X`) 2,000 files whose
    /// attributes fill a 4 KiB ext4 block.
    #[test]
    fn the_largest_batches_fit_a_session_message_with_room() {
        let mut symlink = widest(pb::EntryKind::Symlink);
        symlink.link_target = Some(vec![b't'; 4095]);
        let mut file = widest(pb::EntryKind::File);
        file.xattrs = Some(pb::XattrSet {
            attrs: vec![pb::Xattr {
                name: b"user.filled".to_vec(),
                value: vec![b'v'; 4000],
            }],
        });
        for (what, size) in [
            ("symlinks", batch_of(symlink)),
            ("-X files", batch_of(file)),
        ] {
            assert!(
                size < SESSION_MESSAGE * 5 / 8,
                "a batch of 2,000 {what} takes {size} bytes"
            );
        }
    }
}
