use super::*;
use crate::files::{load_dir, load_str, Loaded};

fn examples(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

fn from_str(text: &str) -> Result<ClusterState, crate::ConfigError> {
    let mut l = Loaded::default();
    load_str("test.yaml", text, &mut l)?;
    Ok(l.state)
}

#[test]
fn seed_000_loads_unchanged() {
    let l = load_dir(&examples("seed-000")).unwrap();
    let d = desired(&l.state, "rahu").unwrap();
    assert_eq!(d.global.asn, 64515);
    assert_eq!(
        d.global.router_id,
        "192.168.100.132".parse::<Ipv4Addr>().unwrap()
    );
    // Mesh off: only the route reflector.
    assert_eq!(d.peers.keys().collect::<Vec<_>>(), vec!["192.168.100.41"]);
    let p = &d.peers["192.168.100.41"];
    assert_eq!(p.remote_as, RemoteAs::Number(64515));
    assert_eq!(p.peer_type, PeerType::Global);
    assert_eq!(
        d.originate
            .keys()
            .map(|p| p.to_string())
            .collect::<Vec<_>>(),
        vec!["10.240.26.192/26"]
    );
}

#[test]
fn seed_002_loads_unchanged_with_communities() {
    let l = load_dir(&examples("seed-002")).unwrap();
    let d = desired(&l.state, "kube-controlplane-001").unwrap();
    assert_eq!(d.global.asn, 65535);
    assert_eq!(d.global.listen_port, 178);
    assert_eq!(d.global.bind, None);
    let mesh = &d.peers["172.21.1.18"];
    assert_eq!(
        (mesh.peer_type, mesh.port, mesh.max_restart_time),
        (PeerType::NodeMesh, 178, Some(120))
    );
    let tor = &d.peers["172.21.1.254"];
    assert_eq!((tor.peer_type, tor.port), (PeerType::Global, 179));
    let pod = &d.originate[&"192.168.170.0/24".parse().unwrap()];
    assert_eq!(pod.communities, vec![(65535 << 16) | 120]);
    assert_eq!(
        pod.large_communities,
        vec![LargeCommunity {
            global: 65535,
            local1: 300,
            local2: 100
        }]
    );
    let svc = &d.originate[&"192.16.0.0/12".parse().unwrap()];
    assert!(
        svc.communities.is_empty(),
        "192.16.0.0/12 is outside 192.168.0.0/16"
    );
    assert_eq!(svc.reason, "service cluster IPs");
}

#[test]
fn unknown_field_is_an_error_naming_it() {
    let e = from_str("apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: 192.0.2.1, asNumbr: 1}\n").unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("test.yaml, document 1")
            && msg.contains("asNumbr")
            && msg.contains("BGPPeer \"p\""),
        "{msg}"
    );
}

#[test]
fn kbgp_fields_under_calico_group_are_refused() {
    let e = from_str("apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: p}\nspec: {interface: eth0}\n").unwrap_err();
    assert!(
        e.to_string().contains("spec.interface is a kbgp field"),
        "{e}"
    );
    // The same under kbgp.io is fine.
    let s = from_str(
        "apiVersion: v1\nkind: Node\nmetadata: {name: host}\nstatus: {addresses: [{type: InternalIP, address: 192.0.2.2}]}\n---\n\
         apiVersion: kbgp.io/v1alpha1\nkind: BGPPeer\nmetadata: {name: tor}\nspec: {interface: eth0, remoteAs: external}\n",
    )
    .unwrap();
    let d = desired(&s, "host").unwrap();
    assert_eq!(d.peers["eth0"].target, PeerTarget::Interface("eth0".into()));
    assert_eq!(d.peers["eth0"].remote_as, RemoteAs::External);
}

#[test]
fn bad_values_are_clear_errors() {
    let node = "apiVersion: v1\nkind: Node\nmetadata: {name: n}\nstatus: {addresses: [{type: InternalIP, address: 192.0.2.2}]}\n---\n";
    for (doc, want) in [
        ("apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: nope, asNumber: 1}\n", "peerIP \"nope\""),
        ("apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: 192.0.2.9}\n", "asNumber"),
        ("apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\nspec: {bindMode: Sometimes}\n", "bindMode"),
        ("apiVersion: kbgp.io/v1alpha1\nkind: BGPConfiguration\nmetadata: {name: default}\nspec: {maxPaths: 65}\n", "maxPaths 65: must be 1..64"),
        ("apiVersion: kbgp.io/v1alpha1\nkind: BGPConfiguration\nmetadata: {name: default}\nspec: {maxPaths: 0}\n", "maxPaths 0"),
        (
            "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\nspec: {prefixAdvertisements: [{cidr: 10.0.0.0/8, communities: [nosuch]}]}\n",
            "\"nosuch\" is not defined",
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\nspec: {communities: [{name: c, value: '70000:1'}]}\n",
            "invalid community",
        ),
        ("apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: p}\nspec: {nodeSelector: 'zone = a', peerIP: 192.0.2.9, asNumber: 1}\n", "nodeSelector"),
    ] {
        let s = from_str(&format!("{node}{doc}")).unwrap();
        let e = desired(&s, "n").unwrap_err().to_string();
        assert!(e.contains(want), "{e} should mention {want}");
    }
    // Invalid YAML and a missing node.
    assert!(
        from_str("apiVersion: v1\nkind: Node\nmetadata: {name: [}\n")
            .unwrap_err()
            .to_string()
            .contains("invalid YAML")
    );
    let s = from_str(node).unwrap();
    assert!(desired(&s, "other")
        .unwrap_err()
        .to_string()
        .contains("no Node resource"));
    // Duplicates.
    assert!(from_str(&format!("{node}{node}"))
        .unwrap_err()
        .to_string()
        .contains("defined twice"));
}

#[test]
fn unknown_kinds_are_ignored() {
    let mut l = Loaded::default();
    load_str(
        "x.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n",
        &mut l,
    )
    .unwrap();
    assert_eq!(l.ignored, vec!["x.yaml: apps/v1/Deployment"]);
}

#[test]
fn selectors_node_specific_and_peer_selector() {
    let s = from_str(
        "apiVersion: v1\nkind: Node\nmetadata: {name: a, labels: {rack: r1}}\nstatus: {addresses: [{type: InternalIP, address: 192.0.2.1}]}\n---\n\
         apiVersion: v1\nkind: Node\nmetadata: {name: b, labels: {rack: r2, rr: 'true'}}\nstatus: {addresses: [{type: InternalIP, address: 192.0.2.2}]}\n---\n\
         apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\nspec: {nodeToNodeMeshEnabled: false, asNumber: 65000}\n---\n\
         apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: to-rr}\nspec: {nodeSelector: \"!has(rr)\", peerSelector: \"rr == 'true'\"}\n---\n\
         apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: r1-tor}\nspec: {nodeSelector: \"rack == 'r1'\", peerIP: '192.0.2.254:1179', asNumber: 65100}\n---\n\
         apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: only-b}\nspec: {node: b, peerIP: 192.0.2.253, asNumber: 65101}\n",
    )
    .unwrap();
    let a = desired(&s, "a").unwrap();
    assert_eq!(
        a.peers.keys().collect::<Vec<_>>(),
        vec!["192.0.2.2", "192.0.2.254"]
    );
    assert_eq!(a.peers["192.0.2.2"].remote_as, RemoteAs::Number(65000));
    assert_eq!(a.peers["192.0.2.254"].port, 1179);
    assert_eq!(a.peers["192.0.2.254"].peer_type, PeerType::NodeSpecific);
    let b = desired(&s, "b").unwrap();
    assert_eq!(b.peers.keys().collect::<Vec<_>>(), vec!["192.0.2.253"]);
}

#[test]
fn secrets_and_durations() {
    assert_eq!(parse_duration("120s"), Ok(120));
    assert_eq!(parse_duration("1h30m"), Ok(5400));
    assert_eq!(parse_duration("2m0s"), Ok(120));
    assert!(parse_duration("5x").is_err());
    assert_eq!(b64_decode("c2VjcmV0").unwrap(), b"secret");
    let s = from_str(
        "apiVersion: v1\nkind: Node\nmetadata: {name: n}\nstatus: {addresses: [{type: InternalIP, address: 192.0.2.2}]}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {name: bgp-secrets, namespace: calico-system}\ndata: {rr-password: c2VjcmV0}\n---\n\
         apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: 192.0.2.9, asNumber: 1, password: {secretKeyRef: {name: bgp-secrets, key: rr-password}}}\n",
    )
    .unwrap();
    assert_eq!(
        desired(&s, "n").unwrap().peers["192.0.2.9"]
            .password
            .as_deref(),
        Some("secret")
    );
}

#[test]
fn pod_cidr_singular_and_ipv6() {
    let s = from_str(
        "apiVersion: v1\nkind: Node\nmetadata: {name: n}\nspec: {podCIDR: 10.244.1.0/24}\nstatus: {addresses: [{type: InternalIP, address: 192.0.2.2}]}\n---\n\
         apiVersion: v1\nkind: Node\nmetadata: {name: m}\nspec: {podCIDRs: [10.244.2.0/24, 'fd00:10:244:2::/64']}\nstatus: {addresses: [{type: InternalIP, address: 192.0.2.3}]}\n",
    )
    .unwrap();
    assert_eq!(
        desired(&s, "n")
            .unwrap()
            .originate
            .keys()
            .map(|p| p.to_string())
            .collect::<Vec<_>>(),
        vec!["10.244.1.0/24"]
    );
    assert_eq!(desired(&s, "m").unwrap().originate.len(), 2);
}

const SERVICES_BASE: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 192.0.2.11}]}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
status: {addresses: [{type: InternalIP, address: 192.0.2.12}]}
---
apiVersion: kbgp.io/v1alpha1
kind: BGPConfiguration
metadata: {name: default}
spec:
  asNumber: 65010
  serviceClusterIPs: [{cidr: 198.18.0.0/24}]
  serviceExternalIPs: [{cidr: 198.18.1.0/24}]
  serviceLoadBalancerIPs: [{cidr: 198.18.2.0/24}]
  LBCLASS
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: LoadBalancer
  clusterIP: 198.18.0.10
  externalIPs: [198.18.1.10, 203.0.113.9]
  externalTrafficPolicy: POLICY
  SVCCLASS
status:
  loadBalancer: {ingress: [{ip: 198.18.2.10}, {ip: 198.18.9.9}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc12
  namespace: shop
  labels: {kubernetes.io/service-name: web}
endpoints:
- addresses: [10.0.0.5]
  nodeName: n1
  conditions: {ready: READY}
- addresses: [10.0.0.6]
  nodeName: n2
  conditions: {ready: false}
"#;

fn service_prefixes(
    policy: &str,
    ready: &str,
    lbclass: &str,
    svcclass: &str,
    node: &str,
) -> Vec<String> {
    let text = SERVICES_BASE
        .replace("POLICY", policy)
        .replace("READY", ready)
        .replace("LBCLASS", lbclass)
        .replace("SVCCLASS", svcclass);
    let st = from_str(&text).unwrap();
    desired(&st, node)
        .unwrap()
        .originate
        .values()
        .filter(|o| o.reason.starts_with("service shop/web"))
        .map(|o| o.prefix.to_string())
        .collect()
}

#[test]
fn service_ips_cluster_policy_every_node_inside_ranges_only() {
    for node in ["n1", "n2"] {
        // External and LB IPs inside their ranges, as /32; 203.0.113.9 and
        // 198.18.9.9 are outside every range; the cluster IP only for Local.
        assert_eq!(
            service_prefixes("Cluster", "true", "", "", node),
            vec!["198.18.1.10/32", "198.18.2.10/32"],
            "{node}"
        );
    }
}

#[test]
fn service_ips_local_policy_only_where_a_ready_endpoint_runs() {
    let with_cluster_ip = vec!["198.18.0.10/32", "198.18.1.10/32", "198.18.2.10/32"];
    assert_eq!(
        service_prefixes("Local", "true", "", "", "n1"),
        with_cluster_ip
    );
    // n2's endpoint is not ready; n1's becomes unready: nobody advertises.
    assert!(service_prefixes("Local", "true", "", "", "n2").is_empty());
    assert!(service_prefixes("Local", "false", "", "", "n1").is_empty());
    // Absent `ready` means ready.
    let text = SERVICES_BASE
        .replace("POLICY", "Local")
        .replace("conditions: {ready: READY}", "conditions: {}")
        .replace("LBCLASS", "")
        .replace("SVCCLASS", "");
    let st = from_str(&text).unwrap();
    assert_eq!(
        desired(&st, "n1").unwrap().originate.len(),
        3 + with_cluster_ip.len()
    );
}

#[test]
fn service_load_balancer_class_is_opt_in() {
    // A Service with a class is left to its own controller...
    assert_eq!(
        service_prefixes(
            "Cluster",
            "true",
            "",
            "loadBalancerClass: example.com/other",
            "n1"
        ),
        vec!["198.18.1.10/32"]
    );
    // ...unless BGPConfiguration names that class; then classless ones are not ours.
    assert_eq!(
        service_prefixes(
            "Cluster",
            "true",
            "loadBalancerClass: kbgp.io/bgp",
            "loadBalancerClass: kbgp.io/bgp",
            "n1"
        ),
        vec!["198.18.1.10/32", "198.18.2.10/32"]
    );
    assert_eq!(
        service_prefixes(
            "Cluster",
            "true",
            "loadBalancerClass: kbgp.io/bgp",
            "",
            "n1"
        ),
        vec!["198.18.1.10/32"]
    );
}
