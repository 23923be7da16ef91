//! Which source agents this agent's jobs may pull from.
//!
//! A job dials its source, sends the caller's token there and presents this agent's own
//! client certificate. Without a limit, anyone allowed to start a job could aim the agent
//! at any address: a confused deputy against agents that trust it, and a port scanner
//! whose answers tell open ports from closed ones. So a job names its source, and the
//! agent dials it only if a [`SourcePolicy`] admits it — before any lookup or connection.
//!
//! [`AllowList`] is the policy of a standalone agent (`[jobs] sources`). In a cluster the
//! operator's index of its agents is meant to be another implementation of the same trait.

use std::net::IpAddr;

use blit_core::agent_path::DEFAULT_PORT;

/// Decides which agents a job may pull from.
pub trait SourcePolicy: Send + Sync {
    /// Whether a job may pull from `host:port` (and so send the caller's token there).
    /// `host` is a name or an address exactly as the caller gave it; names are never
    /// resolved to be checked (a name matches only the same name).
    fn allows(&self, host: &str, port: u16) -> bool;
}

/// One admitted source: a host name or an address range, and one port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    host: PeerHost,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PeerHost {
    /// A DNS name, compared without case and without a final dot.
    Name(String),
    /// An address or a range of them.
    Net { addr: IpAddr, prefix: u8 },
}

impl Peer {
    /// `HOST[:PORT]`, `IP[:PORT]`, `IP/PREFIX[:PORT]`; IPv6 in brackets (`[fd00::/8]:9031`).
    /// The port is the agent's default (9031) unless given.
    pub fn parse(s: &str) -> Result<Peer, String> {
        let (host, port) = match s.strip_prefix('[') {
            Some(rest) => {
                let (inside, after) = rest
                    .split_once(']')
                    .ok_or("an opening '[' without its ']'")?;
                let port = match after {
                    "" => None,
                    p => Some(p.strip_prefix(':').ok_or("expected :PORT after ']'")?),
                };
                (inside, port)
            }
            None => match s.rsplit_once(':') {
                Some((h, _)) if h.contains(':') => {
                    return Err("IPv6 addresses go in brackets, e.g. [fd00::1]:9031".into());
                }
                Some((h, p)) => (h, Some(p)),
                None => (s, None),
            },
        };
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => p
                .parse()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("{p:?} is not a port"))?,
        };
        Ok(Peer {
            host: PeerHost::parse(host)?,
            port,
        })
    }

    fn admits(&self, host: &str, port: u16) -> bool {
        port == self.port && self.host.admits(host)
    }
}

impl PeerHost {
    fn parse(s: &str) -> Result<PeerHost, String> {
        if let Some((addr, prefix)) = s.split_once('/') {
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| format!("{addr:?} is not an IP address"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = prefix
                .parse()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("{prefix:?} is not a prefix length (0-{max})"))?;
            return Ok(PeerHost::Net { addr, prefix });
        }
        if let Ok(addr) = s.parse::<IpAddr>() {
            let prefix = if addr.is_ipv4() { 32 } else { 128 };
            return Ok(PeerHost::Net { addr, prefix });
        }
        let name = s.strip_suffix('.').unwrap_or(s);
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !valid {
            return Err(format!("{s:?} is not a host name, address or range"));
        }
        Ok(PeerHost::Name(name.to_ascii_lowercase()))
    }

    fn admits(&self, host: &str) -> bool {
        match (self, host.parse::<IpAddr>()) {
            // An IPv4-mapped IPv6 address reaches the IPv4 host: compare as that.
            (PeerHost::Net { addr, prefix }, Ok(ip)) => in_range(ip.to_canonical(), *addr, *prefix),
            (PeerHost::Name(name), Err(_)) => {
                let host = host.strip_suffix('.').unwrap_or(host);
                host.eq_ignore_ascii_case(name)
            }
            _ => false,
        }
    }
}

fn in_range(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// A fixed list of admitted sources (`[jobs] sources`); empty admits nothing.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    peers: Vec<Peer>,
}

impl AllowList {
    /// Parses every entry; the first bad one is the error.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowList, String> {
        let peers = entries
            .iter()
            .map(|e| Peer::parse(e.as_ref()).map_err(|why| format!("{:?}: {why}", e.as_ref())))
            .collect::<Result<_, _>>()?;
        Ok(AllowList { peers })
    }
}

impl SourcePolicy for AllowList {
    fn allows(&self, host: &str, port: u16) -> bool {
        self.peers.iter().any(|p| p.admits(host, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_admit_exactly_what_they_name() {
        let list = AllowList::parse(&[
            "nas.example",
            "10.1.0.0/16:9100",
            "192.168.1.5:9031",
            "[fd00::/8]:9031",
            "[::1]",
        ])
        .unwrap();
        let yes = [
            ("nas.example", 9031),
            ("NAS.example.", 9031),
            ("10.1.200.3", 9100),
            ("192.168.1.5", 9031),
            ("fd12::1", 9031),
            ("::1", 9031),
            ("::ffff:10.1.0.1", 9100),
        ];
        for (h, p) in yes {
            assert!(list.allows(h, p), "{h}:{p} admitted");
        }
        let no = [
            ("nas.example", 22),
            ("other.example", 9031),
            ("10.2.0.1", 9100),
            ("10.1.0.1", 9031),
            ("192.168.1.6", 9031),
            ("127.0.0.1", 9031),
            ("fe80::1", 9031),
            // A name is not resolved to be checked, an address never matches a name.
            ("localhost", 9031),
            ("10.1.0.1.nip.io", 9100),
        ];
        for (h, p) in no {
            assert!(!list.allows(h, p), "{h}:{p} refused");
        }
        assert!(
            !AllowList::default().allows("127.0.0.1", 9031),
            "empty admits nothing"
        );
        for bad in [
            "fd00::1:9031",
            "10.0.0.0/33",
            "[::1",
            "host:0",
            "host:port",
            "a b",
            "",
        ] {
            assert!(Peer::parse(bad).is_err(), "{bad:?} is refused");
        }
        assert!(in_range(
            "8.8.8.8".parse().unwrap(),
            "0.0.0.0".parse().unwrap(),
            0
        ));
    }
}
