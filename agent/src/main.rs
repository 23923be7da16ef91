//! `blitd`: parse flags over the config file, start the agent, stop on SIGTERM/SIGINT.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;
use blit_agent::config::{self, Config};
use clap::Parser;
use tokio::sync::watch;

/// Blit's agent: serves modules to `blit` and to other agents.
#[derive(Debug, Parser)]
#[command(name = "blitd", version, max_term_width = 100)]
struct Args {
    /// TOML config file (see agent/blitd.example.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on (control and data planes). Default 127.0.0.1.
    #[arg(long, value_name = "IP")]
    bind: Option<IpAddr>,
    /// Control-plane port (0: any free port). Default 9031.
    #[arg(long)]
    port: Option<u16>,
    /// Port for /metrics and /healthz (0: any free port).
    #[arg(long, value_name = "PORT")]
    http_port: Option<u16>,
    /// Export a module: NAME=PATH, with :ro for read-only, :uid=N:gid=N to read and write
    /// it as that user, :allow=LIST for privileged things it allows (devices, specials,
    /// setuid, owner, system-xattrs) (repeatable).
    #[arg(long = "module", value_name = "NAME=PATH[:OPTION]...")]
    modules: Vec<String>,
    /// Export PATH as the module "default".
    #[arg(long, value_name = "PATH")]
    root: Option<PathBuf>,
    /// Require this bearer token (repeatable; adds to the config's tokens).
    #[arg(
        long = "token",
        value_name = "TOKEN",
        env = "BLITD_TOKEN",
        hide_env_values = true
    )]
    tokens: Vec<String>,
    /// Let jobs pull from this source agent: HOST[:PORT], IP/PREFIX[:PORT], IPv6 in
    /// brackets (repeatable; adds to [jobs] sources).
    #[arg(long = "job-source", value_name = "ADDR")]
    job_sources: Vec<String>,
    /// Don't advertise the agent over mDNS.
    #[arg(long)]
    no_mdns: bool,
    /// Serve TLS on both planes with this certificate chain (PEM; needs --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (mutual TLS).
    #[arg(long, value_name = "PEM")]
    tls_client_ca: Option<PathBuf>,
    /// CA trusted when pulling from other agents (default: the system's roots).
    #[arg(long, value_name = "PEM")]
    tls_ca: Option<PathBuf>,
}

fn config(args: Args) -> anyhow::Result<Config> {
    let mut c = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(bind) = args.bind {
        c.bind = bind;
    }
    if let Some(port) = args.port {
        c.port = port;
    }
    if args.http_port.is_some() {
        c.http_port = args.http_port;
    }
    let absolute = |p: &std::path::Path| {
        std::fs::canonicalize(p).with_context(|| format!("module path {}", p.display()))
    };
    for m in &args.modules {
        let mut module = config::parse_module_flag(m)?;
        module.path = absolute(&module.path)?;
        c.modules.push(module);
    }
    if let Some(root) = args.root {
        c.modules
            .push(config::ModuleConfig::new("default", absolute(&root)?));
    }
    c.tokens.extend(args.tokens);
    c.jobs.sources.extend(args.job_sources);
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        c.tls = Some(config::Tls {
            cert,
            key,
            client_ca: None,
            ca: None,
        });
    }
    if args.tls_client_ca.is_some() || args.tls_ca.is_some() {
        let tls = c
            .tls
            .as_mut()
            .context("--tls-client-ca and --tls-ca need --tls-cert/--tls-key or [tls]")?;
        tls.client_ca = args.tls_client_ca.or(tls.client_ca.take());
        tls.ca = args.tls_ca.or(tls.ca.take());
    }
    if args.no_mdns {
        c.mdns = false;
    }
    if c.modules.is_empty() {
        anyhow::bail!(
            "nothing to serve: give --root PATH, --module NAME=PATH or a config with [[module]]"
        );
    }
    Ok(c)
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BLITD_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    blit_core::sys::raise_fd_limit();
    let config = config(Args::parse())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("blitd")
        // A thread started by one acting as a module's identity would inherit it: every
        // runtime thread starts on the agent's own credentials.
        .on_thread_start(blit_core::sys::creds::reset_thread)
        .build()
        .context("starting the runtime")?;
    let result = runtime.block_on(async {
        let (stop_tx, stop_rx) = watch::channel(false);
        // Registered before anything listens, so an early SIGTERM is never fatal.
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
        });
        blit_agent::server::run(
            config,
            |bound| {
                // One line on stdout that scripts and tests can read.
                println!(
                    "blitd listening on {} (data port {}{})",
                    bound.control,
                    bound.data_port,
                    bound
                        .http
                        .map(|h| format!(", http {h}"))
                        .unwrap_or_default()
                );
            },
            stop_rx,
        )
        .await
    });
    // Sessions cut short may leave blocking work behind (a planner waiting for data that
    // will not come): give it a moment, then exit anyway. Nothing incomplete is under a
    // final name, and partial large files stay for --resume.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    result
}
