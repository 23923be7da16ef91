//! Warnings that a flood would repeat thousands of times a second (refused connections,
//! failed authentications) logged at a rate limit: the first at once, then one line per
//! [`WARNING_INTERVAL`] with how many more there were and which peer sent most, so an
//! operator sees the attack and its source without the log becoming the attack.

use blit_core::sync::lock;
use std::collections::HashMap;
use std::fmt::Display;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

use crate::limits::WARNING_INTERVAL;

/// Peers counted individually per interval; a flood from more addresses than this is
/// still counted in the total.
const PEERS_TRACKED: usize = 256;

/// One kind of warning, e.g. "data connections refused".
pub struct Tally {
    what: &'static str,
    window: Mutex<Window>,
}

#[derive(Default)]
struct Window {
    /// When the current interval began; `None` when nothing happened in the last one.
    opened: Option<Instant>,
    /// Events since the last line.
    count: u64,
    by_peer: HashMap<IpAddr, u64>,
    /// The latest event, told in the summary.
    latest: Option<(SocketAddr, String)>,
    /// A summary line is due at the end of the interval.
    summary_due: bool,
}

impl Tally {
    pub fn new(what: &'static str) -> Arc<Tally> {
        Arc::new(Tally {
            what,
            window: Mutex::default(),
        })
    }

    /// Counts one event from `peer`; logs it at once if the last interval was quiet.
    pub fn note(self: &Arc<Self>, peer: SocketAddr, reason: impl Display) {
        let mut w = lock(&self.window);
        let now = Instant::now();
        let quiet = w
            .opened
            .is_none_or(|at| now.duration_since(at) >= WARNING_INTERVAL && !w.summary_due);
        if quiet {
            tracing::warn!(%peer, "{}: {reason}", self.what);
            w.opened = Some(now);
            return;
        }
        w.count += 1;
        if w.by_peer.len() < PEERS_TRACKED || w.by_peer.contains_key(&peer.ip()) {
            *w.by_peer.entry(peer.ip()).or_default() += 1;
        }
        w.latest = Some((peer, reason.to_string()));
        if !w.summary_due {
            w.summary_due = true;
            let due = w.opened.unwrap_or(now) + WARNING_INTERVAL;
            let tally = self.clone();
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move {
                        tokio::time::sleep_until(due).await;
                        tally.summarize();
                    });
                }
                // Outside the runtime (never in the agent): the next event reports.
                Err(_) => w.summary_due = false,
            }
        }
    }

    /// Logs what was counted since the last line and starts a new interval.
    fn summarize(&self) {
        let mut w = lock(&self.window);
        w.summary_due = false;
        if w.count == 0 {
            w.opened = None;
            return;
        }
        let (top, top_count) = w
            .by_peer
            .iter()
            .max_by_key(|(_, n)| **n)
            .map_or((None, 0), |(ip, n)| (Some(*ip), *n));
        let top = top.map_or_else(|| "untracked addresses".into(), |ip| ip.to_string());
        let (latest, reason) = w
            .latest
            .take()
            .map_or_else(Default::default, |(a, r)| (a.to_string(), r));
        tracing::warn!(
            "{}: {} more in the last {}s from {} address(es), most from {top} ({top_count}); the latest from {latest}: {reason}",
            self.what,
            w.count,
            WARNING_INTERVAL.as_secs(),
            w.by_peer.len(),
        );
        w.count = 0;
        w.by_peer.clear();
        w.opened = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(t: &Tally) -> u64 {
        lock(&t.window).count
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_is_one_line_then_one_summary_per_interval() {
        let t = Tally::new("test events");
        let peer: SocketAddr = "127.0.0.9:1".parse().unwrap();
        t.note(peer, "first");
        assert_eq!(counted(&t), 0, "the first is logged at once, not counted");
        for _ in 0..1000 {
            t.note(peer, "again");
        }
        assert_eq!(counted(&t), 1000);
        assert!(lock(&t.window).summary_due);
        tokio::time::sleep(WARNING_INTERVAL + std::time::Duration::from_millis(10)).await;
        assert_eq!(counted(&t), 0, "the summary went out and reset the count");
        // Events right after a summary wait for the next one.
        t.note(peer, "more");
        assert_eq!(counted(&t), 1);
        tokio::time::sleep(WARNING_INTERVAL * 3).await;
        t.note(peer, "after a quiet interval");
        assert_eq!(counted(&t), 0, "logged at once again");
    }
}
