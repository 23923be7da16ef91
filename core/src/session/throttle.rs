//! A bandwidth limit for the bytes a source sends: one token bucket, shared by all the
//! data streams it covers (a session, or every session of an agent), refilled at `rate`
//! bytes per second with a burst of a quarter second's worth.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

    /// Waits until `n` bytes may be sent.
    pub fn take(&self, n: u64) {
        let wait = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let refill = now.duration_since(s.0).as_secs_f64() * self.rate;
            s.0 = now;
            s.1 = (s.1 + refill).min(self.burst) - n as f64;
            // In debt: wait until the bucket is back to zero.
            (s.1 < 0.0).then(|| Duration::from_secs_f64(-s.1 / self.rate))
        };
        if let Some(wait) = wait {
            self.waited_ns
                .fetch_add(wait.as_nanos() as u64, Ordering::Relaxed);
            std::thread::sleep(wait);
        }
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
        let start = Instant::now();
        // The burst (1 MiB) goes at once; 3 MiB more take about 0.75 s.
        for _ in 0..16 {
            t.take(256 << 10);
        }
        let took = start.elapsed().as_secs_f64();
        assert!((0.6..1.5).contains(&took), "took {took} s");
        assert!(t.waited() > 0.5);
    }
}
