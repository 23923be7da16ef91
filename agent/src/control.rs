//! The control plane's connections, as tonic's server receives them: accepted with
//! back-off on errors ([`Acceptor`]), seated in the plane's [`Admission`] (caps on
//! waiting connections and on connections in all, a deadline for the first
//! authenticated call) and wrapped in [`Conn`], whose reads fail once the admission
//! closes the connection — which is how an idle, late or misbehaving connection is
//! dropped while hyper owns it. Each call sees its connection as a [`Peer`] (a request
//! extension): the gate marks it authenticated, failures are logged with its address.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::accept::Acceptor;
use crate::admission::{Admission, Call, Seat, Ticket};

/// Accepted connections waiting for tonic to take them.
const HANDOFF: usize = 16;

/// Accepts on `listener` for as long as the returned stream is read.
pub fn incoming(
    listener: TcpListener,
    admission: Arc<Admission>,
) -> ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(HANDOFF);
    tokio::spawn(async move {
        let mut acceptor = Acceptor::new(listener, "control");
        loop {
            let (stream, peer) = acceptor.next().await;
            // Control messages are small and answered at once: no Nagle delay.
            let _ = stream.set_nodelay(true);
            let Some(ticket) = admission.admit(peer) else {
                continue;
            };
            if tx.send(Ok(Conn { stream, ticket })).await.is_err() {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}

/// A control connection: the socket and its seat.
pub struct Conn {
    stream: TcpStream,
    ticket: Ticket,
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // hyper always has a read pending on a connection: failing it closes the
        // connection, whatever stage it is at.
        if self.ticket.seat().poll_closed(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed by the agent",
            )));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Connected for Conn {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        Peer(self.ticket.seat().clone())
    }
}

/// The connection a call arrived on (a request extension).
#[derive(Clone)]
pub struct Peer(Arc<Seat>);

impl Peer {
    pub fn addr(&self) -> SocketAddr {
        self.0.addr()
    }

    /// The call passed the gate: the connection is no longer waiting.
    pub fn authenticated(&self) {
        self.0.authenticated();
    }

    /// A call in progress, until the guard is dropped.
    pub fn call(&self) -> Call {
        self.0.call()
    }

    /// Closes the connection (a peer misbehaving on it).
    pub fn close(&self, reason: &str) {
        self.0.close(reason);
    }
}
