//! kbgp ⇄ GoBGP, eBGP over IPv4 and IPv6.

mod common;
use common::*;

const GOBGP_CONF: &str = r#"
[global.config]
  as = 65003
  router-id = "192.0.2.1"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "192.0.2.2"
    peer-as = 65001
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "2001:db8::2"
    peer-as = 65001
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
"#;

#[test]
fn kbgp_gobgp_ebgp_ipv4_ipv6_with_communities() {
    let mut lab = Lab::new("gobgp");
    let (k, g) = dual_stack_pair(&mut lab, "g");
    let gobgp = lab.gobgp("gobgp", &g, GOBGP_CONF);
    let (ok, out) = gobgp.cli(&[
        "global",
        "rib",
        "-a",
        "ipv4",
        "add",
        "198.18.8.0/24",
        "community",
        "65003:8",
        "large-community",
        "65003:8:8",
    ]);
    assert!(ok, "{out}");
    let (ok, out) = gobgp.cli(&["global", "rib", "-a", "ipv6", "add", "2001:db8:8::/48"]);
    assert!(ok, "{out}");
    let kbgp = seed002_node(
        &mut lab,
        &k,
        65001,
        &[("g4", "192.0.2.1", 65003), ("g6", "2001:db8::1", 65003)],
    );

    kbgp.wait_established("192.0.2.1");
    kbgp.wait_established("2001:db8::1");

    let text = wait_for(
        "GoBGP to have 192.168.170.0/24",
        std::time::Duration::from_secs(30),
        || {
            let (_, out) = gobgp.cli(&["global", "rib", "-a", "ipv4", "192.168.170.0/24"]);
            if out.contains("192.168.170.0/24") {
                Ok(out)
            } else {
                Err(out)
            }
        },
    );
    assert!(text.contains("65535:120"), "{text}");
    assert!(text.contains("65535:300:100"), "{text}");
    assert!(text.contains("65001"), "{text}");
    let rib6 = wait_for(
        "GoBGP IPv6 route",
        std::time::Duration::from_secs(30),
        || {
            let v = gobgp.rib("ipv6")?;
            if v.get("2001:db8:170::/64").is_some() {
                Ok(v)
            } else {
                Err(v.to_string())
            }
        },
    );
    assert!(rib6.to_string().contains("2001:db8::2"), "{rib6}");

    let got = kbgp.wait_received("192.0.2.1", "198.18.8.0/24");
    assert_eq!(got["as_path"], "65003");
    assert_eq!(got["communities"], serde_json::json!(["65003:8"]));
    assert_eq!(got["large_communities"], serde_json::json!(["65003:8:8"]));
    kbgp.wait_received("2001:db8::1", "2001:db8:8::/48");

    // Withdraw on GoBGP: gone from kbgp.
    let (ok, out) = gobgp.cli(&["global", "rib", "-a", "ipv4", "del", "198.18.8.0/24"]);
    assert!(ok, "{out}");
    wait_for(
        "withdrawal to reach kbgp",
        std::time::Duration::from_secs(15),
        || {
            let r = kbgp.routes("received", "192.0.2.1")?;
            if r.iter().any(|x| x["prefix"] == "198.18.8.0/24") {
                Err("still there".into())
            } else {
                Ok(())
            }
        },
    );
}
