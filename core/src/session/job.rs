//! What each end of a session works on: a [`SourceJob`] (the tree it walks and sends)
//! or a [`DestinationJob`] (the directory it writes into). Each is built in one way, from
//! its opened root (`roots::open_source`, `roots::open_destination`) and the transfer's
//! [`Options`] — by a client for its own end and by a server end alike.

use std::ffi::OsString;
use std::sync::Arc;

use rustix::fd::OwnedFd;

use super::lifetime::Lifetime;
use super::throttle::Throttle;
use crate::filter::Filter;
use crate::roots::{DestinationRoot, Rename, Shape, SourceRoot, WholeDir};
use crate::spec::{Compare, Mode, Options, Privileges};

/// What the source end serves.
pub struct SourceJob {
    /// What the source path names (sent to the destination end).
    pub shape: Shape,
    /// The directory walked: the tree, or the directory holding a single entry.
    pub root: OwnedFd,
    /// A single entry's name (the walk lists only it).
    pub only: Option<OsString>,
    /// Filter rules, anchored as the destination will anchor them.
    pub filter: Filter,
    /// Send BLAKE3 hashes with the entries (`--checksum`).
    pub hashes: bool,
    /// Send the extended attributes of files and directories (`-X`).
    pub xattrs: bool,
    pub workers: usize,
    /// A bandwidth limit on the bytes sent.
    pub throttle: Option<Arc<Throttle>>,
    /// A move: remove what the destination confirms.
    pub removal: Option<Removal>,
    /// As whom the tree is read (and a move's sources removed), and which attribute
    /// namespaces are sent.
    pub privileges: Privileges,
    /// What ends the session early, and the memory it may hold for the destination.
    pub lifetime: Lifetime,
}

/// What a move removes at the source besides the confirmed entries.
pub struct Removal {
    /// The tree's own directory, when it was named without a trailing slash.
    pub root: Option<WholeDir>,
}

impl SourceJob {
    /// The source end of a transfer with `options`, sending from `root`, at most as
    /// fast as `throttle` lets it.
    pub fn new(
        root: SourceRoot,
        options: &Options,
        throttle: Option<Arc<Throttle>>,
        lifetime: Lifetime,
    ) -> SourceJob {
        let removal = (options.mode == Mode::Move && !options.dry_run).then(|| Removal {
            root: root.whole_dir,
        });
        SourceJob {
            only: root.shape.single().map(ToOwned::to_owned),
            filter: root.shape.anchor(&options.filter),
            shape: root.shape,
            root: root.dir,
            hashes: options.compare == Compare::Checksum,
            xattrs: options.preserve.xattrs,
            workers: options.limits.workers,
            throttle,
            removal,
            privileges: options.privileges,
            lifetime,
        }
    }
}

/// What the destination end writes into.
pub struct DestinationJob {
    pub options: Options,
    /// The destination root; `None` in a dry run whose destination does not exist.
    pub root: Option<OwnedFd>,
    pub rename: Option<Rename>,
    /// Filter rules (protecting excluded destination entries from mirror deletes).
    pub filter: Filter,
    /// What ends the session early, and the memory it may hold for the source.
    pub lifetime: Lifetime,
}

impl DestinationJob {
    /// The destination end of a transfer with `options`, writing into `root`.
    pub fn new(root: DestinationRoot, options: &Options, lifetime: Lifetime) -> DestinationJob {
        DestinationJob {
            options: options.clone(),
            root: root.dir,
            rename: root.rename,
            filter: root.filter,
            lifetime,
        }
    }
}
