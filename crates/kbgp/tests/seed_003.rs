//! Seed 003: a host running kbgp (examples/seed-003, unchanged) peers with its
//! top-of-rack switch by BGP unnumbered over `eth0` (no IPv4 on the link,
//! IPv6 link-local only, RFC 8950 next hops) and they exchange loopbacks.
//! The ToR is FRR configured like the report's Cumulus switch.

mod common;

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

/// The report's host and switch on one link with no IPv4 on it, loopbacks
/// 2.2.2.2 and 1.1.1.1 moved into documentation ranges (192.0.2.2,
/// 198.18.0.1), and FRR with zebra on the switch.
fn host_and_tor(lab: &mut Lab) -> (String, String, Frr) {
    let host = lab.ns("host");
    let tor = lab.ns("tor");
    lab.p2p(&host, "eth0", &tor, "swp1");
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
    wait_link_local(&host);
    wait_link_local(&tor);
    let frr = lab.frr_zebra("tor", &tor, TOR_ZEBRA, TOR_BGPD);
    (host, tor, frr)
}

#[test]
fn unnumbered_host_and_tor_exchange_loopbacks() {
    let mut lab = Lab::new("seed003");
    let (host, tor, frr) = host_and_tor(&mut lab);
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
    wait_route(
        &tor,
        "192.0.2.2",
        "the ToR's kernel route to the host loopback",
        |r| r.contains("192.0.2.2"),
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

fn tor_bgpd(id: &str) -> String {
    format!(
        "frr defaults datacenter\nhostname tor\nrouter bgp 65000\n bgp router-id {id}\n no bgp ebgp-requires-policy\n \
         no bgp network import-check\n neighbor swp1 interface remote-as external\n address-family ipv4 unicast\n  \
         network 198.18.0.100/32\n  network {id}/32\n exit-address-family\n"
    )
}

#[test]
fn two_tors_anycast_ecmp_over_link_locals_and_one_link_down() {
    let mut lab = Lab::new("twotor");
    let host = lab.ns("host");
    let t1 = lab.ns("tor1");
    let t2 = lab.ns("tor2");
    lab.p2p(&host, "eth0", &t1, "swp1");
    lab.p2p(&host, "eth1", &t2, "swp1");
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
    for (ns, own) in [(&t1, "198.18.0.1/32"), (&t2, "198.18.0.2/32")] {
        sh(&["ip", "-n", ns, "addr", "add", own, "dev", "lo"]);
        sh(&[
            "ip",
            "-n",
            ns,
            "addr",
            "add",
            "198.18.0.100/32",
            "dev",
            "lo",
        ]);
    }
    for ns in [&host, &t1, &t2] {
        wait_link_local(ns);
    }
    lab.frr_zebra("tor1", &t1, TOR_ZEBRA, &tor_bgpd("198.18.0.1"));
    lab.frr_zebra("tor2", &t2, TOR_ZEBRA, &tor_bgpd("198.18.0.2"));
    // seed 003's directory plus a second uplink.
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/seed-003");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&src)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "yaml"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(e.path()).unwrap(),
            )
        })
        .collect();
    files.push((
        "bgppeer-tor2.yaml".into(),
        "apiVersion: kbgp.io/v1alpha1\nkind: BGPPeer\nmetadata: {name: tor2}\nspec: {interface: eth1, remoteAs: external}\n".into(),
    ));
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let kbgp = lab.kbgp("kbgp", &host, "host", &files);
    kbgp.wait_established("eth0");
    kbgp.wait_established("eth1");
    let r = wait_route(&host, "198.18.0.100", "anycast ECMP route", |r| {
        r.contains("nexthop via inet6 fe80::") && r.contains("dev eth0") && r.contains("dev eth1")
    });
    assert!(r.contains("proto bgp"), "{r}");
    // Each ToR's own loopback is single-path through its own link.
    let r1 = sh(&["ip", "-n", &host, "route", "show", "198.18.0.1"]);
    assert!(r1.contains("dev eth0") && !r1.contains("eth1"), "{r1}");

    // One uplink down: the session on it ends (hold timer) and the other path stays.
    sh(&["ip", "-n", &host, "link", "set", "eth1", "down"]);
    let r = wait_route(
        &host,
        "198.18.0.100",
        "the route to fall back to eth0",
        |r| r.contains("dev eth0") && !r.contains("dev eth1"),
    );
    assert!(r.contains("via inet6 fe80::"), "{r}");
    let (ok, out) = sh_ok(&[
        "ip",
        "netns",
        "exec",
        &host,
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "-I",
        "192.0.2.2",
        "198.18.0.1",
    ]);
    assert!(
        ok,
        "{out}\nhost: {}\ntor1: {}",
        sh(&["ip", "-n", &host, "route"]),
        sh(&["ip", "-n", &t1, "route"])
    );
}

#[test]
fn originate_interface_addresses_and_remove_routes_on_shutdown() {
    let mut lab = Lab::new("ifaddr");
    let (host, _tor, frr) = host_and_tor(&mut lab);
    let kbgp = lab.kbgp(
        "kbgp",
        &host,
        "host",
        &[
            ("node.yaml", &node_yaml("host", &["192.0.2.2"], &[])),
            (
                "bgpconfig.yaml",
                "apiVersion: kbgp.io/v1alpha1\nkind: BGPConfiguration\nmetadata: {name: default}\n\
                 spec: {asNumber: 65001, nodeToNodeMeshEnabled: false, originateInterfaces: [lo], keepKernelRoutesOnShutdown: false}\n",
            ),
            ("peer.yaml", "apiVersion: kbgp.io/v1alpha1\nkind: BGPPeer\nmetadata: {name: tor}\nspec: {interface: eth0, remoteAs: external}\n"),
        ],
    );
    kbgp.wait_established("eth0");
    // The loopback's address is originated (127.0.0.1 is not).
    frr.wait_route("ipv4", "192.0.2.2/32");
    let local = kbgp.json(&["show", "rib", "192.0.2.2/32"]).unwrap();
    assert!(local.to_string().contains("interface lo"), "{local}");
    // An address added later is picked up from the kernel.
    sh(&[
        "ip",
        "-n",
        &host,
        "addr",
        "add",
        "192.0.2.3/32",
        "dev",
        "lo",
    ]);
    frr.wait_route("ipv4", "192.0.2.3/32");
    wait_kernel(&host, "the ToR loopback", |r| r.contains("198.18.0.1"));
    // SIGTERM with keepKernelRoutesOnShutdown: false removes kbgp's routes.
    let idx = kbgp.idx;
    lab.proc(idx).stop();
    let r = bgp_routes(&host);
    assert!(!r.contains("198.18.0.1"), "{r}");
}
