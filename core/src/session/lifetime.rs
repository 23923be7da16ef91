//! What ends a session early and what it may hold: a [`Cancel`] token that reaches every
//! blocking wait of the role code (sleeps, queue waits, sockets), and a [`Budget`] of
//! bytes the session may keep in memory on behalf of its peer.
//!
//! A session's owner (the agent's session service, or a client) makes one [`Lifetime`]
//! per session and hands it to the role code. The owner cancels it when the session must
//! end from outside (idle, shutdown, the peer gone); the role code cancels it itself when
//! it fails, so that its own threads stop waiting for work that will not come. Memory the
//! peer makes us hold (directory batches waiting to be planned, queued needs, reported
//! failures) is charged to the budget as a [`Held`] that gives it back when dropped, so
//! everything a session holds is accounted for until it is freed.

use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::SessionError;
use super::data::Stream;
use crate::entry::Entry;
use crate::sync::lock;

/// Bytes a session may hold for its peer unless its owner says otherwise. A legitimate
/// session holds at most a few directory batches (2,000 entries each, a few hundred bytes
/// per entry), the directory being received in parts (about 200 bytes per entry: a
/// directory of a million entries fits) and a bounded need queue; 256 MiB leaves room for
/// that, and eight sessions at once (the agent's default slots) stay within 2 GiB.
pub const DEFAULT_SESSION_MEMORY: u64 = 256 << 20;

/// Bytes a client's session may hold for the agent it talks to. A client chose that agent
/// and runs for one user, so the bound is only against a runaway peer: high enough for a
/// directory of about fifteen million entries arriving in parts.
pub const CLIENT_SESSION_MEMORY: u64 = 4 << 30;

/// A session's cancellation token and memory budget, shared by its owner and its roles.
#[derive(Clone)]
pub struct Lifetime {
    pub cancel: Cancel,
    pub budget: Arc<Budget>,
}

impl Lifetime {
    /// A fresh token and a budget of `memory` bytes.
    pub fn new(memory: u64) -> Lifetime {
        Lifetime {
            cancel: Cancel::new(),
            budget: Budget::new(memory),
        }
    }
}

/// Ends a session from outside its blocking code: sleepers wake, async waits resolve,
/// and registered hooks (shutting sockets, closing queues) run once.
#[derive(Clone)]
pub struct Cancel(Arc<CancelState>);

type Hook = Box<dyn FnOnce() + Send>;

struct CancelState {
    /// Set (first reason wins) when cancelled; sleepers wait on `wake` with it.
    reason: Mutex<Option<String>>,
    cancelled: AtomicBool,
    wake: Condvar,
    signal: watch::Sender<bool>,
    hooks: Mutex<Vec<Hook>>,
}

impl Default for Cancel {
    fn default() -> Cancel {
        Cancel::new()
    }
}

impl Cancel {
    pub fn new() -> Cancel {
        Cancel(Arc::new(CancelState {
            reason: Mutex::new(None),
            cancelled: AtomicBool::new(false),
            wake: Condvar::new(),
            signal: watch::Sender::new(false),
            hooks: Mutex::new(Vec::new()),
        }))
    }

    /// Ends the session with `reason` (a later reason is ignored).
    pub fn cancel(&self, reason: impl Into<String>) {
        {
            let mut r = lock(&self.0.reason);
            if r.is_some() {
                return;
            }
            *r = Some(reason.into());
            self.0.cancelled.store(true, Ordering::SeqCst);
            self.0.wake.notify_all();
        }
        self.0.signal.send_replace(true);
        let hooks = std::mem::take(&mut *lock(&self.0.hooks));
        for hook in hooks {
            hook();
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    pub fn reason(&self) -> Option<String> {
        lock(&self.0.reason).clone()
    }

    /// `Err` (the session's end, as an error) once cancelled.
    pub fn check(&self) -> Result<(), SessionError> {
        match self.reason() {
            Some(reason) => Err(SessionError::Ended(reason)),
            None => Ok(()),
        }
    }

    /// The error a cancelled session ends with, or `other` when it was not cancelled.
    pub fn or(&self, other: SessionError) -> SessionError {
        self.check().err().unwrap_or(other)
    }

    /// Resolves once cancelled.
    pub async fn cancelled(&self) {
        let mut rx = self.0.signal.subscribe();
        // The sender lives as long as `self`, so this only returns once cancelled.
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Runs `f` unless the session is cancelled first.
    pub async fn until<F: Future>(&self, f: F) -> Result<F::Output, SessionError> {
        tokio::select! {
            out = f => Ok(out),
            () = self.cancelled() => Err(self.or(SessionError::Cancelled)),
        }
    }

    /// Sleeps for `d`, or less if cancelled meanwhile; `false` if cancelled.
    pub fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut reason = lock(&self.0.reason);
        loop {
            if reason.is_some() {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            reason = self
                .0
                .wake
                .wait_timeout(reason, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Runs `hook` when the session is cancelled (now, if it already is). Hooks hold
    /// what they need to unblock a wait: a socket to shut down, a queue to close.
    pub fn on_cancel(&self, hook: impl FnOnce() + Send + 'static) {
        let mut hooks = lock(&self.0.hooks);
        // `cancel` sets the flag before it takes the hooks, so a hook added while the
        // flag is clear is always taken and run.
        if self.is_cancelled() {
            drop(hooks);
            return hook();
        }
        hooks.push(Box::new(hook));
    }

    /// Cancels the session when dropped, unless disarmed first: role code holds one, so
    /// that a role whose future is dropped (its caller gave up) stops its threads too.
    pub fn guard(&self) -> CancelOnDrop {
        CancelOnDrop(Some(self.clone()))
    }
}

/// Shuts the data streams down when the session is cancelled: a sender blocked writing
/// to a peer that stopped reading, or a receiver waiting for bytes that will not come,
/// gets an error at once.
pub fn shut_on_cancel(cancel: &Cancel, streams: &[Stream]) {
    let sockets: Vec<TcpStream> = streams
        .iter()
        .filter_map(|s| s.socket().try_clone().ok())
        .collect();
    cancel.on_cancel(move || {
        for s in sockets {
            let _ = s.shutdown(Shutdown::Both);
        }
    });
}

/// See [`Cancel::guard`].
pub struct CancelOnDrop(Option<Cancel>);

impl CancelOnDrop {
    /// The role ended by itself: nothing to stop; its hooks (and what they hold) go.
    pub fn disarm(mut self) {
        if let Some(cancel) = self.0.take() {
            lock(&cancel.0.hooks).clear();
        }
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(cancel) = self.0.take() {
            cancel.cancel("the session was abandoned");
        }
    }
}

/// The bytes a session may hold for its peer, and how many it holds now.
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    held: AtomicU64,
}

impl Budget {
    pub fn new(limit: u64) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            held: AtomicU64::new(0),
        })
    }

    /// Bytes held now.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// Charges `bytes` for `what`; an error, and nothing charged, past the limit.
    pub fn take(self: &Arc<Budget>, bytes: u64, what: &'static str) -> Result<Held, SessionError> {
        let mut held = Held {
            budget: self.clone(),
            bytes: 0,
            what,
        };
        held.grow(bytes)?;
        Ok(held)
    }

    fn charge(&self, bytes: u64, what: &str) -> Result<(), SessionError> {
        let before = self.held.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > self.limit {
            self.held.fetch_sub(bytes, Ordering::Relaxed);
            return Err(SessionError::Limit(format!(
                "the session would hold more than its memory limit of {} MiB ({what})",
                self.limit >> 20
            )));
        }
        Ok(())
    }
}

/// Bytes charged to a [`Budget`], given back when dropped.
#[derive(Debug)]
pub struct Held {
    budget: Arc<Budget>,
    bytes: u64,
    what: &'static str,
}

impl Held {
    /// Charges `bytes` more to the same budget.
    pub fn grow(&mut self, bytes: u64) -> Result<(), SessionError> {
        self.budget.charge(bytes, self.what)?;
        self.bytes += bytes;
        Ok(())
    }

    /// Gives back up to `bytes`.
    pub fn shrink(&mut self, bytes: u64) {
        let bytes = bytes.min(self.bytes);
        self.budget.held.fetch_sub(bytes, Ordering::Relaxed);
        self.bytes -= bytes;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// What an entry costs in memory, about: the struct and what it points to.
pub fn entry_bytes(e: &Entry) -> u64 {
    let xattrs = e.xattrs.as_ref().map_or(0, |x| {
        x.iter()
            .map(|(k, v)| k.len() + v.len() + 3 * std::mem::size_of::<usize>() * 2)
            .sum()
    });
    (std::mem::size_of::<Entry>()
        + e.name.len()
        + e.link_target.as_ref().map_or(0, |t| t.len())
        + xattrs) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_refuses_past_its_limit_and_gets_bytes_back_on_drop() {
        let budget = Budget::new(100);
        let mut a = budget.take(60, "a").unwrap();
        let err = budget.take(50, "b").unwrap_err();
        assert!(err.to_string().contains("memory limit"), "{err}");
        assert_eq!(budget.held(), 60, "a refused charge holds nothing");
        a.shrink(30);
        let b = budget.take(50, "b").unwrap();
        assert!(a.grow(30).is_err());
        drop((a, b));
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn cancel_wakes_sleepers_runs_hooks_and_keeps_the_first_reason() {
        let cancel = Cancel::new();
        let hooked = Arc::new(AtomicBool::new(false));
        let h = hooked.clone();
        cancel.on_cancel(move || h.store(true, Ordering::SeqCst));
        let sleeper = {
            let cancel = cancel.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                let slept = cancel.sleep(Duration::from_secs(3600));
                (slept, start.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        cancel.cancel("first");
        cancel.cancel("second");
        let (slept, took) = sleeper.join().unwrap();
        assert!(!slept && took < Duration::from_secs(5), "{took:?}");
        assert!(hooked.load(Ordering::SeqCst));
        assert_eq!(cancel.reason().as_deref(), Some("first"));
        let late = Arc::new(AtomicBool::new(false));
        let l = late.clone();
        cancel.on_cancel(move || l.store(true, Ordering::SeqCst));
        assert!(late.load(Ordering::SeqCst), "a late hook runs at once");
    }

    #[test]
    fn a_dropped_guard_cancels_and_a_disarmed_one_does_not() {
        let cancel = Cancel::new();
        cancel.guard().disarm();
        assert!(!cancel.is_cancelled());
        drop(cancel.guard());
        assert!(cancel.is_cancelled());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            cancel.cancelled().await;
            let pending = cancel.until(std::future::pending::<()>()).await;
            assert!(matches!(pending, Err(SessionError::Ended(_))));
        });
    }
}
