//! Best path against an independent oracle (FRR given the same paths), ECMP
//! in the kernel, and a kbgp restart that keeps valid kernel routes in place.

mod common;
use std::time::Duration;

use common::*;

fn oracle_speaker(id: &str, asn: u32, statics: &str) -> String {
    format!(
        "router id {id};\nprotocol device {{}}\nprotocol static {{ ipv4; {statics} }}\n\
         template bgp up {{ local {id} as {asn}; connect retry time 1; ipv4 {{ import none; export all; }}; }}\n\
         protocol bgp kbgp from up {{ neighbor 192.0.2.2 as 65001; }}\n\
         protocol bgp frr from up {{ neighbor 192.0.2.3 as 65003; }}\n"
    )
}

const ORACLE: &str = r#"
frr defaults traditional
hostname oracle
router bgp 65003
 bgp router-id 192.0.2.3
 no bgp ebgp-requires-policy
 neighbor 192.0.2.10 remote-as 65010
 neighbor 192.0.2.11 remote-as 65010
"#;

/// The peer whose path kbgp selected for `prefix`.
fn kbgp_best(k: &Kbgp, prefix: &str) -> Result<String, String> {
    let v = k.json(&["show", "rib", prefix])?;
    v["routes"]
        .as_array()
        .and_then(|r| {
            r.iter()
                .find(|x| x["direction"] == "received" && x["best"] == true)
        })
        .map(|x| x["peer"].as_str().unwrap_or("").to_string())
        .ok_or_else(|| v.to_string())
}

fn frr_best(f: &Frr, prefix: &str) -> Result<String, String> {
    let v = f.json(&format!("show bgp ipv4 unicast {prefix} json"))?;
    let paths = v["paths"].as_array().cloned().unwrap_or_default();
    if paths.len() < 2 {
        return Err(format!("only {} paths: {v}", paths.len()));
    }
    // FRR selects in a work queue: only trust a choice made between both paths.
    paths
        .iter()
        .find(|p| {
            p["bestpath"]["overall"] == true
                && p["bestpath"]["selectionReason"] != "First path received"
        })
        .map(|p| p["peer"]["peerId"].as_str().unwrap_or("").to_string())
        .ok_or_else(|| v.to_string())
}

#[test]
fn best_path_agrees_with_frr_one_attribute_at_a_time_and_ecmp_in_kernel() {
    let mut lab = Lab::new("bestpath");
    let k = lab.ns("k");
    let f = lab.ns("f");
    let a = lab.ns("a");
    let b = lab.ns("b");
    let c = lab.ns("c");
    lab.lan(&[
        (&k, &["192.0.2.2/24"]),
        (&f, &["192.0.2.3/24"]),
        (&a, &["192.0.2.10/24"]),
        (&b, &["192.0.2.11/24"]),
        (&c, &["192.0.2.12/24"]),
    ]);
    // A's paths are each worse than B's in exactly one attribute.
    let worse = "route 198.18.1.0/24 blackhole { bgp_path.prepend(65010); };\n\
                 route 198.18.2.0/24 blackhole { bgp_origin = ORIGIN_INCOMPLETE; };\n\
                 route 198.18.3.0/24 blackhole { bgp_med = 50; };\n\
                 route 198.18.100.0/24 blackhole;";
    let better = "route 198.18.1.0/24 blackhole;\n\
                  route 198.18.2.0/24 blackhole;\n\
                  route 198.18.3.0/24 blackhole { bgp_med = 10; };";
    lab.bird("a", &a, &oracle_speaker("192.0.2.10", 65010, worse));
    lab.bird("b", &b, &oracle_speaker("192.0.2.11", 65010, better));
    lab.bird(
        "c",
        &c,
        &oracle_speaker("192.0.2.12", 65020, "route 198.18.100.0/24 blackhole;"),
    );
    let frr = lab.frr("oracle", &f, ORACLE);
    let peers: String = [
        ("a", "192.0.2.10", 65010),
        ("b", "192.0.2.11", 65010),
        ("c", "192.0.2.12", 65020),
    ]
    .iter()
    .map(|(n, ip, asn)| format!("{}---\n", peer_yaml(n, ip, *asn)))
    .collect();
    let kbgp = lab.kbgp(
        "kbgp",
        &k,
        "n1",
        &[
            ("node.yaml", &node_yaml("n1", &["192.0.2.2"], &[])),
            ("bgpconfig.yaml", "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\nspec: {asNumber: 65001, nodeToNodeMeshEnabled: false}\n"),
            ("peers.yaml", &peers),
        ],
    );
    for (prefix, step) in [
        ("198.18.1.0/24", "AS_PATH length"),
        ("198.18.2.0/24", "ORIGIN"),
        ("198.18.3.0/24", "MED"),
    ] {
        let theirs = wait_for(
            &format!("FRR's choice for {prefix}"),
            Duration::from_secs(30),
            || frr_best(&frr, prefix),
        );
        let ours = wait_for(
            &format!("kbgp's choice for {prefix}"),
            Duration::from_secs(30),
            || {
                let b = kbgp_best(&kbgp, prefix)?;
                // Wait until both paths are in.
                let n = kbgp.json(&["show", "rib", prefix])?["routes"]
                    .as_array()
                    .map(|r| r.iter().filter(|x| x["direction"] == "received").count())
                    .unwrap_or(0);
                if n == 2 {
                    Ok(b)
                } else {
                    Err(format!("{n} paths"))
                }
            },
        );
        assert_eq!(ours, "192.0.2.11", "{step}: kbgp chose {ours}");
        assert_eq!(
            ours,
            theirs,
            "{step}: kbgp and FRR disagree; FRR: {}",
            frr.vtysh(&format!("show bgp ipv4 unicast {prefix}"))
        );
    }
    // Two equal eBGP paths from different ASes: one multipath kernel route.
    let r = wait_route(&k, "198.18.100.0/24", "ECMP route", |r| {
        r.contains("nexthop via 192.0.2.10") && r.contains("nexthop via 192.0.2.12")
    });
    assert!(r.contains("proto bgp"), "{r}");
    // The unequal prefixes are single-path, via the winner.
    let r1 = sh(&["ip", "-n", &k, "route", "show", "198.18.1.0/24"]);
    assert!(
        r1.contains("via 192.0.2.11") && !r1.contains("nexthop"),
        "{r1}"
    );
}

#[test]
fn restart_keeps_valid_kernel_routes_and_sweeps_removed_peers_routes() {
    let mut lab = Lab::new("restart");
    let k = lab.ns("k");
    let a = lab.ns("a");
    let c = lab.ns("c");
    lab.lan(&[
        (&k, &["192.0.2.2/24"]),
        (&a, &["192.0.2.10/24"]),
        (&c, &["192.0.2.12/24"]),
    ]);
    lab.bird(
        "a",
        &a,
        &bird_speaker(
            "192.0.2.10",
            65010,
            "192.0.2.2",
            &["198.18.1.0/24"],
            "import none; export all;",
            true,
        ),
    );
    lab.bird(
        "c",
        &c,
        &bird_speaker(
            "192.0.2.12",
            65020,
            "192.0.2.2",
            &["198.18.9.0/24"],
            "import none; export all;",
            true,
        ),
    );
    let files = [
        ("node.yaml", node_yaml("n1", &["192.0.2.2"], &["10.244.1.0/24"])),
        ("bgpconfig.yaml", "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\nspec: {asNumber: 65001, nodeToNodeMeshEnabled: false}\n".to_string()),
        ("peer-a.yaml", peer_yaml("a", "192.0.2.10", 65010)),
        ("peer-c.yaml", peer_yaml("c", "192.0.2.12", 65020)),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(a, b)| (*a, b.as_str())).collect();
    let first = lab.kbgp("kbgp", &k, "n1", &files);
    wait_kernel(&k, "routes from both peers", |r| {
        r.contains("198.18.1.0/24")
            && r.contains("198.18.9.0/24")
            && r.contains("blackhole 10.244.1.0/24")
    });
    // Watch the kernel while kbgp restarts.
    let mon = lab.spawn("monitor", &k, &["ip", "-ts", "monitor", "route"]);
    std::thread::sleep(Duration::from_millis(300));
    let idx = first.idx;
    lab.proc(idx).stop();
    // Routes stay in the kernel while kbgp is down.
    let r = bgp_routes(&k);
    assert!(
        r.contains("198.18.1.0/24") && r.contains("blackhole 10.244.1.0/24"),
        "{r}"
    );
    // Peer C is removed from the configuration before the restart.
    first.remove("peer-c.yaml");
    let cfg = first.cfg.clone();
    let second = lab.kbgp_dir("kbgp2", &k, "n1", &cfg);
    second.wait_established("192.0.2.10");
    wait_kernel(&k, "C's route swept after convergence", |r| {
        !r.contains("198.18.9.0/24")
    });
    std::thread::sleep(Duration::from_secs(1));
    lab.proc(mon).stop();
    let events = lab.log("monitor");
    assert!(
        events
            .lines()
            .any(|l| l.contains("Deleted") && l.contains("198.18.9.0/24")),
        "{events}"
    );
    assert!(
        !events
            .lines()
            .any(|l| l.contains("Deleted") && l.contains("198.18.1.0/24")),
        "valid route flapped: {events}"
    );
    assert!(
        !events
            .lines()
            .any(|l| l.contains("Deleted") && l.contains("10.244.1.0/24")),
        "blackhole flapped: {events}"
    );
    let r = bgp_routes(&k);
    assert!(
        r.contains("198.18.1.0/24 via 192.0.2.10") && r.contains("blackhole 10.244.1.0/24"),
        "{r}"
    );
}
