//! The inbound half of a session's [`Link`](super::Link) when its frames arrive as a gRPC
//! stream: one loop for both ends (a client reading the agent's answers, the agent reading
//! its client's frames), so a broken stream means the same thing on either side.

use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};

use super::frame;
use super::lifetime::Cancel;
use crate::wire::pb;

/// Forwards frames from `inbound` to `tx` until either ends or `cancel` fires, calling
/// `seen` on each. A transport error (the peer gone, the connection cut) cancels the
/// session and reaches the role code as an `Abort` naming `peer`.
pub async fn forward_in(
    inbound: impl Stream<Item = Result<pb::Frame, tonic::Status>> + Unpin,
    tx: mpsc::Sender<pb::Frame>,
    seen: impl Fn(&pb::Frame),
    cancel: Option<Cancel>,
    peer: &str,
) {
    let cancel = cancel.unwrap_or_default();
    let mut inbound = inbound;
    while let Ok(Some(item)) = cancel.until(inbound.next()).await {
        let f = match item {
            Ok(f) => f,
            Err(status) => {
                let message = format!("the {peer}'s stream failed: {}", status.message());
                cancel.cancel(message.clone());
                frame(pb::frame::Kind::Abort(pb::Abort { message }))
            }
        };
        seen(&f);
        if !matches!(cancel.until(tx.send(f)).await, Ok(Ok(()))) {
            break;
        }
    }
}
