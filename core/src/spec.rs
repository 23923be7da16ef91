//! `TransferSpec`: everything a transfer needs to know, as plain data.
//!
//! A front end (the CLI, the agent's jobs, the operator) turns what it was given into a
//! spec once: two [`Endpoint`]s — a local path, or a path on an agent parsed into an
//! [`AgentPath`] — and the [`Options`] both ends of a transfer must agree on. From then on
//! the spec travels as data: the options go over the wire as they are
//! (`wire::options_to_wire`), and an agent's end of a session works from [`Options`]
//! alone, since the other endpoint is its peer. The engine never sees flags or config
//! files.

use std::path::PathBuf;

use crate::agent_path::AgentPath;
use crate::copy::Reflink;
use crate::filter::Filter;
use crate::sys::creds::Identity;

/// Where one side of a transfer lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A path on this machine, as the user wrote it (a trailing `/` is significant).
    Local(PathBuf),
    /// A path inside a module of an agent (a trailing `/` is significant there too).
    Agent(AgentPath),
}

impl Endpoint {
    /// A path as a user types it: `host[:port]:/module/path` or `blit://host/module/path`
    /// names a path on an agent, anything else a local path. A remote path that does not
    /// parse is an error, not a local path by accident.
    pub fn parse(s: &std::ffi::OsStr) -> Result<Endpoint, String> {
        match AgentPath::parse(s) {
            None => Ok(Endpoint::Local(PathBuf::from(s))),
            Some(Ok(a)) => Ok(Endpoint::Agent(a)),
            Some(Err(e)) => Err(format!("{}: {e}", s.to_string_lossy())),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Local(p) => write!(f, "{}", p.display()),
            Endpoint::Agent(a) => write!(f, "{a}"),
        }
    }
}

/// What happens to entries the source does not have, and to the source afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Create and update; never delete.
    #[default]
    Copy,
    /// Also delete destination entries that are absent from the source.
    Mirror,
    /// Copy, confirm each file landed, then remove it from the source.
    Move,
}

/// How to decide that a destination file already has the source's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compare {
    /// Same size and same mtime (within the modify window).
    #[default]
    SizeMtime,
    /// Same size and same BLAKE3 hash.
    Checksum,
    /// Same size, whatever the mtime.
    SizeOnly,
    /// Never assume: copy every file.
    IgnoreTimes,
}

/// Which metadata to carry over besides content, modes and mtimes (always kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Preserve {
    /// Recreate hard-link groups (`-H`).
    pub hard_links: bool,
    /// Copy extended attributes (`-X`).
    pub xattrs: bool,
    /// Set owner and group (numeric ids). Only effective when running as root.
    pub owner: bool,
}

/// What the writing end may do that needs privilege, and as whom it reads and writes.
///
/// A local run and a client's own end may do whatever their user may
/// ([`Privileges::ALL`]). An agent fills this in from the module's settings; a spec that
/// arrives over the network starts with [`Privileges::NONE`]. What is refused, and how:
///
/// | field | refused means |
/// | --- | --- |
/// | `devices`, `specials` | the entry fails (a per-entry failure in the report) |
/// | `setid` | files are written without their setuid/setgid bits |
/// | `owner` | entries belong to the writer (the identity, or the process) |
/// | `system_xattrs` | only `user.*` attributes are read, set or removed |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Privileges {
    /// Create character and block device nodes.
    pub devices: bool,
    /// Create FIFOs and sockets.
    pub specials: bool,
    /// Keep the setuid and setgid bits of files (directories always keep setgid, which
    /// only makes new entries inherit the group).
    pub setid: bool,
    /// Set owners and groups as sent (with `Preserve::owner`, and only as root).
    pub owner: bool,
    /// Carry extended attributes outside `user.*` (`security.*`, `trusted.*`,
    /// `system.*`), with `-X` and only as root.
    pub system_xattrs: bool,
    /// Read and write as this user and group (a module's identity on a root agent);
    /// `None`: as this process.
    pub identity: Option<Identity>,
}

impl Privileges {
    /// Whatever this process may do: a local run, a client's own end.
    pub const ALL: Privileges = Privileges {
        devices: true,
        specials: true,
        setid: true,
        owner: true,
        system_xattrs: true,
        identity: None,
    };

    /// Nothing beyond what any user may do to files it owns.
    pub const NONE: Privileges = Privileges {
        devices: false,
        specials: false,
        setid: false,
        owner: false,
        system_xattrs: false,
        identity: None,
    };

    /// The extended-attribute namespaces carried.
    pub fn xattr_scope(&self) -> crate::sys::xattr::Scope {
        if self.system_xattrs {
            crate::sys::xattr::Scope::All
        } else {
            crate::sys::xattr::Scope::User
        }
    }
}

/// Resource limits and safety limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Worker threads for walking and copying.
    pub workers: usize,
    /// Refuse to delete more than this many entries (mirror).
    pub max_delete: Option<u64>,
    /// Two mtimes this close (nanoseconds) count as equal.
    pub modify_window_ns: u64,
    /// Bytes per second a remote source may send (`--bwlimit`).
    pub bandwidth: Option<u64>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            workers: default_workers(),
            max_delete: None,
            modify_window_ns: 0,
            bandwidth: None,
        }
    }
}

/// Two threads per core: enough requests in flight to hide disk latency on a cold cache,
/// few enough not to thrash a warm one.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get() * 2)
        .clamp(2, 32)
}

/// How a transfer behaves, whichever machines its ends are on: what both ends agree on
/// (sent to an agent as `pb::TransferOptions`) and what the writing end may do.
#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    pub compare: Compare,
    pub filter: Filter,
    pub preserve: Preserve,
    pub limits: Limits,
    pub reflink: Reflink,
    /// Continue partial files left by an interrupted run instead of starting them over.
    pub resume: bool,
    /// Plan and report, change nothing.
    pub dry_run: bool,
    /// What the writing end may do beyond plain files, and as whom.
    pub privileges: Privileges,
}

impl Default for Options {
    /// Copy, compare by size and mtime, keep owners where allowed, no filter; whatever
    /// this process may do ([`Privileges::ALL`]).
    fn default() -> Options {
        Options {
            mode: Mode::Copy,
            compare: Compare::SizeMtime,
            filter: Filter::new(),
            preserve: Preserve {
                owner: true,
                ..Preserve::default()
            },
            limits: Limits::default(),
            reflink: Reflink::Auto,
            resume: false,
            dry_run: false,
            privileges: Privileges::ALL,
        }
    }
}

/// One transfer, fully described.
#[derive(Debug, Clone)]
pub struct TransferSpec {
    pub source: Endpoint,
    pub destination: Endpoint,
    pub options: Options,
}

impl TransferSpec {
    /// A spec with default options: copy `source` to `destination`.
    pub fn new(source: Endpoint, destination: Endpoint) -> TransferSpec {
        TransferSpec {
            source,
            destination,
            options: Options::default(),
        }
    }
}
