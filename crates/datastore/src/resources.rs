//! The resource kinds kbgp reads, as serde types, and [`ClusterState`]: every
//! resource currently known, whatever its source.
//!
//! Calico's `projectcalico.org/v3` kinds load exactly as written for calicoctl;
//! kbgp's `kbgp.io/v1alpha1` kinds are the same shapes plus fields Calico
//! lacks. Both parse into one struct per kind; a kbgp-only field under the
//! Calico group is refused with a message naming the field. Unknown fields are
//! errors, so a typo never silently changes routing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const CALICO_GROUP: &str = "projectcalico.org/v3";
pub const KBGP_GROUP: &str = "kbgp.io/v1alpha1";

/// `metadata`, lenient: Kubernetes adds many fields kbgp has no use for.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub resource_version: Option<String>,
    /// Set while the object is being deleted (a terminating pod is no peer).
    #[serde(default)]
    pub deletion_timestamp: Option<String>,
}

impl Meta {
    /// The namespace, `default` when unset (as the API server fills it in).
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }

    /// A namespaced object's key: `namespace/name`.
    pub fn ns_key(&self) -> String {
        format!("{}/{}", self.namespace(), self.name)
    }
}

/// `v1 Node`: only what routing needs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Node {
    pub metadata: Meta,
    #[serde(default)]
    pub spec: NodeSpec,
    #[serde(default)]
    pub status: NodeStatus,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeSpec {
    #[serde(default, rename = "podCIDR")]
    pub pod_cidr: Option<String>,
    #[serde(default, rename = "podCIDRs")]
    pub pod_cidrs: Vec<String>,
    #[serde(default)]
    pub bgp: Option<NodeBgp>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// Calico's Node `spec.bgp` (also accepted on v1 Nodes, as kbgp's extension).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeBgp {
    #[serde(default)]
    pub ipv4_address: Option<String>,
    #[serde(default)]
    pub ipv6_address: Option<String>,
    #[serde(default)]
    pub as_number: Option<u32>,
    #[serde(default, rename = "routeReflectorClusterID")]
    pub route_reflector_cluster_id: Option<String>,
    #[serde(default, rename = "ipv4IPIPTunnelAddr")]
    pub ipv4_ipip_tunnel_addr: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NodeStatus {
    #[serde(default)]
    pub addresses: Vec<NodeAddress>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NodeAddress {
    #[serde(rename = "type")]
    pub kind: String,
    pub address: String,
}

/// `v1 Service`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Service {
    pub metadata: Meta,
    #[serde(default)]
    pub spec: ServiceSpec,
    #[serde(default)]
    pub status: ServiceStatus,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default, rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    #[serde(default, rename = "clusterIPs")]
    pub cluster_ips: Vec<String>,
    #[serde(default, rename = "externalIPs")]
    pub external_ips: Vec<String>,
    #[serde(default)]
    pub external_traffic_policy: Option<String>,
    #[serde(default)]
    pub load_balancer_class: Option<String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    #[serde(default)]
    pub load_balancer: LoadBalancerStatus,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LoadBalancerStatus {
    #[serde(default)]
    pub ingress: Vec<LbIngress>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LbIngress {
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `v1 Pod`: what pod peering needs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Pod {
    pub metadata: Meta,
    #[serde(default)]
    pub spec: PodSpec,
    #[serde(default)]
    pub status: PodStatus,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default)]
    pub node_name: Option<String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default, rename = "podIP")]
    pub pod_ip: Option<String>,
    #[serde(default, rename = "podIPs")]
    pub pod_ips: Vec<PodIp>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PodIp {
    pub ip: String,
}

/// `discovery.k8s.io/v1 EndpointSlice`: where a Service's endpoints run, for
/// `externalTrafficPolicy: Local`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSlice {
    pub metadata: Meta,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub node_name: Option<String>,
    #[serde(default)]
    pub conditions: EndpointConditions,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EndpointConditions {
    /// Absent means ready (the API's rule).
    #[serde(default)]
    pub ready: Option<bool>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl EndpointSlice {
    /// The Service this slice belongs to: `namespace/name`.
    pub fn service_key(&self) -> Option<String> {
        let svc = self.metadata.labels.get("kubernetes.io/service-name")?;
        Some(format!("{}/{svc}", self.metadata.namespace()))
    }
}

/// `v1 Namespace`: its labels, for namespace selectors.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Namespace {
    pub metadata: Meta,
}

/// `kbgp.io/v1alpha1 BGPAllowList`: namespaced, owned by the namespace's users:
/// the prefixes pods in this namespace may announce to their node.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BgpAllowList {
    pub metadata: Meta,
    #[serde(default)]
    pub spec: BgpAllowListSpec,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpAllowListSpec {
    #[serde(default)]
    pub prefixes: Vec<AllowPrefixSpec>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AllowPrefixSpec {
    pub cidr: String,
    /// Shortest prefix length allowed (default: the CIDR's own).
    #[serde(default)]
    pub ge: Option<u8>,
    /// Longest prefix length allowed (default: the CIDR's own).
    #[serde(default)]
    pub le: Option<u8>,
}

/// `v1 Secret`, for BGPPeer passwords.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    pub metadata: Meta,
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    #[serde(default)]
    pub string_data: BTreeMap<String, String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// `BGPConfiguration`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BgpConfiguration {
    pub metadata: Meta,
    #[serde(default)]
    pub spec: BgpConfigurationSpec,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpConfigurationSpec {
    // --- Calico fields ---
    #[serde(default)]
    pub log_severity_screen: Option<String>,
    #[serde(default)]
    pub node_to_node_mesh_enabled: Option<bool>,
    #[serde(default)]
    pub as_number: Option<u32>,
    #[serde(default, rename = "serviceClusterIPs")]
    pub service_cluster_ips: Vec<CidrEntry>,
    #[serde(default, rename = "serviceExternalIPs")]
    pub service_external_ips: Vec<CidrEntry>,
    #[serde(default, rename = "serviceLoadBalancerIPs")]
    pub service_load_balancer_ips: Vec<CidrEntry>,
    #[serde(default)]
    pub communities: Vec<NamedCommunity>,
    #[serde(default)]
    pub prefix_advertisements: Vec<PrefixAdvertisement>,
    #[serde(default)]
    pub listen_port: Option<u16>,
    #[serde(default)]
    pub node_mesh_password: Option<SecretRef>,
    #[serde(default)]
    pub node_mesh_max_restart_time: Option<String>,
    #[serde(default)]
    pub bind_mode: Option<String>,
    #[serde(default)]
    pub ignored_interfaces: Vec<String>,
    #[serde(default, rename = "localWorkloadPeeringIPV4")]
    pub local_workload_peering_ipv4: Option<String>,
    #[serde(default, rename = "localWorkloadPeeringIPV6")]
    pub local_workload_peering_ipv6: Option<String>,
    // --- kbgp.io only ---
    /// Proposed hold time for every session, e.g. `90s`.
    #[serde(default)]
    pub hold_time: Option<String>,
    /// Router id for every node, overriding the node's InternalIP.
    #[serde(default, rename = "routerID")]
    pub router_id: Option<String>,
    /// Install best paths into the kernel (default true; false when the CNI programs routes).
    #[serde(default)]
    pub program_kernel_routes: Option<bool>,
    /// Kernel table for BGP routes (default 254, main).
    #[serde(default)]
    pub kernel_route_table: Option<u32>,
    /// ECMP: how many equal paths to install (default 8, 1 to 64; 1 disables ECMP).
    #[serde(default)]
    pub max_paths: Option<u32>,
    /// Compare MED between paths from different neighbour ASes.
    #[serde(default, rename = "alwaysCompareMED")]
    pub always_compare_med: Option<bool>,
    /// More prefixes to originate (a host's loopback, for instance), besides
    /// pod CIDRs and service ranges; `node.NAME` configurations add their own.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Originate every address (as /32 or /128) on these interfaces, e.g. `lo`.
    #[serde(default)]
    pub originate_interfaces: Vec<String>,
    /// Leave kbgp's kernel routes in place when it stops (default true: a
    /// restart does not disturb forwarding); false removes them on SIGTERM.
    #[serde(default)]
    pub keep_kernel_routes_on_shutdown: Option<bool>,
    /// Prefixes pods may never announce, on top of the cluster's own
    /// (pod CIDRs, service ranges, node addresses, default routes).
    #[serde(default)]
    pub pod_peer_deny_prefixes: Vec<String>,
    /// Advertise the LoadBalancer IPs of Services with this
    /// `spec.loadBalancerClass` only (default: Services without a class).
    #[serde(default)]
    pub load_balancer_class: Option<String>,
}

impl BgpConfigurationSpec {
    pub const KBGP_ONLY: &'static [&'static str] = &[
        "holdTime",
        "routerID",
        "programKernelRoutes",
        "kernelRouteTable",
        "maxPaths",
        "alwaysCompareMED",
        "prefixes",
        "originateInterfaces",
        "keepKernelRoutesOnShutdown",
        "podPeerDenyPrefixes",
        "loadBalancerClass",
    ];
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CidrEntry {
    pub cidr: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamedCommunity {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrefixAdvertisement {
    pub cidr: String,
    #[serde(default)]
    pub communities: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    pub secret_key_ref: SecretKeyRef,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

/// `BGPPeer`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BgpPeer {
    pub metadata: Meta,
    #[serde(default)]
    pub spec: BgpPeerSpec,
}

/// A remote AS as written: a number, or `external` / `internal`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum AsValue {
    Number(u32),
    Word(String),
}

/// In a CRD: Kubernetes' int-or-string (`65001`, `external`, `internal`).
impl schemars::JsonSchema for AsValue {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "AsValue".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "x-kubernetes-int-or-string": true,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "description": "A remote AS: a number, or external (any AS but ours) or internal (ours)."
        })
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpPeerSpec {
    // --- Calico fields ---
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default, rename = "peerIP")]
    pub peer_ip: Option<String>,
    #[serde(default)]
    pub as_number: Option<u32>,
    #[serde(default)]
    pub node_selector: Option<String>,
    #[serde(default)]
    pub peer_selector: Option<String>,
    #[serde(default)]
    pub keep_original_next_hop: Option<bool>,
    #[serde(default)]
    pub password: Option<SecretRef>,
    #[serde(default)]
    pub source_address: Option<String>,
    #[serde(default)]
    pub max_restart_time: Option<String>,
    #[serde(default)]
    pub num_allowed_local_as_numbers: Option<u32>,
    #[serde(default)]
    pub ttl_security: Option<u8>,
    #[serde(default)]
    pub filters: Vec<String>,
    #[serde(default)]
    pub local_workload_selector: Option<String>,
    #[serde(default)]
    pub reachable_by: Option<String>,
    #[serde(default)]
    pub next_hop_mode: Option<String>,
    // --- kbgp.io only ---
    /// Peer on this interface by IPv6 link-local (BGP unnumbered).
    #[serde(default)]
    pub interface: Option<String>,
    /// `external`, `internal` or a number; instead of asNumber.
    #[serde(default)]
    pub remote_as: Option<AsValue>,
    /// Do not connect; wait for the peer to connect.
    #[serde(default)]
    pub passive: Option<bool>,
    #[serde(default)]
    pub hold_time: Option<String>,
    /// eBGP multihop TTL (default 1 for eBGP).
    #[serde(default)]
    pub ebgp_multihop: Option<u8>,
    /// Remote TCP port (default 179, or the port in peerIP `[addr]:port`).
    #[serde(default)]
    pub port: Option<u16>,
    /// Most prefixes this peer may send.
    #[serde(default)]
    pub max_prefixes: Option<u32>,
    /// Warn from this share of the limit, in percent (default 80).
    #[serde(default)]
    pub max_prefixes_warning_percent: Option<u8>,
    /// `Stop` (default: Cease/Maximum Number of Prefixes Reached) or `Log`.
    #[serde(default)]
    pub max_prefixes_action: Option<String>,
    /// Unnumbered peers: how often to send router advertisements (default 3s).
    #[serde(default)]
    pub router_advertisement_interval: Option<String>,
    /// Peer with the pods on this node that match (Calico selector syntax).
    #[serde(default)]
    pub pod_selector: Option<String>,
    /// Only pods in namespaces whose labels match.
    #[serde(default)]
    pub namespace_selector: Option<String>,
    /// Routes from this eBGP peer may be passed on to other eBGP peers
    /// (default off: a node is no transit between its eBGP neighbours).
    #[serde(default)]
    pub transit: Option<bool>,
}

impl BgpPeerSpec {
    pub const KBGP_ONLY: &'static [&'static str] = &[
        "interface",
        "remoteAs",
        "passive",
        "holdTime",
        "ebgpMultihop",
        "port",
        "maxPrefixes",
        "maxPrefixesWarningPercent",
        "maxPrefixesAction",
        "routerAdvertisementInterval",
        "podSelector",
        "namespaceSelector",
        "transit",
    ];
}

/// `BGPFilter`: Calico's import/export rules, kbgp's superset.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BgpFilter {
    pub metadata: Meta,
    #[serde(default)]
    pub spec: BgpFilterSpec,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpFilterSpec {
    #[serde(default, rename = "exportV4")]
    pub export_v4: Vec<FilterRuleSpec>,
    #[serde(default, rename = "importV4")]
    pub import_v4: Vec<FilterRuleSpec>,
    #[serde(default, rename = "exportV6")]
    pub export_v6: Vec<FilterRuleSpec>,
    #[serde(default, rename = "importV6")]
    pub import_v6: Vec<FilterRuleSpec>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterRuleSpec {
    // --- Calico fields ---
    pub action: String,
    #[serde(default)]
    pub match_operator: Option<String>,
    #[serde(default)]
    pub cidr: Option<String>,
    #[serde(default)]
    pub prefix_length: Option<PrefixLengthSpec>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub interface: Option<String>,
    // --- kbgp.io only ---
    /// Match routes carrying any of these (standard `AA:NN` or large `AA:NN:MM`).
    #[serde(default)]
    pub communities: Vec<String>,
    #[serde(default)]
    pub as_path_contains: Option<u32>,
    #[serde(default, rename = "maxASPathLength")]
    pub max_as_path_length: Option<u32>,
    #[serde(default)]
    pub set_local_pref: Option<u32>,
    #[serde(default, rename = "setMED")]
    pub set_med: Option<u32>,
    #[serde(default)]
    pub add_communities: Vec<String>,
    /// Prepend our AS this many times (export).
    #[serde(default, rename = "prependAS")]
    pub prepend_as: Option<u8>,
}

impl FilterRuleSpec {
    pub const KBGP_ONLY: &'static [&'static str] = &[
        "communities",
        "asPathContains",
        "maxASPathLength",
        "setLocalPref",
        "setMED",
        "addCommunities",
        "prependAS",
    ];
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrefixLengthSpec {
    #[serde(default)]
    pub min: Option<u8>,
    #[serde(default)]
    pub max: Option<u8>,
}

/// Every resource kbgp knows of, by kind and name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterState {
    pub nodes: BTreeMap<String, Node>,
    /// Calico's own `projectcalico.org/v3` Node objects (their `spec.bgp`).
    pub calico_nodes: BTreeMap<String, Node>,
    pub services: BTreeMap<String, Service>,
    pub secrets: BTreeMap<String, Secret>,
    pub bgp_configurations: BTreeMap<String, BgpConfiguration>,
    pub bgp_peers: BTreeMap<String, BgpPeer>,
    pub bgp_filters: BTreeMap<String, BgpFilter>,
    pub pods: BTreeMap<String, Pod>,
    pub namespaces: BTreeMap<String, Namespace>,
    pub allow_lists: BTreeMap<String, BgpAllowList>,
    pub endpoint_slices: BTreeMap<String, EndpointSlice>,
}

/// One parsed document.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    Node(Node),
    CalicoNode(Node),
    Service(Service),
    Secret(Secret),
    BgpConfiguration(BgpConfiguration),
    BgpPeer(BgpPeer),
    BgpFilter(BgpFilter),
    Pod(Pod),
    Namespace(Namespace),
    AllowList(BgpAllowList),
    EndpointSlice(EndpointSlice),
}

/// What to do with a document of a kind kbgp does not read.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Resource(Box<Resource>),
    Ignored { api_version: String, kind: String },
}

fn key(m: &Meta) -> String {
    match &m.namespace {
        Some(ns) => format!("{ns}/{}", m.name),
        None => m.name.clone(),
    }
}

impl ClusterState {
    pub fn insert(&mut self, r: Resource) -> Result<(), String> {
        let (map_name, k) = match &r {
            Resource::Node(n) => ("Node", key(&n.metadata)),
            Resource::CalicoNode(n) => ("projectcalico.org/v3 Node", key(&n.metadata)),
            Resource::Service(s) => ("Service", key(&s.metadata)),
            Resource::Secret(s) => ("Secret", key(&s.metadata)),
            Resource::BgpConfiguration(c) => ("BGPConfiguration", key(&c.metadata)),
            Resource::BgpPeer(p) => ("BGPPeer", key(&p.metadata)),
            Resource::BgpFilter(f) => ("BGPFilter", key(&f.metadata)),
            Resource::Pod(p) => ("Pod", p.metadata.ns_key()),
            Resource::Namespace(n) => ("Namespace", key(&n.metadata)),
            Resource::AllowList(a) => ("BGPAllowList", a.metadata.ns_key()),
            Resource::EndpointSlice(e) => ("EndpointSlice", e.metadata.ns_key()),
        };
        let dup = match r {
            Resource::Node(n) => self.nodes.insert(k.clone(), n).is_some(),
            Resource::CalicoNode(n) => self.calico_nodes.insert(k.clone(), n).is_some(),
            Resource::Service(s) => self.services.insert(k.clone(), s).is_some(),
            Resource::Secret(s) => self.secrets.insert(k.clone(), s).is_some(),
            Resource::BgpConfiguration(c) => self.bgp_configurations.insert(k.clone(), c).is_some(),
            Resource::BgpPeer(p) => self.bgp_peers.insert(k.clone(), p).is_some(),
            Resource::BgpFilter(f) => self.bgp_filters.insert(k.clone(), f).is_some(),
            Resource::Pod(p) => self.pods.insert(k.clone(), p).is_some(),
            Resource::Namespace(n) => self.namespaces.insert(k.clone(), n).is_some(),
            Resource::AllowList(a) => self.allow_lists.insert(k.clone(), a).is_some(),
            Resource::EndpointSlice(e) => self.endpoint_slices.insert(k.clone(), e).is_some(),
        };
        if dup {
            return Err(format!("{map_name} {k:?} is defined twice"));
        }
        Ok(())
    }
}

/// Parse one document from a generic value: dispatch on apiVersion and kind.
pub fn parse_value(v: serde_yaml::Value) -> Result<Parsed, String> {
    let api_version = v
        .get("apiVersion")
        .and_then(|x| x.as_str())
        .ok_or("missing apiVersion")?
        .to_string();
    let kind = v
        .get("kind")
        .and_then(|x| x.as_str())
        .ok_or("missing kind")?
        .to_string();
    let name = v
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .unwrap_or("")
        .to_string();
    if name.is_empty()
        && matches!(
            kind.as_str(),
            "Node"
                | "Service"
                | "Secret"
                | "BGPConfiguration"
                | "BGPPeer"
                | "BGPFilter"
                | "Pod"
                | "Namespace"
                | "BGPAllowList"
                | "EndpointSlice"
        )
    {
        return Err(format!("{kind} without metadata.name"));
    }
    let typed = |what: &str| format!("{kind} {name:?}: {what}");
    let spec_keys = |v: &serde_yaml::Value| -> Vec<String> {
        v.get("spec")
            .and_then(|s| s.as_mapping())
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let calico_only = |v: &serde_yaml::Value, kbgp_only: &[&str]| -> Result<(), String> {
        if api_version == CALICO_GROUP {
            if let Some(f) = spec_keys(v)
                .into_iter()
                .find(|k| kbgp_only.contains(&k.as_str()))
            {
                return Err(typed(&format!(
                    "spec.{f} is a kbgp field, not part of {CALICO_GROUP}; use apiVersion: {KBGP_GROUP}"
                )));
            }
        }
        Ok(())
    };
    let r = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Node") => {
            Resource::Node(serde_yaml::from_value(v).map_err(|e| typed(&e.to_string()))?)
        }
        (CALICO_GROUP, "Node") => {
            Resource::CalicoNode(serde_yaml::from_value(v).map_err(|e| typed(&e.to_string()))?)
        }
        ("v1", "Service") => {
            Resource::Service(serde_yaml::from_value(v).map_err(|e| typed(&e.to_string()))?)
        }
        ("v1", "Secret") => {
            Resource::Secret(serde_yaml::from_value(v).map_err(|e| typed(&e.to_string()))?)
        }
        (CALICO_GROUP | KBGP_GROUP, "BGPConfiguration") => {
            calico_only(&v, BgpConfigurationSpec::KBGP_ONLY)?;
            Resource::BgpConfiguration(
                serde_yaml::from_value(v).map_err(|e| typed(&e.to_string()))?,
            )
        }
        (CALICO_GROUP | KBGP_GROUP, "BGPPeer") => {
            calico_only(&v, BgpPeerSpec::KBGP_ONLY)?;
            Resource::BgpPeer(serde_yaml::from_value(v).map_err(|e| typed(&e.to_string()))?)
        }
        ("v1", "Pod") => {
            Resource::Pod(serde_yaml::from_value(v).map_err(|e| typed(&e.to_string()))?)
        }
        ("v1", "Namespace") => {
            Resource::Namespace(serde_yaml::from_value(v).map_err(|e| typed(&e.to_string()))?)
        }
        ("discovery.k8s.io/v1", "EndpointSlice") => {
            Resource::EndpointSlice(serde_yaml::from_value(v).map_err(|e| typed(&e.to_string()))?)
        }
        (KBGP_GROUP, "BGPAllowList") => {
            Resource::AllowList(serde_yaml::from_value(v).map_err(|e| typed(&e.to_string()))?)
        }
        (CALICO_GROUP | KBGP_GROUP, "BGPFilter") => {
            if api_version == CALICO_GROUP {
                for list in ["exportV4", "importV4", "exportV6", "importV6"] {
                    let rules = v
                        .get("spec")
                        .and_then(|s| s.get(list))
                        .and_then(|r| r.as_sequence())
                        .cloned()
                        .unwrap_or_default();
                    for (i, r) in rules.iter().enumerate() {
                        let keys = r
                            .as_mapping()
                            .map(|m| {
                                m.keys()
                                    .filter_map(|k| k.as_str().map(str::to_owned))
                                    .collect::<Vec<_>>()
                            })
                            .unwrap_or_default();
                        if let Some(f) = keys
                            .iter()
                            .find(|k| FilterRuleSpec::KBGP_ONLY.contains(&k.as_str()))
                        {
                            return Err(typed(&format!(
                                "spec.{list}[{i}].{f} is a kbgp field, not part of {CALICO_GROUP}; use apiVersion: {KBGP_GROUP}"
                            )));
                        }
                    }
                }
            }
            Resource::BgpFilter(serde_yaml::from_value(v).map_err(|e| typed(&e.to_string()))?)
        }
        _ => return Ok(Parsed::Ignored { api_version, kind }),
    };
    Ok(Parsed::Resource(Box::new(r)))
}
