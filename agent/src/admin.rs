//! The `Admin` service: what `blit list|ls|find|du|df|rm` and remote path completion
//! talk to. Every path is resolved beneath its module; `Remove` refuses read-only modules
//! and the module root itself. Trees are walked without recursion (`sys::tree`), since
//! their depth is whatever a client made it.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use blit_core::EntryKind;
use blit_core::sys::dir;
use blit_core::sys::tree::{self, Parent, Step};
use blit_core::wire::{self, pb};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::modules::{Modules, io_status};

pub struct AdminService {
    pub modules: Arc<Modules>,
}

type Stream<T> = ReceiverStream<Result<T, Status>>;

/// Runs blocking filesystem work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(e.to_string()))?
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn hello(
        &self,
        _: Request<pb::HelloRequest>,
    ) -> Result<Response<pb::HelloResponse>, Status> {
        Ok(Response::new(pb::HelloResponse {
            protocol_major: pb::PROTOCOL_MAJOR,
            protocol_minor: pb::PROTOCOL_MINOR,
            capabilities: blit_core::wire::protocol::capabilities(),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        }))
    }

    async fn list_modules(
        &self,
        _: Request<pb::ListModulesRequest>,
    ) -> Result<Response<pb::ListModulesResponse>, Status> {
        let modules = self
            .modules
            .iter()
            .map(|m| pb::Module {
                name: m.config.name.clone(),
                read_only: m.config.read_only,
                comment: m.config.comment.clone(),
            })
            .collect();
        Ok(Response::new(pb::ListModulesResponse { modules }))
    }

    async fn list_dir(
        &self,
        req: Request<pb::ListDirRequest>,
    ) -> Result<Response<pb::ListDirResponse>, Status> {
        let modules = self.modules.clone();
        let req = req.into_inner();
        blocking(move || {
            let r = modules.resolve(req.location.as_ref())?;
            let dir = r.open_dir();
            if blit_core::roots::names_contents(&r.rel) && !r.rel.as_os_str().is_empty() {
                // `path/` asks for a directory's contents: its error is the answer.
                dir.as_ref().map_err(|e| io_status("list", &r.rel, e))?;
            }
            if let Ok(fd) = dir {
                let mut entries = dir::list(fd.as_fd())
                    .map_err(|e| io_status("list", &r.rel, &e))?
                    .entries;
                blit_core::entry::sort_by_name(&mut entries);
                return Ok(pb::ListDirResponse {
                    entries: entries.iter().map(wire::entry_to_wire).collect(),
                    single: false,
                });
            }
            let entry = r.stat().map_err(|e| io_status("list", &r.rel, &e))?;
            Ok(pb::ListDirResponse {
                entries: entry.iter().map(wire::entry_to_wire).collect(),
                single: true,
            })
        })
        .await
        .map(Response::new)
    }

    type FindStream = Stream<pb::FindMatch>;

    async fn find(
        &self,
        req: Request<pb::FindRequest>,
    ) -> Result<Response<Self::FindStream>, Status> {
        let req = req.into_inner();
        let matcher = globset::GlobBuilder::new(&req.glob)
            .literal_separator(false)
            .build()
            .map_err(|e| Status::invalid_argument(format!("glob {:?}: {e}", req.glob)))?
            .compile_matcher();
        let (root, rel) = self.open_tree(req.location.as_ref())?;
        let (tx, rx) = mpsc::channel(256);
        tokio::task::spawn_blocking(move || {
            let mut finder = Finder {
                matcher,
                limit: req.limit,
                found: 0,
                tx,
            };
            // Unreadable directories are skipped; the walk ends early when the client
            // went away, the limit was reached, or the tree moved under it.
            if let Err(e) = tree::walk(root.as_fd(), &mut finder) {
                report(&finder.tx, "find", &rel, &e);
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type DiskUsageStream = Stream<pb::DiskUsageEntry>;

    async fn disk_usage(
        &self,
        req: Request<pb::DiskUsageRequest>,
    ) -> Result<Response<Self::DiskUsageStream>, Status> {
        let req = req.into_inner();
        let (root, rel) = self.open_tree(req.location.as_ref())?;
        let (tx, rx) = mpsc::channel(256);
        tokio::task::spawn_blocking(move || {
            let mut usage = Usage {
                max_depth: req.max_depth,
                total: None,
                tx,
            };
            match tree::walk(root.as_fd(), &mut usage) {
                Ok(()) => {
                    if let Some(total) = usage.total {
                        let _ = usage.tx.blocking_send(Ok(total));
                    }
                }
                Err(e) => report(&usage.tx, "du", &rel, &e),
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn fs_stats(
        &self,
        req: Request<pb::FsStatsRequest>,
    ) -> Result<Response<pb::FsStatsResponse>, Status> {
        let (root, _) = self.open_tree(req.into_inner().location.as_ref())?;
        let st = rustix::fs::fstatvfs(&root).map_err(|e| Status::internal(e.to_string()))?;
        let frsize = st.f_frsize.max(1);
        Ok(Response::new(pb::FsStatsResponse {
            total_bytes: st.f_blocks * frsize,
            free_bytes: st.f_bfree * frsize,
            available_bytes: st.f_bavail * frsize,
            total_inodes: st.f_files,
            free_inodes: st.f_ffree,
        }))
    }

    async fn remove(
        &self,
        req: Request<pb::RemoveRequest>,
    ) -> Result<Response<pb::RemoveResponse>, Status> {
        let modules = self.modules.clone();
        let req = req.into_inner();
        blocking(move || {
            let r = modules.resolve(req.location.as_ref())?;
            r.module.writable()?;
            let (Some(parent), Some(name)) = (r.rel.parent(), r.rel.file_name()) else {
                return Err(Status::invalid_argument(
                    "refusing to remove the module root",
                ));
            };
            let parent_fd = blit_core::sys::beneath::open_dir(r.module.root(), parent)
                .map_err(|e| io_status("remove", &r.rel, &e))?;
            let entry = dir::stat_at(parent_fd.as_fd(), name)
                .map_err(|e| io_status("remove", &r.rel, &e))?;
            let keep = |_: &Path, _: bool| false;
            let count =
                blit_core::delete::count(parent_fd.as_fd(), name, entry.kind, &r.rel, &keep)
                    .map_err(|e| io_status("remove", &r.rel, &e))?;
            if entry.kind == EntryKind::Dir && count > 1 && !req.recursive {
                return Err(Status::failed_precondition(format!(
                    "{} is a non-empty directory ({count} entries); remove it recursively",
                    r.rel.display()
                )));
            }
            let removed = if req.dry_run {
                count
            } else {
                blit_core::delete::remove(parent_fd.as_fd(), name, entry.kind, &r.rel, &keep)
                    .map_err(|e| io_status("remove", &r.rel, &e))?
            };
            Ok(pb::RemoveResponse { removed })
        })
        .await
        .map(Response::new)
    }

    async fn complete(
        &self,
        req: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::CompleteResponse>, Status> {
        let modules = self.modules.clone();
        let req = req.into_inner();
        blocking(move || {
            let Some(location) = req.location else {
                return Err(Status::invalid_argument("no location given"));
            };
            let typed = location.path.clone();
            let split = typed.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
            let (dir_part, prefix) = typed.split_at(split);
            let dir_location = pb::Location {
                module: location.module.clone(),
                path: dir_part.to_vec(),
            };
            let r = modules.resolve(Some(&dir_location))?;
            let fd = r
                .open_dir()
                .map_err(|e| io_status("complete", &r.rel, &e))?;
            let listing = dir::list(fd.as_fd()).map_err(|e| io_status("complete", &r.rel, &e))?;
            let mut candidates: Vec<Vec<u8>> = listing
                .entries
                .iter()
                .filter(|e| e.name.as_bytes().starts_with(prefix))
                .map(|e| {
                    let mut c = dir_part.to_vec();
                    c.extend_from_slice(e.name.as_bytes());
                    if e.is_dir() {
                        c.push(b'/');
                    }
                    c
                })
                .collect();
            candidates.sort();
            Ok(pb::CompleteResponse { candidates })
        })
        .await
        .map(Response::new)
    }
}

impl AdminService {
    /// Opens the directory a location names; with its path in the module, for messages.
    fn open_tree(&self, location: Option<&pb::Location>) -> Result<(OwnedFd, PathBuf), Status> {
        let r = self.modules.resolve(location)?;
        let fd = r.open_dir().map_err(|e| io_status("open", &r.rel, &e))?;
        Ok((fd, r.rel))
    }
}

/// The client went away: the walk for it can stop.
fn gone() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
}

/// Ends a walk's stream with its error, unless the error is that the client went away.
fn report<T>(tx: &mpsc::Sender<Result<T, Status>>, what: &str, rel: &Path, e: &io::Error) {
    if e.kind() != io::ErrorKind::BrokenPipe {
        let _ = tx.blocking_send(Err(io_status(what, rel, e)));
    }
}

/// `find`: each directory's matching entries (sorted by name), then its subdirectories'.
/// Symlinks are never followed; unreadable directories are skipped.
struct Finder {
    matcher: globset::GlobMatcher,
    /// Matches wanted at most (0: all).
    limit: u64,
    found: u64,
    tx: mpsc::Sender<Result<pb::FindMatch, Status>>,
}

impl tree::Visit for Finder {
    type Frame = ();

    fn enter(&mut self, dir: BorrowedFd<'_>, rel: &Path, _: usize) -> io::Result<Step<()>> {
        let Ok(listing) = dir::list(dir) else {
            return Ok(Step::Descend {
                frame: (),
                subdirs: Vec::new(),
            });
        };
        let mut entries = listing.entries;
        blit_core::entry::sort_by_name(&mut entries);
        let mut subdirs = Vec::new();
        for e in entries {
            let path = rel.join(&e.name);
            if self.matcher.is_match(&path) || self.matcher.is_match(Path::new(&e.name)) {
                self.found += 1;
                let m = pb::FindMatch {
                    path: path.into_os_string().into_vec(),
                    entry: Some(wire::entry_to_wire(&e)),
                };
                if self.tx.blocking_send(Ok(m)).is_err() {
                    return Err(gone());
                }
                if self.limit > 0 && self.found >= self.limit {
                    return Ok(Step::Stop);
                }
            }
            if e.is_dir() {
                subdirs.push(e.name);
            }
        }
        Ok(Step::Descend { frame: (), subdirs })
    }

    fn leave(&mut self, _: (), _: Option<Parent<'_, ()>>) -> io::Result<()> {
        Ok(())
    }

    fn unreachable(&mut self, _: &Path, _: &OsStr, _: io::Error) -> io::Result<()> {
        Ok(())
    }
}

/// `du`: sums a tree; a row for every directory down to `max_depth` (sent as each one is
/// finished), then the total. Unreadable directories count as empty.
struct Usage {
    max_depth: u32,
    /// The starting directory's row, once the walk left it.
    total: Option<pb::DiskUsageEntry>,
    tx: mpsc::Sender<Result<pb::DiskUsageEntry, Status>>,
}

/// A directory's row while its subdirectories are summed.
struct Sum {
    row: pb::DiskUsageEntry,
    depth: usize,
}

impl tree::Visit for Usage {
    type Frame = Sum;

    fn enter(&mut self, dir: BorrowedFd<'_>, rel: &Path, depth: usize) -> io::Result<Step<Sum>> {
        // Only rows that are sent carry their path: a path per level of a deep chain
        // would add up to the square of its depth.
        let sent = depth == 0 || depth <= self.max_depth as usize;
        let mut row = pb::DiskUsageEntry {
            path: if sent {
                rel.as_os_str().as_bytes().to_vec()
            } else {
                Vec::new()
            },
            dirs: 1,
            ..Default::default()
        };
        let mut subdirs = Vec::new();
        if let Ok(listing) = dir::list(dir) {
            let mut entries = listing.entries;
            blit_core::entry::sort_by_name(&mut entries);
            for e in entries {
                if e.is_dir() {
                    subdirs.push(e.name);
                } else {
                    row.bytes += e.size;
                    row.allocated += e.allocated;
                    row.files += 1;
                }
            }
        }
        Ok(Step::Descend {
            frame: Sum { row, depth },
            subdirs,
        })
    }

    fn leave(&mut self, sum: Sum, parent: Option<Parent<'_, Sum>>) -> io::Result<()> {
        let Some(parent) = parent else {
            self.total = Some(sum.row);
            return Ok(());
        };
        let total = &mut parent.frame.row;
        total.bytes += sum.row.bytes;
        total.allocated += sum.row.allocated;
        total.files += sum.row.files;
        total.dirs += sum.row.dirs;
        if sum.depth <= self.max_depth as usize && self.tx.blocking_send(Ok(sum.row)).is_err() {
            return Err(gone());
        }
        Ok(())
    }

    fn unreachable(&mut self, _: &Path, _: &OsStr, _: io::Error) -> io::Result<()> {
        Ok(())
    }
}
