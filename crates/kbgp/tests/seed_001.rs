//! Seed 001: pods as network functions. Two load-balancer "pods" (FRR in
//! their own namespaces, different ASNs) announce one VIP to their node
//! (kbgp, examples/seed-001) through the stable peering address; the node
//! installs an ECMP route and passes the VIP to the upstream router (FRR).

mod common;
use std::time::{Duration, Instant};

use common::*;

const PEERING: &str = "169.254.0.179";

/// A pod namespace wired to the node like a CNI does: a /32 on eth0, the
/// stable peering address as default gateway, a host route on the node.
fn pod(lab: &mut Lab, node: &str, name: &str, ip: &str) -> (String, String) {
    let ns = lab.ns(name);
    let node_if = format!("v{name}");
    lab.p2p(&ns, "eth0", node, &node_if);
    sh(&[
        "ip",
        "-n",
        &ns,
        "addr",
        "add",
        &format!("{ip}/32"),
        "dev",
        "eth0",
    ]);
    sh(&[
        "ip",
        "-n",
        &ns,
        "route",
        "add",
        &format!("{PEERING}/32"),
        "dev",
        "eth0",
    ]);
    sh(&[
        "ip", "-n", &ns, "route", "add", "default", "via", PEERING, "dev", "eth0", "onlink",
    ]);
    sh(&[
        "ip",
        "-n",
        node,
        "route",
        "add",
        &format!("{ip}/32"),
        "dev",
        &node_if,
    ]);
    sh(&[
        "ip",
        "-n",
        &ns,
        "addr",
        "add",
        "192.168.0.1/32",
        "dev",
        "lo",
    ]);
    (ns, node_if)
}

fn pod_frr(asn: u32, id: &str, extra: &str) -> String {
    format!(
        "frr defaults traditional\nhostname lb\nrouter bgp {asn}\n bgp router-id {id}\n no bgp ebgp-requires-policy\n \
         no bgp network import-check\n neighbor {PEERING} remote-as external\n neighbor {PEERING} ebgp-multihop 255\n \
         address-family ipv4 unicast\n  network 192.168.0.1/32\n{extra} exit-address-family\n"
    )
}

fn pod_yaml(name: &str, ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\n  labels: {{app: loadbalancer}}\n\
         spec: {{nodeName: worker2}}\nstatus:\n  phase: Running\n  podIP: {ip}\n  podIPs: [{{ip: {ip}}}]\n"
    )
}

fn vip_route(node: &str) -> String {
    sh(&["ip", "-n", node, "route", "show", "192.168.0.1"])
}

#[test]
fn pods_announce_a_vip_ecmp_upstream_hijacks_refused_pods_move_and_go() {
    let mut lab = Lab::new("seed001");
    let node = lab.ns("node");
    let router = lab.ns("router");
    lab.link(&node, &["10.0.2.2/24"], &router, &["10.0.2.1/24"]);
    sh(&[
        "ip",
        "-n",
        &node,
        "addr",
        "add",
        &format!("{PEERING}/32"),
        "dev",
        "lo",
    ]);
    let (pod1, _) = pod(&mut lab, &node, "lb1", "10.244.2.216");
    let (pod2, pod2_if) = pod(&mut lab, &node, "lb2", "10.244.2.217");
    let zebra = "hostname lb\nip nht resolve-via-default\n";
    // lb1 also tries to hijack: another node's pod CIDR, a service IP, a node
    // address, the default route, and a prefix outside its namespace's allow list.
    let hijacks = "  network 10.244.3.0/24\n  network 10.96.0.10/32\n  network 10.0.2.2/32\n  network 0.0.0.0/0\n  network 198.18.0.0/24\n";
    lab.frr_zebra(
        "lb1",
        &pod1,
        zebra,
        &pod_frr(65100, "10.244.2.216", hijacks),
    );
    let lb2 = lab.frr_zebra("lb2", &pod2, zebra, &pod_frr(65101, "10.244.2.217", ""));
    let up = lab.frr_zebra(
        "up",
        &router,
        "hostname router0\n",
        "frr defaults traditional\nhostname router0\nrouter bgp 65000\n bgp router-id 10.0.2.1\n no bgp ebgp-requires-policy\n neighbor 10.0.2.2 remote-as 65012\n",
    );
    // examples/seed-001 as is, plus a second pod, another node and a service.
    let kb = lab.kbgp_example_args(
        "kbgp",
        &node,
        "worker2",
        "seed-001",
        &["--metrics-listen", "127.0.0.1:9179"],
    );
    kb.write(
        "pod-loadbalancer-2.yaml",
        &pod_yaml("loadbalancer-2", "10.244.2.217"),
    );
    kb.write(
        "node-worker3.yaml",
        &node_yaml("worker3", &["10.0.2.3"], &["10.244.3.0/24"]),
    );
    kb.write(
        "service.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: kube-dns, namespace: kube-system}\nspec: {clusterIP: 10.96.0.10, clusterIPs: [10.96.0.10]}\n",
    );
    kb.wait_established("10.0.2.1");
    let p1 = kb.wait_established("10.244.2.216");
    let p2 = kb.wait_established("10.244.2.217");
    assert_eq!(
        (p1["peer_as"].as_u64(), p2["peer_as"].as_u64()),
        (Some(65100), Some(65101)),
        "one selector, two ASNs"
    );
    assert_eq!(p1["peer_type"], "pod");

    // One ECMP kernel route via both pods.
    let r = wait_for("ECMP VIP route", Duration::from_secs(30), || {
        let r = vip_route(&node);
        if r.contains("nexthop via 10.244.2.216") && r.contains("nexthop via 10.244.2.217") {
            Ok(r)
        } else {
            Err(r)
        }
    });
    assert!(r.contains("proto bgp"), "{r}");
    // The router learns the VIP with the node as next hop, and reaches a pod.
    let path = up.wait_route("ipv4", "192.168.0.1/32");
    assert_eq!(path["nexthops"][0]["ip"], "10.0.2.2", "{path}");
    assert_eq!(path["aspath"]["string"], "65012 65100", "{path}");
    wait_route(&router, "192.168.0.1", "the router's kernel route", |r| {
        r.contains("via 10.0.2.2")
    });
    let (ok, out) = sh_ok(&[
        "ip",
        "netns",
        "exec",
        &router,
        "ping",
        "-c",
        "2",
        "-W",
        "2",
        "192.168.0.1",
    ]);
    assert!(ok, "{out}");

    // Every hijack attempt is refused, with its reason, and goes nowhere.
    let rejected = wait_for(
        "lb1's five hijack attempts rejected",
        Duration::from_secs(15),
        || {
            let v = kb.json(&["show", "rib", "--rejected", "--peer", "10.244.2.216"])?;
            let r: Vec<serde_json::Value> = v["routes"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                // The node's own pod CIDR echoed back is a loop, also rejected.
                .filter(|r| r["prefix"] != "10.244.2.0/24")
                .collect();
            if r.len() == 5 && r.iter().all(|x| x["direction"] == "rejected") {
                Ok(r)
            } else {
                Err(v.to_string())
            }
        },
    );
    let reason = |p: &str| {
        rejected
            .iter()
            .find(|r| r["prefix"] == p)
            .map(|r| r["reason"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    for (prefix, why) in [
        ("10.244.3.0/24", "pod CIDR of node worker3"),
        ("10.96.0.10/32", "IP of service kube-system/kube-dns"),
        ("10.0.2.2/32", "address of node worker2"),
        ("0.0.0.0/0", "the default route"),
        (
            "198.18.0.0/24",
            "not in a BGPAllowList of namespace default",
        ),
    ] {
        assert!(reason(prefix).contains(why), "{prefix}: {rejected:?}");
    }
    // ... and counted in the metrics, by reason class.
    let m = http_get(&node, "http://127.0.0.1:9179/metrics");
    for want in [
        r#"kbgp_bgp_rejected_routes{peer="10.244.2.216",reason="admin-deny"} 4"#,
        r#"kbgp_bgp_rejected_routes{peer="10.244.2.216",reason="not-allowed"} 1"#,
        r#"kbgp_bgp_session_up{peer="10.244.2.216",peer_type="pod"} 1"#,
        r#"kbgp_info{node="worker2",asn="65012""#,
    ] {
        assert!(m.contains(want), "{want}: {m}");
    }
    let k = bgp_routes(&node);
    let upstream = up.vtysh("show bgp ipv4 unicast");
    for p in ["10.244.3.0/24", "10.96.0.10", "198.18.0.0/24", "default"] {
        assert!(!k.contains(p), "{p} in the node kernel: {k}");
    }
    for p in [
        "10.244.3.0/24",
        "10.96.0.10/32",
        "198.18.0.0/24",
        "0.0.0.0/0",
    ] {
        assert!(!upstream.contains(p), "{p} reached the router: {upstream}");
    }

    // lb2 restarts with a new IP (a new speaker process, as a pod restart
    // gives): the session follows, the other one stays.
    let lb1_since = kb.peer("10.244.2.216").unwrap()["established_at"].clone();
    lab.proc(lb2.idx).stop();
    lab.proc(lb2.idx - 1).stop();
    // (New address first: removing a device's last address flushes its routes.)
    sh(&[
        "ip",
        "-n",
        &pod2,
        "addr",
        "add",
        "10.244.2.218/32",
        "dev",
        "eth0",
    ]);
    sh(&[
        "ip",
        "-n",
        &pod2,
        "addr",
        "del",
        "10.244.2.217/32",
        "dev",
        "eth0",
    ]);
    sh(&["ip", "-n", &node, "route", "del", "10.244.2.217/32"]);
    sh(&[
        "ip",
        "-n",
        &node,
        "route",
        "add",
        "10.244.2.218/32",
        "dev",
        &pod2_if,
    ]);
    lab.frr_zebra("lb2b", &pod2, zebra, &pod_frr(65101, "10.244.2.218", ""));
    kb.write(
        "pod-loadbalancer-2.yaml",
        &pod_yaml("loadbalancer-2", "10.244.2.218"),
    );
    kb.wait_established("10.244.2.218");
    assert!(kb.peer("10.244.2.217").is_err(), "the old session is gone");
    assert_eq!(
        kb.peer("10.244.2.216").unwrap()["established_at"],
        lb1_since
    );
    wait_for("ECMP via the new IP", Duration::from_secs(30), || {
        let r = vip_route(&node);
        if r.contains("nexthop via 10.244.2.216") && r.contains("nexthop via 10.244.2.218") {
            Ok(())
        } else {
            Err(r)
        }
    });
    let (ok, out) = sh_ok(&[
        "ip",
        "netns",
        "exec",
        &router,
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "192.168.0.1",
    ]);
    assert!(ok, "{out}");

    // The namespace's users widen their allow list: lb1's 198.18.0.0/24 is
    // re-evaluated from what it already sent, with no session reset.
    kb.write(
        "allowlist-default.yaml",
        "apiVersion: kbgp.io/v1alpha1\nkind: BGPAllowList\nmetadata: {name: vips, namespace: default}\n\
         spec: {prefixes: [{cidr: 192.168.0.0/16, le: 32}, {cidr: 198.18.0.0/24}]}\n",
    );
    wait_kernel(&node, "198.18.0.0/24 accepted", |r| {
        r.contains("198.18.0.0/24 via 10.244.2.216")
    });
    assert_eq!(
        kb.peer("10.244.2.216").unwrap()["established_at"],
        lb1_since
    );
    assert_eq!(kb.peer("10.244.2.216").unwrap()["established_count"], 1);

    // lb1's Pod is deleted: its path is withdrawn right away, not after a hold timer.
    let t0 = Instant::now();
    kb.remove("pod-loadbalancer.yaml");
    let r = wait_for("lb1's path withdrawn", Duration::from_secs(10), || {
        let r = vip_route(&node);
        if r.contains("10.244.2.216") {
            Err(r)
        } else {
            Ok(r)
        }
    });
    let took = t0.elapsed();
    assert!(r.contains("via 10.244.2.218"), "{r}");
    assert!(
        took < Duration::from_millis(1500),
        "withdrawal took {took:?}"
    );
    eprintln!("pod deletion to kernel withdrawal: {took:?}");
}
