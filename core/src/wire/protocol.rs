//! The protocol's constants that both ends must agree on, beyond the generated types: what
//! a build offers, from which minor version a feature travels, and how calls are marked.
//! Clients and the agent's services take them from here, never from each other.

/// Capabilities this build offers (in `Open`, `Accept` and `Hello`).
pub const CAPABILITIES: &[&str] = &["tcp-data", "sparse", "hard-links", "checksum", "xattrs"];

/// The protocol minor version (of major 1) that carries extended attributes.
pub const XATTRS_SINCE: u32 = 1;

/// The metadata key carrying the protocol version on every call.
pub const PROTOCOL_HEADER: &str = "blit-protocol";

/// [`CAPABILITIES`] as the generated messages carry them.
pub fn capabilities() -> Vec<String> {
    CAPABILITIES.iter().map(|c| c.to_string()).collect()
}
