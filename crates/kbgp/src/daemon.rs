//! The daemon: a datastore (a directory of YAML files, or the Kubernetes
//! API) → reconciler (the speaker's `apply`), the API socket, and signals
//! (SIGHUP reloads, SIGTERM/SIGINT stop cleanly). In cluster mode it also
//! writes this node's `BGPNodeStatus` and Events back to the cluster.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use datastore::cluster::{self, BgpNodeStatusStatus, PeerState, Regarding, Watcher};
use speaker::SpeakerHandle;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tracing::{error, info, warn};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Datastore {
    /// A directory of Kubernetes-style YAML (`--config-dir`).
    #[default]
    File,
    /// The Kubernetes API (kubeconfig or the in-cluster service account).
    Kubernetes,
}

#[derive(clap::Args)]
pub struct DaemonOpts {
    /// Where the configuration comes from.
    #[arg(long, value_enum, env = "KBGP_DATASTORE", default_value = "file")]
    datastore: Datastore,
    /// Directory of Kubernetes-style YAML (Node, Service, BGPConfiguration, BGPPeer, Secret).
    #[arg(long, required_if_eq("datastore", "file"))]
    config_dir: Option<PathBuf>,
    /// Cluster mode: kubeconfig file (default: KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (`GET /metrics`), e.g. 0.0.0.0:9179.
    #[arg(long, env = "KBGP_METRICS_LISTEN")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Cluster mode: kbgp's own namespace (BGPPeer password Secrets are read there).
    #[arg(long, env = "POD_NAMESPACE", default_value = "kbgp-system")]
    namespace: String,
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

async fn apply(speaker: &SpeakerHandle, d: datastore::Desired, why: &str) {
    match speaker.apply(d).await {
        Ok(s) => info!(
            trigger = why,
            added = ?s.added, removed = ?s.removed, changed = ?s.changed,
            originate_changed = s.originate_changed, "configuration applied"
        ),
        Err(e) => error!("{e}"),
    }
}

async fn reload(dir: &Path, node: &str, speaker: &SpeakerHandle, why: &str) {
    match load(dir, node) {
        Ok(d) => apply(speaker, d, why).await,
        Err(e) => error!(
            trigger = why,
            "configuration rejected, the last good one stays in force: {e}"
        ),
    }
}

/// Cluster mode: the watches, and what was last reported back.
struct Cluster {
    watcher: Watcher,
    events: cluster::Events,
    node: String,
    /// Errors already reported (as log lines and Events), so each is reported once.
    reported: std::collections::BTreeSet<String>,
    /// Current configuration errors, for the status object.
    errors: Vec<String>,
    last_status: Option<BgpNodeStatusStatus>,
    last_status_at: Option<std::time::Instant>,
    /// Peer key → established, to turn state changes into Events.
    sessions: BTreeMap<String, bool>,
    /// The last accepted BGPPeers, BGPFilters and BGPAllowLists.
    accepted: cluster::Accepted,
}

impl Cluster {
    /// Compute this node's desired state from the watched objects. Refused
    /// objects are reported (log line and a Warning Event on the object).
    async fn desired(&mut self) -> Result<datastore::Desired, String> {
        let (loaded, rejected) = self.watcher.state();
        let mut errors = Vec::new();
        for r in &rejected {
            let msg = cluster::describe(r);
            errors.push(msg.clone());
            if self.reported.insert(msg.clone()) {
                error!("refused, its last good version (if any) stays in force: {msg}");
                self.events
                    .publish(true, "ConfigRejected", msg, Regarding::rejected(r))
                    .await;
            }
        }
        let (result, refused) =
            cluster::desired_isolating(loaded.state, &self.node, &mut self.accepted);
        for e in refused {
            let msg = format!(
                "refused; its last accepted version (if any) stays in force, the rest applies: {e}"
            );
            errors.push(msg.clone());
            if self.reported.insert(msg.clone()) {
                error!("{msg}");
                self.events
                    .publish(true, "ConfigRejected", msg, Regarding::node(&self.node))
                    .await;
            }
        }
        let result = result.map_err(|e| e.to_string());
        if let Err(e) = &result {
            errors.push(e.clone());
            if self.reported.insert(e.clone()) {
                self.events
                    .publish(
                        true,
                        "ConfigRejected",
                        format!("configuration refused, the last good one stays in force: {e}"),
                        Regarding::node(&self.node),
                    )
                    .await;
            }
        }
        // An error that went away may be reported again if it comes back.
        self.reported.retain(|m| errors.contains(m));
        self.errors = errors;
        result
    }

    /// Write the status object when something changed (or every minute), and
    /// an Event for each session that came up or went down.
    async fn report(&mut self, speaker: &SpeakerHandle) {
        let (Ok(peers), Ok(Some(g))) = (speaker.status().await, speaker.global().await) else {
            return;
        };
        let mut st = BgpNodeStatusStatus {
            as_number: g.asn,
            router_id: g.router_id.to_string(),
            listen_port: g.listen_port,
            peers: peers
                .iter()
                .map(|p| {
                    let (state, info) = crate::cli::calico_state(
                        p.state == bgp_fsm::State::Established,
                        &p.info,
                        p.last_error.as_deref().unwrap_or(""),
                    );
                    PeerState {
                        peer_address: p.key.clone(),
                        peer_type: p.peer_type.clone(),
                        state: state.into(),
                        session_state: p.state.name().into(),
                        since: p.since,
                        info,
                        prefixes_received: p.prefixes_received,
                        prefixes_advertised: p.prefixes_advertised,
                    }
                })
                .collect(),
            last_updated: String::new(),
            config_errors: self.errors.clone(),
        };
        for p in &st.peers {
            let up = p.state == "up";
            let was = self.sessions.insert(p.peer_address.clone(), up);
            if was.is_some_and(|w| w != up) || (was.is_none() && up) {
                let (reason, note) = if up {
                    (
                        "SessionEstablished",
                        format!(
                            "BGP session with {} ({}) established",
                            p.peer_address, p.peer_type
                        ),
                    )
                } else {
                    (
                        "SessionDown",
                        format!(
                            "BGP session with {} ({}) down: {}",
                            p.peer_address, p.peer_type, p.info
                        ),
                    )
                };
                self.events
                    .publish(!up, reason, note, Regarding::node(&self.node))
                    .await;
            }
        }
        let keys: Vec<String> = st.peers.iter().map(|p| p.peer_address.clone()).collect();
        self.sessions.retain(|k, _| keys.contains(k));
        let fresh = self
            .last_status_at
            .is_some_and(|t| t.elapsed() < Duration::from_secs(60));
        if self.last_status.as_ref() == Some(&st) && fresh {
            return;
        }
        let cmp = st.clone();
        st.last_updated = rfc3339_now();
        match cluster::publish_status(&self.watcher.client(), &self.node, &st).await {
            Ok(()) => {
                self.last_status = Some(cmp);
                self.last_status_at = Some(std::time::Instant::now());
            }
            Err(e) => warn!("cannot write BGPNodeStatus {}: {e}", self.node),
        }
    }
}

fn rfc3339_now() -> String {
    let secs = speaker::status::unix_now();
    let (y, m, d) = crate::cli::civil_date(secs / 86400);
    let rem = secs % 86400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// What cluster mode starts with: the watches, this node's first desired
/// state, and the one subscription to changes (kept for the daemon's life, so
/// that no change is seen twice or missed).
type ClusterStart = (Cluster, datastore::Desired, watch::Receiver<u64>);

/// Cluster mode start-up: connect, wait until every watched kind is listed
/// and this node's configuration is valid. None when told to stop meanwhile.
async fn cluster_start(o: &DaemonOpts) -> Result<Option<ClusterStart>, String> {
    let client = cluster::client(o.kubeconfig.as_deref()).await?;
    let watcher = Watcher::start(client.clone(), o.namespace.clone(), o.node.clone());
    let mut changes = watcher.subscribe();
    let mut c = Cluster {
        watcher,
        events: cluster::Events::new(client, &o.node),
        node: o.node.clone(),
        reported: Default::default(),
        errors: vec![],
        last_status: None,
        last_status_at: None,
        sessions: BTreeMap::new(),
        accepted: Default::default(),
    };
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    let mut waiting_logged = false;
    loop {
        if c.watcher.synced() {
            match c.desired().await {
                Ok(d) => return Ok(Some((c, d, changes))),
                Err(e) => warn!("waiting for a valid configuration for node {}: {e}", o.node),
            }
        } else if started.elapsed() > Duration::from_secs(5) && !waiting_logged {
            warn!("waiting for the Kubernetes API server (every watched kind listed once)");
            waiting_logged = true;
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = term.recv() => return Ok(None),
            _ = int.recv() => return Ok(None),
        }
    }
}

pub async fn run(o: DaemonOpts) -> u8 {
    init_logging(&o.log_level);
    let (mut cluster, desired, mut changes) = match (o.datastore, &o.config_dir) {
        (Datastore::File, Some(dir)) => match load(dir, &o.node) {
            Ok(d) => (None, d, None),
            Err(e) => {
                eprintln!("kbgp: {e}");
                return 1;
            }
        },
        (Datastore::File, None) => {
            eprintln!("kbgp: --config-dir is required with --datastore file");
            return 2;
        }
        (Datastore::Kubernetes, _) => match cluster_start(&o).await {
            Ok(Some((c, d, changes))) => (Some(c), d, Some(changes)),
            Ok(None) => return 0,
            Err(e) => {
                eprintln!("kbgp: {e}");
                return 1;
            }
        },
    };
    let source = match (&o.config_dir, &cluster) {
        (_, Some(_)) => "the Kubernetes API".to_string(),
        (Some(d), None) => d.display().to_string(),
        (None, None) => String::new(),
    };
    info!(node = %o.node, asn = desired.global.asn, router_id = %desired.global.router_id, source = %source, "kbgp starting");
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
    let metrics = o
        .metrics_listen
        .map(|addr| tokio::spawn(crate::metrics::serve(addr, speaker.clone())));
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
    let mut status_tick = tokio::time::interval(Duration::from_secs(2));
    let dir = o.config_dir.clone().unwrap_or_default();
    let mut seen = if cluster.is_none() {
        datastore::fingerprint(&dir)
    } else {
        0
    };
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
            _ = tick.tick(), if cluster.is_none() => {
                let fp = datastore::fingerprint(&dir);
                if fp != seen {
                    seen = fp;
                    reload(&dir, &o.node, &speaker, "file change").await;
                }
            }
            _ = async { changes.as_mut().unwrap().changed().await }, if changes.is_some() => {
                // Let a burst of changes (kubectl apply -f DIR) settle first.
                tokio::time::sleep(Duration::from_millis(200)).await;
                if let Some(c) = cluster.as_mut() {
                    match c.desired().await {
                        Ok(d) => apply(&speaker, d, "API change").await,
                        Err(e) => error!("configuration rejected, the last good one stays in force: {e}"),
                    }
                }
            }
            _ = status_tick.tick(), if cluster.is_some() => {
                if let Some(c) = cluster.as_mut() {
                    c.report(&speaker).await;
                }
            }
            _ = hup.recv() => {
                if let Some(n) = &notify {
                    n.send("RELOADING=1");
                }
                match cluster.as_mut() {
                    Some(c) => match c.desired().await {
                        Ok(d) => apply(&speaker, d, "SIGHUP").await,
                        Err(e) => error!("configuration rejected, the last good one stays in force: {e}"),
                    },
                    None => {
                        seen = datastore::fingerprint(&dir);
                        reload(&dir, &o.node, &speaker, "SIGHUP").await;
                    }
                }
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
    if let Some(m) = metrics {
        m.abort();
    }
    let _ = std::fs::remove_file(&o.api_socket);
    0
}
