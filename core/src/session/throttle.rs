//! A bandwidth limit for the bytes a source sends: one token bucket, shared by all the
//! data streams it covers (a session, or every session of an agent), refilled at `rate`
//! bytes per second with a burst of a quarter second's worth.
//!
//! A sender waits for its turn in a sleep the session's cancellation cuts short, and
//! takes at most a burst at a time (see [`Throttle::quantum`]): a very low limit makes a
//! session slow, never a thread that sleeps for days after its session ended.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::lifetime::Cancel;

#[derive(Debug)]
pub struct Throttle {
    rate: f64,
    burst: f64,
    state: Mutex<(Instant, f64)>,
    /// Total time senders waited, in nanoseconds.
    waited_ns: AtomicU64,
}

impl Throttle {
    /// A limit of `rate` bytes per second (at least 1).
    pub fn new(rate: u64) -> Throttle {
        let rate = rate.max(1) as f64;
        let burst = (rate / 4.0).max(64.0 * 1024.0);
        Throttle {
            rate,
            burst,
            state: Mutex::new((Instant::now(), burst)),
            waited_ns: AtomicU64::new(0),
        }
    }

    /// The limit one session sends under: the limit `shared` by every session of its
    /// end (an agent's), or the limit the session `asked` for when that is lower.
    pub fn for_session(
        shared: Option<&Arc<Throttle>>,
        asked: Option<u64>,
    ) -> Option<Arc<Throttle>> {
        match (shared, asked) {
            (Some(s), Some(rate)) if (rate as f64) < s.rate() => {
                Some(Arc::new(Throttle::new(rate)))
            }
            (Some(s), _) => Some(s.clone()),
            (None, Some(rate)) => Some(Arc::new(Throttle::new(rate))),
            (None, None) => None,
        }
    }

    /// Waits until `n` bytes may be sent; `false` if the session was cancelled meanwhile
    /// (the bytes stay charged: the session is over anyway).
    pub fn take(&self, n: u64, cancel: &Cancel) -> bool {
        let wait = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let refill = now.duration_since(s.0).as_secs_f64() * self.rate;
            s.0 = now;
            s.1 = (s.1 + refill).min(self.burst) - n as f64;
            // In debt: wait until the bucket is back to zero.
            (s.1 < 0.0).then(|| Duration::from_secs_f64(-s.1 / self.rate))
        };
        let Some(wait) = wait else {
            return !cancel.is_cancelled();
        };
        let started = Instant::now();
        let slept = cancel.sleep(wait);
        self.waited_ns
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        slept
    }

    /// The most a sender should take at once: one burst. At any rate that is at most a
    /// quarter second's worth (or 64 KiB), so no single wait is longer than the time the
    /// limit itself sets for those bytes.
    pub fn quantum(&self) -> u64 {
        self.burst as u64
    }

    /// The rate, in bytes per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Seconds senders have waited so far.
    pub fn waited(&self) -> f64 {
        self.waited_ns.load(Ordering::Relaxed) as f64 / 1e9
    }
}

/// "100M" → 100 MiB/s; `K`, `M`, `G` suffixes (powers of 1024); plain numbers are bytes
/// per second.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&s[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    match num.parse::<f64>() {
        Ok(n) if n > 0.0 && n.is_finite() => Ok((n * mult as f64) as u64),
        _ => Err(format!(
            "rate {s:?} is not a positive number with an optional K/M/G"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("1.5M"), Ok(1_572_864));
        assert_eq!(parse_rate("100"), Ok(100));
        assert_eq!(parse_rate("2k"), Ok(2048));
        assert!(parse_rate("-1").is_err());
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn the_bucket_holds_senders_to_the_rate() {
        let t = Throttle::new(4 << 20);
        let cancel = Cancel::new();
        let start = Instant::now();
        // The burst (1 MiB) goes at once; 3 MiB more take about 0.75 s.
        for _ in 0..16 {
            assert!(t.take(256 << 10, &cancel));
        }
        let took = start.elapsed().as_secs_f64();
        assert!((0.6..1.5).contains(&took), "took {took} s");
        assert!(t.waited() > 0.5);
    }

    #[test]
    fn a_cancelled_session_stops_waiting_at_once() {
        // One byte per second: a 64 KiB burst, then a record of 4 MiB would be a wait of
        // about 48 days.
        let t = std::sync::Arc::new(Throttle::new(1));
        assert_eq!(t.quantum(), 64 << 10);
        let cancel = Cancel::new();
        assert!(t.take(t.quantum(), &cancel), "the burst goes at once");
        let sender = {
            let (t, cancel) = (t.clone(), cancel.clone());
            std::thread::spawn(move || t.take(4 << 20, &cancel))
        };
        std::thread::sleep(Duration::from_millis(100));
        let start = Instant::now();
        cancel.cancel("stop");
        assert!(!sender.join().unwrap(), "the wait reports the cancellation");
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
