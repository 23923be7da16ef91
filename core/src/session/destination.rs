//! The destination role: plan each arriving directory against the local disk with the
//! same code a local transfer uses (through `transfer::remote::Destination`), ask the
//! source for the files that must be written, and write them as their records arrive —
//! staged under a temp name or `O_TMPFILE`, published by rename or `linkat` only when
//! complete — then run the same end-of-run steps (hard links, mirror deletes, directory
//! metadata).
//!
//! The manifest is checked and planned by `planner`; the session's [`Lifetime`] ends it
//! early (its owner cancels it, or this role does when it fails) and bounds what the
//! source can make it hold.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::data::{DataPlane, FrameReader, Incoming};
use super::fetcher::Fetcher;
use super::job::DestinationJob;
use super::lifetime::{Cancel, Lifetime, shut_on_cancel};
use super::planner::{Inbound, Planner};
use super::source::BATCH_ENTRIES;
use super::{Link, SessionError, frame};
use crate::report::{Observer, Report, Stats};
use crate::sys::creds;
use crate::transfer::remote::Destination;
use crate::wire::{self, pb};

/// `Data` frames (gRPC fallback) queued for the reader at most: each is up to a message
/// long, so this (not the manifest's depth) bounds the bytes waiting to be written.
const DATA_DEPTH: usize = 16;

/// Runs the destination role to the end and returns its report (also sent to the source).
pub async fn run(
    job: DestinationJob,
    link: Link,
    data: DataPlane,
    stats: Arc<Stats>,
    observer: Arc<dyn Observer + Send + Sync>,
) -> Result<Report, SessionError> {
    let started = Instant::now();
    let cancel = job.lifetime.cancel.clone();
    // Dropped with this future: a caller giving up stops the threads below too.
    let guard = cancel.guard();
    let Link { tx, mut rx } = link;
    let (plane, streams) = data.describe();
    let (in_tx, in_rx) = mpsc::channel(super::LINK_DEPTH);
    let (data_tx, readers) = match data {
        DataPlane::Tcp(s) => {
            shut_on_cancel(&cancel, &s);
            (None, s.into_iter().map(Incoming::stream).collect())
        }
        DataPlane::Grpc => {
            let (dtx, drx) = mpsc::channel(DATA_DEPTH);
            (Some(dtx), vec![Incoming::frames(FrameReader::new(drx))])
        }
    };
    let planner = {
        let tx = tx.clone();
        tokio::task::spawn_blocking(move || receive(job, in_rx, readers, tx, &stats, &*observer))
    };
    // The dispatcher ends with the manifest (TCP) or never on its own (gRPC: it forwards
    // data until the source stops); the planner ends when everything is written.
    let (dispatched, planned) = {
        let dispatch = dispatch(&mut rx, in_tx, data_tx, &cancel);
        tokio::pin!(dispatch);
        let mut planner = planner;
        tokio::select! {
            d = &mut dispatch => (d, planner.await),
            p = &mut planner => (Ok(()), p),
        }
    };
    let planned =
        planned.unwrap_or_else(|e| Err(SessionError::Protocol(format!("planner failed: {e}"))));
    let mut report = match (dispatched, planned) {
        (Err(e), _) | (Ok(()), Err(e)) => {
            let e = cancel.or(e);
            cancel.cancel(e.to_string());
            return Err(super::abort(&tx, e).await);
        }
        (Ok(()), Ok(report)) => report,
    };
    guard.disarm();
    report.data_plane = plane;
    report.streams = streams;
    report.set_elapsed(started.elapsed());
    let summary = pb::Summary {
        report: Some(wire::report_to_wire(&report)),
    };
    let _ = tx.send(frame(pb::frame::Kind::Summary(summary))).await;
    // Close our half and let the source finish (it ends the session on the summary), so
    // the summary is delivered before either end goes away.
    drop(tx);
    let rest = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(f) = rx.recv().await {
            // A move's source reports what it removed.
            if let Some(pb::frame::Kind::SourceDone(done)) = f.kind {
                report.sources_removed += done.sources_removed;
                report
                    .failures
                    .extend(done.failures.into_iter().map(wire::failure_from_wire));
            }
        }
    });
    let _ = cancel.until(rest).await;
    Ok(report)
}

/// Forwards the source's frames: manifest to the planner, `Data` bytes to the reader.
/// Ends when the manifest is complete and the data is in (or on error, which ends the
/// session: it is cancelled with that error before the planner sees its channel close,
/// so the session ends with the cause, not with "closed").
async fn dispatch(
    rx: &mut mpsc::Receiver<pb::Frame>,
    planner: mpsc::Sender<Inbound>,
    data: Option<mpsc::Sender<Vec<u8>>>,
    cancel: &Cancel,
) -> Result<(), SessionError> {
    let open = planner.clone();
    let dispatched = forward(rx, planner, data, cancel).await;
    if let Err(e) = &dispatched {
        cancel.cancel(e.to_string());
    }
    drop(open);
    dispatched
}

/// See [`dispatch`].
async fn forward(
    rx: &mut mpsc::Receiver<pb::Frame>,
    planner: mpsc::Sender<Inbound>,
    mut data: Option<mpsc::Sender<Vec<u8>>>,
    cancel: &Cancel,
) -> Result<(), SessionError> {
    use pb::frame::Kind;
    let mut planner = Some(planner);
    loop {
        let Some(f) = cancel.until(rx.recv()).await? else {
            return if planner.is_none() && data.is_none() {
                Ok(())
            } else {
                Err(SessionError::Closed)
            };
        };
        let inbound = match f.kind {
            Some(Kind::Dir(b)) => {
                if b.entries.len() > BATCH_ENTRIES {
                    return Err(SessionError::Limit(format!(
                        "a directory batch of {} entries; at most {BATCH_ENTRIES} may come at once",
                        b.entries.len()
                    )));
                }
                let rel = wire::valid_rel(&b.rel)?;
                let entries = b
                    .entries
                    .into_iter()
                    .map(wire::entry_from_wire)
                    .collect::<Result<Vec<_>, _>>()?;
                let root = match b.dir {
                    Some(d) if rel.as_os_str().is_empty() => Some(wire::entry_from_wire(d)?),
                    _ => None,
                };
                Inbound::Dir {
                    rel,
                    entries,
                    partial: b.partial,
                    root,
                }
            }
            Some(Kind::SourceFailure(failure)) => Inbound::SourceFailure(failure),
            Some(Kind::ManifestDone(_)) => Inbound::Done,
            Some(Kind::Data(bytes)) => {
                let Some(d) = &data else {
                    return Err(SessionError::unexpected(
                        &pb::Frame {
                            kind: Some(Kind::Data(bytes)),
                        },
                        "receiving",
                    ));
                };
                // The reader ending early is the planner's error to report.
                let _ = cancel.until(d.send(bytes)).await?;
                continue;
            }
            Some(Kind::Abort(a)) => return Err(SessionError::Aborted(a.message)),
            Some(Kind::Progress(_)) => continue,
            _ => return Err(SessionError::unexpected(&f, "receiving")),
        };
        let done = matches!(inbound, Inbound::Done);
        // The planner stopping early is reported by the planner itself.
        let Some(to_planner) = &planner else {
            return Err(SessionError::Protocol(
                "frame after the manifest ended".into(),
            ));
        };
        let _ = cancel.until(to_planner.send(inbound)).await?;
        if done {
            planner = None;
            if data.is_none() {
                return Ok(());
            }
            // With the bytes in this stream, keep forwarding until the source's data
            // stream has ended: the source closes it after the need list is done, then the
            // only frames left are Data.
            if let Some(d) = data.take() {
                return cancel.until(forward_data(rx, d)).await?;
            }
        }
    }
}

/// After the manifest, in gRPC fallback: everything is `Data` until the source stops.
async fn forward_data(
    rx: &mut mpsc::Receiver<pb::Frame>,
    data: mpsc::Sender<Vec<u8>>,
) -> Result<(), SessionError> {
    use pb::frame::Kind;
    loop {
        match rx.recv().await.map(|f| f.kind) {
            Some(Some(Kind::Data(bytes))) => {
                if data.send(bytes).await.is_err() {
                    return Ok(());
                }
            }
            Some(Some(Kind::Abort(a))) => return Err(SessionError::Aborted(a.message)),
            Some(Some(Kind::Progress(_))) => {}
            Some(_) => {
                return Err(SessionError::Protocol(
                    "unexpected frame after the manifest".into(),
                ));
            }
            None => return Err(SessionError::Closed),
        }
    }
}

/// The blocking part: plan, fetch, write, finish.
fn receive(
    job: DestinationJob,
    mut inbound: mpsc::Receiver<Inbound>,
    readers: Vec<Incoming>,
    tx: mpsc::Sender<pb::Frame>,
    stats: &Stats,
    observer: &dyn Observer,
) -> Result<Report, SessionError> {
    // Everything below reads and writes as the session's identity, if it has one: this
    // thread until it returns, the session's own pool and receivers for their lifetime.
    let identity = job.options.privileges.identity;
    let _acting = identity
        .map(creds::Identity::act)
        .transpose()
        .map_err(SessionError::Data)?;
    let Lifetime { cancel, budget } = job.lifetime.clone();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(job.options.limits.workers.max(1))
        .thread_name(|i| format!("blit-dest-{i}"))
        .build()
        .map_err(|e| crate::error::Error::Workers(e.to_string()))?;
    creds::act_in_pool(&pool, identity).map_err(SessionError::Data)?;
    let fetcher = Fetcher::new(tx.clone());
    let dest = Destination::new(
        &job.options,
        stats,
        observer,
        job.filter.clone(),
        job.root,
        &fetcher,
        &fetcher,
    );
    let root_state = dest.root_state(job.rename).map_err(SessionError::Data)?;
    let manifest = std::thread::scope(|scope| {
        let receivers: Vec<_> = readers
            .into_iter()
            .map(|r| {
                let (dest, fetcher) = (&dest, &fetcher);
                std::thread::Builder::new()
                    .name("blit-receive".into())
                    .spawn_scoped(scope, move || {
                        let received = match identity.map(creds::Identity::act_for_thread) {
                            Some(Err(e)) => Err(e),
                            _ => fetcher.receive(dest, r),
                        };
                        if received.is_err() {
                            // No more data will come: planners waiting for room must stop.
                            fetcher.stop();
                        }
                        received
                    })
            })
            .collect::<Result<_, _>>()
            .map_err(SessionError::Data)?;
        let planner = Planner::new(&dest, &fetcher, cancel.clone(), budget);
        let manifest = planner.run(&pool, &mut inbound, root_state);
        drop(planner);
        fetcher.flush();
        let _ = tx.blocking_send(frame(pb::frame::Kind::NeedDone(pb::NeedDone {})));
        if let Err(e) = &manifest {
            // The source is gone or misbehaved: stop waiting for its data.
            cancel.cancel(e.to_string());
            fetcher.cancel(&dest);
        }
        let mut data = Ok(());
        for r in receivers {
            match r.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => data = Err(SessionError::Data(e)),
                Err(_) => data = Err(SessionError::Protocol("a receiver panicked".into())),
            }
        }
        fetcher.cancel(&dest);
        manifest.and(data)
    });
    manifest?;
    let report = dest.finish();
    fetcher.flush();
    Ok(report)
}
