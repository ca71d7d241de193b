//! The cluster datastore: the Kubernetes API, watched with kube-rs.
//!
//! Every kind kbgp reads is watched (list, then watch from the list's
//! resourceVersion; kube-rs' watcher resumes from the last version seen,
//! relists on `410 Gone`, and backs off while the API server is unreachable).
//! Each kind's objects are kept in a store that is swapped whole when a
//! (re)list completes, so a relist that finds nothing new changes nothing.
//! An object is parsed once, when it arrives, by the same parser as the file
//! datastore's; [`Watcher::state`] assembles the parsed objects into the same
//! [`ClusterState`] the file datastore builds: one reconciler for both.
//! Pods are watched on this node only (a field selector): only they can be
//! peers.
//!
//! Optional groups (`projectcalico.org/v3`, and kbgp's own CRDs when they are
//! not installed yet) are looked up by discovery at start-up and every 30 s;
//! a kind is watched while the API serves it.
//!
//! While the API server is away the stores keep the last state they had:
//! sessions and routes stay as they are.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::files::Loaded;
use crate::resources::{parse_value, Parsed, Resource};

/// A kind kbgp watches.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
    /// Served only when a CRD (or Calico's API server) provides it.
    pub optional: bool,
    /// Watched in kbgp's own namespace only (Secrets: least privilege).
    pub own_namespace_only: bool,
    /// Watched on this node only (`spec.nodeName`): Pods.
    pub this_node_only: bool,
}

const fn k(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    optional: bool,
) -> Kind {
    Kind {
        group,
        version,
        kind,
        plural,
        namespaced,
        optional,
        own_namespace_only: false,
        this_node_only: false,
    }
}

/// Every kind the reconciler reads.
pub const KINDS: &[Kind] = &[
    k("", "v1", "Node", "nodes", false, false),
    k("", "v1", "Service", "services", true, false),
    Kind {
        this_node_only: true,
        ..k("", "v1", "Pod", "pods", true, false)
    },
    k("", "v1", "Namespace", "namespaces", false, false),
    Kind {
        own_namespace_only: true,
        ..k("", "v1", "Secret", "secrets", true, false)
    },
    k(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        true,
        false,
    ),
    k(
        "kbgp.io",
        "v1alpha1",
        "BGPConfiguration",
        "bgpconfigurations",
        false,
        true,
    ),
    k("kbgp.io", "v1alpha1", "BGPPeer", "bgppeers", false, true),
    k(
        "kbgp.io",
        "v1alpha1",
        "BGPFilter",
        "bgpfilters",
        false,
        true,
    ),
    k(
        "kbgp.io",
        "v1alpha1",
        "BGPAllowList",
        "bgpallowlists",
        true,
        true,
    ),
    k(
        "projectcalico.org",
        "v3",
        "BGPConfiguration",
        "bgpconfigurations",
        false,
        true,
    ),
    k(
        "projectcalico.org",
        "v3",
        "BGPPeer",
        "bgppeers",
        false,
        true,
    ),
    k(
        "projectcalico.org",
        "v3",
        "BGPFilter",
        "bgpfilters",
        false,
        true,
    ),
    k("projectcalico.org", "v3", "Node", "nodes", false, true),
];

impl Kind {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
    fn id(&self) -> String {
        format!("{}/{}", self.api_version(), self.kind)
    }
    fn resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.into(),
            version: self.version.into(),
            api_version: self.api_version(),
            kind: self.kind.into(),
            plural: self.plural.into(),
        }
    }
}

/// One watched object: what the API said (less bookkeeping), and what is
/// in force for it.
#[derive(Debug, Clone)]
struct Stored {
    json: serde_json::Value,
    /// This version parsed; or, when it does not parse, the last version that
    /// did (None: none did, or a kind kbgp ignores).
    resource: Option<Resource>,
    /// Why this version does not parse.
    error: Option<String>,
}

impl Stored {
    /// Parse `json`; an invalid version keeps `previous`'s resource in force.
    fn new(json: serde_json::Value, previous: Option<&Stored>) -> Stored {
        let parsed = serde_yaml::to_value(&json)
            .map_err(|e| e.to_string())
            .and_then(parse_value);
        match parsed {
            Ok(Parsed::Resource(r)) => Stored {
                json,
                resource: Some(*r),
                error: None,
            },
            Ok(Parsed::Ignored { .. }) => Stored {
                json,
                resource: None,
                error: None,
            },
            Err(e) => Stored {
                json,
                resource: previous.and_then(|p| p.resource.clone()),
                error: Some(e),
            },
        }
    }
}

#[derive(Default)]
struct KindStore {
    /// Watched now (an optional kind stops being watched when it goes away).
    active: bool,
    /// Listed at least once since it became active.
    synced: bool,
    objects: BTreeMap<String, Stored>,
}

#[derive(Default)]
struct Stores {
    kinds: BTreeMap<String, KindStore>,
}

/// The watches of one kbgp instance.
pub struct Watcher {
    client: Client,
    stores: Arc<Mutex<Stores>>,
    changed: watch::Receiver<u64>,
}

/// An object that was refused, to report as an Event on it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rejected {
    pub kind: ObjectKind,
    pub namespace: Option<String>,
    pub name: String,
    pub error: String,
}

/// Identity of a refused object's kind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectKind {
    pub api_version: String,
    pub kind: String,
}

fn object_key(v: &serde_json::Value) -> String {
    let md = &v["metadata"];
    match md["namespace"].as_str() {
        Some(ns) => format!("{ns}/{}", md["name"].as_str().unwrap_or("")),
        None => md["name"].as_str().unwrap_or("").to_string(),
    }
}

/// The object as JSON with its apiVersion and kind (list items lack them),
/// without the bookkeeping kbgp never reads: two versions that differ only
/// there compare equal, so a new resourceVersion alone is no change.
fn to_json(o: &DynamicObject, kind: &Kind) -> Option<serde_json::Value> {
    let mut v = serde_json::to_value(o).ok()?;
    let m = v.as_object_mut()?;
    m.insert("apiVersion".into(), kind.api_version().into());
    m.insert("kind".into(), kind.kind.into());
    if let Some(md) = m.get_mut("metadata").and_then(|x| x.as_object_mut()) {
        for f in ["managedFields", "resourceVersion", "generation"] {
            md.remove(f);
        }
        // kubectl's copy of the applied object: may hold fields of another group.
        if let Some(a) = md.get_mut("annotations").and_then(|x| x.as_object_mut()) {
            a.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
    }
    Some(v)
}

impl Watcher {
    /// Start watching (discovery, then one task per served kind).
    /// `namespace` is kbgp's own namespace (for Secrets), `node` this node
    /// (for Pods).
    pub fn start(client: Client, namespace: String, node: String) -> Watcher {
        let (tx, rx) = watch::channel(0u64);
        let stores = Arc::new(Mutex::new(Stores::default()));
        let w = Watcher {
            client: client.clone(),
            stores: stores.clone(),
            changed: rx,
        };
        tokio::spawn(discovery_loop(
            client,
            namespace,
            node,
            stores,
            Arc::new(tx),
        ));
        w
    }

    /// Changes of any store: `changed()` on it returns once for each burst
    /// of changes since it last returned. Take one and keep it (a fresh copy
    /// of the receiver would see every change since the start again).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.clone()
    }

    /// Every watched kind has been listed once (and at least the core kinds
    /// are watched): the state is complete.
    pub fn synced(&self) -> bool {
        let s = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        let core = KINDS.iter().filter(|k| !k.optional).count();
        let active: Vec<&KindStore> = s.kinds.values().filter(|k| k.active).collect();
        active.len() >= core && active.iter().all(|k| k.synced)
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The current state, as the file datastore builds it from a directory.
    /// An object that does not parse is reported in the second value, and its
    /// last good version (if any) stays in force.
    pub fn state(&self) -> (Loaded, Vec<Rejected>) {
        let s = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        let mut loaded = Loaded::default();
        let mut rejected = Vec::new();
        for (id, store) in s.kinds.iter().filter(|(_, st)| st.active) {
            for (key, o) in &store.objects {
                if let Some(e) = &o.error {
                    let (api_version, kind) = id.rsplit_once('/').unwrap_or((id, ""));
                    rejected.push(Rejected {
                        kind: ObjectKind {
                            api_version: api_version.to_string(),
                            kind: kind.to_string(),
                        },
                        namespace: o.json["metadata"]["namespace"].as_str().map(str::to_owned),
                        name: o.json["metadata"]["name"]
                            .as_str()
                            .unwrap_or("")
                            .to_string(),
                        error: e.clone(),
                    });
                }
                if let Some(r) = &o.resource {
                    if let Err(e) = loaded.state.insert(r.clone()) {
                        rejected.push(Rejected {
                            kind: ObjectKind {
                                api_version: String::new(),
                                kind: String::new(),
                            },
                            namespace: None,
                            name: format!("{id} {key}"),
                            error: e,
                        });
                    }
                }
            }
        }
        (loaded, rejected)
    }
}

async fn discovery_loop(
    client: Client,
    namespace: String,
    node: String,
    stores: Arc<Mutex<Stores>>,
    tx: Arc<watch::Sender<u64>>,
) {
    let mut tasks: BTreeMap<String, tokio::task::JoinHandle<()>> = BTreeMap::new();
    loop {
        // Which optional groups/versions are served now?
        let mut served: BTreeSet<String> = BTreeSet::new();
        let mut discovery_ok = true;
        for gv in KINDS
            .iter()
            .filter(|k| k.optional)
            .map(|k| k.api_version())
            .collect::<BTreeSet<_>>()
        {
            match client.list_api_group_resources(&gv).await {
                Ok(list) => {
                    for r in list.resources {
                        served.insert(format!("{gv}/{}", r.kind));
                    }
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => {
                    debug!(group = %gv, "discovery failed, keeping what is watched: {e}");
                    discovery_ok = false;
                }
            }
        }
        for kind in KINDS {
            let id = kind.id();
            let want = !kind.optional || served.contains(&id);
            let running = tasks.contains_key(&id);
            if want && !running {
                if kind.optional {
                    info!(kind = %id, "served by the API: watching it");
                }
                {
                    let mut s = stores.lock().unwrap_or_else(|e| e.into_inner());
                    let st = s.kinds.entry(id.clone()).or_default();
                    st.active = true;
                    st.synced = false;
                }
                let ns = kind.own_namespace_only.then(|| namespace.clone());
                let node = kind.this_node_only.then(|| node.clone());
                tasks.insert(
                    id.clone(),
                    tokio::spawn(watch_kind(
                        client.clone(),
                        *kind,
                        ns,
                        node,
                        stores.clone(),
                        tx.clone(),
                    )),
                );
            } else if !want && running && discovery_ok {
                info!(kind = %id, "no longer served by the API: its objects are gone");
                if let Some(t) = tasks.remove(&id) {
                    t.abort();
                }
                let mut s = stores.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(st) = s.kinds.get_mut(&id) {
                    st.active = false;
                    st.objects.clear();
                }
                tx.send_modify(|g| *g += 1);
            }
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
}

async fn watch_kind(
    client: Client,
    kind: Kind,
    namespace: Option<String>,
    node: Option<String>,
    stores: Arc<Mutex<Stores>>,
    tx: Arc<watch::Sender<u64>>,
) {
    let ar = kind.resource();
    let api: Api<DynamicObject> = match &namespace {
        Some(ns) => Api::namespaced_with(client, ns, &ar),
        None => Api::all_with(client, &ar),
    };
    let id = kind.id();
    let mut config = watcher::Config::default();
    if let Some(n) = &node {
        config = config.fields(&format!("spec.nodeName={n}"));
    }
    let mut stream = watcher::watcher(api, config)
        .backoff(WatchBackoff::default())
        .boxed();
    let mut buffer: Option<BTreeMap<String, Stored>> = None;
    let mut failing = false;
    while let Some(ev) = stream.next().await {
        let ev = match ev {
            Ok(ev) => {
                if failing {
                    info!(kind = %id, "watch restored");
                    failing = false;
                }
                ev
            }
            Err(e) => {
                // The store keeps its last state; the watcher retries with back-off.
                if !failing {
                    warn!(kind = %id, "watch failed, keeping the last state and retrying: {e}");
                }
                failing = true;
                continue;
            }
        };
        let changed = {
            let mut s = stores.lock().unwrap_or_else(|e| e.into_inner());
            let st = s.kinds.entry(id.clone()).or_default();
            match ev {
                Event::Init => {
                    buffer = Some(BTreeMap::new());
                    false
                }
                Event::InitApply(o) => {
                    if let (Some(b), Some(v)) = (buffer.as_mut(), to_json(&o, &kind)) {
                        let key = object_key(&v);
                        let stored = match st.objects.get(&key) {
                            Some(old) if old.json == v => old.clone(),
                            old => Stored::new(v, old),
                        };
                        b.insert(key, stored);
                    }
                    false
                }
                Event::InitDone => {
                    let fresh = buffer.take().unwrap_or_default();
                    // A relist that finds what we had changes nothing.
                    let changed = !st.synced
                        || fresh.len() != st.objects.len()
                        || fresh
                            .iter()
                            .any(|(k, o)| st.objects.get(k).map(|x| &x.json) != Some(&o.json));
                    debug!(kind = %id, objects = fresh.len(), changed, "listed");
                    st.objects = fresh;
                    st.synced = true;
                    changed
                }
                Event::Apply(o) => match to_json(&o, &kind) {
                    Some(v) => {
                        let key = object_key(&v);
                        if st.objects.get(&key).is_some_and(|old| old.json == v) {
                            false
                        } else {
                            let stored = Stored::new(v, st.objects.get(&key));
                            st.objects.insert(key, stored);
                            true
                        }
                    }
                    None => false,
                },
                Event::Delete(o) => match to_json(&o, &kind) {
                    Some(v) => st.objects.remove(&object_key(&v)).is_some(),
                    None => false,
                },
            }
        };
        if changed {
            tx.send_modify(|g| *g += 1);
        }
    }
}

/// Watch back-off: 0.5 s doubling to 8 s, jittered so that a fleet of nodes
/// does not come back in step. client-go's ceiling is 30 s; a routing daemon
/// should see a returning API server sooner, and one node holds only one
/// watch per kind.
struct WatchBackoff {
    next: Duration,
}

const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(8);

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff { next: BACKOFF_MIN }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let d = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        // Up to +25%, from the clock's nanoseconds (no RNG needed for this).
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|t| t.subsec_nanos())
            .unwrap_or(0);
        Some(d + d.mul_f64(f64::from(nanos % 1000) / 4000.0))
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

// ---------------------------------------------------------------------------
// One bad object does not hold up the rest.

/// The user-editable objects (BGPPeer, BGPFilter, BGPAllowList) of the last
/// configuration that was accepted.
#[derive(Debug, Default, Clone)]
pub struct Accepted {
    peers: BTreeMap<String, crate::resources::BgpPeer>,
    filters: BTreeMap<String, crate::resources::BgpFilter>,
    allow_lists: BTreeMap<String, crate::resources::BgpAllowList>,
}

/// Put the accepted version of `key` back in place of the current one, or
/// leave the object out when there is none (or it is the one refused now).
fn fall_back<T: Clone + PartialEq>(
    now: &mut BTreeMap<String, T>,
    before: &BTreeMap<String, T>,
    key: &str,
) -> bool {
    let Some(cur) = now.get(key) else {
        return false;
    };
    match before.get(key) {
        Some(old) if old != cur => {
            now.insert(key.to_string(), old.clone());
        }
        _ => {
            now.remove(key);
        }
    }
    true
}

/// This node's desired state, as [`crate::desired`], except that a
/// BGPPeer, BGPFilter or BGPAllowList the model refuses (a peerIP that is no
/// address, a bad CIDR) does not refuse the whole configuration: its last
/// accepted version stays in force, or it is left out if it never had one.
/// With many owners of objects in a cluster, one user's typo must not freeze
/// every node's routing. Returns the result and the objects so refused.
pub fn desired_isolating(
    mut state: crate::ClusterState,
    node: &str,
    accepted: &mut Accepted,
) -> (
    Result<crate::Desired, crate::ConfigError>,
    Vec<crate::ConfigError>,
) {
    let mut refused = Vec::new();
    // Each round puts back or leaves out one object: bounded.
    for _ in 0..64 {
        match crate::desired(&state, node) {
            Ok(d) => {
                *accepted = Accepted {
                    peers: state.bgp_peers.clone(),
                    filters: state.bgp_filters.clone(),
                    allow_lists: state.allow_lists.clone(),
                };
                return (Ok(d), refused);
            }
            Err(crate::ConfigError::Invalid { kind, name, msg }) => {
                // BGPAllowList errors name `ns/name prefixes[i]`.
                let key = name.split(' ').next().unwrap_or("").to_string();
                let handled = match kind.as_str() {
                    "BGPPeer" => fall_back(&mut state.bgp_peers, &accepted.peers, &key),
                    "BGPFilter" => fall_back(&mut state.bgp_filters, &accepted.filters, &key),
                    "BGPAllowList" => {
                        fall_back(&mut state.allow_lists, &accepted.allow_lists, &key)
                    }
                    _ => false,
                };
                let e = crate::ConfigError::Invalid { kind, name, msg };
                if !handled {
                    return (Err(e), refused);
                }
                refused.push(e);
            }
            Err(e) => return (Err(e), refused),
        }
    }
    (
        Err(crate::ConfigError::Invalid {
            kind: "configuration".into(),
            name: node.into(),
            msg: "too many refused objects".into(),
        }),
        refused,
    )
}

// ---------------------------------------------------------------------------
// Status back to the cluster.

/// One peer in a [`BgpNodeStatus`], as `kbgp status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeerState {
    /// Peer address, or interface for an unnumbered peer.
    pub peer_address: String,
    /// node-to-node mesh, global, node specific, pod...
    pub peer_type: String,
    /// up or start, as calicoctl shows it.
    pub state: String,
    /// The BGP FSM state: Idle, Connect, Active, OpenSent, OpenConfirm, Established.
    pub session_state: String,
    /// When the state last changed (Unix seconds).
    pub since: u64,
    /// Established, or why not.
    pub info: String,
    #[serde(default)]
    pub prefixes_received: u64,
    #[serde(default)]
    pub prefixes_advertised: u64,
}

/// `status` of kbgp's `BGPNodeStatus`: one node's sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BgpNodeStatusStatus {
    pub as_number: u32,
    #[serde(rename = "routerID")]
    pub router_id: String,
    pub listen_port: u16,
    #[serde(default)]
    pub peers: Vec<PeerState>,
    /// RFC 3339 time of this report.
    #[serde(default)]
    pub last_updated: String,
    /// The configuration in force was refused or partly refused: why.
    #[serde(default)]
    pub config_errors: Vec<String>,
}

/// `spec` of `BGPNodeStatus`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BgpNodeStatusSpec {
    /// The node this status is of (also the object's name).
    pub node: String,
}

pub const STATUS_KIND: Kind = k(
    "kbgp.io",
    "v1alpha1",
    "BGPNodeStatus",
    "bgpnodestatuses",
    false,
    true,
);

const FIELD_MANAGER: &str = "kbgp";

/// Write this node's `BGPNodeStatus` (server-side apply: the object, then its
/// status subresource).
pub async fn publish_status(
    client: &Client,
    node: &str,
    status: &BgpNodeStatusStatus,
) -> Result<(), kube::Error> {
    let ar = STATUS_KIND.resource();
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let obj = serde_json::json!({
        "apiVersion": STATUS_KIND.api_version(),
        "kind": STATUS_KIND.kind,
        "metadata": {"name": node},
        "spec": {"node": node},
    });
    api.patch(node, &pp, &Patch::Apply(&obj)).await?;
    let st = serde_json::json!({
        "apiVersion": STATUS_KIND.api_version(),
        "kind": STATUS_KIND.kind,
        "metadata": {"name": node},
        "status": status,
    });
    api.patch_status(node, &pp, &Patch::Apply(&st)).await?;
    Ok(())
}

/// Read a node's `BGPNodeStatus`.
pub async fn read_status(client: &Client, node: &str) -> Result<BgpNodeStatusStatus, String> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &STATUS_KIND.resource());
    let o = api.get(node).await.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 404 => {
            format!("no BGPNodeStatus {node:?}: is kbgp running on that node?")
        }
        e => e.to_string(),
    })?;
    let st = o.data.get("status").cloned().unwrap_or_default();
    serde_json::from_value(st).map_err(|e| format!("BGPNodeStatus {node:?}: {e}"))
}

/// The object an Event is about.
#[derive(Debug, Clone, Copy)]
pub struct Regarding<'a> {
    pub api_version: &'a str,
    pub kind: &'a str,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
}

impl<'a> Regarding<'a> {
    pub fn node(name: &'a str) -> Self {
        Regarding {
            api_version: "v1",
            kind: "Node",
            namespace: None,
            name,
        }
    }

    pub fn rejected(r: &'a Rejected) -> Self {
        Regarding {
            api_version: &r.kind.api_version,
            kind: &r.kind.kind,
            namespace: r.namespace.as_deref(),
            name: &r.name,
        }
    }
}

/// Events (events.k8s.io/v1) on Nodes and kbgp objects.
#[derive(Clone)]
pub struct Events {
    recorder: kube::runtime::events::Recorder,
}

impl Events {
    pub fn new(client: Client, node: &str) -> Events {
        let reporter = kube::runtime::events::Reporter {
            controller: "kbgp".into(),
            instance: Some(format!("kbgp-{node}")),
        };
        Events {
            recorder: kube::runtime::events::Recorder::new(client, reporter),
        }
    }

    /// Publish one event about an object; failures are logged, never fatal.
    pub async fn publish(&self, warning: bool, reason: &str, note: String, about: Regarding<'_>) {
        use k8s_openapi::api::core::v1::ObjectReference;
        use kube::runtime::events::{Event as KEvent, EventType};
        let reference = ObjectReference {
            api_version: Some(about.api_version.into()),
            kind: Some(about.kind.into()),
            name: Some(about.name.into()),
            namespace: about.namespace.map(str::to_owned),
            ..Default::default()
        };
        let ev = KEvent {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &reference).await {
            debug!(reason, "cannot publish event: {e}");
        }
    }
}

/// A kube client from `--kubeconfig`, `KUBECONFIG`, `~/.kube/config` or the
/// in-cluster service account, in that order.
pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<Client, String> {
    let config = match kubeconfig {
        Some(p) => {
            let kc = kube::config::Kubeconfig::read_from(p)
                .map_err(|e| format!("{}: {e}", p.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| format!("{}: {e}", p.display()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("no Kubernetes configuration: {e}"))?,
    };
    Client::try_from(config).map_err(|e| e.to_string())
}

/// Refused objects, as a [`ConfigError`]-like message per object.
pub fn describe(r: &Rejected) -> String {
    let what = match &r.namespace {
        Some(ns) => format!("{} {ns}/{}", r.kind.kind, r.name),
        None => format!("{} {}", r.kind.kind, r.name),
    };
    format!("{what}: {}", r.error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::utils::Backoff;

    #[test]
    fn backoff_doubles_to_its_ceiling_with_bounded_jitter_and_resets() {
        let mut b = WatchBackoff::default();
        let d: Vec<Duration> = (&mut b).take(8).collect();
        for (i, want) in [500u64, 1000, 2000, 4000, 8000, 8000, 8000, 8000]
            .iter()
            .enumerate()
        {
            let want = Duration::from_millis(*want);
            assert!(
                d[i] >= want && d[i] <= want.mul_f64(1.25),
                "{i}: {:?}",
                d[i]
            );
        }
        b.reset();
        assert!(b.next().unwrap() <= BACKOFF_MIN.mul_f64(1.25));
    }

    #[test]
    fn a_refused_peer_falls_back_or_is_left_out_and_the_rest_applies() {
        let doc = |peer_b_ip: &str, peer_a_ip: &str| {
            format!(
                "apiVersion: v1\nkind: Node\nmetadata: {{name: n1}}\nstatus: {{addresses: [{{type: InternalIP, address: 192.0.2.11}}]}}\n---\n\
                 apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {{name: default}}\nspec: {{asNumber: 65010, nodeToNodeMeshEnabled: false}}\n---\n\
                 apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {{name: a}}\nspec: {{peerIP: {peer_a_ip}, asNumber: 65001}}\n---\n\
                 apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {{name: b}}\nspec: {{peerIP: {peer_b_ip}, asNumber: 65002}}\n"
            )
        };
        let state = |text: String| {
            let mut l = crate::Loaded::default();
            crate::load_str("t.yaml", &text, &mut l).unwrap();
            l.state
        };
        let mut acc = Accepted::default();
        // b was never valid: left out; a applies.
        let (d, refused) = desired_isolating(state(doc("not-an-ip", "192.0.2.1")), "n1", &mut acc);
        let d = d.unwrap();
        assert_eq!(d.peers.keys().collect::<Vec<_>>(), vec!["192.0.2.1"]);
        assert_eq!(refused.len(), 1);
        assert!(
            refused[0].to_string().contains("not-an-ip"),
            "{}",
            refused[0]
        );
        // a becomes invalid: its accepted version stays; b is fixed and applies.
        let (d, refused) = desired_isolating(state(doc("192.0.2.2", "bogus")), "n1", &mut acc);
        assert_eq!(
            d.unwrap().peers.keys().collect::<Vec<_>>(),
            vec!["192.0.2.1", "192.0.2.2"]
        );
        assert_eq!(refused.len(), 1);
        // A global error still refuses the whole configuration.
        let broken = doc("192.0.2.2", "192.0.2.1")
            .replace("asNumber: 65010", "asNumber: 65010, bindMode: Sideways");
        let (d, _) = desired_isolating(state(broken), "n1", &mut acc);
        assert!(d.is_err());
    }

    #[test]
    fn an_object_is_parsed_on_arrival_and_a_bad_version_keeps_the_last_good_one() {
        let peer = |spec: serde_json::Value| {
            serde_json::json!({"apiVersion": "kbgp.io/v1alpha1", "kind": "BGPPeer",
                "metadata": {"name": "p"}, "spec": spec})
        };
        let good = Stored::new(
            peer(serde_json::json!({"peerIP": "192.0.2.1", "asNumber": 65001})),
            None,
        );
        assert!(good.error.is_none());
        let Some(Resource::BgpPeer(p)) = &good.resource else {
            panic!("{good:?}")
        };
        assert_eq!(p.spec.peer_ip.as_deref(), Some("192.0.2.1"));
        // A typo: refused, and the good version stays in force.
        let bad = Stored::new(
            peer(serde_json::json!({"peerIPs": "192.0.2.9"})),
            Some(&good),
        );
        assert!(
            bad.error.as_deref().unwrap_or("").contains("peerIPs"),
            "{bad:?}"
        );
        assert_eq!(bad.resource, good.resource);
        // Refused again: still the good one, not nothing.
        let worse = Stored::new(peer(serde_json::json!({"bogus": 1})), Some(&bad));
        assert_eq!(worse.resource, good.resource);
        // Never valid: nothing in force.
        assert!(Stored::new(peer(serde_json::json!({"bogus": 1})), None)
            .resource
            .is_none());
        // A kind kbgp ignores: neither resource nor error.
        let other = Stored::new(
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
            None,
        );
        assert!(other.resource.is_none() && other.error.is_none());
    }

    #[test]
    fn list_items_get_their_kind_and_lose_kubectl_bookkeeping() {
        let o: DynamicObject = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "managedFields": [{}], "resourceVersion": "7", "generation": 2,
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "keep": "me"}},
            "spec": {"peerIP": "192.0.2.1"}
        }))
        .unwrap();
        let kind = KINDS.iter().find(|k| k.kind == "BGPPeer").unwrap();
        let v = to_json(&o, kind).unwrap();
        assert_eq!(v["apiVersion"], kind.api_version());
        assert_eq!(v["kind"], "BGPPeer");
        for f in ["managedFields", "resourceVersion", "generation"] {
            assert!(v["metadata"].get(f).is_none(), "{f}");
        }
        assert_eq!(
            v["metadata"]["annotations"],
            serde_json::json!({"keep": "me"})
        );
        assert_eq!(object_key(&v), "p");
    }
}
