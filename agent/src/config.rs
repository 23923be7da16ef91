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
//! [jobs]                      # agent-to-agent transfers this agent runs for callers
//! sources = ["10.0.0.7:9031", "10.1.0.0/16:9031"]  # the only agents it pulls from
//!
//! [[module]]
//! name = "data"
//! path = "/srv/data"
//! read_only = false
//! comment = "shared data"
//! uid = 1000                  # read and write as this user and group (root agent)
//! gid = 1000
//! allow = ["setuid"]          # privileged things this module allows (none by default)
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use blit_core::spec::Privileges;
use blit_core::sys::creds::Identity;
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
    /// With `gid`: the user a root agent reads and writes this module's files as (as
    /// rsyncd's `uid`), so the kernel refuses what that user may not do and new files
    /// belong to it. Absent: as the agent's own user.
    #[serde(default)]
    pub uid: Option<u32>,
    /// The group that goes with `uid` (also the only supplementary group).
    #[serde(default)]
    pub gid: Option<u32>,
    /// What a root agent may do here beyond writing plain files as its own. Empty by
    /// default: every module is reachable from the network, so nothing privileged
    /// happens unless the operator asks for it.
    #[serde(default)]
    pub allow: Vec<Allow>,
}

/// A privileged thing a module may allow. What happens when it is not allowed is said
/// on `blit_core::spec::Privileges`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Allow {
    /// Create character and block device nodes (refused: the entry fails).
    Devices,
    /// Create FIFOs and sockets (refused: the entry fails).
    Specials,
    /// Keep setuid/setgid bits on files (refused: written without them).
    Setuid,
    /// Set owners and groups as sent (refused: entries belong to the writer).
    Owner,
    /// Carry extended attributes outside `user.*` (refused: only `user.*` travel).
    SystemXattrs,
}

impl Allow {
    fn parse(s: &str) -> anyhow::Result<Allow> {
        Allow::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(s))
            .map_err(|_| {
                anyhow::anyhow!(
                    "{s:?} is not one of devices, specials, setuid, owner, system-xattrs"
                )
            })
    }

    /// Whether only root (not a module identity) can do it.
    fn needs_root(self) -> bool {
        matches!(self, Allow::Devices | Allow::Owner | Allow::SystemXattrs)
    }
}

impl ModuleConfig {
    /// A module with default settings: writable, nothing privileged allowed.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> ModuleConfig {
        ModuleConfig {
            name: name.into(),
            path: path.into(),
            read_only: false,
            comment: String::new(),
            uid: None,
            gid: None,
            allow: Vec::new(),
        }
    }

    /// The user and group this module's files are read and written as.
    pub fn identity(&self) -> Option<Identity> {
        match (self.uid, self.gid) {
            (Some(uid), Some(gid)) => Some(Identity { uid, gid }),
            _ => None,
        }
    }

    /// What a transfer may do in this module, and as whom.
    pub fn privileges(&self) -> Privileges {
        let allows = |a| self.allow.contains(&a);
        Privileges {
            devices: allows(Allow::Devices),
            specials: allows(Allow::Specials),
            setid: allows(Allow::Setuid),
            owner: allows(Allow::Owner),
            system_xattrs: allows(Allow::SystemXattrs),
            identity: self.identity(),
        }
    }

    /// Settings that cannot work together.
    fn validate(&self) -> anyhow::Result<()> {
        if self.uid.is_some() != self.gid.is_some() {
            bail!("module {:?}: uid and gid go together", self.name);
        }
        if let Some(id) = self.identity().filter(|id| id.uid != 0)
            && let Some(a) = self.allow.iter().find(|a| a.needs_root())
        {
            // A user cannot create devices or set system attributes, and files it gave
            // away to their owners would no longer be its own to update.
            bail!(
                "module {:?}: allow {a:?} needs the module to be written as root, not as uid {}",
                self.name,
                id.uid
            );
        }
        Ok(())
    }
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

/// `[jobs]`: transfers this agent runs on a caller's behalf, pulling from another agent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jobs {
    /// The source agents a job may pull from — and so the only peers that ever see a
    /// caller's token or this agent's client certificate: `HOST[:PORT]`, `IP[:PORT]` or
    /// `IP/PREFIX[:PORT]` (IPv6 in brackets), the port 9031 unless given. Empty (the
    /// default): jobs are refused.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Finished jobs kept for `blit jobs list|watch`, the oldest dropped first.
    #[serde(default = "default_keep_finished")]
    pub keep_finished: usize,
    /// Seconds a finished job is kept at most.
    #[serde(default = "default_keep_finished_secs")]
    pub keep_finished_secs: u64,
}

/// Enough recent outcomes for a person or a controller to look back on, few enough that
/// their reports (each with its failure list) stay a small part of the agent's memory.
pub const DEFAULT_KEEP_FINISHED: usize = 100;

/// An hour: a caller that lost its watch can come back for the outcome, and an agent that
/// runs jobs all day does not keep the day's history.
pub const DEFAULT_KEEP_FINISHED_SECS: u64 = 3600;

fn default_keep_finished() -> usize {
    DEFAULT_KEEP_FINISHED
}

fn default_keep_finished_secs() -> u64 {
    DEFAULT_KEEP_FINISHED_SECS
}

impl Default for Jobs {
    fn default() -> Jobs {
        Jobs {
            sources: Vec::new(),
            keep_finished: DEFAULT_KEEP_FINISHED,
            keep_finished_secs: DEFAULT_KEEP_FINISHED_SECS,
        }
    }
}

impl Jobs {
    fn validate(&self) -> anyhow::Result<()> {
        for s in &self.sources {
            if let Err(why) = crate::peers::Peer::parse(s) {
                bail!("[jobs] sources: {s:?}: {why}");
            }
        }
        if self.keep_finished == 0 {
            bail!("[jobs] keep_finished must be at least 1: a caller reads its job's outcome");
        }
        Ok(())
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
    #[serde(default)]
    pub jobs: Jobs,
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
            m.validate()?;
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
        self.jobs.validate()?;
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

/// `--module NAME=PATH[:OPTION]...`, options taken from the end while they are one of
/// `ro`, `uid=N`, `gid=N`, `allow=A,B` (so a path may still contain `:`).
pub fn parse_module_flag(s: &str) -> anyhow::Result<ModuleConfig> {
    let (name, mut rest) = s.split_once('=').with_context(|| {
        format!("--module {s:?}: expected NAME=PATH[:ro][:uid=N:gid=N][:allow=LIST]")
    })?;
    let mut module = ModuleConfig::new(name, "");
    while let Some((head, option)) = rest.rsplit_once(':') {
        let id = |v: &str| {
            v.parse::<u32>()
                .with_context(|| format!("--module {s:?}: {v:?} is not a numeric id"))
        };
        match option.split_once('=') {
            None if option == "ro" => module.read_only = true,
            Some(("uid", v)) => module.uid = Some(id(v)?),
            Some(("gid", v)) => module.gid = Some(id(v)?),
            Some(("allow", list)) => {
                for a in list.split(',').filter(|a| !a.is_empty()) {
                    module
                        .allow
                        .push(Allow::parse(a).with_context(|| format!("--module {s:?}: allow"))?);
                }
            }
            _ => break,
        }
        rest = head;
    }
    module.path = PathBuf::from(rest);
    Ok(module)
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
    fn module_privileges_default_to_none() {
        let c: Config = toml::from_str(
            r#"
            [[module]]
            name = "plain"
            path = "/tmp"
            [[module]]
            name = "as-user"
            path = "/tmp"
            uid = 1000
            gid = 100
            allow = ["setuid", "specials"]
            [[module]]
            name = "root"
            path = "/tmp"
            allow = ["devices", "owner", "system-xattrs"]
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.modules[0].privileges(), Privileges::NONE);
        let p = c.modules[1].privileges();
        assert!(p.setid && p.specials && !p.devices && !p.owner && !p.system_xattrs);
        assert_eq!(
            p.identity,
            Some(Identity {
                uid: 1000,
                gid: 100
            })
        );
        let p = c.modules[2].privileges();
        assert!(p.devices && p.owner && p.system_xattrs && p.identity.is_none());
        let invalid = |toml: &str, why: &str| {
            let text = format!("[[module]]\nname = \"m\"\npath = \"/tmp\"\n{toml}");
            let err = toml::from_str::<Config>(&text)
                .map_err(anyhow::Error::from)
                .and_then(|c| c.validate())
                .unwrap_err();
            assert!(format!("{err:#}").contains(why), "{toml}: {err:#}");
        };
        invalid("uid = 5", "uid and gid go together");
        invalid("uid = 5\ngid = 5\nallow = [\"owner\"]", "written as root");
        invalid("uid = 5\ngid = 5\nallow = [\"devices\"]", "written as root");
        invalid("allow = [\"everything\"]", "unknown variant");

        let m = parse_module_flag("m=/srv/a:b:ro:uid=7:gid=8:allow=setuid,devices").unwrap();
        assert_eq!(m.path, PathBuf::from("/srv/a:b"), "a ':' in the path stays");
        assert!(m.read_only);
        assert_eq!(m.identity(), Some(Identity { uid: 7, gid: 8 }));
        assert_eq!(m.allow, [Allow::Setuid, Allow::Devices]);
        assert!(parse_module_flag("m=/srv:allow=rootkit").is_err());
        assert!(parse_module_flag("m=/srv:uid=x").is_err());
        assert_eq!(
            parse_module_flag("m=/srv/x").unwrap(),
            ModuleConfig::new("m", "/srv/x")
        );
    }

    #[test]
    fn jobs_sources_are_checked() {
        let c: Config =
            toml::from_str("[jobs]\nsources = [\"10.0.0.0/8:9031\", \"nas\"]\nkeep_finished = 5")
                .unwrap();
        c.validate().unwrap();
        assert_eq!(
            (c.jobs.keep_finished, c.jobs.keep_finished_secs),
            (5, DEFAULT_KEEP_FINISHED_SECS)
        );
        let d = Config::default();
        assert!(d.jobs.sources.is_empty(), "no sources: jobs refused");
        for bad in [
            "[jobs]\nsources = [\"fd00::1:9031\"]",
            "[jobs]\nkeep_finished = 0",
        ] {
            let c: Config = toml::from_str(bad).unwrap();
            assert!(c.validate().is_err(), "{bad}");
        }
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
