//! The edge between the engine and the wire contract (`blit-proto`): conversions between
//! core types and the generated protobuf types, with every value from the network checked
//! (names are single path components, enums are known), the protocol's constants
//! (`protocol`), and the data-plane record framing (`record`). The session roles and the
//! agent client build and read the generated messages; everything they take from or give
//! to the engine passes through the conversions here.

mod convert;
pub mod protocol;
pub mod record;

pub use blit_proto::v1 as pb;
pub use convert::{
    WireError, entry_from_wire, entry_to_wire, failure_from_wire, failure_to_wire,
    options_from_wire, options_to_wire, report_from_wire, report_to_wire, shape_from_wire,
    shape_to_wire, valid_name, valid_rel, xattrs_to_wire,
};
