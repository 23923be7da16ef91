//! Transfers and admin commands that involve an agent: the command line's side of
//! `blit_core::agent::AgentClient` (credentials from the flags, output, hints).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use blit_core::agent::{AgentClient, Credentials, DataOptions, JobRequest, Run};
use blit_core::tls::ClientTls;
use blit_core::{AgentPath, Endpoint, Observer, Report, Stats, TransferSpec};
use tokio_stream::StreamExt;

use crate::args::RemoteArgs;
use crate::hints;
use crate::output::{display_path, human_bytes};

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The credentials the flags give (`None` TLS: plain TCP).
fn credentials(args: &RemoteArgs) -> anyhow::Result<Credentials> {
    let tls = if !args.tls && args.tls_ca.is_none() && args.tls_cert.is_none() {
        None
    } else {
        let identity = args.tls_cert.as_deref().zip(args.tls_key.as_deref());
        Some(ClientTls::load(args.tls_ca.as_deref(), identity)?)
    };
    Ok(Credentials {
        token: args.token.clone(),
        tls,
        ..Credentials::default()
    })
}

/// Connects to the agent `a` is on.
pub async fn connect(a: &AgentPath, args: &RemoteArgs) -> anyhow::Result<AgentClient> {
    AgentClient::connect(&a.address(), &credentials(args)?)
        .await
        .map_err(hints::error)
}

/// A transfer with one end on an agent.
pub struct RemoteTransfer<'a> {
    pub spec: &'a TransferSpec,
    pub data: DataOptions,
    pub remote: &'a RemoteArgs,
    pub stats: Arc<Stats>,
    pub observer: Arc<dyn Observer + Send + Sync>,
}

impl RemoteTransfer<'_> {
    /// Runs the transfer the spec's endpoints describe (at least one on an agent): a
    /// push, a pull, or, between two agents, a job on the destination agent that pulls
    /// from the source agent (the bytes never pass through here).
    pub fn run(&self) -> anyhow::Result<Report> {
        let run = || Run {
            options: &self.spec.options,
            data: self.data,
            stats: self.stats.clone(),
        };
        runtime()?.block_on(async {
            let report = match (&self.spec.source, &self.spec.destination) {
                (Endpoint::Local(src), Endpoint::Agent(dst)) => {
                    need_module(dst)?;
                    let agent = connect(dst, self.remote).await?;
                    agent.push(src, dst.location(), run()).await
                }
                (Endpoint::Agent(src), Endpoint::Local(dst)) => {
                    need_module(src)?;
                    let agent = connect(src, self.remote).await?;
                    agent
                        .pull(src.location(), dst, run(), self.observer.clone())
                        .await
                }
                (Endpoint::Agent(src), Endpoint::Agent(dst)) => {
                    return self.delegate(src, dst).await;
                }
                (Endpoint::Local(_), Endpoint::Local(_)) => bail!(blit_core::Error::NotLocal),
            };
            report.map_err(hints::error)
        })
    }

    /// Starts the job on the destination agent and follows it; Ctrl-C cancels it.
    async fn delegate(&self, src: &AgentPath, dst: &AgentPath) -> anyhow::Result<Report> {
        need_module(src)?;
        need_module(dst)?;
        let agent = connect(dst, self.remote).await?;
        let request = JobRequest {
            idempotency_key: JobRequest::new_key()?,
            source: src.clone(),
            source_token: self.remote.token.clone(),
            destination: dst.location(),
            options: self.spec.options.clone(),
            data: self.data,
        };
        let job = agent.start_job(&request).await.map_err(hints::error)?;
        crate::jobs::follow(&agent, job, &self.stats).await
    }
}

fn need_module(a: &AgentPath) -> anyhow::Result<()> {
    if a.module.is_empty() {
        bail!(
            "{a}: name a module (host:/module/path); `blit list {}` shows them",
            a.address()
        );
    }
    Ok(())
}

/// Runs `f` with a client connected to the agent of `a`.
fn with_agent<T>(
    a: &AgentPath,
    args: &RemoteArgs,
    f: impl AsyncFnOnce(&AgentClient) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    runtime()?.block_on(async {
        let agent = connect(a, args).await?;
        f(&agent).await
    })
}

/// An agent named on the command line: `host[:port]`, or any remote path on it.
pub fn agent_arg(s: &str) -> anyhow::Result<AgentPath> {
    let with_path = if s.starts_with("blit://") || s.contains(":/") {
        s.to_owned()
    } else {
        format!("{s}:/")
    };
    match AgentPath::parse(std::ffi::OsStr::new(&with_path)) {
        Some(Ok(a)) => Ok(a),
        Some(Err(e)) => bail!("{s}: {e}"),
        None => bail!("{s}: not an agent address (host[:port])"),
    }
}

fn agent_path(p: &Path) -> anyhow::Result<AgentPath> {
    match Endpoint::parse(p.as_os_str()).map_err(anyhow::Error::msg)? {
        Endpoint::Agent(a) => Ok(a),
        Endpoint::Local(_) => bail!(
            "{}: not a remote path (host[:port]:/module/path)",
            p.display()
        ),
    }
}

/// `blit list host`: the agent's modules.
pub fn list(agent: &str, args: &RemoteArgs) -> anyhow::Result<()> {
    let a = agent_arg(agent)?;
    with_agent(&a, args, async |c| {
        let modules = c.list_modules().await.map_err(hints::error)?;
        let mut out = std::io::stdout().lock();
        for m in modules {
            let ro = if m.read_only { "ro" } else { "rw" };
            writeln!(out, "{:<20} {ro}  {}", m.name, m.comment)?;
        }
        Ok(())
    })
}

/// `blit ls host:/module/path`.
pub fn ls(path: &Path, args: &RemoteArgs) -> anyhow::Result<()> {
    let a = agent_path(path)?;
    if a.module.is_empty() {
        return list(&a.address().to_string(), args);
    }
    with_agent(&a, args, async |c| {
        let listing = c.list_dir(a.location()).await.map_err(hints::error)?;
        let mut out = std::io::stdout().lock();
        for e in listing.entries {
            let kind = match e.kind {
                blit_core::EntryKind::Dir => 'd',
                blit_core::EntryKind::Symlink => 'l',
                blit_core::EntryKind::Special => 's',
                blit_core::EntryKind::File => '-',
            };
            let mut line = format!(
                "{kind}{:04o} {:>10} {} {}",
                e.meta.mode,
                e.size,
                e.meta.mtime.sec,
                display_path(Path::new(&e.name))
            );
            if let Some(t) = &e.link_target {
                line.push_str(&format!(" -> {}", display_path(Path::new(t))));
            }
            writeln!(out, "{line}")?;
        }
        Ok(())
    })
}

/// `blit find host:/module/path GLOB`.
pub fn find(path: &Path, glob: &str, limit: u64, args: &RemoteArgs) -> anyhow::Result<()> {
    let a = agent_path(path)?;
    need_module(&a)?;
    with_agent(&a, args, async |c| {
        let mut found = c
            .find(a.location(), glob, limit)
            .await
            .map_err(hints::error)?;
        let mut out = std::io::stdout().lock();
        while let Some(p) = found.next().await {
            writeln!(out, "{}", display_path(&p.map_err(hints::error)?))?;
        }
        Ok(())
    })
}

/// `blit du host:/module/path`.
pub fn du(path: &Path, max_depth: u32, args: &RemoteArgs) -> anyhow::Result<()> {
    let a = agent_path(path)?;
    need_module(&a)?;
    with_agent(&a, args, async |c| {
        let mut rows = c
            .disk_usage(a.location(), max_depth)
            .await
            .map_err(hints::error)?;
        let mut out = std::io::stdout().lock();
        while let Some(row) = rows.next().await {
            let row = row.map_err(hints::error)?;
            let name = if row.path.as_os_str().is_empty() {
                ".".into()
            } else {
                display_path(&row.path)
            };
            writeln!(
                out,
                "{:>10}  {:>8} files  {name}",
                human_bytes(row.allocated),
                row.files
            )?;
        }
        Ok(())
    })
}

/// `blit df host:/module/path`.
pub fn df(path: &Path, args: &RemoteArgs) -> anyhow::Result<()> {
    let a = agent_path(path)?;
    need_module(&a)?;
    with_agent(&a, args, async |c| {
        let s = c.fs_stats(a.location()).await.map_err(hints::error)?;
        let used = s.total_bytes.saturating_sub(s.free_bytes);
        println!(
            "size {}  used {}  available {}  inodes free {}/{}",
            human_bytes(s.total_bytes),
            human_bytes(used),
            human_bytes(s.available_bytes),
            s.free_inodes,
            s.total_inodes
        );
        Ok(())
    })
}

/// `blit rm host:/module/path`: counts first, asks (or needs --yes), then removes.
pub fn rm(
    path: &Path,
    recursive: bool,
    dry_run: bool,
    yes: bool,
    args: &RemoteArgs,
) -> anyhow::Result<()> {
    let a = agent_path(path)?;
    need_module(&a)?;
    with_agent(&a, args, async |c| {
        let remove = |dry_run| c.remove(a.location(), recursive, dry_run);
        let count = remove(true).await.map_err(hints::error)?;
        if dry_run {
            println!("would remove {count} entries");
            return Ok(());
        }
        if !yes {
            crate::confirm_with(&format!("remove {a} ({count} entries)"))?;
        }
        let removed = remove(false).await.map_err(hints::error)?;
        println!("removed {removed} entries");
        Ok(())
    })
}

/// Prints the completions of a partly typed remote path, one per line, in the form the
/// user typed (`host[:port]:/module/...` or `blit://...`): module names until a `/`
/// follows the module, then entries inside it (directories with a trailing `/`).
pub fn complete(word: &str, args: &RemoteArgs) -> anyhow::Result<()> {
    let a = agent_path(Path::new(word))?;
    // Everything before the module: "host:/", "host:port:/" or "blit://host/".
    let start = match word.strip_prefix("blit://") {
        Some(rest) => rest
            .find('/')
            .map_or(word.len(), |i| "blit://".len() + i + 1),
        None => word.find(":/").map_or(word.len(), |i| i + 2),
    };
    let (prefix, rest) = word.split_at(start);
    let in_module = rest.contains('/');
    with_agent(&a, args, async |c| {
        let mut out = std::io::stdout().lock();
        if !in_module {
            let modules = c.list_modules().await.map_err(hints::error)?;
            for m in modules.iter().filter(|m| m.name.starts_with(&a.module)) {
                writeln!(out, "{prefix}{}/", m.name)?;
            }
            return Ok(());
        }
        let candidates = c.complete(a.location()).await.map_err(hints::error)?;
        for candidate in candidates {
            writeln!(
                out,
                "{prefix}{}/{}",
                a.module,
                String::from_utf8_lossy(&candidate)
            )?;
        }
        Ok(())
    })
}

/// Shell glue that completes remote paths with `blit complete-remote`.
pub fn completion_hook(shell: clap_complete::Shell, out: &mut dyn Write) -> std::io::Result<()> {
    match shell {
        clap_complete::Shell::Bash => out.write_all(BASH_HOOK.as_bytes()),
        clap_complete::Shell::Fish => out.write_all(FISH_HOOK.as_bytes()),
        _ => Ok(()),
    }
}

const BASH_HOOK: &str = r#"
# Remote paths (host:/module/path): ask the agent.
_blit_remote() {
    local line=${COMP_LINE:0:$COMP_POINT}
    local word=${line##*[[:space:]]}
    if [[ $word == *:/* || $word == blit://* ]]; then
        local IFS=$'
'
        local candidates=($(blit complete-remote "$word" 2>/dev/null))
        # Readline splits words at ':'; reply with what follows the last one.
        local cut=${word%"${word##*:}"}
        COMPREPLY=("${candidates[@]#"$cut"}")
        compopt -o nospace 2>/dev/null
        return 0
    fi
    _blit "$@"
}
complete -F _blit_remote -o bashdefault -o default blit
"#;

const FISH_HOOK: &str = r#"
# Remote paths (host:/module/path): ask the agent.
complete -c blit -f -n 'string match -q -r "^[^/]*:/|^blit://" -- (commandline -ct)' -a '(blit complete-remote (commandline -ct) 2>/dev/null)'
"#;
