//! The command line, as clap definitions. Parsing only: turning these into a
//! `TransferSpec` (and checking combinations) happens in `options`.
// Doc comments here are clap's help text (`host[:port]`), not rustdoc links.
#![allow(rustdoc::broken_intra_doc_links)]

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const TRAILING_SLASH: &str = "\
Paths follow rsync's trailing-slash rule:
  blit copy src/ dst    copies the contents of src into dst (dst/file, ...)
  blit copy src dst     copies src itself into dst (dst/src/file, ...)
A source that is a single file lands in DST if DST is a directory (or ends in /),
and becomes DST otherwise.

Exit codes: 0 success, 1 partial (some entries failed; the rest was transferred),
2 usage error or fatal error (nothing or little was done).";

/// Blit moves files between directories fast and without losing anything.
#[derive(Debug, Parser)]
#[command(name = "blit", version, about, after_help = TRAILING_SLASH, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Copy SRC to DST: create and update, never delete.
    #[command(after_help = TRAILING_SLASH)]
    Copy(TransferArgs),
    /// Make DST an exact copy of SRC: also delete what SRC does not have.
    #[command(after_help = TRAILING_SLASH)]
    Mirror(TransferArgs),
    /// Copy SRC to DST, confirm each file landed, then remove it from SRC.
    #[command(name = "move", after_help = TRAILING_SLASH)]
    Move(TransferArgs),
    /// Find agents on the local network (mDNS, _blit._tcp).
    Scan {
        /// How long to listen for answers, in seconds.
        #[arg(long, default_value_t = 3.0, value_name = "SECONDS")]
        timeout: f64,
    },
    /// List the modules an agent exports.
    List {
        /// The agent: host[:port] (or blit://host[:port]).
        agent: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// List a directory on an agent (host:/module/path).
    Ls {
        path: PathBuf,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Find entries below a path on an agent whose path or name matches a glob.
    Find {
        path: PathBuf,
        /// Glob matched against the relative path and the name, e.g. '*.log'.
        glob: String,
        /// Stop after N matches.
        #[arg(long, value_name = "N", default_value_t = 0)]
        limit: u64,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Disk usage below a path on an agent.
    Du {
        path: PathBuf,
        /// Show directories down to this depth (0: the total only).
        #[arg(short = 'd', long, default_value_t = 0)]
        max_depth: u32,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Filesystem capacity where a path on an agent lives.
    Df {
        path: PathBuf,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Remove a file or directory on an agent (asks first; -r for non-empty directories).
    Rm {
        path: PathBuf,
        /// Remove a directory with its contents.
        #[arg(short = 'r', long)]
        recursive: bool,
        /// Show how many entries would go; remove nothing.
        #[arg(short = 'n', long)]
        dry_run: bool,
        /// Don't ask.
        #[arg(short = 'y', long)]
        yes: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Transfers agents run on a caller's behalf (agent-to-agent copies).
    Jobs {
        #[command(subcommand)]
        what: JobsCommand,
    },
    /// Print a shell completion script to stdout (bash and fish also complete remote
    /// paths by asking the agent).
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print completions for a partly typed remote path (used by the completion scripts).
    #[command(hide = true)]
    CompleteRemote {
        word: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Inspect this machine's Blit history.
    Diagnostics {
        #[command(subcommand)]
        what: Diagnostics,
    },
}

#[derive(Debug, Subcommand)]
pub enum Diagnostics {
    /// Show the local performance history (one line per past run).
    Perf {
        /// How many recent runs to list.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print the raw JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List an agent's jobs.
    List {
        /// The agent: host[:port].
        agent: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Follow a job's progress until it ends.
    Watch {
        agent: String,
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Stop a job (nothing half-written is left under a final name).
    Cancel {
        agent: String,
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

/// When to use copy-on-write clones (`--reflink`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReflinkArg {
    Auto,
    Always,
    Never,
}

/// How to reach agents.
#[derive(Debug, Clone, Args)]
pub struct RemoteArgs {
    /// Bearer token for agents that require one.
    #[arg(long, env = "BLIT_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Talk TLS to agents, trusting the system's root certificates (implied by the
    /// other --tls-* options).
    #[arg(long, env = "BLIT_TLS")]
    pub tls: bool,
    /// Talk TLS to agents, trusting the CA certificate(s) in this PEM file.
    #[arg(long, env = "BLIT_TLS_CA", value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate chain (PEM) for agents that require one (mutual TLS).
    #[arg(long, env = "BLIT_TLS_CERT", value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert (PEM).
    #[arg(long, env = "BLIT_TLS_KEY", value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// Options shared by copy, mirror and move.
#[derive(Debug, Args)]
pub struct TransferArgs {
    /// Source: a local path or host[:port]:/module/path (a trailing / means "the contents of").
    pub source: PathBuf,
    /// Destination: a local path or host[:port]:/module/path.
    pub destination: PathBuf,

    /// Show what would be created, updated and deleted, with byte totals; change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Compare files by BLAKE3 content hash instead of size and modification time.
    #[arg(short = 'c', long, conflicts_with_all = ["ignore_times", "size_only"])]
    pub checksum: bool,
    /// Rewrite every file, even when size and modification time match.
    #[arg(short = 'I', long, conflicts_with = "size_only")]
    pub ignore_times: bool,
    /// Treat files of equal size as up to date, whatever their modification times.
    #[arg(long)]
    pub size_only: bool,
    /// Treat modification times this many seconds apart as equal (e.g. 2 for FAT).
    #[arg(long, value_name = "SECONDS", default_value_t = 0.0)]
    pub modify_window: f64,
    /// Copy-on-write clones: auto (when the filesystem supports them), always, never.
    #[arg(long, value_enum, default_value_t = ReflinkArg::Auto, value_name = "WHEN")]
    pub reflink: ReflinkArg,
    /// Preserve hard links between files of the source.
    #[arg(short = 'H', long)]
    pub hard_links: bool,
    /// Preserve extended attributes (user.* unless running as root).
    #[arg(short = 'X', long)]
    pub xattrs: bool,
    /// Don't set owner and group (by default they are kept when running as root).
    #[arg(long)]
    pub no_owner: bool,
    /// Owners are always kept as numeric ids; accepted for rsync compatibility.
    #[arg(long, hide = true)]
    pub numeric_ids: bool,
    /// Continue large files an interrupted run left half-written (verified by BLAKE3).
    #[arg(long)]
    pub resume: bool,
    /// Refuse to delete more than N entries (mirror); nothing is deleted past the limit.
    #[arg(long, value_name = "N")]
    pub max_delete: Option<u64>,
    /// Exclude entries matching PATTERN (rsync-style; repeatable; first match wins).
    #[arg(long, value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// Include entries matching PATTERN even if a later --exclude matches them.
    #[arg(long, value_name = "PATTERN")]
    pub include: Vec<String>,
    /// Log every entry created, updated or deleted.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Show progress bars (default when stderr is a terminal).
    #[arg(long, overrides_with = "no_progress")]
    pub progress: bool,
    /// Never show progress bars.
    #[arg(long)]
    pub no_progress: bool,
    /// Worker threads (default: two per core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: Option<u16>,
    /// Don't ask before deleting (mirror) or removing sources (move).
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Don't record this run in the local performance history.
    #[arg(long)]
    pub no_history: bool,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Data-plane streams for transfers with an agent (default: adapted to the link's
    /// round trip, 8 on a LAN up to 16 on long links).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=16))]
    pub streams: Option<u32>,
    /// Send the bytes inside the gRPC control stream instead of data-plane connections.
    #[arg(long)]
    pub force_grpc: bool,
    /// Limit the bytes a remote transfer sends per second (K/M/G suffixes), e.g. 50M.
    #[arg(long, value_name = "RATE", value_parser = blit_core::session::throttle::parse_rate)]
    pub bwlimit: Option<u64>,
}

/// The clap command, for completions and the man page.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}
