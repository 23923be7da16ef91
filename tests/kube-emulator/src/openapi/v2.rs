//! `/openapi/v2`, with no definitions. kubectl (1.27 and later) reads OpenAPI v3 for
//! everything the emulator needs, and asks for v2 only where v3 has no answer: to
//! validate a `kind: List` file client-side, and for the strategic-merge metadata of a
//! built-in kind on a client-side apply. It asks in protobuf (gnostic's
//! `openapi_v2.Document`) and gives up the whole command when it gets a 404. Finding
//! no definitions, it validates nothing client-side (the server validates on write)
//! and uses the patch metadata compiled into it, which is what it does for a kind the
//! server does not describe.

use serde_json::{Value, json};

use crate::discovery;

/// The media type it is answered in (kubectl asks for `…spec.v2@v1.0+protobuf`, but
/// an `@` in a content type does not parse, so the server answers with a dot).
pub const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

fn version() -> String {
    format!("v{}.{}.0", discovery::MAJOR, discovery::MINOR)
}

/// The document as JSON.
pub fn json() -> Value {
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": version()},
        "paths": {},
        "definitions": {},
    })
}

/// The document in protobuf: `Document{swagger: "2.0", info: Info{title, version}}`
/// (fields 1 and 2; `Info`'s title and version are its fields 1 and 2). Two string
/// fields and a message of two more: too little to bring in a protobuf crate for.
pub fn protobuf() -> Vec<u8> {
    let mut info = Vec::new();
    length_delimited(&mut info, 1, b"Kubernetes");
    length_delimited(&mut info, 2, version().as_bytes());
    let mut doc = Vec::new();
    length_delimited(&mut doc, 1, b"2.0");
    length_delimited(&mut doc, 2, &info);
    doc
}

/// Appends field `number` with wire type 2 (length-delimited).
fn length_delimited(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
    out.push((number << 3) | 2);
    let mut len = bytes.len();
    while len >= 0x80 {
        out.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protobuf_document_has_swagger_and_info() {
        let doc = protobuf();
        assert_eq!(&doc[..5], b"\x0a\x032.0");
        assert_eq!(doc[5], 0x12, "field 2, length-delimited");
        assert_eq!(doc[6] as usize, doc.len() - 7);
        assert_eq!(&doc[7..19], b"\x0a\x0aKubernetes");
        let mut long = Vec::new();
        length_delimited(&mut long, 1, &[0; 300]);
        assert_eq!(&long[..3], &[0x0a, 0xac, 0x02]);
    }
}
