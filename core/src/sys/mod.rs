//! Thin, safe wrappers over the Linux system calls the engine is built on.
//!
//! Everything here works relative to directory file descriptors and never follows a
//! symlink below the roots the caller opened, so a tree that changes underneath a
//! transfer cannot redirect a write or a delete outside it.

pub mod beneath;
pub mod creds;
pub mod cursor;
pub mod dir;
pub mod file;
pub mod meta;
pub mod reopen;
pub mod temp;
pub mod tree;
pub mod xattr;

use std::io;

/// Converts a rustix error into `std::io::Error`.
pub fn io_err(e: rustix::io::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// Whether this thread may set ownership and other root-only metadata: the process runs
/// as root and the thread does not act as a module's identity (`creds`).
pub fn is_root() -> bool {
    creds::process_is_root() && !creds::acting()
}

/// Lifts the soft open-file limit to the hard one: a transfer keeps directories and
/// in-flight files open, and wide trees would otherwise run into the traditional 1,024.
pub fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}
