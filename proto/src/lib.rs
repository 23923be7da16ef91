//! `blit-proto`: the generated types and service stubs of Blit's wire contract
//! (`proto/blit/v1`). Only the edges use them — `blit_core::wire` converts to and from the
//! engine's types, and the gRPC adapters in the CLI and the agent serve and call them.

#![allow(clippy::all, missing_docs)]

/// Version 1 of the protocol.
pub mod v1 {
    tonic::include_proto!("blit.v1");

    /// The protocol version this build speaks. Peers with the same major version work
    /// together; the minor version only adds optional fields and capabilities.
    pub const PROTOCOL_MAJOR: u32 = 1;
    pub const PROTOCOL_MINOR: u32 = 1;
}
