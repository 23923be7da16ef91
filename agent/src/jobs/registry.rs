//! The jobs an agent keeps: each job's live state (stage, counters, report) and how it
//! looks through the API, found by id or by its idempotency key; finished jobs are
//! dropped past their age or count ([`Retention`]), never those still queued or running.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blit_core::session::SessionError;
use blit_core::sync::lock;
use blit_core::wire::{self, pb};
use blit_core::{Report, Stats};
use tokio::sync::watch;

use super::SOURCE_UNREACHABLE;
use crate::metrics::{Metrics, Role};

/// How many finished jobs are kept, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub keep: usize,
    pub max_age: Duration,
}

/// The jobs kept, by id and by idempotency key.
#[derive(Default)]
pub(super) struct Registry {
    by_id: HashMap<String, Arc<JobState>>,
    by_key: HashMap<String, String>,
    /// Ids in start order, for listing.
    order: Vec<String>,
}

/// What became of a job offered to the registry.
pub(super) enum Admitted {
    /// Kept: it runs.
    New,
    /// A job with its idempotency key was there first: that one is the answer.
    Existing(Arc<JobState>),
    /// Too many jobs are queued or running.
    Full,
}

impl Registry {
    /// The job `id`.
    pub(super) fn get(&self, id: &str) -> Option<Arc<JobState>> {
        self.by_id.get(id).cloned()
    }

    /// The job started with idempotency `key`.
    pub(super) fn by_key(&self, key: &str) -> Option<Arc<JobState>> {
        self.by_key.get(key).and_then(|id| self.get(id))
    }

    /// Keeps `job` unless its key is taken or `max_unfinished` jobs are queued or
    /// running, after dropping the finished jobs `retention` no longer keeps.
    pub(super) fn admit(
        &mut self,
        job: &Arc<JobState>,
        retention: Retention,
        max_unfinished: usize,
    ) -> Admitted {
        // A concurrent start with the same key may have won the race.
        if let Some(existing) = self.by_key(&job.key) {
            return Admitted::Existing(existing);
        }
        self.prune(retention, Instant::now());
        if self.unfinished() >= max_unfinished {
            return Admitted::Full;
        }
        self.insert(job.clone());
        Admitted::New
    }

    /// Every job kept, in start order.
    pub(super) fn list(&self) -> impl Iterator<Item = &Arc<JobState>> {
        self.order.iter().filter_map(|id| self.by_id.get(id))
    }

    fn insert(&mut self, job: Arc<JobState>) {
        self.by_key.insert(job.key.clone(), job.id.clone());
        self.order.push(job.id.clone());
        self.by_id.insert(job.id.clone(), job);
    }

    fn unfinished(&self) -> usize {
        self.by_id.values().filter(|j| !j.is_over()).count()
    }

    /// Drops finished jobs past their age, then the oldest finished ones past the count.
    /// Jobs still queued or running are never dropped.
    pub(super) fn prune(&mut self, retention: Retention, now: Instant) {
        let mut finished: Vec<(Instant, String)> = self
            .by_id
            .values()
            .filter_map(|j| lock(&j.status).finished.map(|t| (t, j.id.clone())))
            .collect();
        finished.sort();
        let excess = finished.len().saturating_sub(retention.keep);
        let gone: std::collections::HashSet<String> = finished
            .into_iter()
            .enumerate()
            .filter(|(i, (t, _))| *i < excess || now.duration_since(*t) > retention.max_age)
            .map(|(_, (_, id))| id)
            .collect();
        if gone.is_empty() {
            return;
        }
        for id in &gone {
            if let Some(job) = self.by_id.remove(id) {
                self.by_key.remove(&job.key);
            }
        }
        self.order.retain(|id| !gone.contains(id));
    }
}

/// One job's live state.
pub(super) struct JobState {
    pub(super) id: String,
    key: String,
    started: Instant,
    /// Its counters, filled by the transfer as it goes.
    pub(super) stats: Arc<Stats>,
    /// Set to stop the job at a safe point.
    pub(super) cancel: watch::Sender<bool>,
    status: Mutex<JobStatus>,
}

/// Where a job is, besides its counters.
struct JobStatus {
    stage: pb::JobStage,
    message: String,
    report: Option<Report>,
    finished: Option<Instant>,
}

impl JobState {
    /// A job started with idempotency `key`, queued for a transfer slot.
    pub(super) fn queued(id: String, key: String, cancel: watch::Sender<bool>) -> JobState {
        JobState {
            id,
            key,
            started: Instant::now(),
            stats: Arc::new(Stats::default()),
            cancel,
            status: Mutex::new(JobStatus {
                stage: pb::JobStage::Queued,
                message: String::new(),
                report: None,
                finished: None,
            }),
        }
    }

    pub(super) fn set(&self, stage: pb::JobStage, message: impl Into<String>) {
        let mut s = lock(&self.status);
        s.stage = stage;
        s.message = message.into();
    }

    /// Records how the job ended.
    pub(super) fn end(&self, outcome: Result<Report, SessionError>, metrics: &Metrics) {
        let mut s = lock(&self.status);
        s.finished = Some(Instant::now());
        let (stage, message) = match &outcome {
            Ok(report) if report.is_partial() => (
                pb::JobStage::Failed,
                format!("{} entries failed", report.failures.len()),
            ),
            Ok(_) => (pb::JobStage::Succeeded, String::new()),
            Err(SessionError::Cancelled) => (pb::JobStage::Cancelled, "cancelled".into()),
            Err(SessionError::Connect(_)) => (pb::JobStage::Failed, SOURCE_UNREACHABLE.into()),
            Err(e) => (pb::JobStage::Failed, e.to_string()),
        };
        match outcome {
            Ok(report) => {
                metrics.session_finished(Role::Destination, &report);
                s.report = Some(report);
            }
            Err(SessionError::Cancelled) => {}
            Err(_) => metrics.session_failed(),
        }
        (s.stage, s.message) = (stage, message);
    }

    pub(super) fn is_over(&self) -> bool {
        matches!(
            lock(&self.status).stage,
            pb::JobStage::Succeeded | pb::JobStage::Failed | pb::JobStage::Cancelled
        )
    }

    /// The job as the API shows it.
    pub(super) fn snapshot(&self) -> pb::Job {
        let s = lock(&self.status);
        let now = self.stats.snapshot();
        let elapsed = s
            .finished
            .unwrap_or_else(Instant::now)
            .duration_since(self.started)
            .as_secs_f64();
        let rate = if elapsed > 0.0 {
            now.bytes_done as f64 / elapsed
        } else {
            0.0
        };
        let left = now.bytes_planned.saturating_sub(now.bytes_done);
        let eta = (s.stage == pb::JobStage::Transferring && rate > 0.0).then(|| left as f64 / rate);
        let report = s.report.as_ref().map(wire::report_to_wire);
        pb::Job {
            id: self.id.clone(),
            idempotency_key: self.key.clone(),
            stage: s.stage as i32,
            files_done: now.files_done,
            files_total: now.files_planned,
            bytes_done: now.bytes_done,
            bytes_total: now.bytes_planned,
            bytes_per_second: rate,
            eta_seconds: eta,
            failures: report
                .as_ref()
                .map(|r| r.failures.clone())
                .unwrap_or_default(),
            message: s.message.clone(),
            report,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, finished: Option<Instant>) -> Arc<JobState> {
        let stage = match finished {
            Some(_) => pb::JobStage::Succeeded,
            None => pb::JobStage::Transferring,
        };
        Arc::new(JobState {
            id: id.into(),
            key: format!("key-{id}"),
            started: Instant::now(),
            stats: Arc::default(),
            cancel: watch::channel(false).0,
            status: Mutex::new(JobStatus {
                stage,
                message: String::new(),
                report: None,
                finished,
            }),
        })
    }

    #[test]
    fn finished_jobs_go_by_count_and_age_and_running_ones_stay() {
        let now = Instant::now();
        let ago = |secs| now.checked_sub(Duration::from_secs(secs)).unwrap();
        let mut r = Registry::default();
        for (id, finished) in [
            ("a", Some(ago(50))),
            ("running", None),
            ("b", Some(ago(40))),
            ("c", Some(ago(30))),
            ("d", Some(ago(5))),
        ] {
            r.insert(job(id, finished));
        }
        let keep = |keep, secs| Retention {
            keep,
            max_age: Duration::from_secs(secs),
        };
        r.prune(keep(2, 3600), now);
        assert_eq!(
            r.order,
            ["running", "c", "d"],
            "the oldest finished go first"
        );
        assert!(!r.by_key.contains_key("key-a") && r.by_key.contains_key("key-c"));
        assert_eq!(r.unfinished(), 1);
        r.prune(keep(10, 10), now);
        assert_eq!(r.order, ["running", "d"], "older than the age limit");
        r.prune(keep(1, 0), ago(0) + Duration::from_secs(60));
        assert_eq!(r.order, ["running"], "a running job is never pruned");
        assert_eq!(r.by_id.len(), 1);
    }
}
