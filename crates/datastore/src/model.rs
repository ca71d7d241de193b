//! The one configuration model: what a node should run, computed from a
//! [`ClusterState`] and the node's name. Calico's and kbgp's resources both
//! land here, so the speaker never sees where a setting came from.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use bgp_fsm::RemoteAs;
use bgp_wire::LargeCommunity;
use ipnet::IpNet;

use crate::resources::{AsValue, BgpConfigurationSpec, BgpPeer, ClusterState, Node, SecretRef};
use crate::selector::Selector;
use crate::ConfigError;

/// Calico's default AS when nothing sets one.
pub const DEFAULT_ASN: u32 = 64512;
pub const DEFAULT_HOLD: u16 = 90;

/// Settings of the whole speaker on this node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GlobalCfg {
    pub node: String,
    pub asn: u32,
    pub router_id: Ipv4Addr,
    pub listen_port: u16,
    /// Listen only on this address (`bindMode: NodeIP`), else on all.
    pub bind: Option<IpAddr>,
    pub hold_time: u16,
    pub log_severity: String,
    pub node_addresses: Vec<IpAddr>,
    /// Route reflector cluster id: this node reflects routes (RFC 4456).
    pub cluster_id: Option<Ipv4Addr>,
    /// Install best paths in the kernel.
    pub program_kernel_routes: bool,
    pub kernel_route_table: u32,
    pub max_paths: u32,
    pub always_compare_med: bool,
    /// Interfaces whose addresses this node originates (read by the speaker).
    pub originate_interfaces: Vec<String>,
    pub keep_kernel_routes_on_shutdown: bool,
}

/// How a peer is reached.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum PeerTarget {
    Addr(IpAddr),
    /// BGP unnumbered: the neighbour's IPv6 link-local on this interface.
    Interface(String),
}

impl std::fmt::Display for PeerTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerTarget::Addr(a) => write!(f, "{a}"),
            PeerTarget::Interface(i) => write!(f, "{i}"),
        }
    }
}

/// Where a peer came from, shown as PEER TYPE in `kbgp status` (Calico's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum PeerType {
    NodeMesh,
    Global,
    NodeSpecific,
    /// A pod on this node chosen by a pod selector (a network function).
    Pod,
}

/// One prefix range of a namespace's BGPAllowList.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AllowRule {
    pub cidr: IpNet,
    pub ge: u8,
    pub le: u8,
}

/// What a pod peer may announce: its namespace's allow list, never the admin's deny list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PodPeer {
    pub namespace: String,
    pub name: String,
    pub allow: Vec<AllowRule>,
    /// (prefix, what it is): the cluster's own addresses and configured prefixes.
    pub deny: std::sync::Arc<Vec<(IpNet, String)>>,
}

impl PodPeer {
    /// Accept a prefix from this pod, or say why not.
    pub fn check(&self, prefix: &IpNet) -> Result<(), String> {
        for (d, what) in self.deny.iter() {
            let hit = if d.prefix_len() == 0 {
                d == prefix
            } else {
                d.contains(prefix)
            };
            if hit {
                return Err(format!("denied by the admin: {what} {d}"));
            }
        }
        let l = prefix.prefix_len();
        if self
            .allow
            .iter()
            .any(|a| a.cidr.contains(prefix) && a.ge <= l && l <= a.le)
        {
            Ok(())
        } else {
            Err(format!(
                "not in a BGPAllowList of namespace {}",
                self.namespace
            ))
        }
    }
}

impl PeerType {
    pub fn label(self) -> &'static str {
        match self {
            PeerType::NodeMesh => "node-to-node mesh",
            PeerType::Global => "global",
            PeerType::NodeSpecific => "node specific",
            PeerType::Pod => "pod",
        }
    }
}

/// One peer this node should have.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeerCfg {
    pub target: PeerTarget,
    pub port: u16,
    pub remote_as: RemoteAs,
    pub peer_type: PeerType,
    /// The resource that asked for it, e.g. `BGPPeer/global-peer`.
    pub source: String,
    pub source_address: Option<IpAddr>,
    pub passive: bool,
    pub hold_time: u16,
    /// TTL for outgoing packets: 1 for directly connected eBGP, more for multihop.
    pub ttl: Option<u8>,
    /// GTSM (RFC 5082) hop count.
    pub ttl_security: Option<u8>,
    pub password: Option<String>,
    pub keep_original_next_hop: bool,
    pub max_restart_time: Option<u32>,
    /// A route reflector client of this node (only when this node has a cluster id).
    pub rr_client: bool,
    /// BGPFilters in the order the BGPPeer names them.
    pub filters: Vec<std::sync::Arc<bgp_policy::Filter>>,
    pub max_prefix: Option<bgp_policy::MaxPrefix>,
    /// Unnumbered peers: router advertisement interval in seconds.
    pub ra_interval: u32,
    /// Set for pod peers: the hijack protection that applies to their routes.
    pub pod: Option<std::sync::Arc<PodPeer>>,
    /// Routes from this (eBGP) peer may go to other eBGP peers.
    pub transit: bool,
}

impl PeerCfg {
    /// The key peers are known by: the address or the interface name.
    pub fn key(&self) -> String {
        self.target.to_string()
    }
}

/// A prefix this node originates, with the communities policy assigns it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Origination {
    pub prefix: IpNet,
    pub communities: Vec<u32>,
    pub large_communities: Vec<LargeCommunity>,
    /// Why: `pod CIDR`, `service cluster IPs`, ...
    pub reason: String,
    /// Install a blackhole route for it (this node's pod blocks, as Calico does).
    pub blackhole: bool,
}

/// Everything this node should run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Desired {
    pub global: GlobalCfg,
    pub peers: BTreeMap<String, PeerCfg>,
    pub originate: BTreeMap<IpNet, Origination>,
}

/// Parse a Go-style duration: `90s`, `2m`, `1h30m`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<u32, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u32>() {
        return Ok(n);
    }
    let mut total = 0u64;
    let mut num = String::new();
    let bad = || format!("invalid duration {s:?} (use e.g. 90s, 2m, 1h30m)");
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().map_err(|_| bad())?;
        num.clear();
        total += match c {
            'h' => n * 3600,
            'm' => n * 60,
            's' => n,
            _ => return Err(bad()),
        };
    }
    if !num.is_empty() {
        return Err(bad());
    }
    u32::try_from(total).map_err(|_| bad())
}

/// A community as written in BGPConfiguration: `65535:120` or `65535:300:100`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommunityValue {
    Standard(u32),
    Large(LargeCommunity),
}

pub fn parse_community(s: &str) -> Result<CommunityValue, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let bad =
        || format!("invalid community {s:?}: want AA:NN (16-bit parts) or AA:NN:MM (32-bit parts)");
    match parts.as_slice() {
        [a, b] => {
            let a: u16 = a.parse().map_err(|_| bad())?;
            let b: u16 = b.parse().map_err(|_| bad())?;
            Ok(CommunityValue::Standard(((a as u32) << 16) | b as u32))
        }
        [a, b, c] => Ok(CommunityValue::Large(LargeCommunity {
            global: a.parse().map_err(|_| bad())?,
            local1: b.parse().map_err(|_| bad())?,
            local2: c.parse().map_err(|_| bad())?,
        })),
        _ => Err(bad()),
    }
}

fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The node's BGP settings: Calico's v3 Node of the same name, else the v1 Node's `spec.bgp`.
fn node_bgp<'a>(state: &'a ClusterState, n: &'a Node) -> Option<&'a crate::resources::NodeBgp> {
    state
        .calico_nodes
        .get(&n.metadata.name)
        .and_then(|c| c.spec.bgp.as_ref())
        .or(n.spec.bgp.as_ref())
}

fn cluster_id(state: &ClusterState, n: &Node) -> Result<Option<Ipv4Addr>, ConfigError> {
    match node_bgp(state, n).and_then(|b| b.route_reflector_cluster_id.as_deref()) {
        None | Some("") => Ok(None),
        Some(c) => c.parse().map(Some).map_err(|_| {
            invalid(
                "Node",
                &n.metadata.name,
                format!("routeReflectorClusterID {c:?} is not an IPv4 address"),
            )
        }),
    }
}

fn node_asn(n: &Node, global: u32) -> u32 {
    n.spec
        .bgp
        .as_ref()
        .and_then(|b| b.as_number)
        .or_else(|| {
            n.metadata
                .annotations
                .get("projectcalico.org/ASNumber")
                .and_then(|a| a.parse().ok())
        })
        .unwrap_or(global)
}

/// The node's addresses: Calico's spec.bgp addresses, then InternalIPs.
pub fn node_addresses(n: &Node) -> Vec<IpAddr> {
    let mut v = Vec::new();
    if let Some(b) = &n.spec.bgp {
        for a in [&b.ipv4_address, &b.ipv6_address].into_iter().flatten() {
            if let Some(ip) = a.split('/').next().and_then(|x| x.parse().ok()) {
                v.push(ip);
            }
        }
    }
    for a in n.status.addresses.iter().filter(|a| a.kind == "InternalIP") {
        if let Ok(ip) = a.address.parse::<IpAddr>() {
            if !v.contains(&ip) {
                v.push(ip);
            }
        }
    }
    v
}

/// Split Calico's `peerIP`: `192.0.2.1`, `192.0.2.1:179`, `2001:db8::1`, `[2001:db8::1]:179`.
fn parse_peer_ip(s: &str) -> Result<(IpAddr, Option<u16>), String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok((ip, None));
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Ok((sa.ip(), Some(sa.port())));
    }
    Err(format!("peerIP {s:?} is not an address or address:port"))
}

struct Ctx<'a> {
    state: &'a ClusterState,
    /// The admin deny list for pod peers, computed once per configuration.
    pod_deny: std::sync::Arc<Vec<(IpNet, String)>>,
    /// Calico's localWorkloadPeeringIPV4/IPV6: the stable address pods peer with.
    workload_peering: (Option<IpAddr>, Option<IpAddr>),
}

impl Ctx<'_> {
    fn secret(&self, r: &SecretRef) -> Result<String, String> {
        let name = &r.secret_key_ref.name;
        let key = &r.secret_key_ref.key;
        let s = self
            .state
            .secrets
            .values()
            .find(|s| &s.metadata.name == name)
            .ok_or_else(|| format!("secret {name:?} not found"))?;
        if let Some(v) = s.string_data.get(key) {
            return Ok(v.clone());
        }
        let v = s
            .data
            .get(key)
            .ok_or_else(|| format!("secret {name:?} has no key {key:?}"))?;
        let raw =
            b64_decode(v).ok_or_else(|| format!("secret {name:?} key {key:?} is not base64"))?;
        String::from_utf8(raw).map_err(|_| format!("secret {name:?} key {key:?} is not UTF-8"))
    }
}

fn invalid(kind: &str, name: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        kind: kind.into(),
        name: name.into(),
        msg: msg.into(),
    }
}

/// Work out what `node_name` should run.
pub fn desired(state: &ClusterState, node_name: &str) -> Result<Desired, ConfigError> {
    let default_spec = BgpConfigurationSpec::default();
    let gspec = state
        .bgp_configurations
        .get("default")
        .map(|c| &c.spec)
        .unwrap_or(&default_spec);
    let parse_opt = |v: &Option<String>, what: &str| -> Result<Option<IpAddr>, ConfigError> {
        match v {
            None => Ok(None),
            Some(a) => a.parse().map(Some).map_err(|_| {
                invalid(
                    "BGPConfiguration",
                    "default",
                    format!("{what} {a:?} is not an address"),
                )
            }),
        }
    };
    let ctx = Ctx {
        state,
        pod_deny: std::sync::Arc::new(pod_deny_list(state, gspec)?),
        workload_peering: (
            parse_opt(
                &gspec.local_workload_peering_ipv4,
                "localWorkloadPeeringIPV4",
            )?,
            parse_opt(
                &gspec.local_workload_peering_ipv6,
                "localWorkloadPeeringIPV6",
            )?,
        ),
    };
    let node = state
        .nodes
        .values()
        .find(|n| n.metadata.name == node_name)
        .ok_or_else(|| invalid("Node", node_name, "this node (--node) has no Node resource"))?;
    let nspec = state
        .bgp_configurations
        .get(&format!("node.{node_name}"))
        .map(|c| &c.spec);
    let cfg_err = |m: String| invalid("BGPConfiguration", "default", m);

    let global_asn = gspec.as_number.unwrap_or(DEFAULT_ASN);
    let asn = node_asn(node, global_asn);
    let addrs = node_addresses(node);
    let router_id = match gspec.router_id.as_deref() {
        Some(r) => r
            .parse()
            .map_err(|_| cfg_err(format!("routerID {r:?} is not an IPv4 address")))?,
        None => addrs
            .iter()
            .find_map(|a| match a {
                IpAddr::V4(v) => Some(*v),
                _ => None,
            })
            .ok_or_else(|| {
                invalid(
                    "Node",
                    node_name,
                    "no IPv4 InternalIP to use as router id (set routerID)",
                )
            })?,
    };
    let listen_port = nspec
        .and_then(|s| s.listen_port)
        .or(gspec.listen_port)
        .unwrap_or(179);
    let bind_mode = nspec
        .and_then(|s| s.bind_mode.clone())
        .or(gspec.bind_mode.clone())
        .unwrap_or_else(|| "None".into());
    let bind = match bind_mode.as_str() {
        "None" => None,
        "NodeIP" => Some(IpAddr::V4(router_id)),
        other => return Err(cfg_err(format!("bindMode {other:?}: want None or NodeIP"))),
    };
    let hold_time = match &gspec.hold_time {
        Some(h) => {
            let h = parse_duration(h).map_err(cfg_err)?;
            if h != 0 && h < 3 || h > 65535 {
                return Err(cfg_err(format!(
                    "holdTime {h}s: must be 0 or 3..65535 seconds"
                )));
            }
            h as u16
        }
        None => DEFAULT_HOLD,
    };
    let log_severity = nspec
        .and_then(|s| s.log_severity_screen.clone())
        .or(gspec.log_severity_screen.clone())
        .unwrap_or_else(|| "Info".into());
    if let Some(t) = &gspec.node_mesh_max_restart_time {
        parse_duration(t).map_err(cfg_err)?;
    }
    let max_paths = gspec.max_paths.unwrap_or(8);
    if !(1..=64).contains(&max_paths) {
        return Err(cfg_err(format!(
            "maxPaths {max_paths}: must be 1..64 (1 disables ECMP)"
        )));
    }
    let my_cluster = cluster_id(state, node)?;
    let global = GlobalCfg {
        cluster_id: my_cluster,
        program_kernel_routes: gspec.program_kernel_routes.unwrap_or(true),
        kernel_route_table: gspec.kernel_route_table.unwrap_or(254),
        max_paths,
        always_compare_med: gspec.always_compare_med.unwrap_or(false),
        originate_interfaces: gspec
            .originate_interfaces
            .iter()
            .chain(
                nspec
                    .map(|n| n.originate_interfaces.iter())
                    .into_iter()
                    .flatten(),
            )
            .cloned()
            .collect(),
        keep_kernel_routes_on_shutdown: gspec.keep_kernel_routes_on_shutdown.unwrap_or(true),
        node: node_name.to_string(),
        asn,
        router_id,
        listen_port,
        bind,
        hold_time,
        log_severity,
        node_addresses: addrs.clone(),
    };

    // ---- peers ----
    let mut peers: BTreeMap<String, PeerCfg> = BTreeMap::new();
    let base = |target: PeerTarget,
                remote_as: RemoteAs,
                peer_type: PeerType,
                source: String,
                port: u16| PeerCfg {
        target,
        port,
        remote_as,
        peer_type,
        source,
        source_address: None,
        passive: false,
        hold_time,
        ttl: None,
        ttl_security: None,
        password: None,
        keep_original_next_hop: false,
        max_restart_time: None,
        rr_client: false,
        filters: vec![],
        max_prefix: None,
        ra_interval: 3,
        pod: None,
        transit: false,
    };
    if gspec.node_to_node_mesh_enabled.unwrap_or(true) {
        let password = match &gspec.node_mesh_password {
            Some(r) => Some(ctx.secret(r).map_err(cfg_err)?),
            None => None,
        };
        let restart = match &gspec.node_mesh_max_restart_time {
            Some(t) => Some(parse_duration(t).map_err(cfg_err)?),
            None => None,
        };
        for other in state
            .nodes
            .values()
            .filter(|n| n.metadata.name != node_name)
        {
            let other_port = state
                .bgp_configurations
                .get(&format!("node.{}", other.metadata.name))
                .and_then(|c| c.spec.listen_port)
                .or(gspec.listen_port)
                .unwrap_or(179);
            for ip in node_addresses(other) {
                if addrs.iter().any(|a| a.is_ipv4() == ip.is_ipv4()) {
                    let mut p = base(
                        PeerTarget::Addr(ip),
                        RemoteAs::Number(node_asn(other, global_asn)),
                        PeerType::NodeMesh,
                        format!("Node/{}", other.metadata.name),
                        other_port,
                    );
                    p.password = password.clone();
                    p.max_restart_time = restart;
                    peers.insert(p.key(), p);
                }
            }
        }
    }
    for (name, peer) in &state.bgp_peers {
        for p in peers_of(&ctx, peer, node, name, &global, hold_time, global_asn)? {
            // An explicit BGPPeer wins over the mesh for the same address.
            peers.insert(p.key(), p);
        }
    }
    peers.retain(|_, p| !matches!(p.target, PeerTarget::Addr(a) if addrs.contains(&a)));
    // Calico's route reflector model: with a cluster id, iBGP peers are clients
    // unless they are nodes with the same cluster id.
    if let Some(mine) = my_cluster {
        for p in peers.values_mut() {
            let ibgp = match p.remote_as {
                RemoteAs::Number(n) => n == asn,
                RemoteAs::Internal => true,
                RemoteAs::External => false,
            };
            let theirs = match p.target {
                PeerTarget::Addr(a) => state
                    .nodes
                    .values()
                    .find(|n| node_addresses(n).contains(&a))
                    .map(|n| cluster_id(state, n))
                    .transpose()?
                    .flatten(),
                PeerTarget::Interface(_) => None,
            };
            p.rr_client = ibgp && theirs != Some(mine);
        }
    }

    // ---- originated prefixes ----
    let named: BTreeMap<&str, &str> = gspec
        .communities
        .iter()
        .map(|c| (c.name.as_str(), c.value.as_str()))
        .collect();
    let mut rules: Vec<(IpNet, Vec<CommunityValue>)> = Vec::new();
    for pa in &gspec.prefix_advertisements {
        let cidr: IpNet = pa.cidr.parse().map_err(|_| {
            cfg_err(format!(
                "prefixAdvertisements cidr {:?} is not a CIDR",
                pa.cidr
            ))
        })?;
        let mut vals = Vec::new();
        for c in &pa.communities {
            let text = if c.contains(':') {
                c.as_str()
            } else {
                named.get(c.as_str()).copied().ok_or_else(|| {
                    cfg_err(format!(
                        "prefixAdvertisements: community {c:?} is not defined in communities"
                    ))
                })?
            };
            vals.push(parse_community(text).map_err(cfg_err)?);
        }
        rules.push((cidr, vals));
    }
    for c in &gspec.communities {
        parse_community(&c.value).map_err(|e| cfg_err(format!("communities {:?}: {e}", c.name)))?;
    }
    let mut originate = BTreeMap::new();
    let mut add = |prefix: IpNet, reason: &str| {
        let prefix = prefix.trunc();
        let mut o = Origination {
            prefix,
            communities: vec![],
            large_communities: vec![],
            reason: reason.to_string(),
            blackhole: reason == "pod CIDR",
        };
        for (cidr, vals) in &rules {
            if cidr.contains(&prefix) {
                for v in vals {
                    match v {
                        CommunityValue::Standard(c) if !o.communities.contains(c) => {
                            o.communities.push(*c)
                        }
                        CommunityValue::Large(l) if !o.large_communities.contains(l) => {
                            o.large_communities.push(*l)
                        }
                        _ => {}
                    }
                }
            }
        }
        originate.entry(prefix).or_insert(o);
    };
    let mut cidrs: Vec<&String> = node.spec.pod_cidrs.iter().collect();
    if let Some(c) = &node.spec.pod_cidr {
        cidrs.push(c);
    }
    for c in cidrs {
        let p: IpNet = c
            .parse()
            .map_err(|_| invalid("Node", node_name, format!("podCIDR {c:?} is not a CIDR")))?;
        add(p, "pod CIDR");
    }
    for c in gspec
        .prefixes
        .iter()
        .chain(nspec.map(|n| n.prefixes.iter()).into_iter().flatten())
    {
        let p: IpNet = c
            .parse()
            .map_err(|_| cfg_err(format!("prefixes: {c:?} is not a CIDR")))?;
        add(p, "configured prefix");
    }
    let parse_ranges = |list: &[crate::resources::CidrEntry], reason: &str| {
        list.iter()
            .map(|e| {
                e.cidr
                    .parse::<IpNet>()
                    .map_err(|_| cfg_err(format!("{reason}: {:?} is not a CIDR", e.cidr)))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let ranges = ServiceRanges {
        cluster: parse_ranges(&gspec.service_cluster_ips, "service cluster IPs")?,
        external: parse_ranges(&gspec.service_external_ips, "service external IPs")?,
        load_balancer: parse_ranges(
            &gspec.service_load_balancer_ips,
            "service load balancer IPs",
        )?,
    };
    for (list, reason) in [
        (&ranges.cluster, "service cluster IPs"),
        (&ranges.external, "service external IPs"),
        (&ranges.load_balancer, "service load balancer IPs"),
    ] {
        for p in list {
            add(*p, reason);
        }
    }
    for (prefix, reason) in service_addresses(state, gspec, &ranges, node_name) {
        add(prefix, &reason);
    }
    Ok(Desired {
        global,
        peers,
        originate,
    })
}

/// BGPConfiguration's service ranges, parsed.
struct ServiceRanges {
    cluster: Vec<IpNet>,
    external: Vec<IpNet>,
    load_balancer: Vec<IpNet>,
}

/// Per-Service addresses, by Calico's and MetalLB's rules: an external IP or a
/// LoadBalancer ingress IP inside the configured range of its kind
/// (`serviceExternalIPs`, `serviceLoadBalancerIPs`) is advertised as a /32
/// (/128); with `externalTrafficPolicy: Local` only by nodes that have a
/// ready endpoint of the Service (EndpointSlices), and then its cluster IPs
/// inside `serviceClusterIPs` too; with `Cluster` (the default) by every node.
/// LoadBalancer IPs of a Service with a `loadBalancerClass` are advertised only
/// when BGPConfiguration's `loadBalancerClass` names that class (and then only
/// those). An IP outside every configured range is not advertised: the admin
/// decides which addresses Services may claim.
fn service_addresses(
    state: &ClusterState,
    g: &BgpConfigurationSpec,
    ranges: &ServiceRanges,
    node_name: &str,
) -> Vec<(IpNet, String)> {
    let ServiceRanges {
        cluster,
        external,
        load_balancer: lb,
    } = ranges;
    let inside = |ip: &IpAddr, rs: &[IpNet]| rs.iter().any(|r| r.contains(ip));
    // Services with a ready endpoint on this node.
    let local_ready: std::collections::BTreeSet<String> = state
        .endpoint_slices
        .values()
        .filter(|s| {
            s.endpoints.iter().any(|e| {
                e.node_name.as_deref() == Some(node_name) && e.conditions.ready != Some(false)
            })
        })
        .filter_map(|s| s.service_key())
        .collect();
    let mut out = Vec::new();
    for svc in state.services.values() {
        let key = svc.metadata.ns_key();
        let local = svc.spec.external_traffic_policy.as_deref() == Some("Local");
        if local && !local_ready.contains(&key) {
            continue;
        }
        let parse = |s: &String| s.parse::<IpAddr>().ok();
        for ip in svc.spec.external_ips.iter().filter_map(parse) {
            if inside(&ip, external) {
                out.push((IpNet::from(ip), format!("service {key} external IP")));
            } else {
                tracing::debug!(service = %key, %ip, "external IP outside serviceExternalIPs: not advertised");
            }
        }
        let class_ok = g.load_balancer_class == svc.spec.load_balancer_class;
        if class_ok {
            for ip in svc
                .status
                .load_balancer
                .ingress
                .iter()
                .filter_map(|i| i.ip.as_ref())
                .filter_map(parse)
            {
                if inside(&ip, lb) {
                    out.push((IpNet::from(ip), format!("service {key} LoadBalancer IP")));
                } else {
                    tracing::debug!(service = %key, %ip, "LoadBalancer IP outside serviceLoadBalancerIPs: not advertised");
                }
            }
        }
        if local {
            for ip in svc
                .spec
                .cluster_ips
                .iter()
                .chain(svc.spec.cluster_ip.iter())
                .filter_map(parse)
            {
                if inside(&ip, cluster) {
                    out.push((IpNet::from(ip), format!("service {key} cluster IP (Local)")));
                }
            }
        }
    }
    out
}

fn peers_of(
    ctx: &Ctx,
    peer: &BgpPeer,
    node: &Node,
    name: &str,
    global: &GlobalCfg,
    hold_time: u16,
    global_asn: u32,
) -> Result<Vec<PeerCfg>, ConfigError> {
    let s = &peer.spec;
    let err = |m: String| invalid("BGPPeer", name, m);
    // Does this peer apply to this node?
    let peer_type = match (&s.node, &s.node_selector) {
        (Some(n), _) if !n.is_empty() => {
            if n != &global.node {
                return Ok(vec![]);
            }
            PeerType::NodeSpecific
        }
        (_, Some(sel)) => {
            let sel = Selector::parse(sel).map_err(|e| err(format!("nodeSelector: {e}")))?;
            if !sel.matches(&node.metadata.labels) {
                return Ok(vec![]);
            }
            if matches!(sel, Selector::All) {
                PeerType::Global
            } else {
                PeerType::NodeSpecific
            }
        }
        _ => PeerType::Global,
    };
    let remote_as = match (&s.remote_as, s.as_number) {
        (Some(_), Some(_)) => return Err(err("set asNumber or remoteAs, not both".into())),
        (Some(AsValue::Number(n)), None) => Some(RemoteAs::Number(*n)),
        (None, Some(n)) => Some(RemoteAs::Number(n)),
        (Some(AsValue::Word(w)), None) => Some(match w.as_str() {
            "external" => RemoteAs::External,
            "internal" => RemoteAs::Internal,
            other => {
                return Err(err(format!(
                    "remoteAs {other:?}: want a number, external or internal"
                )))
            }
        }),
        (None, None) => None,
    };
    let hold = match &s.hold_time {
        Some(h) => parse_duration(h).map_err(err)? as u16,
        None => hold_time,
    };
    let source_address = match &s.source_address {
        None => None,
        Some(v) if v == "UseNodeIP" => Some(IpAddr::V4(global.router_id)),
        Some(v) if v == "None" => None,
        Some(v) => Some(v.parse().map_err(|_| {
            err(format!(
                "sourceAddress {v:?}: want UseNodeIP, None or an address"
            ))
        })?),
    };
    let password = match &s.password {
        Some(r) => Some(ctx.secret(r).map_err(err)?),
        None => None,
    };
    let max_restart_time = match &s.max_restart_time {
        Some(t) => Some(parse_duration(t).map_err(err)?),
        None => None,
    };
    let mut filters = Vec::new();
    for f in &s.filters {
        let res = ctx
            .state
            .bgp_filters
            .get(f)
            .ok_or_else(|| err(format!("filters: BGPFilter {f:?} not found")))?;
        filters.push(std::sync::Arc::new(
            filter_of(res).map_err(|e| invalid("BGPFilter", f, e))?,
        ));
    }
    let max_prefix = match s.max_prefixes {
        None => None,
        Some(limit) => Some(bgp_policy::MaxPrefix {
            limit,
            warning_percent: s.max_prefixes_warning_percent.unwrap_or(80).min(100),
            stop: match s.max_prefixes_action.as_deref().unwrap_or("Stop") {
                "Stop" => true,
                "Log" => false,
                other => {
                    return Err(err(format!(
                        "maxPrefixesAction {other:?}: want Stop or Log"
                    )))
                }
            },
        }),
    };
    let ra_interval = match &s.router_advertisement_interval {
        Some(t) => parse_duration(t).map_err(err)?.max(1),
        None => 3,
    };
    let make = |target: PeerTarget, remote_as: RemoteAs, port: u16| PeerCfg {
        target,
        port,
        remote_as,
        peer_type,
        source: format!("BGPPeer/{name}"),
        source_address,
        passive: s.passive.unwrap_or(false),
        hold_time: hold,
        ttl: s.ebgp_multihop,
        ttl_security: s.ttl_security,
        password: password.clone(),
        keep_original_next_hop: s.keep_original_next_hop.unwrap_or(false),
        max_restart_time,
        rr_client: false,
        filters: filters.clone(),
        max_prefix,
        ra_interval,
        pod: None,
        transit: s.transit.unwrap_or(false),
    };
    let mut out = Vec::new();
    let pod_selector = s
        .pod_selector
        .as_ref()
        .or(s.local_workload_selector.as_ref());
    let targets = [
        s.peer_ip.is_some(),
        s.interface.is_some(),
        s.peer_selector.is_some(),
        pod_selector.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if targets != 1 {
        return Err(err(
            "set exactly one of peerIP, interface, peerSelector or podSelector (localWorkloadSelector)".into()
        ));
    }
    if let Some(sel) = pod_selector {
        let sel = Selector::parse(sel).map_err(|e| err(format!("podSelector: {e}")))?;
        let ns_sel = match &s.namespace_selector {
            Some(n) => {
                Some(Selector::parse(n).map_err(|e| err(format!("namespaceSelector: {e}")))?)
            }
            None => None,
        };
        for pod in ctx.state.pods.values() {
            let m = &pod.metadata;
            let ns = m.namespace.clone().unwrap_or_else(|| "default".into());
            let running =
                pod.status.phase.as_deref() == Some("Running") && m.deletion_timestamp.is_none();
            if pod.spec.node_name.as_deref() != Some(global.node.as_str())
                || !running
                || !sel.matches(&m.labels)
            {
                continue;
            }
            if let Some(nsel) = &ns_sel {
                // Kubernetes labels every namespace with its own name.
                let mut labels = ctx
                    .state
                    .namespaces
                    .get(&ns)
                    .map(|n| n.metadata.labels.clone())
                    .unwrap_or_default();
                labels.insert("kubernetes.io/metadata.name".into(), ns.clone());
                if !nsel.matches(&labels) {
                    continue;
                }
            }
            let ra = match m.annotations.get("kbgp.io/asn") {
                Some(a) => RemoteAs::Number(a.parse().map_err(|_| {
                    invalid(
                        "Pod",
                        &format!("{ns}/{}", m.name),
                        format!("annotation kbgp.io/asn {a:?} is not an AS number"),
                    )
                })?),
                None => remote_as.unwrap_or(RemoteAs::External),
            };
            let mut allow = Vec::new();
            for al in ctx
                .state
                .allow_lists
                .values()
                .filter(|a| a.metadata.namespace() == ns)
            {
                for (i, p) in al.spec.prefixes.iter().enumerate() {
                    let at = || format!("{ns}/{} prefixes[{i}]", al.metadata.name);
                    let cidr: IpNet = p.cidr.parse().map_err(|_| {
                        invalid("BGPAllowList", &at(), format!("{:?} is not a CIDR", p.cidr))
                    })?;
                    let max = if cidr.addr().is_ipv4() { 32 } else { 128 };
                    let ge = p.ge.unwrap_or(cidr.prefix_len());
                    let le = p.le.unwrap_or(cidr.prefix_len());
                    if ge < cidr.prefix_len() || le > max || ge > le {
                        return Err(invalid(
                            "BGPAllowList",
                            &at(),
                            format!("want {} <= ge <= le <= {max}", cidr.prefix_len()),
                        ));
                    }
                    allow.push(AllowRule { cidr, ge, le });
                }
            }
            let info = std::sync::Arc::new(PodPeer {
                namespace: ns.clone(),
                name: m.name.clone(),
                allow,
                deny: ctx.pod_deny.clone(),
            });
            let mut ips: Vec<IpAddr> = pod
                .status
                .pod_ips
                .iter()
                .filter_map(|p| p.ip.parse().ok())
                .collect();
            if ips.is_empty() {
                ips.extend(
                    pod.status
                        .pod_ip
                        .as_deref()
                        .and_then(|p| p.parse::<IpAddr>().ok()),
                );
            }
            for ip in ips {
                let mut p = make(PeerTarget::Addr(ip), ra, s.port.unwrap_or(179));
                p.peer_type = PeerType::Pod;
                p.source = format!("BGPPeer/{name} Pod/{ns}/{}", m.name);
                // Pods peer with the stable workload peering address, multihop.
                p.source_address = if ip.is_ipv4() {
                    ctx.workload_peering.0
                } else {
                    ctx.workload_peering.1
                }
                .or(p.source_address);
                p.ttl = Some(s.ebgp_multihop.unwrap_or(255));
                p.pod = Some(info.clone());
                out.push(p);
            }
        }
    } else if let Some(ip) = &s.peer_ip {
        let (addr, port) = parse_peer_ip(ip).map_err(err)?;
        let ra = remote_as
            .ok_or_else(|| err("asNumber (or remoteAs) is required with peerIP".into()))?;
        out.push(make(
            PeerTarget::Addr(addr),
            ra,
            s.port.or(port).unwrap_or(179),
        ));
    } else if let Some(ifname) = &s.interface {
        let ra = remote_as.unwrap_or(RemoteAs::External);
        out.push(make(
            PeerTarget::Interface(ifname.clone()),
            ra,
            s.port.unwrap_or(179),
        ));
    } else if let Some(sel) = &s.peer_selector {
        let sel = Selector::parse(sel).map_err(|e| err(format!("peerSelector: {e}")))?;
        for other in ctx
            .state
            .nodes
            .values()
            .filter(|n| n.metadata.name != global.node && sel.matches(&n.metadata.labels))
        {
            let port = ctx
                .state
                .bgp_configurations
                .get(&format!("node.{}", other.metadata.name))
                .and_then(|c| c.spec.listen_port)
                .or_else(|| {
                    ctx.state
                        .bgp_configurations
                        .get("default")
                        .and_then(|c| c.spec.listen_port)
                })
                .unwrap_or(179);
            let ra = remote_as.unwrap_or(RemoteAs::Number(node_asn(other, global_asn)));
            for ip in node_addresses(other) {
                out.push(make(PeerTarget::Addr(ip), ra, s.port.unwrap_or(port)));
            }
        }
    }
    Ok(out)
}

/// What pods may never announce: the cluster's pod CIDRs, service ranges and
/// service IPs, node addresses, the default routes, and configured prefixes.
fn pod_deny_list(
    state: &ClusterState,
    g: &BgpConfigurationSpec,
) -> Result<Vec<(IpNet, String)>, ConfigError> {
    let mut deny: Vec<(IpNet, String)> = vec![
        (
            "0.0.0.0/0".parse().expect("literal"),
            "the default route".into(),
        ),
        ("::/0".parse().expect("literal"), "the default route".into()),
    ];
    for n in state.nodes.values() {
        let name = &n.metadata.name;
        for c in n.spec.pod_cidrs.iter().chain(n.spec.pod_cidr.iter()) {
            if let Ok(p) = c.parse::<IpNet>() {
                deny.push((p.trunc(), format!("pod CIDR of node {name}")));
            }
        }
        for a in node_addresses(n) {
            deny.push((IpNet::from(a), format!("address of node {name}")));
        }
    }
    for (list, what) in [
        (&g.service_cluster_ips, "service cluster IPs"),
        (&g.service_external_ips, "service external IPs"),
        (&g.service_load_balancer_ips, "service load balancer IPs"),
    ] {
        for e in list {
            if let Ok(p) = e.cidr.parse::<IpNet>() {
                deny.push((p.trunc(), what.to_string()));
            }
        }
    }
    for (k, svc) in &state.services {
        let ips = svc
            .spec
            .cluster_ips
            .iter()
            .chain(svc.spec.cluster_ip.iter())
            .chain(svc.spec.external_ips.iter())
            .chain(
                svc.status
                    .load_balancer
                    .ingress
                    .iter()
                    .filter_map(|i| i.ip.as_ref()),
            );
        for ip in ips.filter_map(|i| i.parse::<IpAddr>().ok()) {
            deny.push((IpNet::from(ip), format!("IP of service {k}")));
        }
    }
    for c in &g.pod_peer_deny_prefixes {
        let p: IpNet = c.parse().map_err(|_| {
            invalid(
                "BGPConfiguration",
                "default",
                format!("podPeerDenyPrefixes: {c:?} is not a CIDR"),
            )
        })?;
        deny.push((p.trunc(), "the admin's deny list".into()));
    }
    Ok(deny)
}

/// A BGPFilter resource as policy.
fn filter_of(f: &crate::resources::BgpFilter) -> Result<bgp_policy::Filter, String> {
    use bgp_policy::{Action, MatchOp, Rule, Set};
    let rules =
        |list: &[crate::resources::FilterRuleSpec], name: &str| -> Result<Vec<Rule>, String> {
            list.iter()
                .enumerate()
                .map(|(i, r)| {
                    let at = format!("{name}[{i}]");
                    let action = match r.action.as_str() {
                        "Accept" => Action::Accept,
                        "Reject" => Action::Reject,
                        a => return Err(format!("{at}.action {a:?}: want Accept or Reject")),
                    };
                    let cidr = match (&r.cidr, r.match_operator.as_deref()) {
                        (None, None) => None,
                        (Some(c), op) => {
                            let net: IpNet = c
                                .parse()
                                .map_err(|_| format!("{at}.cidr {c:?} is not a CIDR"))?;
                            let op = match op.unwrap_or("In") {
                                "Equal" => MatchOp::Equal,
                                "NotEqual" => MatchOp::NotEqual,
                                "In" => MatchOp::In,
                                "NotIn" => MatchOp::NotIn,
                                o => {
                                    return Err(format!(
                                    "{at}.matchOperator {o:?}: want Equal, NotEqual, In or NotIn"
                                ))
                                }
                            };
                            Some((op, net))
                        }
                        (None, Some(_)) => return Err(format!("{at}: matchOperator needs a cidr")),
                    };
                    if r.interface.is_some() {
                        return Err(format!(
                            "{at}.interface: matching on interface is not supported by kbgp"
                        ));
                    }
                    let mut communities = vec![];
                    let mut large = vec![];
                    for c in &r.communities {
                        match parse_community(c).map_err(|e| format!("{at}.communities: {e}"))? {
                            CommunityValue::Standard(v) => communities.push(v),
                            CommunityValue::Large(l) => large.push(l),
                        }
                    }
                    let mut set = Set {
                        local_pref: r.set_local_pref,
                        med: r.set_med,
                        ..Default::default()
                    };
                    for c in &r.add_communities {
                        match parse_community(c).map_err(|e| format!("{at}.addCommunities: {e}"))? {
                            CommunityValue::Standard(v) => set.add_communities.push(v),
                            CommunityValue::Large(l) => set.add_large_communities.push(l),
                        }
                    }
                    // The AS to prepend is filled in by the speaker (its own AS): 0 stands for it.
                    set.prepend = r.prepend_as.map(|n| (0, n as usize));
                    let prefix_length = r
                        .prefix_length
                        .as_ref()
                        .map(|p| (p.min.unwrap_or(0), p.max.unwrap_or(128)));
                    Ok(Rule {
                        action: Some(action),
                        cidr,
                        prefix_length,
                        communities,
                        large_communities: large,
                        as_path_contains: r.as_path_contains,
                        max_as_path_length: r.max_as_path_length.map(|m| m as usize),
                        set,
                    })
                })
                .collect()
        };
    let s = &f.spec;
    Ok(bgp_policy::Filter {
        name: f.metadata.name.clone(),
        import_v4: rules(&s.import_v4, "importV4")?,
        import_v6: rules(&s.import_v6, "importV6")?,
        export_v4: rules(&s.export_v4, "exportV4")?,
        export_v6: rules(&s.export_v6, "exportV6")?,
    })
}

#[cfg(test)]
mod tests;
