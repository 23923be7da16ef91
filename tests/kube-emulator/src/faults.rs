//! Test controls: injected faults (latency, forced error codes for a route, dropped
//! watch streams) and the log of requests served.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

/// A forced error: requests whose method matches (any, when `None`) and whose path
/// contains `path` get `code`, `times` times.
#[derive(Debug, Clone)]
struct Rule {
    method: Option<http::Method>,
    path: String,
    code: u16,
    times: u32,
}

/// One request as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub method: http::Method,
    pub path: String,
    pub query: String,
    pub status: u16,
}

/// Faults to inject and what was asked.
pub struct Faults {
    latency: Mutex<Duration>,
    rules: Mutex<Vec<Rule>>,
    /// Bumped to end every open watch stream.
    drops: watch::Sender<u64>,
    log: Mutex<Vec<Logged>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Default for Faults {
    fn default() -> Faults {
        Faults {
            latency: Mutex::new(Duration::ZERO),
            rules: Mutex::new(Vec::new()),
            drops: watch::channel(0).0,
            log: Mutex::new(Vec::new()),
        }
    }
}

impl Faults {
    /// Delays every response by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        *lock(&self.latency) = latency;
    }

    pub fn latency(&self) -> Duration {
        *lock(&self.latency)
    }

    /// The next `times` requests with `method` (any when `None`) whose path contains
    /// `path` fail with `code` (409, 410, 429, 500, 503, …). A watch request forced to
    /// 410 gets the real server's answer: a stream with one ERROR event.
    pub fn fail(&self, method: Option<http::Method>, path: &str, code: u16, times: u32) {
        lock(&self.rules).push(Rule {
            method,
            path: path.to_owned(),
            code,
            times,
        });
    }

    /// The forced code for this request, if a rule takes it.
    pub fn forced(&self, method: &http::Method, path: &str) -> Option<u16> {
        let mut rules = lock(&self.rules);
        let rule = rules.iter_mut().find(|r| {
            r.times > 0 && r.method.as_ref().is_none_or(|m| m == method) && path.contains(&r.path)
        })?;
        rule.times -= 1;
        Some(rule.code)
    }

    /// Ends every watch stream open now (clients see the connection close).
    pub fn drop_watches(&self) {
        self.drops.send_modify(|n| *n += 1);
    }

    /// A receiver that changes when watches must drop.
    pub fn watch_drops(&self) -> watch::Receiver<u64> {
        self.drops.subscribe()
    }

    pub fn record(&self, entry: Logged) {
        lock(&self.log).push(entry);
    }

    /// Every request served so far.
    pub fn requests(&self) -> Vec<Logged> {
        lock(&self.log).clone()
    }
}
