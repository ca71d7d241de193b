//! The daemon: file datastore → reconciler (the speaker's `apply`), the API
//! socket, and signals (SIGHUP reloads, SIGTERM/SIGINT stop cleanly).

use std::path::{Path, PathBuf};
use std::time::Duration;

use speaker::SpeakerHandle;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

#[derive(clap::Args)]
pub struct DaemonOpts {
    /// Directory of Kubernetes-style YAML (Node, Service, BGPConfiguration, BGPPeer, Secret).
    #[arg(long)]
    config_dir: PathBuf,
    /// This node's name (a Node resource in the directory).
    #[arg(long, env = "NODE_NAME")]
    node: String,
    /// Where to serve the command API.
    #[arg(long, env = "KBGP_API_SOCKET", default_value = crate::DEFAULT_SOCKET)]
    api_socket: PathBuf,
    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, env = "KBGP_LOG", default_value = "info")]
    log_level: String,
    /// How often to look for changes in the directory (seconds, fractions allowed).
    #[arg(long, default_value = "0.5", value_name = "SECONDS")]
    poll_interval: f64,
}

fn init_logging(level: &str) {
    // A bare level applies to kbgp's own crates; libraries stay at warn.
    let directive = if ["error", "warn", "info", "debug", "trace"].contains(&level) {
        format!("warn,kbgp={level},speaker={level},api={level},datastore={level},bgp_fsm={level},bgp_rib={level}")
    } else {
        level.to_string()
    };
    let filter = tracing_subscriber::EnvFilter::try_new(directive)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    // Under systemd the journal adds its own timestamps.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        b.without_time().with_ansi(false).init();
    } else {
        b.init();
    }
}

/// Load the directory and compute this node's desired state.
fn load(dir: &Path, node: &str) -> Result<datastore::Desired, String> {
    let loaded = datastore::load_dir(dir).map_err(|e| e.to_string())?;
    datastore::desired(&loaded.state, node).map_err(|e| e.to_string())
}

async fn reload(dir: &Path, node: &str, speaker: &SpeakerHandle, why: &str) {
    match load(dir, node) {
        Ok(d) => match speaker.apply(d).await {
            Ok(s) => info!(
                trigger = why,
                added = ?s.added, removed = ?s.removed, changed = ?s.changed,
                originate_changed = s.originate_changed, "configuration applied"
            ),
            Err(e) => error!("{e}"),
        },
        Err(e) => error!(
            trigger = why,
            "configuration rejected, the last good one stays in force: {e}"
        ),
    }
}

pub async fn run(o: DaemonOpts) -> u8 {
    init_logging(&o.log_level);
    let desired = match load(&o.config_dir, &o.node) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("kbgp: {e}");
            return 1;
        }
    };
    info!(node = %o.node, asn = desired.global.asn, router_id = %desired.global.router_id, dir = %o.config_dir.display(), "kbgp starting");
    let speaker = speaker::start();
    if let Err(e) = speaker.apply(desired).await {
        eprintln!("kbgp: {e}");
        return 1;
    }
    let api_speaker = speaker.clone();
    let sock = o.api_socket.clone();
    let api = tokio::spawn(async move {
        if let Err(e) = api::serve(&sock, api_speaker).await {
            error!(socket = %sock.display(), "API server failed: {e}");
        }
    });
    let (mut hup, mut term, mut int) = match (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        _ => {
            eprintln!("kbgp: cannot install signal handlers");
            return 1;
        }
    };
    let notify = crate::sdnotify::Notifier::from_env();
    if let Some(n) = &notify {
        n.send("READY=1\nSTATUS=sessions configured");
    }
    let mut watchdog = crate::sdnotify::Notifier::from_env()
        .and(crate::sdnotify::Notifier::watchdog_interval())
        .map(tokio::time::interval);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(
        o.poll_interval.clamp(0.1, 86_400.0),
    ));
    let mut seen = datastore::fingerprint(&o.config_dir);
    loop {
        tokio::select! {
            _ = async { watchdog.as_mut().unwrap().tick().await }, if watchdog.is_some() => {
                // Only when the speaker still answers: a hung main loop stops the pings.
                if speaker.global().await.is_ok() {
                    if let Some(n) = &notify {
                        n.send("WATCHDOG=1");
                    }
                }
            }
            _ = tick.tick() => {
                let fp = datastore::fingerprint(&o.config_dir);
                if fp != seen {
                    seen = fp;
                    reload(&o.config_dir, &o.node, &speaker, "file change").await;
                }
            }
            _ = hup.recv() => {
                if let Some(n) = &notify {
                    n.send("RELOADING=1");
                }
                seen = datastore::fingerprint(&o.config_dir);
                reload(&o.config_dir, &o.node, &speaker, "SIGHUP").await;
                if let Some(n) = &notify {
                    n.send("READY=1");
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    if let Some(n) = &notify {
        n.send("STOPPING=1");
    }
    info!("stopping: sending Cease to every peer");
    if tokio::time::timeout(Duration::from_secs(10), speaker.shutdown())
        .await
        .is_err()
    {
        warn!("shutdown took too long");
    }
    api.abort();
    let _ = std::fs::remove_file(&o.api_socket);
    0
}
