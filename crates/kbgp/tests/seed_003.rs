//! Seed 003: a host running kbgp (examples/seed-003, unchanged) peers with its
//! top-of-rack switch by BGP unnumbered over `eth0` (no IPv4 on the link,
//! IPv6 link-local only, RFC 8950 next hops) and they exchange loopbacks.
//! The ToR is FRR configured like the report's Cumulus switch.

mod common;
use std::time::Duration;

use common::*;

const TOR_ZEBRA: &str =
    "hostname tor\ninterface swp1\n ipv6 nd ra-interval 5\n no ipv6 nd suppress-ra\n";
const TOR_BGPD: &str = r#"
hostname tor
router bgp 65000
 bgp router-id 198.18.0.1
 no bgp ebgp-requires-policy
 neighbor swp1 interface remote-as external
 address-family ipv4 unicast
  network 198.18.0.1/32
 exit-address-family
"#;

#[test]
fn unnumbered_host_and_tor_exchange_loopbacks() {
    let mut lab = Lab::new("seed003");
    let host = lab.ns("host");
    let tor = lab.ns("tor");
    lab.p2p(&host, &tor, "swp1");
    // Loopbacks: the report's 2.2.2.2 and 1.1.1.1, moved into documentation ranges.
    sh(&[
        "ip",
        "-n",
        &host,
        "addr",
        "add",
        "192.0.2.2/32",
        "dev",
        "lo",
    ]);
    sh(&[
        "ip",
        "-n",
        &tor,
        "addr",
        "add",
        "198.18.0.1/32",
        "dev",
        "lo",
    ]);
    // Link-local addresses need DAD to finish before sockets can bind them.
    for ns in [&host, &tor] {
        wait_for("link-local address", Duration::from_secs(10), || {
            let a = sh(&["ip", "-n", ns, "-6", "addr", "show", "scope", "link"]);
            if a.contains("fe80::") && !a.contains("tentative") {
                Ok(())
            } else {
                Err(a)
            }
        });
    }
    let frr = lab.frr_zebra("tor", &tor, TOR_ZEBRA, TOR_BGPD);
    let kbgp = lab.kbgp_example("kbgp", &host, "host", "seed-003");

    let p = kbgp.wait_established("eth0");
    assert!(
        p["remote_address"].as_str().unwrap().starts_with("[fe80::"),
        "{p}"
    );
    assert_eq!(p["peer_as"], 65000);
    assert!(p["extended_next_hop"].as_bool().unwrap(), "{p}");

    // The ToR learns the host loopback with a link-local next hop.
    let path = frr.wait_route("ipv4", "192.0.2.2/32");
    let used = path["nexthops"]
        .as_array()
        .and_then(|v| v.iter().find(|n| n["used"] == true).cloned())
        .unwrap_or_default();
    assert!(
        used["ip"].as_str().unwrap_or("").starts_with("fe80::"),
        "{path}"
    );
    assert_eq!(used["scope"], "link-local", "{path}");
    // The host kernel has the ToR loopback via inet6 fe80:: dev eth0 (IPv4 over an IPv6 gateway).
    let r = wait_kernel(&host, "ToR loopback in the host kernel", |r| {
        r.contains("198.18.0.1")
    });
    assert!(
        r.contains("198.18.0.1 via inet6 fe80::") && r.contains("dev eth0"),
        "{r}"
    );
    // Both ways, loopback to loopback.
    let (ok, out) = sh_ok(&[
        "ip",
        "netns",
        "exec",
        &host,
        "ping",
        "-c",
        "2",
        "-W",
        "2",
        "-I",
        "192.0.2.2",
        "198.18.0.1",
    ]);
    assert!(ok, "host → ToR: {out}");
    wait_for(
        "the ToR's kernel route to the host loopback",
        Duration::from_secs(15),
        || {
            let r = sh(&["ip", "-n", &tor, "route", "show", "192.0.2.2"]);
            if r.contains("192.0.2.2") {
                Ok(())
            } else {
                Err(r)
            }
        },
    );
    let (ok, out) = sh_ok(&[
        "ip",
        "netns",
        "exec",
        &tor,
        "ping",
        "-c",
        "2",
        "-W",
        "2",
        "-I",
        "198.18.0.1",
        "192.0.2.2",
    ]);
    assert!(ok, "ToR → host: {out}");
    let (ok, out) = kbgp.cli(&["status"]);
    assert!(
        ok && out.contains("| eth0") && out.contains("Established"),
        "{out}"
    );
}
