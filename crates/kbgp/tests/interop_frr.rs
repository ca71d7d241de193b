//! kbgp ⇄ FRR bgpd, iBGP (seed 002's shape: the ToR is in the cluster's AS),
//! IPv4 and IPv6 sessions, communities checked in FRR's own JSON.

mod common;
use common::*;

const FRR_CONF: &str = r#"
frr defaults datacenter
hostname tor
log stdout debugging
router bgp 65535
 bgp router-id 192.0.2.1
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 no bgp network import-check
 neighbor 192.0.2.2 remote-as 65535
 neighbor 2001:db8::2 remote-as 65535
 address-family ipv4 unicast
  network 198.18.7.0/24 route-map tagit
  neighbor 192.0.2.2 activate
 exit-address-family
 address-family ipv6 unicast
  network 2001:db8:7::/48
  neighbor 2001:db8::2 activate
 exit-address-family
route-map tagit permit 10
 set community 65535:7
 set large-community 65535:7:7
"#;

#[test]
fn kbgp_frr_ibgp_ipv4_ipv6_seed002_communities() {
    let mut lab = Lab::new("frr");
    let (k, f) = dual_stack_pair(&mut lab, "f");
    let frr = lab.frr("frr", &f, FRR_CONF);
    let kbgp = seed002_node(
        &mut lab,
        &k,
        65535,
        &[("tor4", "192.0.2.1", 65535), ("tor6", "2001:db8::1", 65535)],
    );

    let p = kbgp.wait_established("192.0.2.1");
    // FRR's datacenter profile proposes 9 s; the lower hold time wins.
    assert_eq!(p["hold_time"], 9);
    kbgp.wait_established("2001:db8::1");

    let path = frr.wait_route("ipv4", "192.168.170.0/24");
    assert_eq!(path["community"]["string"], "65535:120", "{path}");
    assert_eq!(path["largeCommunity"]["string"], "65535:300:100", "{path}");
    assert_eq!(path["locPrf"], 100, "{path}");
    assert_eq!(path["aspath"]["length"], 0, "{path}");
    assert_eq!(path["peer"]["type"], "internal", "{path}");
    assert_eq!(path["nexthops"][0]["ip"], "192.0.2.2", "{path}");
    frr.wait_route("ipv4", "192.16.0.0/12");
    let p6 = frr.wait_route("ipv6", "2001:db8:170::/64");
    assert_eq!(p6["nexthops"][0]["ip"], "2001:db8::2", "{p6}");

    let got = kbgp.wait_received("192.0.2.1", "198.18.7.0/24");
    assert_eq!(got["local_pref"], 100);
    assert_eq!(got["communities"], serde_json::json!(["65535:7"]));
    assert_eq!(got["large_communities"], serde_json::json!(["65535:7:7"]));
    let got6 = kbgp.wait_received("2001:db8::1", "2001:db8:7::/48");
    assert!(
        got6["next_hop"].as_str().unwrap().contains("2001:db8::1"),
        "{got6}"
    );

    // Keepalives every 3 s keep the 9 s hold time alive: still up 12 s later, one session.
    std::thread::sleep(std::time::Duration::from_secs(12));
    let p = kbgp.peer("192.0.2.1").unwrap();
    assert_eq!(p["state"], "Established");
    assert_eq!(p["established_count"], 1);
    assert!(p["received"]["keepalive"].as_u64().unwrap() >= 3, "{p}");
}
