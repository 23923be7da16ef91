//! What can go wrong talking to an agent, in one type, and whether trying again may help.

use crate::session::SessionError;

/// A failed call or transfer through [`AgentClient`](super::AgentClient).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No working connection: the address did not resolve, the port refused or timed
    /// out, TLS failed, or the agent dropped the connection before answering anything.
    #[error("cannot connect to {address}: {message}")]
    Connect { address: String, message: String },
    /// The agent answered with an error.
    #[error("{message} ({code:?})")]
    Call { code: tonic::Code, message: String },
    /// A transfer's session ended without a report.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The request cannot be made as given (a token that is not ASCII, say).
    #[error("{0}")]
    Invalid(String),
}

impl ClientError {
    /// Whether the same request may succeed later without anyone changing it: the agent
    /// was unreachable, out of time, busy or shutting down, or a connection broke. A
    /// refused token, a missing path or a bad request stays wrong however often it is
    /// sent.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Connect { .. } => true,
            ClientError::Call { code, .. } => retryable(*code),
            ClientError::Session(e) => match e {
                SessionError::Rpc(status) => retryable(status.code()),
                SessionError::Connect(_) | SessionError::Closed | SessionError::Data(_) => true,
                _ => false,
            },
            ClientError::Invalid(_) => false,
        }
    }

    /// The gRPC code the agent answered with, if it answered.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Call { code, .. } => Some(*code),
            ClientError::Session(SessionError::Rpc(status)) => Some(status.code()),
            _ => None,
        }
    }

    /// Whether the failure came before the agent answered anything (what a TLS mismatch
    /// looks like from the plain side), rather than from an agent that spoke.
    pub fn before_answer(&self) -> bool {
        matches!(self, ClientError::Connect { .. })
    }
}

/// Unavailable (down, restarting, shutting down), out of time, busy (all slots taken).
fn retryable(code: tonic::Code) -> bool {
    use tonic::Code;
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted
    )
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> ClientError {
        ClientError::Call {
            code: status.code(),
            message: with_causes(status.message(), &status),
        }
    }
}

/// `message` and the causes under `e`, each said once.
pub(crate) fn with_causes(message: &str, e: &dyn std::error::Error) -> String {
    let mut s = message.to_owned();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

/// A status as a message: its text, its code, and the transport causes under it.
pub(crate) fn status_text(status: &tonic::Status) -> String {
    with_causes(
        &format!("{} ({:?})", status.message(), status.code()),
        status,
    )
}

/// An error and its causes, each said once.
pub(crate) fn causes(e: &dyn std::error::Error) -> String {
    with_causes(&e.to_string(), e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::{Code, Status};

    #[test]
    fn only_what_may_pass_is_retryable() {
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
        ] {
            assert!(
                ClientError::from(Status::new(code, "x")).is_retryable(),
                "{code:?}"
            );
        }
        for code in [
            Code::Unauthenticated,
            Code::NotFound,
            Code::InvalidArgument,
            Code::PermissionDenied,
            Code::FailedPrecondition,
        ] {
            assert!(
                !ClientError::from(Status::new(code, "x")).is_retryable(),
                "{code:?}"
            );
        }
        let down = ClientError::Connect {
            address: "h:1".into(),
            message: "refused".into(),
        };
        assert!(down.is_retryable() && down.before_answer());
        assert!(ClientError::Session(SessionError::Closed).is_retryable());
        assert!(!ClientError::Session(SessionError::Cancelled).is_retryable());
        assert!(!ClientError::Invalid("token".into()).is_retryable());
        let shutting_down =
            ClientError::Session(SessionError::Rpc(Status::unavailable("shutting down")));
        assert_eq!(shutting_down.code(), Some(Code::Unavailable));
        assert!(shutting_down.is_retryable());
    }
}
