//! Accepting connections on a listener without spinning on errors. An error that
//! belongs to one connection (reset before it was accepted) is skipped; an error of the
//! process (no descriptor left, no memory) pauses the loop with a growing back-off, and
//! is logged once when it begins and once when accepting works again, however long the
//! burst lasts.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::limits::{ACCEPT_BACKOFF_MAX, ACCEPT_BACKOFF_MIN};

/// What can be accepted from (a real listener, or a test's scripted errors).
pub trait Listen {
    fn accept(&self) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send;
}

impl Listen for TcpListener {
    fn accept(&self) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send {
        TcpListener::accept(self)
    }
}

/// An accept loop's state across calls: the burst of errors it is in, if any.
pub struct Acceptor<L> {
    listener: L,
    /// "control" or "data", for the log.
    plane: &'static str,
    burst: Option<Burst>,
}

struct Burst {
    began: Instant,
    errors: u64,
    pause: Duration,
}

impl<L: Listen> Acceptor<L> {
    pub fn new(listener: L, plane: &'static str) -> Acceptor<L> {
        Acceptor {
            listener,
            plane,
            burst: None,
        }
    }

    /// The next connection, waiting out errors.
    pub async fn next(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok(accepted) => {
                    if let Some(b) = self.burst.take() {
                        tracing::info!(
                            plane = self.plane,
                            "accepting connections again after {} error(s) over {:.1}s",
                            b.errors,
                            b.began.elapsed().as_secs_f64()
                        );
                    }
                    return accepted;
                }
                Err(e) if of_one_connection(&e) => {}
                Err(e) => {
                    let pause = match &mut self.burst {
                        Some(b) => {
                            b.errors += 1;
                            b.pause = (b.pause * 2).min(ACCEPT_BACKOFF_MAX);
                            b.pause
                        }
                        None => {
                            tracing::warn!(
                                plane = self.plane,
                                "cannot accept connections: {e}; backing off until it works again"
                            );
                            self.burst = Some(Burst {
                                began: Instant::now(),
                                errors: 1,
                                pause: ACCEPT_BACKOFF_MIN,
                            });
                            ACCEPT_BACKOFF_MIN
                        }
                    };
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}

/// Errors that concern only the connection being accepted: the next one may work.
fn of_one_connection(e: &io::Error) -> bool {
    use rustix::io::Errno;
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || matches!(
        // accept(2) also reports network errors already pending on the new socket.
        Errno::from_io_error(e),
        Some(Errno::PROTO | Errno::HOSTUNREACH | Errno::NETUNREACH)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A listener out of descriptors: every accept fails with EMFILE.
    struct Exhausted {
        attempts: AtomicU64,
    }

    impl Listen for Exhausted {
        async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
            self.attempts.fetch_add(1, Ordering::Relaxed);
            Err(rustix::io::Errno::MFILE.into())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn emfile_backs_off_instead_of_spinning() {
        let mut acceptor = Acceptor::new(
            Exhausted {
                attempts: AtomicU64::new(0),
            },
            "test",
        );
        let ten_seconds = tokio::time::timeout(Duration::from_secs(10), acceptor.next()).await;
        assert!(ten_seconds.is_err(), "nothing to accept");
        let attempts = acceptor.listener.attempts.load(Ordering::Relaxed);
        // 5, 10, 20 … 640 ms, then 1 s each: about 17 attempts in 10 s.
        assert!(
            (10..=20).contains(&attempts),
            "{attempts} accept attempts in 10 s"
        );
        assert!(
            acceptor
                .burst
                .as_ref()
                .is_some_and(|b| b.errors == attempts)
        );
    }

    #[test]
    fn errors_of_one_connection_are_skipped_at_once() {
        assert!(of_one_connection(&io::ErrorKind::ConnectionAborted.into()));
        assert!(of_one_connection(&rustix::io::Errno::PROTO.into()));
        assert!(!of_one_connection(&rustix::io::Errno::MFILE.into()));
        assert!(!of_one_connection(&rustix::io::Errno::NOBUFS.into()));
    }
}
