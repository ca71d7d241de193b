//! Seed 000 end to end: Calico-style nodes, a route reflector, a core switch.
//! Variant 1: FRR is the route reflector (VyOS's role in the report).
//! Variant 2: kbgp is the route reflector, with FRR and BIRD as clients.
//! Kernel routes are read with `ip route` inside the nodes' namespaces.

mod common;
use std::time::Duration;

use common::*;

const NODES: [(&str, &str, &str); 3] = [
    ("rahu", "192.168.100.132", "10.240.26.192/26"),
    ("maitreya", "192.168.100.172", "10.240.239.0/26"),
    ("mahsth", "192.168.100.173", "10.240.162.128/26"),
];

const FRR_RR: &str = r#"
frr defaults traditional
hostname zenmai
router bgp 64515
 bgp router-id 192.168.100.41
 no bgp network import-check
 timers bgp 3 9
 neighbor 192.168.100.132 remote-as 64515
 neighbor 192.168.100.172 remote-as 64515
 neighbor 192.168.100.173 remote-as 64515
 neighbor 192.168.100.174 remote-as 64515
 neighbor 192.168.100.175 remote-as 64515
 neighbor 192.168.100.1 remote-as 64515
 address-family ipv4 unicast
  network 198.18.50.0/24
  neighbor 192.168.100.132 route-reflector-client
  neighbor 192.168.100.172 route-reflector-client
  neighbor 192.168.100.173 route-reflector-client
  neighbor 192.168.100.174 route-reflector-client
  neighbor 192.168.100.175 route-reflector-client
  neighbor 192.168.100.1 route-reflector-client
 exit-address-family
"#;

const CORE_BIRD: &str = r#"
router id 192.168.100.1;
protocol device {}
protocol kernel { ipv4 { export all; }; }
protocol bgp to_rr {
  local 192.168.100.1 as 64515;
  neighbor 192.168.100.41 as 64515;
  direct;
  ipv4 { import all; export none; gateway direct; };
}
"#;

#[test]
fn seed_000_with_frr_route_reflector() {
    let mut lab = Lab::new("seed000");
    let mut hosts: Vec<(String, String)> = NODES
        .iter()
        .map(|(n, ip, _)| (lab.ns(n), format!("{ip}/24")))
        .collect();
    let rr = lab.ns("rr");
    let core = lab.ns("core");
    hosts.push((rr.clone(), "192.168.100.41/24".into()));
    hosts.push((core.clone(), "192.168.100.1/24".into()));
    let spec: Vec<(&str, Vec<&str>)> = hosts
        .iter()
        .map(|(n, a)| (n.as_str(), vec![a.as_str()]))
        .collect();
    let spec: Vec<(&str, &[&str])> = spec.iter().map(|(n, a)| (*n, a.as_slice())).collect();
    lab.lan(&spec);
    let frr = lab.frr("frr", &rr, FRR_RR);
    let bird = lab.bird("core", &core, CORE_BIRD);
    let mut kbgps = Vec::new();
    for (i, (name, _, _)) in NODES.iter().enumerate() {
        kbgps.push(lab.kbgp_example(name, &hosts[i].0, name, "seed-000"));
    }
    for k in &kbgps {
        k.wait_established("192.168.100.41");
    }
    // Every node: the other nodes' blocks via their node IPs, its own as a blackhole,
    // and the RR's own network via the RR.
    for (i, (_, _, own)) in NODES.iter().enumerate() {
        let ns = &hosts[i].0;
        let r = wait_kernel(ns, "all pod blocks in the kernel", |r| {
            NODES.iter().all(|(_, _, c)| r.contains(c)) && r.contains("198.18.50.0/24")
        });
        assert!(r.contains(&format!("blackhole {own}")), "{r}");
        for (j, (_, ip, cidr)) in NODES.iter().enumerate() {
            if i != j {
                assert!(
                    r.contains(&format!("{cidr} via {ip} dev eth0")),
                    "{ns}: {r}"
                );
            }
        }
        assert!(
            r.contains("198.18.50.0/24 via 192.168.100.41 dev eth0"),
            "{r}"
        );
    }
    // The core switch has every pod block, next hop the owning node.
    for (_, ip, cidr) in NODES {
        let out = bird.wait_route(cidr);
        assert!(out.contains(&format!("BGP.next_hop: {ip}")), "{out}");
    }
    // Data plane: the core switch (BIRD exports its BGP routes to its kernel)
    // reaches a pod address on maitreya; a local address beats the blackhole.
    sh(&[
        "ip",
        "-n",
        &hosts[1].0,
        "addr",
        "add",
        "10.240.239.1/32",
        "dev",
        "lo",
    ]);
    wait_route(&core, "10.240.239.0/26", "the core's kernel route", |r| {
        r.contains("10.240.239.0/26 via 192.168.100.172")
    });
    let (ok, out) = sh_ok(&[
        "ip",
        "netns",
        "exec",
        &core,
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "10.240.239.1",
    ]);
    assert!(ok, "{out}");

    // maitreya goes away: its block is withdrawn everywhere.
    let idx = kbgps[1].idx;
    lab.proc(idx).stop();
    for i in [0, 2] {
        wait_kernel(&hosts[i].0, "maitreya's block withdrawn", |r| {
            !r.contains("10.240.239.0/26")
        });
    }
    wait_for(
        "core switch to lose maitreya's block",
        Duration::from_secs(15),
        || {
            let out = bird.cli("show route 10.240.239.0/26");
            if out.contains("10.240.239.0/26") {
                Err(out)
            } else {
                Ok(())
            }
        },
    );
    let path = frr
        .json("show bgp ipv4 unicast 10.240.26.192/26 json")
        .unwrap();
    assert!(path["paths"].get(0).is_some(), "{path}");
}

#[test]
fn seed_000_with_kbgp_route_reflector() {
    let mut lab = Lab::new("kbgprr");
    let rahu = lab.ns("rahu");
    let rr = lab.ns("rr");
    let frr_ns = lab.ns("frrc");
    let bird_ns = lab.ns("birdc");
    lab.lan(&[
        (&rahu, &["192.168.100.132/24"]),
        (&rr, &["192.168.100.41/24"]),
        // FRR and BIRD stand in for the nodes maitreya and mahsth.
        (&frr_ns, &["192.168.100.172/24"]),
        (&bird_ns, &["192.168.100.173/24"]),
    ]);
    let frr = lab.frr(
        "frr",
        &frr_ns,
        "frr defaults traditional\nhostname maitreya\nrouter bgp 64515\n bgp router-id 192.168.100.172\n no bgp network import-check\n \
         neighbor 192.168.100.41 remote-as 64515\n address-family ipv4 unicast\n  network 10.240.239.0/26\n exit-address-family\n",
    );
    let bird = lab.bird(
        "bird",
        &bird_ns,
        "router id 192.168.100.173;\nprotocol device {}\nprotocol static { ipv4; route 10.240.162.128/26 blackhole; }\n\
         protocol bgp to_rr { local 192.168.100.173 as 64515; neighbor 192.168.100.41 as 64515; direct; ipv4 { import all; export all; gateway direct; }; }\n",
    );
    let kbgp_rr = lab.kbgp_example("zenmai", &rr, "zenmai", "seed-000-kbgp-rr");
    let node = lab.kbgp_example("rahu", &rahu, "rahu", "seed-000-kbgp-rr");
    kbgp_rr.wait_established("192.168.100.132");
    kbgp_rr.wait_established("192.168.100.172");
    kbgp_rr.wait_established("192.168.100.173");
    node.wait_established("192.168.100.41");

    // The reflector installs what it reflects (it is a router too) and has no blackhole.
    wait_kernel(&rr, "the reflector's kernel", |r| {
        NODES
            .iter()
            .all(|(_, ip, c)| r.contains(&format!("{c} via {ip} dev eth0")))
    });
    // rahu learns both other blocks through the reflector, next hop the owner.
    let r = wait_kernel(&rahu, "rahu's kernel", |r| {
        r.contains("10.240.239.0/26") && r.contains("10.240.162.128/26")
    });
    assert!(
        r.contains("10.240.239.0/26 via 192.168.100.172 dev eth0"),
        "{r}"
    );
    assert!(
        r.contains("10.240.162.128/26 via 192.168.100.173 dev eth0"),
        "{r}"
    );
    assert!(r.contains("blackhole 10.240.26.192/26"), "{r}");

    // FRR shows ORIGINATOR_ID and CLUSTER_LIST on the route reflected from BIRD.
    let p = frr.wait_route("ipv4", "10.240.162.128/26");
    assert_eq!(p["originatorId"], "192.168.100.173", "{p}");
    assert_eq!(
        p["clusterList"]["list"],
        serde_json::json!(["192.168.100.41"]),
        "{p}"
    );
    // BIRD shows them on the route from FRR and on rahu's.
    let b = bird.wait_route("10.240.239.0/26");
    assert!(b.contains("BGP.originator_id: 192.168.100.172"), "{b}");
    assert!(b.contains("BGP.cluster_list: 192.168.100.41"), "{b}");
    let b = bird.wait_route("10.240.26.192/26");
    assert!(b.contains("BGP.originator_id: 192.168.100.132"), "{b}");
    assert!(b.contains("BGP.next_hop: 192.168.100.132"), "{b}");
    // A route never goes back to its originator.
    let own = node.routes("received", "192.168.100.41").unwrap();
    assert!(
        own.iter().all(|r| r["prefix"] != "10.240.26.192/26"),
        "{own:?}"
    );
    let (ok, out) = kbgp_rr.cli(&["status"]);
    assert!(ok && out.contains("192.168.100.173"), "{out}");
}
