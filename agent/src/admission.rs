//! Who gets a seat: every accepted connection of a plane is seated here until it has
//! authenticated (a data connection's token, a control connection's first authenticated
//! call) — and, on the control plane, for as long as it stays open.
//!
//! A connection that has not authenticated is *waiting*. Waiting connections are capped
//! per peer address and in all, and each has a deadline. When a cap is reached the
//! oldest waiting connection of the peer holding the most is closed (first the new
//! connection's own peer, if it is over its share), so a flood displaces itself while a
//! legitimate client, which authenticates within a round trip, is not refused. On the
//! control plane the number of connections in all is capped too: at the cap, a waiting
//! connection goes first, then the one idle the longest; one with a call in progress
//! never does, and when every connection is busy the newcomer is refused.
//!
//! Closing a connection is a signal its owner observes (its read fails, or its handshake
//! task ends); nothing is logged per connection, only through a [`Tally`].

use blit_core::sync::lock;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

use crate::tally::Tally;

/// How often waiting connections are checked against their deadline.
const SWEEP_EVERY: Duration = Duration::from_millis(500);

/// The limits of one plane.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Waiting connections of one peer address.
    pub per_peer: usize,
    /// Waiting connections in all.
    pub waiting: usize,
    /// Connections in all, waiting or authenticated.
    pub total: usize,
    /// How long a connection may wait, from accept.
    pub deadline: Duration,
}

/// The seats of one plane.
pub struct Admission {
    caps: Caps,
    state: Mutex<State>,
    closed: Arc<Tally>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// By id, which is also age order.
    seats: BTreeMap<u64, Entry>,
    waiting_by_peer: HashMap<IpAddr, usize>,
    waiting: usize,
}

struct Entry {
    addr: SocketAddr,
    signal: Arc<Signal>,
    /// Set until the connection authenticates.
    waiting_since: Option<Instant>,
    calls: usize,
    idle_since: Instant,
}

impl Admission {
    /// A plane's seats; closed connections are counted in `closed`. Starts the deadline
    /// sweep (needs the runtime).
    pub fn new(caps: Caps, closed: Arc<Tally>) -> Arc<Admission> {
        let admission = Arc::new(Admission {
            caps,
            state: Mutex::default(),
            closed,
        });
        tokio::spawn(sweep(Arc::downgrade(&admission)));
        admission
    }

    /// Seats a connection from `addr`, closing others to make room; `None` when every
    /// seat is held by a connection with a call in progress.
    pub fn admit(self: &Arc<Self>, addr: SocketAddr) -> Option<Ticket> {
        let mut st = lock(&self.state);
        let ip = addr.ip();
        if st.waiting_by_peer.get(&ip).copied().unwrap_or(0) >= self.caps.per_peer {
            let reason = "too many from this address waiting to authenticate";
            self.evict_waiting(&mut st, Some(ip), reason);
        }
        if st.waiting >= self.caps.waiting {
            let busiest = st
                .waiting_by_peer
                .iter()
                .max_by_key(|(_, n)| **n)
                .map(|(ip, _)| *ip);
            let reason = "too many waiting to authenticate";
            self.evict_waiting(&mut st, busiest, reason);
        }
        if st.seats.len() >= self.caps.total {
            let reason = "to make room: too many connections";
            if !self.evict_waiting(&mut st, None, reason) && !self.evict_idle(&mut st, reason) {
                drop(st);
                self.closed
                    .note(addr, "refused: every connection has a call in progress");
                return None;
            }
        }
        let id = st.next_id;
        st.next_id += 1;
        let now = Instant::now();
        let signal = Arc::new(Signal::default());
        st.seats.insert(
            id,
            Entry {
                addr,
                signal: signal.clone(),
                waiting_since: Some(now),
                calls: 0,
                idle_since: now,
            },
        );
        st.waiting += 1;
        *st.waiting_by_peer.entry(ip).or_default() += 1;
        Some(Ticket {
            seat: Arc::new(Seat {
                id,
                addr,
                signal,
                admission: self.clone(),
            }),
        })
    }

    /// Closes the oldest waiting connection (of `peer`, when given); whether there was one.
    fn evict_waiting(&self, st: &mut State, peer: Option<IpAddr>, reason: &str) -> bool {
        let oldest = st
            .seats
            .iter()
            .find(|(_, e)| e.waiting_since.is_some() && peer.is_none_or(|p| e.addr.ip() == p))
            .map(|(id, _)| *id);
        oldest.is_some_and(|id| self.evict(st, id, reason))
    }

    /// Closes the authenticated connection idle the longest; whether there was one.
    fn evict_idle(&self, st: &mut State, reason: &str) -> bool {
        let idlest = st
            .seats
            .iter()
            .filter(|(_, e)| e.waiting_since.is_none() && e.calls == 0)
            .min_by_key(|(_, e)| e.idle_since)
            .map(|(id, _)| *id);
        idlest.is_some_and(|id| self.evict(st, id, reason))
    }

    /// Unseats connection `id` and tells its owner to close it.
    fn evict(&self, st: &mut State, id: u64, reason: &str) -> bool {
        let Some(entry) = st.remove(id) else {
            return false;
        };
        entry.signal.raise();
        self.closed.note(entry.addr, reason);
        true
    }

    /// Closes the waiting connections past their deadline.
    fn sweep(&self) {
        let now = Instant::now();
        let mut st = lock(&self.state);
        let late: Vec<u64> = st
            .seats
            .iter()
            .filter(|(_, e)| {
                e.waiting_since
                    .is_some_and(|t| now.duration_since(t) >= self.caps.deadline)
            })
            .map(|(id, _)| *id)
            .collect();
        let reason = format!("no authentication within {}s", self.caps.deadline.as_secs());
        for id in late {
            self.evict(&mut st, id, &reason);
        }
    }

    /// How many connections are seated, and how many of them are waiting.
    pub fn counts(&self) -> (usize, usize) {
        let st = lock(&self.state);
        (st.seats.len(), st.waiting)
    }
}

impl State {
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.seats.remove(&id)?;
        if entry.waiting_since.is_some() {
            self.stop_waiting(entry.addr.ip());
        }
        Some(entry)
    }

    fn stop_waiting(&mut self, ip: IpAddr) {
        self.waiting -= 1;
        if let Some(n) = self.waiting_by_peer.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.waiting_by_peer.remove(&ip);
            }
        }
    }
}

async fn sweep(admission: Weak<Admission>) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match admission.upgrade() {
            Some(a) => a.sweep(),
            None => return,
        }
    }
}

/// A connection's seat, held by the connection: dropping it gives the seat up.
pub struct Ticket {
    seat: Arc<Seat>,
}

impl Ticket {
    pub fn seat(&self) -> &Arc<Seat> {
        &self.seat
    }

    /// Resolves when the connection has been told to close.
    pub async fn closed(&self) {
        std::future::poll_fn(|cx| self.seat.poll_closed(cx)).await
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        lock(&self.seat.admission.state).remove(self.seat.id);
    }
}

/// What a connection's handlers see of its seat (shared with the [`Ticket`]).
pub struct Seat {
    id: u64,
    addr: SocketAddr,
    signal: Arc<Signal>,
    admission: Arc<Admission>,
}

impl Seat {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The connection authenticated: it no longer counts as waiting, nor has a deadline.
    pub fn authenticated(&self) {
        let mut st = lock(&self.admission.state);
        let Some(entry) = st.seats.get_mut(&self.id) else {
            return;
        };
        if entry.waiting_since.take().is_some() {
            st.stop_waiting(self.addr.ip());
        }
    }

    /// A call began on the connection; it lasts until the guard is dropped. A connection
    /// with a call in progress is never closed for room.
    pub fn call(self: &Arc<Self>) -> Call {
        if let Some(e) = lock(&self.admission.state).seats.get_mut(&self.id) {
            e.calls += 1;
        }
        Call { seat: self.clone() }
    }

    /// Closes the connection for `reason` (a peer misbehaving on it).
    pub fn close(&self, reason: &str) {
        let mut st = lock(&self.admission.state);
        if !self.admission.evict(&mut st, self.id, reason) {
            self.signal.raise();
        }
    }

    /// Ready once the connection has been told to close.
    pub fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.signal.poll(cx)
    }
}

/// A call in progress on a connection.
pub struct Call {
    seat: Arc<Seat>,
}

impl Drop for Call {
    fn drop(&mut self) {
        if let Some(e) = lock(&self.seat.admission.state)
            .seats
            .get_mut(&self.seat.id)
        {
            e.calls -= 1;
            if e.calls == 0 {
                e.idle_since = Instant::now();
            }
        }
    }
}

/// "Close this connection", raised once, observed by whoever polls it.
#[derive(Default)]
struct Signal {
    raised: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Signal {
    fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        if let Some(w) = lock(&self.waker).take() {
            w.wake();
        }
    }

    fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.raised.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        {
            let mut slot = lock(&self.waker);
            if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *slot = Some(cx.waker().clone());
            }
        }
        // Raised between the first check and the registration: its wake found no waker.
        if self.raised.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> Caps {
        Caps {
            per_peer: 2,
            waiting: 3,
            total: 4,
            deadline: Duration::from_secs(10),
        }
    }

    fn addr(last: u8, port: u16) -> SocketAddr {
        SocketAddr::new([127, 0, 0, last].into(), port)
    }

    fn closed(t: &Ticket) -> bool {
        t.seat.signal.raised.load(Ordering::Acquire)
    }

    #[tokio::test]
    async fn a_peer_over_its_share_displaces_its_own_oldest() {
        let a = Admission::new(caps(), Tally::new("test"));
        let first = a.admit(addr(2, 1)).unwrap();
        let second = a.admit(addr(2, 2)).unwrap();
        let third = a.admit(addr(2, 3)).unwrap();
        assert!(closed(&first) && !closed(&second) && !closed(&third));
        let other = a.admit(addr(3, 1)).unwrap();
        assert!(!closed(&other) && !closed(&second));
        assert_eq!(a.counts(), (3, 3));
        // Full: a newcomer from a third address displaces the busiest peer's oldest.
        let newcomer = a.admit(addr(4, 1)).unwrap();
        assert!(closed(&second) && !closed(&other) && !closed(&newcomer));
    }

    #[tokio::test]
    async fn authenticated_connections_leave_the_waiting_room_and_busy_ones_stay() {
        let a = Admission::new(caps(), Tally::new("test"));
        let tickets: Vec<Ticket> = (1..=3).map(|i| a.admit(addr(i, 1)).unwrap()).collect();
        let calls: Vec<Call> = tickets
            .iter()
            .map(|t| {
                t.seat.authenticated();
                t.seat.call()
            })
            .collect();
        assert_eq!(a.counts(), (3, 0));
        let idle = a.admit(addr(9, 1)).unwrap();
        idle.seat.authenticated();
        // Total reached: the only idle one makes room for a newcomer …
        let newcomer = a.admit(addr(10, 1)).unwrap();
        assert!(closed(&idle) && !closed(&newcomer));
        newcomer.seat.authenticated();
        let _busy = newcomer.seat.call();
        // … and when every connection has a call in progress, the newcomer is refused.
        assert!(a.admit(addr(11, 1)).is_none());
        drop(calls);
        assert!(
            a.admit(addr(11, 1)).is_some(),
            "an idle one made room once its call ended"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_past_the_deadline_closes_authenticated_stays() {
        let a = Admission::new(caps(), Tally::new("test"));
        let slow = a.admit(addr(2, 1)).unwrap();
        let quick = a.admit(addr(2, 2)).unwrap();
        quick.seat.authenticated();
        tokio::time::timeout(Duration::from_secs(11), slow.closed())
            .await
            .expect("closed at the deadline");
        assert!(!closed(&quick));
        assert_eq!(a.counts(), (1, 0));
        drop(slow);
        drop(quick);
        assert_eq!(a.counts(), (0, 0));
    }
}
