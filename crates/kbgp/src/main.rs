//! `kbgp`: the daemon and its command-line client in one binary.
//!
//! Exit codes a script can rely on: 0 success; 1 error (bad configuration,
//! API error, prefix or peer not found); 2 usage error; 3 the daemon is not
//! running (no API socket).

mod cli;
mod daemon;
mod metrics;
mod sdnotify;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub const DEFAULT_SOCKET: &str = "/run/kbgp/kbgp.sock";

#[derive(Parser)]
#[command(
    name = "kbgp",
    version,
    about = "BGP for Kubernetes nodes and hosts: routable pod and service addresses, no NAT"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, Default, ValueEnum, PartialEq, Eq)]
pub enum Output {
    #[default]
    Table,
    Json,
}

#[derive(clap::Args, Clone)]
pub struct ClientOpts {
    /// The daemon's API socket.
    #[arg(long, env = "KBGP_API_SOCKET", default_value = DEFAULT_SOCKET, global = true)]
    pub api_socket: PathBuf,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the BGP daemon.
    Daemon(daemon::DaemonOpts),
    /// Peer states, like `calicoctl node status`.
    Status {
        #[command(flatten)]
        opts: ClientOpts,
        /// Read a node's status from the Kubernetes API (its BGPNodeStatus)
        /// instead of asking the local daemon.
        #[arg(long, value_enum, default_value = "file")]
        datastore: daemon::Datastore,
        /// The node to show (with --datastore kubernetes).
        #[arg(long, env = "NODE_NAME", required_if_eq("datastore", "kubernetes"))]
        node: Option<String>,
        /// kubeconfig file (default: KUBECONFIG, ~/.kube/config, or in-cluster).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
    },
    /// Print kbgp's CustomResourceDefinitions (YAML), generated from its types.
    Crd {
        /// Also the projectcalico.org/v3 kinds kbgp reads, for clusters without Calico.
        #[arg(long)]
        calico: bool,
        /// Only this API group's CRDs (kbgp.io or projectcalico.org).
        #[arg(long)]
        group: Option<String>,
    },
    /// Show neighbors or routes.
    Show {
        #[command(subcommand)]
        what: Show,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Load a configuration directory and print what this node would run, without running it.
    Check {
        #[arg(long)]
        config_dir: PathBuf,
        #[arg(long)]
        node: String,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(Subcommand)]
pub enum Show {
    /// Sessions in detail: counters, negotiated capabilities, hold time, last error.
    Neighbors {
        /// A peer address or interface; all peers when left out.
        peer: Option<String>,
    },
    /// Received and advertised routes.
    Rib {
        /// A prefix (or address): that prefix and more specifics.
        prefix: Option<String>,
        /// ipv4 or ipv6 (both when left out).
        #[arg(long)]
        family: Option<String>,
        /// Only routes of this peer.
        #[arg(long)]
        peer: Option<String>,
        /// Routes refused on import (loop checks, BGPFilter), with the reason.
        #[arg(long)]
        rejected: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kbgp: cannot start the runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let code = rt.block_on(async move {
        match cli.cmd {
            Cmd::Daemon(o) => daemon::run(o).await,
            Cmd::Status {
                opts,
                datastore: daemon::Datastore::Kubernetes,
                node,
                kubeconfig,
            } => {
                cli::cluster_status(&opts, node.as_deref().unwrap_or(""), kubeconfig.as_deref())
                    .await
            }
            Cmd::Status { opts, .. } => cli::status(&opts).await,
            Cmd::Crd { calico, group } => cli::crd(calico, group.as_deref()),
            Cmd::Show { what, opts } => cli::show(&opts, what).await,
            Cmd::Check {
                config_dir,
                node,
                output,
            } => cli::check(&config_dir, &node, output),
        }
    });
    std::process::ExitCode::from(code)
}
