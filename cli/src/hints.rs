//! What to tell a person when a call to an agent fails: the client's error, plus which
//! of this command's flags to try when the failure looks like one end speaking TLS and the
//! other not, or a certificate the client does not trust; or, for a connection closed
//! after the agent had answered, that the agent went away.

use blit_core::agent::ClientError;

/// The error as a message for people, with a hint when one applies.
pub fn explain(e: &ClientError) -> String {
    let message = e.to_string();
    let hint = hint(&message, e.before_answer());
    message + hint
}

/// Turns a client error into the CLI's error with its hint.
pub fn error(e: ClientError) -> anyhow::Error {
    anyhow::anyhow!(explain(&e))
}

/// The hint for `message`. `before_answer`: the agent had said nothing yet, so a closed
/// connection is what a TLS mismatch looks like from the plain side (a TLS agent drops a
/// client that does not say hello in TLS). After an answer the agent spoke this client's
/// protocol, and a closed connection means it stopped, crashed or dropped the call.
fn hint(message: &str, before_answer: bool) -> &'static str {
    let has = |needle: &str| message.contains(needle);
    if has("UnknownIssuer") || has("invalid peer certificate") {
        " — the agent's certificate is not signed by a CA this client trusts (--tls-ca)"
    } else if has("InvalidContentType") || has("CorruptMessage") {
        " — the agent does not seem to speak TLS (drop --tls*)"
    } else if has("CertificateRequired") || has("certificate required") {
        " — the agent requires a client certificate (--tls-cert, --tls-key)"
    } else if !closed(message) {
        ""
    } else if before_answer {
        " — the agent closed the connection before answering: does it require TLS (--tls-ca \
         PEM, or --tls for the system's roots) or a client certificate (--tls-cert, --tls-key)?"
    } else {
        " — the agent closed the connection (it may have stopped or crashed; its log says why)"
    }
}

/// Whether `message` says the connection was closed or broken under the call (as hyper
/// and h2 word it), or that the peer sent something that is not HTTP/2 (a TLS record).
fn closed(message: &str) -> bool {
    [
        "broken pipe",
        "connection closed",
        "connection reset",
        "error reading a body",
        "connection was not ready",
        "frame with invalid size",
        "h2 protocol error",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a plain client saw from a TLS agent (several runs), and what a client saw
    /// when the agent crashed in the middle of a unary call and of a stream.
    const TLS_MISMATCH: &[&str] = &[
        "h2 protocol error: http2 error (Unknown): transport error: http2 error: connection \
         error detected: frame with invalid size",
        "operation was canceled (Cancelled): transport error: operation was canceled: \
         connection closed",
        "operation was canceled (Cancelled): transport error: operation was canceled: \
         connection was not ready",
        "transport error (Unknown): transport error: connection error: stream closed because \
         of a broken pipe",
    ];
    const CRASHED: &[&str] = &[
        "transport error (Unknown): transport error: connection error: stream closed because \
         of a broken pipe",
        "h2 protocol error: error reading a body from connection (Unknown): error reading a \
         body from connection: stream closed because of a broken pipe",
    ];

    #[test]
    fn a_tls_hint_only_before_the_agent_answered() {
        for m in TLS_MISMATCH {
            assert!(hint(m, true).contains("does it require TLS"), "{m}");
        }
        for m in CRASHED {
            let hint = hint(m, false);
            assert!(
                !hint.contains("TLS") && !hint.contains("--tls"),
                "{m}: {hint}"
            );
            assert!(hint.contains("closed the connection"), "{m}: {hint}");
        }
        assert_eq!(hint("not found (NotFound)", false), "");
        assert!(hint("invalid peer certificate: UnknownIssuer", false).contains("--tls-ca"));
        let refused = ClientError::Connect {
            address: "h:1".into(),
            message: "connection closed".into(),
        };
        assert!(explain(&refused).contains("does it require TLS"));
    }
}
