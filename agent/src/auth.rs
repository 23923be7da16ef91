//! The gate every gRPC call passes: the protocol version it announces must have our
//! major version, and when tokens are configured it must present one of them. A refused
//! call gets `UNAUTHENTICATED` (or `FAILED_PRECONDITION` for a version mismatch) and
//! nothing else; refusals are logged at a rate limit with the peer's address. A call
//! that passes marks its connection authenticated, which ends the connection's deadline
//! for a first authenticated call (see `admission`).

use std::sync::Arc;

use blit_core::session::data::same_token;
use blit_core::wire::pb;
use blit_core::wire::protocol::PROTOCOL_HEADER;
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::control::Peer;
use crate::tally::Tally;

#[derive(Clone)]
pub struct Gate {
    tokens: Arc<Vec<String>>,
    failures: Arc<Tally>,
}

impl Gate {
    pub fn new(tokens: Vec<String>) -> Gate {
        Gate {
            tokens: Arc::new(tokens),
            failures: Tally::new("authentication failed"),
        }
    }

    fn check_token(&self, req: &Request<()>) -> Result<(), Status> {
        if self.tokens.is_empty() {
            return Ok(());
        }
        let presented = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match presented {
            Some(t)
                if self
                    .tokens
                    .iter()
                    .any(|k| same_token(k.as_bytes(), t.as_bytes())) =>
            {
                Ok(())
            }
            Some(_) => Err(Status::unauthenticated(
                "the token is not valid for this agent",
            )),
            None => Err(Status::unauthenticated(
                "this agent requires a token (--token or BLIT_TOKEN)",
            )),
        }
    }
}

/// Checks a `major.minor` version string against ours.
pub fn check_version(version: Option<&str>) -> Result<(), Status> {
    let Some(v) = version else {
        // Plain gRPC tools (health probes) announce nothing; the session's Open checks again.
        return Ok(());
    };
    let major = v.split('.').next().and_then(|m| m.parse::<u32>().ok());
    if major == Some(pb::PROTOCOL_MAJOR) {
        Ok(())
    } else {
        Err(Status::failed_precondition(format!(
            "protocol version {v} is not supported: this agent speaks {}.x (up to {}.{})",
            pb::PROTOCOL_MAJOR,
            pb::PROTOCOL_MAJOR,
            pb::PROTOCOL_MINOR
        )))
    }
}

impl Interceptor for Gate {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let peer = req.extensions().get::<Peer>();
        if let Err(refused) = self.check_token(&req) {
            if let Some(peer) = peer {
                self.failures.note(peer.addr(), refused.message());
            }
            return Err(refused);
        }
        check_version(
            req.metadata()
                .get(PROTOCOL_HEADER)
                .and_then(|v| v.to_str().ok()),
        )?;
        if let Some(peer) = peer {
            peer.authenticated();
        }
        Ok(req)
    }
}
