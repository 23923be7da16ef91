//! The modules an agent exports, and how a location from the network is resolved inside
//! one: by name, then beneath its root directory (`blit_core::sys::beneath`), never
//! outside it — and, on a root agent, as the module's identity: while a [`Resolved`]
//! location lives, its thread reads and writes as the module's `uid`/`gid`.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use blit_core::roots::{self, Base, DestinationRoot, Shape, SourceRoot};
use blit_core::spec::{Options, Privileges};
use blit_core::sys::{beneath, creds, dir};
use blit_core::wire::pb;
use rustix::fd::{AsFd, OwnedFd};
use tonic::Status;

use crate::config::ModuleConfig;

/// An exported directory tree, opened once at startup.
#[derive(Debug)]
pub struct Module {
    pub config: ModuleConfig,
    root: OwnedFd,
}

/// All modules of this agent.
#[derive(Debug, Default)]
pub struct Modules {
    modules: Vec<Module>,
}

/// A location resolved to a module and a checked relative path.
///
/// While it lives, the thread acts as the module's identity (if it has one), so whatever
/// is opened through it — and anything else this thread does meanwhile — is checked
/// against that user's permissions. It is not `Send`: it cannot be held across an
/// `.await`, where the thread would go on to run other clients' tasks.
pub struct Resolved<'m> {
    pub module: &'m Module,
    /// Relative to the module root, as sent (a trailing `/` kept).
    pub rel: PathBuf,
    _acting: Option<creds::Acting>,
}

impl Modules {
    pub fn open(configs: &[ModuleConfig]) -> anyhow::Result<Modules> {
        for c in configs {
            check_identity(c)?;
        }
        let modules = configs
            .iter()
            .map(|c| {
                let root = dir::open_root(&c.path).map_err(|e| {
                    anyhow::anyhow!("module {:?}: {}: {e}", c.name, c.path.display())
                })?;
                Ok(Module {
                    config: c.clone(),
                    root,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Modules { modules })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Module> {
        self.modules.iter()
    }

    /// Finds the module and checks the path (relative, no `..`).
    pub fn resolve(&self, location: Option<&pb::Location>) -> Result<Resolved<'_>, Status> {
        let location = location.ok_or_else(|| Status::invalid_argument("no location given"))?;
        let module = self
            .modules
            .iter()
            .find(|m| m.config.name == location.module)
            .ok_or_else(|| Status::not_found(format!("no module named {:?}", location.module)))?;
        if location.path.contains(&0) {
            return Err(Status::invalid_argument("path contains a NUL byte"));
        }
        let bytes = location.path.strip_prefix(b"/").unwrap_or(&location.path);
        let rel = PathBuf::from(OsStr::from_bytes(bytes));
        beneath::check(&rel).map_err(|e| Status::permission_denied(e.to_string()))?;
        let acting = module
            .config
            .identity()
            .map(creds::Identity::act)
            .transpose()
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Resolved {
            module,
            rel,
            _acting: acting,
        })
    }
}

/// A module with an identity needs a root agent that can act as it: found out at start-up,
/// not by the first client.
fn check_identity(c: &ModuleConfig) -> anyhow::Result<()> {
    let Some(identity) = c.identity() else {
        return Ok(());
    };
    creds::init()?;
    if !creds::process_is_root() {
        anyhow::bail!(
            "module {:?}: uid/gid need blitd to run as root (it reads and writes the module as that user)",
            c.name
        );
    }
    drop(
        identity
            .act()
            .map_err(|e| anyhow::anyhow!("module {:?}: {e}", c.name))?,
    );
    Ok(())
}

impl Module {
    pub fn root(&self) -> rustix::fd::BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// What a transfer may do in this module, and as whom.
    pub fn privileges(&self) -> Privileges {
        self.config.privileges()
    }

    /// Refuses writes to a read-only module.
    pub fn writable(&self) -> Result<(), Status> {
        if self.config.read_only {
            Err(Status::permission_denied(format!(
                "module {:?} is read-only",
                self.config.name
            )))
        } else {
            Ok(())
        }
    }
}

impl Resolved<'_> {
    /// Opens the directory the path names (symlinks inside the module are followed).
    pub fn open_dir(&self) -> io::Result<OwnedFd> {
        beneath::open_dir(self.module.root(), &self.rel)
    }

    /// The destination root of a transfer whose source has `shape` (created beneath
    /// the module unless in a dry run).
    pub fn open_destination(
        &self,
        shape: &Shape,
        options: &Options,
    ) -> Result<DestinationRoot, Status> {
        roots::open_destination(self.base(), &self.rel, shape, options).map_err(|e| root_status(&e))
    }

    /// The source root the path names.
    pub fn open_source(&self, options: &Options) -> Result<SourceRoot, Status> {
        roots::open_source(self.base(), &self.rel, options).map_err(|e| root_status(&e))
    }

    fn base(&self) -> Base<'_> {
        Base::Beneath(self.module.root())
    }

    /// The entry the path names, not following a final symlink; `None` for the root.
    pub fn stat(&self) -> io::Result<Option<blit_core::Entry>> {
        let (Some(parent), Some(name)) = (self.rel.parent(), self.rel.file_name()) else {
            return Ok(None);
        };
        let parent = beneath::open_dir(self.module.root(), parent)?;
        dir::stat_at(parent.as_fd(), name).map(Some)
    }
}

/// A root that could not be opened, as a gRPC status naming it inside the module.
fn root_status(e: &blit_core::Error) -> Status {
    match e {
        blit_core::Error::Source { path, source } => io_status("source", path, source),
        blit_core::Error::Destination { path, source } => io_status("destination", path, source),
        other => Status::internal(other.to_string()),
    }
}

/// A filesystem error as a gRPC status, without leaking paths outside the module.
pub fn io_status(what: &str, rel: &Path, e: &io::Error) -> Status {
    let message = format!("{what} {}: {e}", rel.display());
    match e.kind() {
        io::ErrorKind::NotFound => Status::not_found(message),
        io::ErrorKind::PermissionDenied => Status::permission_denied(message),
        io::ErrorKind::InvalidInput => Status::invalid_argument(message),
        _ => Status::internal(message),
    }
}
