//! The modules an agent exports, and how a location from the network is resolved inside
//! one: by name, then beneath its root directory (`blit_core::sys::beneath`), never
//! outside it — and, on a root agent, as the module's identity: while a [`Resolved`]
//! location lives, its thread reads and writes as the module's `uid`/`gid`.

use std::io;
use std::path::{Path, PathBuf};

use blit_core::session::serve::{self, Place, Refusal};
use blit_core::spec::Privileges;
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
        let rel = serve::location_path(location)?;
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

    /// Why nothing may be written to this module, if so.
    fn read_only(&self) -> Option<String> {
        let name = &self.config.name;
        self.config
            .read_only
            .then(|| format!("module {name:?} is read-only"))
    }

    /// Refuses writes to a read-only module.
    pub fn writable(&self) -> Result<(), Status> {
        match self.read_only() {
            Some(why) => Err(Status::permission_denied(why)),
            None => Ok(()),
        }
    }
}

impl Resolved<'_> {
    /// Opens the directory the path names (symlinks inside the module are followed).
    pub fn open_dir(&self) -> io::Result<OwnedFd> {
        beneath::open_dir(self.module.root(), &self.rel)
    }

    /// The place a session works in: this path in the module, with what the module
    /// allows there.
    pub fn place(&self) -> Place<'_> {
        Place {
            root: self.module.root(),
            rel: &self.rel,
            privileges: self.module.privileges(),
            read_only: self.module.read_only(),
        }
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

/// A filesystem error as a gRPC status, without leaking paths outside the module.
pub fn io_status(what: &str, rel: &Path, e: &io::Error) -> Status {
    Refusal::io(what, rel, e).into()
}
