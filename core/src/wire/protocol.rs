//! The protocol's constants that both ends must agree on, beyond the generated types: what
//! a build offers, from which minor version a feature travels, how calls are marked, and
//! how a data connection introduces itself and how many one session may open. Clients and
//! the agent's services take them from here, never from each other.

/// Capabilities this build offers (in `Open`, `Accept` and `Hello`).
pub const CAPABILITIES: &[&str] = &["tcp-data", "sparse", "hard-links", "checksum", "xattrs"];

/// The protocol minor version (of major 1) that carries extended attributes.
pub const XATTRS_SINCE: u32 = 1;

/// The metadata key carrying the protocol version on every call.
pub const PROTOCOL_HEADER: &str = "blit-protocol";

/// What a data connection sends first, before the session's token.
pub const PREFACE: &[u8; 8] = b"BLITDAT1";

/// Length of a session's data-plane token (in `Accept`, and after each [`PREFACE`]).
pub const TOKEN_LEN: usize = 32;

/// Most data streams one session may use: the agent grants at most this many, the client
/// opens at most this many.
pub const MAX_STREAMS: u32 = 16;

/// [`CAPABILITIES`] as the generated messages carry them.
pub fn capabilities() -> Vec<String> {
    CAPABILITIES.iter().map(|c| c.to_string()).collect()
}
