//! kbgp ⇄ BIRD 2, eBGP over IPv4 and IPv6: sessions up, routes both ways,
//! seed 002's communities intact on BIRD's side, BIRD's communities intact on ours.

mod common;
use common::*;

const BIRD_CONF: &str = r#"
router id 192.0.2.1;
protocol device {}
protocol static s4 { ipv4; route 198.18.5.0/24 blackhole; }
protocol static s6 { ipv6; route 2001:db8:5::/48 blackhole; }
filter add_communities {
  bgp_community.add((65002, 5));
  bgp_large_community.add((65002, 5, 5));
  accept;
}
protocol bgp k4 {
  local 192.0.2.1 as 65002;
  neighbor 192.0.2.2 as 65001;
  ipv4 { import all; export filter add_communities; };
}
protocol bgp k6 {
  local 2001:db8::1 as 65002;
  neighbor 2001:db8::2 as 65001;
  ipv6 { import all; export filter add_communities; };
}
"#;

#[test]
fn kbgp_bird_ebgp_ipv4_ipv6_with_communities() {
    let mut lab = Lab::new("bird");
    let (k, b) = dual_stack_pair(&mut lab, "b");
    let bird = lab.bird("bird", &b, BIRD_CONF);
    let kbgp = seed002_node(
        &mut lab,
        &k,
        65001,
        &[
            ("bird4", "192.0.2.1", 65002),
            ("bird6", "2001:db8::1", 65002),
        ],
    );

    let p4 = kbgp.wait_established("192.0.2.1");
    assert_eq!(p4["peer_as"], 65002);
    assert!(p4["four_octet_as"].as_bool().unwrap());
    kbgp.wait_established("2001:db8::1");

    // kbgp → BIRD, IPv4 with seed 002's standard and large community.
    let r = bird.wait_route("192.168.170.0/24");
    assert!(r.contains("BGP.as_path: 65001"), "{r}");
    assert!(r.contains("BGP.community: (65535,120)"), "{r}");
    assert!(r.contains("BGP.large_community: (65535, 300, 100)"), "{r}");
    assert!(r.contains("BGP.next_hop: 192.0.2.2"), "{r}");
    // The service range is outside 192.168.0.0/16: no communities.
    let svc = bird.wait_route("192.16.0.0/12");
    assert!(!svc.contains("BGP.community"), "{svc}");
    // kbgp → BIRD, IPv6.
    let r6 = bird.wait_route("2001:db8:170::/64");
    assert!(r6.contains("BGP.next_hop: 2001:db8::2"), "{r6}");

    // BIRD → kbgp, both families, BIRD's communities intact.
    let got = kbgp.wait_received("192.0.2.1", "198.18.5.0/24");
    assert_eq!(got["as_path"], "65002");
    assert_eq!(got["next_hop"], "192.0.2.1");
    assert_eq!(got["communities"], serde_json::json!(["65002:5"]));
    assert_eq!(got["large_communities"], serde_json::json!(["65002:5:5"]));
    let got6 = kbgp.wait_received("2001:db8::1", "2001:db8:5::/48");
    assert!(
        got6["next_hop"]
            .as_str()
            .unwrap()
            .starts_with("2001:db8::1"),
        "{got6}"
    );

    // `kbgp status` shows both peers as calicoctl does.
    let (ok, out) = kbgp.cli(&["status"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("IPv4 BGP status") && out.contains("IPv6 BGP status"),
        "{out}"
    );
    assert!(
        out.contains("| 192.0.2.1    | global    | up    |"),
        "{out}"
    );
    assert!(
        out.contains("2001:db8::1") && out.contains("Established"),
        "{out}"
    );
}

#[test]
fn wrong_peer_as_is_refused_with_bad_peer_as_and_restart_readvertises() {
    let mut lab = Lab::new("badas");
    let k = lab.ns("k");
    let b = lab.ns("b");
    lab.link(&k, &["192.0.2.2/24"], &b, &["192.0.2.1/24"]);
    let conf = "router id 192.0.2.1;\nprotocol device {}\nprotocol bgp k4 { local 192.0.2.1 as 65002; neighbor 192.0.2.2 as 65001; error wait time 1, 2; connect retry time 1; ipv4 { import all; export none; }; }\n";
    let bird = lab.bird("bird", &b, conf);
    // kbgp expects AS 65099: BIRD is AS 65002.
    let kbgp = lab.kbgp(
        "kbgp",
        &k,
        "n1",
        &[
            ("node.yaml", &node_yaml("n1", &["192.0.2.2"], &["10.244.1.0/24"])),
            ("bgpconfig.yaml", "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\nspec: {asNumber: 65001, nodeToNodeMeshEnabled: false}\n"),
            ("peer.yaml", &peer_yaml("bird", "192.0.2.1", 65099)),
        ],
    );
    wait_for(
        "BIRD to see Bad Peer AS",
        std::time::Duration::from_secs(30),
        || {
            let out = bird.protocol("k4");
            if out.contains("Received: Bad peer AS") {
                Ok(())
            } else {
                Err(out)
            }
        },
    );
    let p = kbgp.peer("192.0.2.1").unwrap();
    assert_ne!(p["state"], "Established");
    assert!(
        p["last_error"].as_str().unwrap().contains("Bad Peer AS"),
        "{p}"
    );

    // Fix the AS: the session comes up without restarting kbgp.
    kbgp.write("peer.yaml", &peer_yaml("bird", "192.0.2.1", 65002));
    kbgp.wait_established("192.0.2.1");
    bird.wait_route("10.244.1.0/24");

    // Restart BIRD: kbgp reconnects and advertises again.
    let idx = bird.idx;
    lab.proc(idx).stop();
    let bird = lab.bird("bird2", &b, conf);
    kbgp.wait_established("192.0.2.1");
    bird.wait_route("10.244.1.0/24");
    let p = kbgp.peer("192.0.2.1").unwrap();
    assert!(p["established_count"].as_u64().unwrap() >= 2, "{p}");
}
