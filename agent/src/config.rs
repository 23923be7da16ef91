//! `blitd`'s configuration: a TOML file, with command-line flags on top.
//!
//! ```toml
//! bind = "127.0.0.1"          # control and data planes listen here (never 0.0.0.0 unless asked)
//! port = 9031                 # gRPC control plane
//! data_ports = [9032, 9063]   # data-plane port range (default: any free port)
//! http_port = 9033            # /metrics and /healthz (0: any free port; absent: off)
//! tokens = ["s3cret"]         # bearer tokens; when set, every call must present one
//! mdns = true                 # advertise _blit._tcp
//!
//! [tls]                       # TLS on both planes (absent: plain TCP)
//! cert = "/etc/blitd/tls.crt" # this agent's certificate chain (PEM)
//! key = "/etc/blitd/tls.key"
//! client_ca = "/etc/blitd/clients-ca.crt"  # require client certificates (mutual TLS)
//! ca = "/etc/blitd/agents-ca.crt"          # trust for agents this one pulls from
//!
//! [limits]
//! concurrent_transfers = 8    # sessions served at once (0: no limit)
//! bandwidth = "200M"          # bytes per second per agent, with K/M/G suffixes
//! idle_timeout = 300          # seconds a session may make no progress
//! queue_timeout = 60          # seconds a session may wait for a free slot
//! session_memory = "256M"     # memory one session may hold for its peer
//!
//! [[module]]
//! name = "data"
//! path = "/srv/data"
//! read_only = false
//! comment = "shared data"
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use blit_core::tls::{ClientTls, ServerTls};
use serde::Deserialize;

pub const DEFAULT_PORT: u16 = 9031;

/// One exported directory tree.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleConfig {
    pub name: String,
    pub path: PathBuf,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub comment: String,
}

/// What the agent lets sessions use: how many at once, how fast, how long idle, how
/// much memory. Every limit has a default, so an agent on the network is bounded even
/// with no `[limits]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Sessions served at once; more wait for a slot (0: no limit).
    #[serde(default = "default_concurrent_transfers")]
    pub concurrent_transfers: u32,
    /// Bytes per second this agent sends, e.g. "100M" (absent: unlimited).
    #[serde(default)]
    pub bandwidth: Option<String>,
    /// Seconds a session may go without progress (no frame, no data byte) before it is
    /// ended and its slot freed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: u64,
    /// Seconds a session waits for a free slot before it is refused as busy.
    #[serde(default = "default_queue_timeout")]
    pub queue_timeout: u64,
    /// Bytes of memory one session may hold for its peer (directory batches, queued
    /// needs, reported failures), e.g. "256M"; past it the session ends with an error.
    #[serde(
        default = "default_session_memory",
        deserialize_with = "bytes_with_suffix"
    )]
    pub session_memory: u64,
}

/// Sessions served at once by default. Each may hold up to its memory budget
/// (`session_memory`, 256 MiB) and a thread per data stream (up to 16) plus its workers,
/// so eight keep a busy agent within about 2 GiB and a few hundred threads, while a node
/// serving an operator's transfers and a few users at once rarely makes one wait.
pub const DEFAULT_CONCURRENT_TRANSFERS: u32 = 8;

/// Seconds without progress after which a session ends. Long enough for the slowest
/// legitimate silence (a peer hashing a file of a few hundred GB for `--checksum` before
/// its next batch, or planning a huge directory), short enough that a slot held by an
/// abandoned or hostile client is back within minutes.
pub const DEFAULT_IDLE_TIMEOUT: u64 = 300;

/// Seconds a session waits for a slot. A burst of sessions is absorbed as slots free up,
/// and a client is told the agent is busy within a minute rather than left waiting,
/// silent, for as long as the running sessions take.
pub const DEFAULT_QUEUE_TIMEOUT: u64 = 60;

fn default_concurrent_transfers() -> u32 {
    DEFAULT_CONCURRENT_TRANSFERS
}

fn default_idle_timeout() -> u64 {
    DEFAULT_IDLE_TIMEOUT
}

fn default_queue_timeout() -> u64 {
    DEFAULT_QUEUE_TIMEOUT
}

fn default_session_memory() -> u64 {
    blit_core::session::lifetime::DEFAULT_SESSION_MEMORY
}

/// A byte count: a number, or a string with a K/M/G suffix ("256M").
fn bytes_with_suffix<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Number(u64),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Number(n) => Ok(n),
        Size::Text(s) => {
            blit_core::session::throttle::parse_rate(&s).map_err(serde::de::Error::custom)
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        toml::from_str("").expect("the empty [limits] is valid")
    }
}

impl Limits {
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout)
    }

    pub fn queue_timeout(&self) -> Duration {
        Duration::from_secs(self.queue_timeout)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// This agent's certificate chain (PEM). It also identifies the agent as a client
    /// when it pulls from another agent.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Require client certificates signed by this CA (mTLS).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// CA trusted when this agent connects to another (agent-to-agent jobs); absent:
    /// the system's roots.
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

impl Tls {
    /// What this agent presents and accepts.
    pub fn server(&self) -> anyhow::Result<ServerTls> {
        ServerTls::load(&self.cert, &self.key, self.client_ca.as_deref()).context("[tls] settings")
    }

    /// What this agent uses to reach other agents.
    pub fn client(&self) -> anyhow::Result<ClientTls> {
        ClientTls::load(self.ca.as_deref(), Some((&self.cert, &self.key)))
            .context("[tls] settings for connecting to other agents")
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_bind")]
    pub bind: IpAddr,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default)]
    pub data_ports: Option<(u16, u16)>,
    #[serde(default)]
    pub http_port: Option<u16>,
    #[serde(default)]
    pub tokens: Vec<String>,
    #[serde(default = "yes")]
    pub mdns: bool,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub tls: Option<Tls>,
    #[serde(default, rename = "module")]
    pub modules: Vec<ModuleConfig>,
}

fn default_bind() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

fn default_port() -> u16 {
    DEFAULT_PORT
}

fn yes() -> bool {
    true
}

impl Default for Config {
    fn default() -> Config {
        toml::from_str("").expect("the empty config is valid")
    }
}

impl Config {
    /// Reads a config file.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))
    }

    /// Checks what a parser cannot: unique module names, absolute existing paths, a sane
    /// port range.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut seen = BTreeMap::new();
        for m in &self.modules {
            if m.name.is_empty() || m.name.contains('/') {
                bail!("module name {:?} is not valid (no '/', not empty)", m.name);
            }
            if seen.insert(m.name.as_str(), ()).is_some() {
                bail!("module {:?} is defined twice", m.name);
            }
            if !m.path.is_dir() {
                bail!(
                    "module {:?}: {} is not a directory",
                    m.name,
                    m.path.display()
                );
            }
        }
        if let Some((lo, hi)) = self.data_ports
            && (lo > hi || lo == 0)
        {
            bail!("data_ports [{lo}, {hi}] is not a valid range");
        }
        if self.tokens.iter().any(|t| t.is_empty() || !t.is_ascii()) {
            bail!("tokens must be non-empty ASCII strings");
        }
        self.bandwidth()?;
        if self.limits.idle_timeout == 0 {
            bail!("[limits] idle_timeout must be at least 1 second");
        }
        if self.limits.session_memory < 1 << 20 {
            bail!("[limits] session_memory must be at least 1M");
        }
        Ok(())
    }

    /// Bandwidth limit in bytes per second.
    pub fn bandwidth(&self) -> anyhow::Result<Option<u64>> {
        self.limits
            .bandwidth
            .as_deref()
            .map(|r| blit_core::session::throttle::parse_rate(r).map_err(anyhow::Error::msg))
            .transpose()
    }
}

/// `NAME=PATH` or `NAME=PATH:ro` from `--module`.
pub fn parse_module_flag(s: &str) -> anyhow::Result<ModuleConfig> {
    let (name, rest) = s
        .split_once('=')
        .with_context(|| format!("--module {s:?}: expected NAME=PATH[:ro]"))?;
    let (path, read_only) = match rest.strip_suffix(":ro") {
        Some(p) => (p, true),
        None => (rest, false),
    };
    Ok(ModuleConfig {
        name: name.to_owned(),
        path: PathBuf::from(path),
        read_only,
        comment: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_and_flags() {
        let c: Config = toml::from_str(
            r#"
            bind = "127.0.0.2"
            port = 1234
            data_ports = [2000, 2010]
            tokens = ["t"]
            mdns = false
            [limits]
            bandwidth = "1.5M"
            [[module]]
            name = "a"
            path = "/tmp"
            read_only = true
            "#,
        )
        .unwrap();
        assert_eq!(c.port, 1234);
        assert_eq!(c.data_ports, Some((2000, 2010)));
        assert_eq!(c.modules[0].name, "a");
        assert!(c.modules[0].read_only);
        assert_eq!(c.bandwidth().unwrap(), Some(1_572_864));
        c.validate().unwrap();
        assert!(
            toml::from_str::<Config>("bogus = 1").is_err(),
            "unknown keys are errors"
        );
        let d = Config::default();
        assert_eq!(
            (d.bind, d.port, d.mdns),
            (default_bind(), DEFAULT_PORT, true)
        );
        assert!(parse_module_flag("m=/srv/x:ro").unwrap().read_only);
        assert_eq!(
            parse_module_flag("m=/srv/x").unwrap().path,
            PathBuf::from("/srv/x")
        );
        assert!(parse_module_flag("nope").is_err());
        let tls: Config =
            toml::from_str("[tls]\ncert = \"/c\"\nkey = \"/k\"\nca = \"/a\"").unwrap();
        let tls = tls.tls.unwrap();
        assert_eq!((tls.ca, tls.client_ca), (Some(PathBuf::from("/a")), None));
        assert!(
            toml::from_str::<Config>("[tls]\ncert = \"/c\"").is_err(),
            "key needed"
        );
        let example: Config = toml::from_str(include_str!("../blitd.example.toml")).unwrap();
        assert_eq!(example.modules.len(), 2, "the example config parses");
        let bad: Config = toml::from_str("[limits]\nbandwidth = \"fast\"").unwrap();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn limits_are_bounded_by_default_and_configurable() {
        let d = Config::default().limits;
        assert_eq!(d.concurrent_transfers, DEFAULT_CONCURRENT_TRANSFERS);
        assert!(
            d.concurrent_transfers > 0,
            "sessions are limited by default"
        );
        assert_eq!(d.idle_timeout(), Duration::from_secs(DEFAULT_IDLE_TIMEOUT));
        assert_eq!(
            d.queue_timeout(),
            Duration::from_secs(DEFAULT_QUEUE_TIMEOUT)
        );
        assert_eq!(d.session_memory, 256 << 20);
        let c: Config = toml::from_str(
            "[limits]\nconcurrent_transfers = 0\nidle_timeout = 5\nqueue_timeout = 0\n\
             session_memory = \"16M\"",
        )
        .unwrap();
        assert_eq!(c.limits.concurrent_transfers, 0, "0 still means no limit");
        assert_eq!((c.limits.idle_timeout, c.limits.queue_timeout), (5, 0));
        assert_eq!(c.limits.session_memory, 16 << 20);
        let n: Config = toml::from_str("[limits]\nsession_memory = 1048576").unwrap();
        assert_eq!(n.limits.session_memory, 1 << 20);
        assert!(toml::from_str::<Config>("[limits]\nsession_memory = \"lots\"").is_err());
        let idle: Config = toml::from_str("[limits]\nidle_timeout = 0").unwrap();
        assert!(
            idle.validate().is_err(),
            "sessions always have an idle timeout"
        );
        let tiny: Config = toml::from_str("[limits]\nsession_memory = \"1K\"").unwrap();
        assert!(tiny.validate().is_err());
    }
}
