//! The agent's admin calls: its hello (in `connect`), modules, a directory's listing,
//! find, disk usage, free space, remove, and completion of partly typed paths. Paths
//! come back as bytes, as the agent's filesystem holds them.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use tokio_stream::{Stream, StreamExt};

use super::connect::AgentClient;
use super::error::ClientError;
use crate::entry::Entry;
use crate::wire::{self, pb};

/// What a path on an agent holds.
#[derive(Debug)]
pub struct Listing {
    pub entries: Vec<Entry>,
    /// The path named one entry, not a directory.
    pub single: bool,
}

/// One row of `disk_usage`: a directory (relative to the path asked about) and what
/// lies beneath it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub path: PathBuf,
    pub bytes: u64,
    pub allocated: u64,
    pub files: u64,
    pub dirs: u64,
}

fn path(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(OsString::from_vec(bytes))
}

impl AgentClient {
    /// The modules this agent exports.
    pub async fn list_modules(&self) -> Result<Vec<pb::Module>, ClientError> {
        let reply = self.admin().list_modules(pb::ListModulesRequest {}).await?;
        Ok(reply.into_inner().modules)
    }

    /// The entries of a directory (or the one entry a path names).
    pub async fn list_dir(&self, location: pb::Location) -> Result<Listing, ClientError> {
        let reply = self
            .admin()
            .list_dir(pb::ListDirRequest {
                location: Some(location),
            })
            .await?
            .into_inner();
        let entries = reply
            .entries
            .into_iter()
            .map(wire::entry_from_wire)
            .collect::<Result<_, _>>()
            .map_err(|e| ClientError::Session(e.into()))?;
        Ok(Listing {
            entries,
            single: reply.single,
        })
    }

    /// Paths beneath `location` whose names match `glob`, as the agent finds them
    /// (`limit` 0: all).
    pub async fn find(
        &self,
        location: pb::Location,
        glob: &str,
        limit: u64,
    ) -> Result<impl Stream<Item = Result<PathBuf, ClientError>> + Unpin, ClientError> {
        let request = pb::FindRequest {
            location: Some(location),
            glob: glob.to_owned(),
            limit,
        };
        let stream = self.admin().find(request).await?.into_inner();
        Ok(stream.map(|m| Ok(path(m?.path))))
    }

    /// Usage of each directory beneath `location`, down to `max_depth` levels.
    pub async fn disk_usage(
        &self,
        location: pb::Location,
        max_depth: u32,
    ) -> Result<impl Stream<Item = Result<UsageRow, ClientError>> + Unpin, ClientError> {
        let request = pb::DiskUsageRequest {
            location: Some(location),
            max_depth,
        };
        let stream = self.admin().disk_usage(request).await?.into_inner();
        Ok(stream.map(|row| {
            let row = row?;
            Ok(UsageRow {
                path: path(row.path),
                bytes: row.bytes,
                allocated: row.allocated,
                files: row.files,
                dirs: row.dirs,
            })
        }))
    }

    /// Space and inodes of the filesystem holding `location`.
    pub async fn fs_stats(
        &self,
        location: pb::Location,
    ) -> Result<pb::FsStatsResponse, ClientError> {
        let request = pb::FsStatsRequest {
            location: Some(location),
        };
        Ok(self.admin().fs_stats(request).await?.into_inner())
    }

    /// Removes `location` (a directory only with `recursive`); returns how many entries
    /// went, or would go in a dry run.
    pub async fn remove(
        &self,
        location: pb::Location,
        recursive: bool,
        dry_run: bool,
    ) -> Result<u64, ClientError> {
        let request = pb::RemoveRequest {
            location: Some(location),
            recursive,
            dry_run,
        };
        Ok(self.admin().remove(request).await?.into_inner().removed)
    }

    /// Completions of a partly typed path inside a module (directories end in `/`).
    pub async fn complete(&self, location: pb::Location) -> Result<Vec<Vec<u8>>, ClientError> {
        let request = pb::CompleteRequest {
            location: Some(location),
        };
        Ok(self
            .admin()
            .complete(request)
            .await?
            .into_inner()
            .candidates)
    }
}
