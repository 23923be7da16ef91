//! Why the server end of a session refuses a request before any role runs, and how that
//! reads as a gRPC status: the code tells a client whether to fix its request, its
//! rights, or nothing (try again), and the message names only paths inside the served
//! directory.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::sys::beneath;
use crate::wire::pb;

/// A request the server end will not serve; the text is a whole sentence for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// What it names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// This end may not do that there (a path leaving its root, a read-only module).
    #[error("{0}")]
    Denied(String),
    /// This end, or the peer's protocol version, cannot do what is asked.
    #[error("{0}")]
    Unsupported(String),
    /// Something failed on this end.
    #[error("{0}")]
    Failed(String),
}

impl Refusal {
    /// A filesystem error doing `what` to `rel` (a path inside the served directory).
    pub fn io(what: &str, rel: &Path, e: &io::Error) -> Refusal {
        let message = format!("{what} {}: {e}", rel.display());
        match e.kind() {
            io::ErrorKind::NotFound => Refusal::NotFound(message),
            io::ErrorKind::PermissionDenied => Refusal::Denied(message),
            io::ErrorKind::InvalidInput => Refusal::Invalid(message),
            _ => Refusal::Failed(message),
        }
    }

    /// A root that could not be opened (`roots::open_source`, `roots::open_destination`).
    pub fn root(e: Error) -> Refusal {
        match e {
            Error::Source { path, source } => Refusal::io("source", &path, &source),
            Error::Destination { path, source } => Refusal::io("destination", &path, &source),
            other => Refusal::Failed(other.to_string()),
        }
    }
}

impl From<Refusal> for tonic::Status {
    fn from(r: Refusal) -> tonic::Status {
        match r {
            Refusal::Invalid(m) => tonic::Status::invalid_argument(m),
            Refusal::NotFound(m) => tonic::Status::not_found(m),
            Refusal::Denied(m) => tonic::Status::permission_denied(m),
            Refusal::Unsupported(m) => tonic::Status::failed_precondition(m),
            Refusal::Failed(m) => tonic::Status::internal(m),
        }
    }
}

/// The path of a location from the network, relative to its module: a leading `/` is
/// dropped (a trailing one kept, it means "the contents of"); a NUL byte, an absolute
/// path or `..` is refused.
pub fn location_path(location: &pb::Location) -> Result<PathBuf, Refusal> {
    if location.path.contains(&0) {
        return Err(Refusal::Invalid("path contains a NUL byte".into()));
    }
    let bytes = location.path.strip_prefix(b"/").unwrap_or(&location.path);
    let rel = PathBuf::from(OsStr::from_bytes(bytes));
    beneath::check(&rel).map_err(|e| Refusal::Denied(e.to_string()))?;
    Ok(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(path: &[u8]) -> Result<PathBuf, Refusal> {
        location_path(&pb::Location {
            module: "m".into(),
            path: path.to_vec(),
        })
    }

    #[test]
    fn locations_stay_inside_their_module() {
        assert_eq!(at(b"/a/b/").unwrap(), Path::new("a/b/"));
        assert_eq!(at(b"").unwrap(), Path::new(""));
        assert!(matches!(at(b"a\0b"), Err(Refusal::Invalid(_))));
        for bad in [&b"/../x"[..], b"a/../../x", b"//etc"] {
            assert!(matches!(at(bad), Err(Refusal::Denied(_))), "{bad:?}");
        }
    }

    #[test]
    fn refusals_keep_their_meaning_as_statuses() {
        let missing = io::Error::from(io::ErrorKind::NotFound);
        let r = Refusal::root(Error::Source {
            path: "d/f".into(),
            source: missing,
        });
        let status = tonic::Status::from(r);
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert!(status.message().starts_with("source d/f: "), "{status:?}");
        let read_only = tonic::Status::from(Refusal::Denied("module \"m\" is read-only".into()));
        assert_eq!(read_only.code(), tonic::Code::PermissionDenied);
    }
}
