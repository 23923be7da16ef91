//! Errors that stop a transfer before or instead of running it.
//!
//! Messages name the path; the OS error is the `source()` (print the chain, e.g.
//! anyhow's `{:#}`, to see both).
//!
//! A failure on one file is not an `Error`: it is recorded in `Report::failures` and the
//! run goes on.

use std::io;
use std::path::PathBuf;

/// A fatal error: the transfer could not start, or could not go on at all.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("source {}", path.display())]
    Source { path: PathBuf, source: io::Error },

    #[error("destination {}", path.display())]
    Destination { path: PathBuf, source: io::Error },

    #[error("destination {} is inside source {}", destination.display(), source_dir.display())]
    DestinationInsideSource {
        source_dir: PathBuf,
        destination: PathBuf,
    },

    #[error(
        "source {} is inside destination {}: a mirror would delete it",
        source_dir.display(),
        destination.display()
    )]
    SourceInsideDestination {
        source_dir: PathBuf,
        destination: PathBuf,
    },

    #[error("source and destination are the same: {}", path.display())]
    SameSourceAndDestination { path: PathBuf },

    #[error("invalid filter pattern {pattern:?}: {message}")]
    Filter { pattern: String, message: String },

    #[error("could not start worker threads: {0}")]
    Workers(String),

    /// `Transfer` runs both ends on this machine; a spec with an end on an agent goes
    /// through `agent::AgentClient` instead.
    #[error("one end of this transfer is on an agent: it runs through an agent client")]
    NotLocal,
}

impl Error {
    /// Whether running the same transfer again might succeed without the user changing
    /// anything (a transient I/O error rather than a mistake in the request).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Source { source, .. } | Error::Destination { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            Error::Workers(_) => true,
            _ => false,
        }
    }
}
