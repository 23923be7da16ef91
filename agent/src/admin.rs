//! The `Admin` service: what `blit list|ls|find|du|df|rm` and remote path completion
//! talk to. Every path is resolved beneath its module; `Remove` refuses read-only modules
//! and the module root itself.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use blit_core::sys::dir;
use blit_core::wire::{self, pb};
use blit_core::{Entry, EntryKind};
use rustix::fd::{AsFd, OwnedFd};
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
            capabilities: blit_core::session::client::CAPABILITIES
                .iter()
                .map(|c| c.to_string())
                .collect(),
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
        let root = self.open_tree(req.location.as_ref())?;
        let (tx, rx) = mpsc::channel(256);
        tokio::task::spawn_blocking(move || {
            let mut found = 0u64;
            walk(&root, Path::new(""), 0, &mut |rel, entry, _| {
                let name_matches = matcher.is_match(Path::new(&entry.name));
                if matcher.is_match(rel) || name_matches {
                    found += 1;
                    let m = pb::FindMatch {
                        path: rel.as_os_str().as_bytes().to_vec(),
                        entry: Some(wire::entry_to_wire(entry)),
                    };
                    if tx.blocking_send(Ok(m)).is_err() || (req.limit > 0 && found >= req.limit) {
                        return Visit::Stop;
                    }
                }
                Visit::Continue
            });
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type DiskUsageStream = Stream<pb::DiskUsageEntry>;

    async fn disk_usage(
        &self,
        req: Request<pb::DiskUsageRequest>,
    ) -> Result<Response<Self::DiskUsageStream>, Status> {
        let req = req.into_inner();
        let root = self.open_tree(req.location.as_ref())?;
        let (tx, rx) = mpsc::channel(256);
        tokio::task::spawn_blocking(move || {
            let total = usage(&root, Path::new(""), 0, req.max_depth, &tx);
            let _ = tx.blocking_send(Ok(total));
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn fs_stats(
        &self,
        req: Request<pb::FsStatsRequest>,
    ) -> Result<Response<pb::FsStatsResponse>, Status> {
        let root = self.open_tree(req.into_inner().location.as_ref())?;
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
    /// Opens the directory a location names.
    fn open_tree(&self, location: Option<&pb::Location>) -> Result<OwnedFd, Status> {
        let r = self.modules.resolve(location)?;
        r.open_dir().map_err(|e| io_status("open", &r.rel, &e))
    }
}

enum Visit {
    Continue,
    Stop,
}

/// Depth-first walk below `fd` (symlinks never followed); `f` sees each entry with its
/// path and depth. Returns false once `f` said stop.
fn walk(
    fd: &OwnedFd,
    rel: &Path,
    depth: u32,
    f: &mut dyn FnMut(&Path, &Entry, u32) -> Visit,
) -> bool {
    let Ok(listing) = dir::list(fd.as_fd()) else {
        return true;
    };
    let mut entries = listing.entries;
    blit_core::entry::sort_by_name(&mut entries);
    for e in &entries {
        let path = rel.join(&e.name);
        if let Visit::Stop = f(&path, e, depth) {
            return false;
        }
        if e.is_dir()
            && let Ok(sub) = dir::open_dir_at(fd.as_fd(), &e.name)
            && !walk(&sub, &path, depth + 1, f)
        {
            return false;
        }
    }
    true
}

/// Sums a tree like `du`: a row for every directory down to `max_depth`, then the total.
fn usage(
    fd: &OwnedFd,
    rel: &Path,
    depth: u32,
    max_depth: u32,
    tx: &mpsc::Sender<Result<pb::DiskUsageEntry, Status>>,
) -> pb::DiskUsageEntry {
    let mut total = pb::DiskUsageEntry {
        path: rel.as_os_str().as_bytes().to_vec(),
        dirs: 1,
        ..Default::default()
    };
    let Ok(listing) = dir::list(fd.as_fd()) else {
        return total;
    };
    let mut entries = listing.entries;
    blit_core::entry::sort_by_name(&mut entries);
    for e in &entries {
        if e.is_dir() {
            let Ok(sub) = dir::open_dir_at(fd.as_fd(), &e.name) else {
                continue;
            };
            let path: PathBuf = rel.join(&e.name);
            let row = usage(&sub, &path, depth + 1, max_depth, tx);
            total.bytes += row.bytes;
            total.allocated += row.allocated;
            total.files += row.files;
            total.dirs += row.dirs;
            if depth < max_depth {
                let _ = tx.blocking_send(Ok(row));
            }
        } else {
            total.bytes += e.size;
            total.allocated += e.allocated;
            total.files += 1;
        }
    }
    total
}
