//! `kube-emulator`: runs the emulated API server for a shell session.
//!
//! ```sh
//! kube-emulator --kubeconfig-out /tmp/emu.kubeconfig &
//! KUBECONFIG=/tmp/emu.kubeconfig kubectl get namespaces
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// An in-memory Kubernetes API server for tests and experiments.
#[derive(Debug, Parser)]
#[command(name = "kube-emulator", version)]
struct Args {
    /// Where to write the kubeconfig that points at this server.
    #[arg(long, value_name = "PATH")]
    kubeconfig_out: PathBuf,
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let emulator = blit_kube_emulator::Emulator::new();
    let server = emulator.serve_on(args.listen, &args.kubeconfig_out).await?;
    println!(
        "kube-emulator listening on http://{} (kubeconfig {})",
        server.addr,
        server.kubeconfig.display()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
