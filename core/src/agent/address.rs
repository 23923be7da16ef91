//! Where an agent listens: a host and a port, as a user or a resource names it
//! (`host`, `host:port`, `[v6]`, `[v6]:port`), and as another agent dials it.

use std::fmt;

use crate::agent_path::{AgentPath, DEFAULT_PORT};

/// An agent's control address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    pub host: String,
    pub port: u16,
}

impl Address {
    pub fn new(host: impl Into<String>, port: u16) -> Address {
        Address {
            host: host.into(),
            port,
        }
    }

    /// `host[:port]` (or `[v6][:port]`); the port defaults to the agent's.
    pub fn parse(s: &str) -> Result<Address, String> {
        let probe = format!("{s}:/");
        match AgentPath::parse(std::ffi::OsStr::new(&probe)) {
            Some(Ok(a)) if a.module.is_empty() => Ok(a.address()),
            _ => Err(format!(
                "{s:?} is not an agent address (host[:port], default port {DEFAULT_PORT})"
            )),
        }
    }
}

impl fmt::Display for Address {
    /// `host:port`, with a v6 host in brackets: what `parse` reads back and a dialer takes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl AgentPath {
    /// The agent this path is on.
    pub fn address(&self) -> Address {
        Address::new(self.host.clone(), self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_print_back() {
        for (text, host, port) in [
            ("h", "h", DEFAULT_PORT),
            ("h:7", "h", 7),
            ("[::1]:9", "::1", 9),
            ("[fe80::2]", "fe80::2", DEFAULT_PORT),
        ] {
            let a = Address::parse(text).unwrap();
            assert_eq!((a.host.as_str(), a.port), (host, port), "{text}");
            assert_eq!(Address::parse(&a.to_string()).unwrap(), a);
        }
        for bad in ["h:x", "", "h:1:/m", "[::1"] {
            assert!(Address::parse(bad).is_err(), "{bad}");
        }
    }
}
