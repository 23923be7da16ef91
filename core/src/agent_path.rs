//! Remote paths: `host[:port]:/module/path` (rsync-like) and
//! `blit://host[:port]/module/path`. IPv6 hosts go in brackets (`[::1]:9031:/m/p`).
//! A path that starts with `/`, `./` or `../`, or has no `:/` after a host-like prefix,
//! is local.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::wire::pb;

/// The agent's default control port.
pub const DEFAULT_PORT: u16 = 9031;

/// A path inside a module of an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPath {
    pub host: String,
    pub port: u16,
    /// Empty when only the agent was named (`host:` or `blit://host`).
    pub module: String,
    /// Inside the module, without a leading `/`; a trailing `/` is kept (it means "the
    /// contents of", as for local paths).
    pub path: PathBuf,
}

impl AgentPath {
    /// Parses `s` if it names a remote path; `None` for a local path, `Some(Err)` for a
    /// remote path that is malformed.
    pub fn parse(s: &OsStr) -> Option<Result<AgentPath, String>> {
        let b = s.as_bytes();
        if let Some(rest) = b.strip_prefix(b"blit://") {
            let (authority, path) = match rest.iter().position(|&c| c == b'/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, &b""[..]),
            };
            return Some(AgentPath::build(authority, path));
        }
        if b.starts_with(b"/") || b.starts_with(b"./") || b.starts_with(b"../") {
            return None;
        }
        // host:/path or host:port:/path — the host part has no '/'.
        let sep = b.windows(2).position(|w| w == b":/")?;
        let authority = &b[..sep];
        if authority.is_empty() || authority.contains(&b'/') {
            return None;
        }
        Some(AgentPath::build(authority, &b[sep + 1..]))
    }

    fn build(authority: &[u8], path: &[u8]) -> Result<AgentPath, String> {
        let authority =
            std::str::from_utf8(authority).map_err(|_| "the host name is not UTF-8".to_owned())?;
        let (host, port) = split_port(authority)?;
        if host.is_empty() {
            return Err(format!("no host in {authority:?}"));
        }
        let path = path.strip_prefix(b"/").unwrap_or(path);
        let (module, rest) = match path.iter().position(|&c| c == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (path, &b""[..]),
        };
        let module = std::str::from_utf8(module)
            .map_err(|_| "the module name is not UTF-8".to_owned())?
            .to_owned();
        Ok(AgentPath {
            host,
            port,
            module,
            path: PathBuf::from(OsStr::from_bytes(rest)),
        })
    }

    /// The location to send to the agent.
    pub fn location(&self) -> pb::Location {
        pb::Location {
            module: self.module.clone(),
            path: self.path.as_os_str().as_bytes().to_vec(),
        }
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
fn split_port(authority: &str) -> Result<(String, u16), String> {
    let bad_port = |p: &str| format!("port {p:?} is not a number");
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("unclosed '[' in {authority:?}"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad_port(p))?,
            None if after.is_empty() => DEFAULT_PORT,
            None => return Err(format!("unexpected {after:?} after the address")),
        };
        return Ok((host.to_owned(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, p)) => Ok((host.to_owned(), p.parse().map_err(|_| bad_port(p))?)),
        None => Ok((authority.to_owned(), DEFAULT_PORT)),
    }
}

impl fmt::Display for AgentPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "{host}:{}:/{}", self.port, self.module)?;
        if !self.path.as_os_str().is_empty() {
            write!(f, "/{}", self.path.display())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<Result<AgentPath, String>> {
        AgentPath::parse(OsStr::new(s))
    }

    #[test]
    fn remote_and_local_paths() {
        let a = p("host:/mod/a/b/").unwrap().unwrap();
        assert_eq!(
            (a.host.as_str(), a.port, a.module.as_str()),
            ("host", DEFAULT_PORT, "mod")
        );
        assert_eq!(a.path, PathBuf::from("a/b/"));
        let a = p("10.0.0.1:7000:/mod").unwrap().unwrap();
        assert_eq!(
            (a.port, a.module.as_str(), a.path.as_os_str().len()),
            (7000, "mod", 0)
        );
        let a = p("blit://h:1/m/x").unwrap().unwrap();
        assert_eq!((a.host.as_str(), a.port, a.module.as_str()), ("h", 1, "m"));
        assert_eq!(a.path, PathBuf::from("x"));
        let a = p("[::1]:9:/m/").unwrap().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("::1", 9));
        let a = p("blit://host").unwrap().unwrap();
        assert_eq!(a.module, "");
        for local in ["/abs/p", "./a:/b", "../x:/y", "plain", "dir/sub:/x", "a:b"] {
            assert!(p(local).is_none(), "{local} is local");
        }
        assert!(p("h:notaport:/m").unwrap().is_err());
        assert_eq!(p("h:7:/m/p").unwrap().unwrap().to_string(), "h:7:/m/p");
    }
}
