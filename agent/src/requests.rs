//! What the agent grants one gRPC call, as a layer around tonic's routes:
//! - calls that should answer quickly get [`REQUEST_TIMEOUT`] to answer (never the
//!   transfer and job streams, nor calls whose work grows with a tree);
//! - the request body is watched in gRPC's own framing: bytes of unfinished messages are
//!   charged to one budget for all connections ([`UNFINISHED_MESSAGES_BUDGET`]), and a
//!   message that stalls half-received for [`MESSAGE_STALL_TIMEOUT`] fails its call and
//!   closes its connection;
//! - each call counts as in progress on its connection until its response ends, so the
//!   admission never closes a busy connection for room.
//!
//! tonic itself refuses a message whose declared length is over the service's limit as
//! soon as its header arrives; this layer bounds what the messages under that limit can
//! hold, and for how long.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use blit_core::wire::pb;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tonic::Status;
use tonic::body::Body;
use tonic::transport::server::TcpConnectInfo;

use crate::admission::Call;
use crate::control::Peer;
use crate::limits::{MESSAGE_STALL_TIMEOUT, REQUEST_TIMEOUT, UNFINISHED_MESSAGES_BUDGET};

/// The layer: one per server, sharing the budget.
#[derive(Clone)]
pub struct Guard {
    budget: Arc<Budget>,
}

impl Guard {
    pub fn new() -> Guard {
        Guard {
            budget: Arc::new(Budget {
                held: AtomicU64::new(0),
                limit: UNFINISHED_MESSAGES_BUDGET,
            }),
        }
    }
}

impl Default for Guard {
    fn default() -> Self {
        Guard::new()
    }
}

impl<S> tower_layer::Layer<S> for Guard {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Guarded<S> {
        Guarded {
            inner,
            budget: self.budget.clone(),
        }
    }
}

/// The routes, guarded.
#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    budget: Arc<Budget>,
}

type Request = http::Request<Body>;
type Response = http::Response<Body>;

impl<S> tower_service::Service<Request> for Guarded<S>
where
    S: tower_service::Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let peer = req.extensions().get::<Peer>().cloned();
        if let Some(p) = &peer {
            // What `tonic::Request::remote_addr` reads.
            req.extensions_mut().insert(TcpConnectInfo {
                local_addr: None,
                remote_addr: Some(p.addr()),
            });
        }
        let call = peer.as_ref().map(Peer::call);
        let timeout = answer_within(req.uri().path());
        let budget = self.budget.clone();
        let req = req.map(|body| Body::new(Unfinished::new(body, budget, peer)));
        // The instance that was polled ready serves this call; a clone waits for the next.
        let clone = self.inner.clone();
        let answered = std::mem::replace(&mut self.inner, clone).call(req);
        Box::pin(async move {
            let response = match timeout {
                None => answered.await?,
                Some(limit) => match tokio::time::timeout(limit, answered).await {
                    Ok(response) => response?,
                    Err(_) => {
                        let message = format!("no answer within {}s", limit.as_secs());
                        return Ok(Status::deadline_exceeded(message).into_http());
                    }
                },
            };
            Ok(response.map(|body| Body::new(InProgress { body, _call: call })))
        })
    }
}

/// The calls that answer at once (their work, if any, runs after the answer or is
/// small), as (service, method).
const QUICK: &[(&str, &str)] = &[
    (pb::session_server::SERVICE_NAME, "Transfer"),
    (pb::admin_server::SERVICE_NAME, "Hello"),
    (pb::admin_server::SERVICE_NAME, "ListModules"),
    (pb::admin_server::SERVICE_NAME, "FsStats"),
    (pb::admin_server::SERVICE_NAME, "Complete"),
    (pb::jobs_server::SERVICE_NAME, "StartTransfer"),
    (pb::jobs_server::SERVICE_NAME, "CancelJob"),
    (pb::jobs_server::SERVICE_NAME, "ListJobs"),
    (tonic_health::pb::health_server::SERVICE_NAME, "Check"),
];

/// How long the call at `path` (`/package.Service/Method`) may take to answer.
fn answer_within(path: &str) -> Option<Duration> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    QUICK
        .contains(&(service, method))
        .then_some(REQUEST_TIMEOUT)
}

/// Bytes of unfinished messages held, all calls together.
struct Budget {
    held: AtomicU64,
    limit: u64,
}

impl Budget {
    fn try_charge(&self, n: u64) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(n).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    fn release(&self, n: u64) {
        self.held.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Where a request body is in gRPC's framing: each message is a flag byte, a 4-byte
/// big-endian length, then that many bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Framing {
    header: [u8; 5],
    /// Header bytes received of the current message (0: between messages).
    header_len: usize,
    /// Bytes of the current message still to come, once its header is complete.
    left: u64,
    /// Bytes received of the current, unfinished message.
    held: u64,
}

impl Framing {
    fn advance(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            let n = if self.header_len < self.header.len() {
                let n = (self.header.len() - self.header_len).min(chunk.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&chunk[..n]);
                self.header_len += n;
                if self.header_len == self.header.len() {
                    let len: [u8; 4] = self.header[1..].try_into().expect("4 bytes");
                    self.left = u64::from(u32::from_be_bytes(len));
                }
                n
            } else {
                let n = usize::try_from(self.left)
                    .unwrap_or(usize::MAX)
                    .min(chunk.len());
                self.left -= n as u64;
                n
            };
            self.held += n as u64;
            chunk = &chunk[n..];
            if self.header_len == self.header.len() && self.left == 0 {
                *self = Framing::default();
            }
        }
    }

    /// Whether a message has begun and not ended.
    fn unfinished(&self) -> bool {
        self.header_len > 0
    }
}

/// A request body whose unfinished messages are charged to the budget and may not stall.
struct Unfinished {
    body: Body,
    framing: Framing,
    /// What this body has charged to the budget (its unfinished message's bytes).
    charged: u64,
    budget: Arc<Budget>,
    peer: Option<Peer>,
    /// Armed while the call waits for the rest of an unfinished message.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Unfinished {
    fn new(body: Body, budget: Arc<Budget>, peer: Option<Peer>) -> Unfinished {
        Unfinished {
            body,
            framing: Framing::default(),
            charged: 0,
            budget,
            peer,
            stall: None,
        }
    }

    /// Follows the framing through `data` and charges what the unfinished message holds.
    fn account(&mut self, data: &[u8]) -> Result<(), Status> {
        self.framing.advance(data);
        let held = self.framing.held;
        if held > self.charged {
            if !self.budget.try_charge(held - self.charged) {
                return Err(Status::resource_exhausted(format!(
                    "the agent is holding {} MiB of unfinished requests, its limit; retry later",
                    self.budget.limit >> 20
                )));
            }
        } else {
            self.budget.release(self.charged - held);
        }
        self.charged = held;
        Ok(())
    }

    /// Whether the unfinished message has stalled for too long (arming the timer when
    /// the call starts waiting).
    fn stalled(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.framing.unfinished() {
            self.stall = None;
            return false;
        }
        let timer = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(MESSAGE_STALL_TIMEOUT)));
        timer.as_mut().poll(cx).is_ready()
    }
}

impl http_body::Body for Unfinished {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                // Bytes arrived: the wait, if any, is over; the next one starts afresh.
                this.stall = None;
                if let Some(data) = frame.data_ref()
                    && let Err(refused) = this.account(data)
                {
                    return Poll::Ready(Some(Err(refused)));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending if this.stalled(cx) => {
                let reason = format!(
                    "a message stalled half-received for {}s",
                    MESSAGE_STALL_TIMEOUT.as_secs()
                );
                if let Some(peer) = &this.peer {
                    peer.close(&reason);
                }
                Poll::Ready(Some(Err(Status::deadline_exceeded(reason))))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        self.budget.release(self.charged);
    }
}

/// A response body that keeps its call counted as in progress until it ends.
struct InProgress {
    body: Body,
    _call: Option<Call>,
}

impl http_body::Body for InProgress {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: u32) -> Vec<u8> {
        let mut m = vec![0u8];
        m.extend_from_slice(&len.to_be_bytes());
        m.extend(std::iter::repeat_n(7u8, len as usize));
        m
    }

    #[test]
    fn framing_follows_messages_across_and_within_chunks() {
        let mut stream = message(10);
        stream.extend(message(0));
        stream.extend(message(3));
        let mut whole = Framing::default();
        whole.advance(&stream);
        assert_eq!(whole, Framing::default(), "three complete messages");
        let mut bytewise = Framing::default();
        for (i, b) in stream.iter().enumerate() {
            bytewise.advance(std::slice::from_ref(b));
            let ends = [15, 20, 28];
            assert_eq!(
                bytewise.unfinished(),
                !ends.contains(&(i + 1)),
                "after {}",
                i + 1
            );
        }
        let mut half = Framing::default();
        half.advance(&message(100)[..60]);
        assert!(half.unfinished());
        assert_eq!((half.held, half.left), (60, 45));
    }

    #[test]
    fn unfinished_messages_share_one_budget() {
        let budget = Arc::new(Budget {
            held: AtomicU64::new(0),
            limit: 100,
        });
        let mut a = Unfinished::new(Body::empty(), budget.clone(), None);
        let mut b = Unfinished::new(Body::empty(), budget.clone(), None);
        let big = message(200);
        assert!(a.account(&big[..80]).is_ok());
        assert!(b.account(&big[..15]).is_ok());
        let refused = b.account(&big[15..30]).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        // A message that completes gives its bytes back.
        assert!(a.account(&big[80..]).is_ok());
        assert_eq!(budget.held.load(Ordering::Acquire), 15);
        drop(b);
        assert_eq!(budget.held.load(Ordering::Acquire), 0);
    }

    #[test]
    fn only_quick_calls_have_a_deadline() {
        assert_eq!(
            answer_within("/blit.v1.Session/Transfer"),
            Some(REQUEST_TIMEOUT)
        );
        assert_eq!(answer_within("/blit.v1.Admin/Hello"), Some(REQUEST_TIMEOUT));
        assert_eq!(
            answer_within("/grpc.health.v1.Health/Check"),
            Some(REQUEST_TIMEOUT)
        );
        assert_eq!(answer_within("/blit.v1.Admin/Remove"), None);
        assert_eq!(answer_within("/blit.v1.Jobs/WatchJob"), None);
        assert_eq!(answer_within("nonsense"), None);
    }
}
