//! Transfers and admin commands that involve an agent: parsing remote paths, connecting,
//! and running the local end of a session (`blit_core::session::client`).

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use blit_core::session::client::{Connection, DataOptions, Remote};
use blit_core::tls::ClientTls;
use blit_core::wire::pb;
use blit_core::{AgentPath, Endpoint, Observer, Report, Stats, TransferSpec};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::args::RemoteArgs;
use crate::output::{display_path, human_bytes};

/// One side of a transfer as the user gave it.
pub enum Side {
    Local,
    Agent(AgentPath),
}

/// Whether `p` names a path on an agent.
pub fn side(p: &Path) -> anyhow::Result<Side> {
    match AgentPath::parse(p.as_os_str()) {
        None => Ok(Side::Local),
        Some(Ok(a)) => Ok(Side::Agent(a)),
        Some(Err(e)) => bail!("{}: {e}", p.display()),
    }
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn remote(a: &AgentPath, args: &RemoteArgs) -> anyhow::Result<Remote> {
    Ok(Remote {
        host: a.host.clone(),
        port: a.port,
        token: args.token.clone(),
        tls: tls(args)?,
    })
}

/// The TLS settings the options ask for (`None`: plain TCP).
fn tls(args: &RemoteArgs) -> anyhow::Result<Option<ClientTls>> {
    if !args.tls && args.tls_ca.is_none() && args.tls_cert.is_none() {
        return Ok(None);
    }
    let identity = args.tls_cert.as_deref().zip(args.tls_key.as_deref());
    Ok(Some(ClientTls::load(args.tls_ca.as_deref(), identity)?))
}

pub async fn connect(a: &AgentPath, args: &RemoteArgs) -> anyhow::Result<Connection> {
    Ok(remote(a, args)?.connect().await?)
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
    /// Runs the transfer the spec's endpoints describe (at least one on an agent).
    pub fn run(&self) -> anyhow::Result<Report> {
        match (&self.spec.source, &self.spec.destination) {
            (Endpoint::Local(src), Endpoint::Agent(dst)) => self.push(src, dst),
            (Endpoint::Agent(src), Endpoint::Local(dst)) => self.pull(src, dst),
            (Endpoint::Agent(src), Endpoint::Agent(dst)) => self.delegate(src, dst),
            (Endpoint::Local(_), Endpoint::Local(_)) => Err(blit_core::Error::NotLocal.into()),
        }
    }

    /// Local `src` to `dst` on an agent.
    pub fn push(&self, src: &Path, dst: &AgentPath) -> anyhow::Result<Report> {
        need_module(dst)?;
        runtime()?.block_on(async {
            let conn = connect(dst, self.remote).await?;
            let report = blit_core::session::client::push(
                &conn,
                src,
                dst.location(),
                &self.spec.options,
                self.data,
                self.stats.clone(),
            )
            .await?;
            Ok(report)
        })
    }

    /// `src` on an agent to the local `dst`.
    pub fn pull(&self, src: &AgentPath, dst: &Path) -> anyhow::Result<Report> {
        need_module(src)?;
        runtime()?.block_on(async {
            let conn = connect(src, self.remote).await?;
            let report = blit_core::session::client::pull(
                &conn,
                src.location(),
                dst,
                &self.spec.options,
                self.data,
                self.stats.clone(),
                self.observer.clone(),
            )
            .await?;
            Ok(report)
        })
    }
}

impl RemoteTransfer<'_> {
    /// From one agent to another: the destination agent pulls from the source agent (the
    /// bytes never pass through here); this end starts the job and follows it. Ctrl-C
    /// cancels the job.
    pub fn delegate(&self, src: &AgentPath, dst: &AgentPath) -> anyhow::Result<Report> {
        need_module(src)?;
        need_module(dst)?;
        runtime()?.block_on(async {
            let mut c = crate::jobs::client(dst, self.remote).await?;
            let key = blit_core::session::data::new_token()?
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>();
            let request = pb::StartTransferRequest {
                idempotency_key: key,
                source: Some(pb::RemoteSource {
                    address: authority(src),
                    location: Some(src.location()),
                    token: self.remote.token.clone().unwrap_or_default(),
                }),
                destination: Some(dst.location()),
                options: Some(blit_core::wire::options_to_wire(&self.spec.options)),
                streams: self.data.streams.unwrap_or(0),
                force_grpc: self.data.force_grpc,
            };
            // A start that got lost in transit is retried with the same key: one job.
            let job = match c.start_transfer(request.clone()).await {
                Err(e) if e.code() == tonic::Code::Unavailable => c.start_transfer(request).await,
                other => other,
            }
            .map_err(status)?
            .into_inner();
            crate::jobs::follow(&mut c, job, &self.stats).await
        })
    }
}

/// `host:port` as another agent can dial it.
fn authority(a: &AgentPath) -> String {
    if a.host.contains(':') {
        format!("[{}]:{}", a.host, a.port)
    } else {
        format!("{}:{}", a.host, a.port)
    }
}

fn need_module(a: &AgentPath) -> anyhow::Result<()> {
    if a.module.is_empty() {
        bail!(
            "{a}: name a module (host:/module/path); `blit list {}:{}` shows them",
            a.host,
            a.port
        );
    }
    Ok(())
}

type AdminClient = pb::admin_client::AdminClient<
    InterceptedService<Channel, blit_core::session::client::Credentials>,
>;

/// Runs `f` with an admin client connected to the agent of `a`.
fn with_admin<T>(
    a: &AgentPath,
    args: &RemoteArgs,
    f: impl AsyncFnOnce(&mut AdminClient) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    runtime()?.block_on(async {
        let conn = connect(a, args).await?;
        let mut c = pb::admin_client::AdminClient::with_interceptor(conn.channel, conn.credentials);
        f(&mut c).await
    })
}

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
    match side(p)? {
        Side::Agent(a) => Ok(a),
        Side::Local => bail!(
            "{}: not a remote path (host[:port]:/module/path)",
            p.display()
        ),
    }
}

pub fn status(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!(blit_core::session::rpc_message(&e))
}

/// `blit list host`: the agent's modules.
pub fn list(agent: &str, args: &RemoteArgs) -> anyhow::Result<()> {
    let a = agent_arg(agent)?;
    with_admin(&a, args, async |c| {
        let modules = c
            .list_modules(pb::ListModulesRequest {})
            .await
            .map_err(status)?
            .into_inner()
            .modules;
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
        return list(&format!("{}:{}", a.host, a.port), args);
    }
    with_admin(&a, args, async |c| {
        let resp = c
            .list_dir(pb::ListDirRequest {
                location: Some(a.location()),
            })
            .await
            .map_err(status)?
            .into_inner();
        let mut out = std::io::stdout().lock();
        for e in resp.entries {
            let e = blit_core::wire::entry_from_wire(e)?;
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
    with_admin(&a, args, async |c| {
        let mut stream = c
            .find(pb::FindRequest {
                location: Some(a.location()),
                glob: glob.to_owned(),
                limit,
            })
            .await
            .map_err(status)?
            .into_inner();
        let mut out = std::io::stdout().lock();
        while let Some(m) = stream.message().await.map_err(status)? {
            let p = std::ffi::OsStr::from_bytes(&m.path);
            writeln!(out, "{}", display_path(Path::new(p)))?;
        }
        Ok(())
    })
}

/// `blit du host:/module/path`.
pub fn du(path: &Path, max_depth: u32, args: &RemoteArgs) -> anyhow::Result<()> {
    let a = agent_path(path)?;
    need_module(&a)?;
    with_admin(&a, args, async |c| {
        let mut stream = c
            .disk_usage(pb::DiskUsageRequest {
                location: Some(a.location()),
                max_depth,
            })
            .await
            .map_err(status)?
            .into_inner();
        let mut out = std::io::stdout().lock();
        while let Some(row) = stream.message().await.map_err(status)? {
            let p = std::ffi::OsStr::from_bytes(&row.path);
            let name = if p.is_empty() {
                ".".into()
            } else {
                display_path(Path::new(p))
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
    with_admin(&a, args, async |c| {
        let s = c
            .fs_stats(pb::FsStatsRequest {
                location: Some(a.location()),
            })
            .await
            .map_err(status)?
            .into_inner();
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
    with_admin(&a, args, async |c| {
        let request = |dry_run| pb::RemoveRequest {
            location: Some(a.location()),
            recursive,
            dry_run,
        };
        let count = c
            .remove(request(true))
            .await
            .map_err(status)?
            .into_inner()
            .removed;
        if dry_run {
            println!("would remove {count} entries");
            return Ok(());
        }
        if !yes {
            crate::confirm_with(&format!("remove {a} ({count} entries)"))?;
        }
        let removed = c
            .remove(request(false))
            .await
            .map_err(status)?
            .into_inner()
            .removed;
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
    with_admin(&a, args, async |c| {
        let mut out = std::io::stdout().lock();
        if !in_module {
            let modules = c
                .list_modules(pb::ListModulesRequest {})
                .await
                .map_err(status)?
                .into_inner()
                .modules;
            for m in modules.iter().filter(|m| m.name.starts_with(&a.module)) {
                writeln!(out, "{prefix}{}/", m.name)?;
            }
            return Ok(());
        }
        let candidates = c
            .complete(pb::CompleteRequest {
                location: Some(a.location()),
            })
            .await
            .map_err(status)?
            .into_inner()
            .candidates;
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
