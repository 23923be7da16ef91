//! Transfers with one end on an agent: the agent as a [`Transport`] (a gRPC stream for
//! the session, TCP or TLS streams to its data port), and `push`/`pull` running this end's
//! role through `session::initiate`.

use std::io;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::connect::AgentClient;
use super::error::ClientError;
use crate::report::{Observer, Report, Stats};
use crate::roots::{DestinationRoot, Shape};
use crate::session::data::{self, Stream, Streams};
use crate::session::initiate::{self, DataOptions};
use crate::session::link;
use crate::session::transport::Transport;
use crate::session::{LINK_DEPTH, Link, SessionError, frame};
use crate::spec::Options;
use crate::wire::pb;

#[tonic::async_trait]
impl Transport for AgentClient {
    async fn open(&self, open: pb::Open) -> Result<(Link, pb::Accept), SessionError> {
        let (tx, out_rx) = mpsc::channel(LINK_DEPTH);
        tx.send(frame(pb::frame::Kind::Open(open)))
            .await
            .map_err(|_| SessionError::Closed)?;
        let mut inbound = self
            .session()
            .transfer(ReceiverStream::new(out_rx))
            .await
            .map_err(SessionError::Rpc)?
            .into_inner();
        let first = match inbound.next().await {
            Some(Ok(f)) => f,
            Some(Err(status)) => return Err(SessionError::Rpc(status)),
            None => return Err(SessionError::Closed),
        };
        let accept = match first.kind {
            Some(pb::frame::Kind::Accept(a)) => a,
            Some(pb::frame::Kind::Abort(a)) => return Err(SessionError::Aborted(a.message)),
            _ => return Err(SessionError::unexpected(&first, "opening the session")),
        };
        let (in_tx, rx) = mpsc::channel(LINK_DEPTH);
        tokio::spawn(link::forward_in(inbound, in_tx, |_| {}, None, "agent"));
        Ok((Link { tx, rx }, accept))
    }

    async fn connect_data(&self, accept: &pb::Accept, streams: Streams) -> io::Result<Vec<Stream>> {
        let port = u16::try_from(accept.data_port)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad data port"))?;
        let addr = std::net::SocketAddr::new(self.resolved().ip(), port);
        let token = accept.data_token.clone();
        let tls = self.data_tls().cloned();
        tokio::task::spawn_blocking(move || data::connect(addr, tls.as_ref(), &token, streams))
            .await
            .map_err(io::Error::other)?
    }
}

/// What a transfer from or to an agent needs besides its two ends.
pub struct Run<'a> {
    pub options: &'a Options,
    pub data: DataOptions,
    /// Live counters (for progress), filled as the transfer goes.
    pub stats: Arc<Stats>,
}

impl AgentClient {
    /// Sends the local path `src` to `dst` in a module of this agent.
    pub async fn push(
        &self,
        src: &Path,
        dst: pb::Location,
        run: Run<'_>,
    ) -> Result<Report, ClientError> {
        Ok(initiate::push(self, src, dst, run.options, run.data, run.stats).await?)
    }

    /// Fetches `src` from a module of this agent into the local path `dst`.
    pub async fn pull(
        &self,
        src: pb::Location,
        dst: &Path,
        run: Run<'_>,
        observer: Arc<dyn Observer + Send + Sync>,
    ) -> Result<Report, ClientError> {
        Ok(initiate::pull(self, src, dst, run.options, run.data, run.stats, observer).await?)
    }

    /// Fetches `src` from this agent into the destination `target` opens once the
    /// source's shape is known (an agent pulling into one of its modules for a job).
    pub async fn pull_into(
        &self,
        src: pb::Location,
        run: Run<'_>,
        observer: Arc<dyn Observer + Send + Sync>,
        target: impl FnOnce(&Shape) -> Result<DestinationRoot, SessionError>,
    ) -> Result<Report, ClientError> {
        let report = initiate::pull_into(
            self,
            src,
            run.options,
            run.data,
            run.stats,
            observer,
            target,
        )
        .await?;
        Ok(report)
    }
}
