//! kbgp ⇄ ExaBGP: one IPv4 session carrying IPv4 and IPv6 (MP-BGP over an
//! IPv4 transport), ExaBGP's parsed JSON as the witness.

mod common;
use common::*;

#[test]
fn kbgp_exabgp_ipv4_and_ipv6_over_one_session() {
    let mut lab = Lab::new("exabgp");
    let (k, x) = dual_stack_pair(&mut lab, "x");
    let sink = lab.exabgp_sink("exabgp");
    let conf = format!(
        r#"
process sink {{
  run /usr/bin/python3 {sink};
  encoder json;
}}
neighbor 192.0.2.2 {{
  router-id 192.0.2.1;
  local-address 192.0.2.1;
  local-as 65004;
  peer-as 65001;
  family {{ ipv4 unicast; ipv6 unicast; }}
  static {{
    route 198.18.9.0/24 next-hop 192.0.2.1 community [65004:9] large-community [65004:9:9];
    route 2001:db8:9::/48 next-hop 2001:db8::1;
    route 198.18.10.0/24 next-hop 192.0.2.1 as-path [ 65004 65001 65010 ];
  }}
  api {{
    processes [ sink ];
    receive {{ parsed; update; }}
  }}
}}
"#,
        sink = sink.display()
    );
    let exa = lab.exabgp("exabgp", &x, &conf);
    let kbgp = seed002_node(&mut lab, &k, 65001, &[("exa", "192.0.2.1", 65004)]);

    let p = kbgp.wait_established("192.0.2.1");
    assert!(p["families"].as_array().unwrap().len() == 2, "{p}");

    // ExaBGP parsed our IPv4 route with both community kinds.
    let upd = wait_for(
        "ExaBGP to receive 192.168.170.0/24",
        std::time::Duration::from_secs(30),
        || {
            exa.received()
                .into_iter()
                .find(|v| v.to_string().contains("192.168.170.0/24"))
                .ok_or_else(|| format!("{:?}", exa.received()))
        },
    );
    let attr = &upd["neighbor"]["message"]["update"]["attribute"];
    assert_eq!(
        attr["community"],
        serde_json::json!([[65535, 120]]),
        "{upd}"
    );
    assert_eq!(
        attr["large-community"],
        serde_json::json!([[65535, 300, 100]]),
        "{upd}"
    );
    assert_eq!(attr["as-path"], serde_json::json!([65001]), "{upd}");
    // IPv6 over the IPv4 session, next hop the node's IPv6 address.
    let upd6 = wait_for(
        "ExaBGP to receive 2001:db8:170::/64",
        std::time::Duration::from_secs(30),
        || {
            exa.received()
                .into_iter()
                .find(|v| v.to_string().contains("2001:db8:170::/64"))
                .ok_or_else(|| "not yet".to_string())
        },
    );
    assert!(upd6.to_string().contains("2001:db8::2"), "{upd6}");

    let got = kbgp.wait_received("192.0.2.1", "198.18.9.0/24");
    assert_eq!(got["communities"], serde_json::json!(["65004:9"]));
    assert_eq!(got["large_communities"], serde_json::json!(["65004:9:9"]));
    let got6 = kbgp.wait_received("192.0.2.1", "2001:db8:9::/48");
    assert_eq!(got6["next_hop"], "2001:db8::1");
    // An AS path with kbgp's own AS in it (65001): refused as a loop (the
    // peer task finds the AS, the main loop rejects), listed with the reason.
    let rej = wait_for(
        "the looped route among the rejected",
        std::time::Duration::from_secs(15),
        || {
            let v = kbgp.json(&["show", "rib", "--rejected"])?;
            v["routes"]
                .as_array()
                .and_then(|r| r.iter().find(|x| x["prefix"] == "198.18.10.0/24").cloned())
                .ok_or_else(|| v.to_string())
        },
    );
    assert_eq!(rej["reason"], "AS path contains our AS", "{rej}");
    let rib = kbgp.json(&["show", "rib"]).unwrap();
    let looped: Vec<_> = rib["routes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["prefix"] == "198.18.10.0/24")
        .collect();
    assert!(
        looped.len() == 1 && looped[0]["best"] == false && looped[0]["direction"] == "received",
        "the looped route is only listed as received, never best nor advertised: {looped:?}"
    );
    let _ = exa.idx;
}
