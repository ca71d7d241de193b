//! Policy: Calico's BGPFilter (as written for calicoctl) on import and
//! export, rejected routes shown with their reason, an import rule that
//! changes a route (passed on changed, listed as received), a live filter
//! change re-run on what the peer sent, and max-prefix.

mod common;
use std::time::Duration;

use common::*;

const FILTER: &str = r#"apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata:
  name: no-cluster-prefixes
spec:
  importV4:
  - action: Reject
    matchOperator: In
    cidr: 10.244.0.0/16
  exportV4:
  - action: Reject
    matchOperator: Equal
    cidr: 192.16.0.0/12
"#;

/// Tags A's 198.18.7.0/24 on import (kbgp's own rule fields).
const TAG: &str = r#"apiVersion: kbgp.io/v1alpha1
kind: BGPFilter
metadata:
  name: tag-a
spec:
  importV4:
  - action: Accept
    matchOperator: Equal
    cidr: 198.18.7.0/24
    addCommunities: ["65010:77"]
"#;

/// The same rule changed to refuse the route.
const TAG_REJECT: &str = r#"apiVersion: kbgp.io/v1alpha1
kind: BGPFilter
metadata:
  name: tag-a
spec:
  importV4:
  - action: Reject
    matchOperator: Equal
    cidr: 198.18.7.0/24
"#;

#[test]
fn bgpfilter_import_export_rejected_reasons_and_max_prefix() {
    let mut lab = Lab::new("policy");
    let k = lab.ns("k");
    let a = lab.ns("a");
    let b = lab.ns("b");
    let c = lab.ns("c");
    lab.lan(&[
        (&k, &["192.0.2.2/24"]),
        (&a, &["192.0.2.10/24"]),
        (&b, &["192.0.2.11/24"]),
        (&c, &["192.0.2.12/24"]),
    ]);
    let bird_a = lab.bird(
        "a",
        &a,
        &bird_speaker(
            "192.0.2.10",
            65010,
            "192.0.2.2",
            &["10.244.5.0/24", "198.18.7.0/24"],
            "import all; export all;",
            false,
        ),
    );
    let bird_b = lab.bird(
        "b",
        &b,
        &bird_speaker(
            "192.0.2.11",
            65011,
            "192.0.2.2",
            &["198.18.20.0/24", "198.18.21.0/24", "198.18.22.0/24"],
            "import all; export all;",
            false,
        ),
    );
    // C only listens: it sees what kbgp passes on from A (a transit peer).
    let bird_c = lab.bird(
        "c",
        &c,
        &bird_speaker(
            "192.0.2.12",
            65012,
            "192.0.2.2",
            &[],
            "import all; export none;",
            false,
        ),
    );
    let peer_a = "apiVersion: kbgp.io/v1alpha1\nkind: BGPPeer\nmetadata: {name: a}\nspec:\n  peerIP: 192.0.2.10\n  asNumber: 65010\n  transit: true\n  filters:\n  - no-cluster-prefixes\n  - tag-a\n";
    let peer_c = "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: c}\nspec: {peerIP: 192.0.2.12, asNumber: 65012}\n";
    let peer_b = "apiVersion: kbgp.io/v1alpha1\nkind: BGPPeer\nmetadata: {name: b}\nspec: {peerIP: 192.0.2.11, asNumber: 65011, maxPrefixes: 2}\n";
    let kbgp = lab.kbgp(
        "kbgp",
        &k,
        "n1",
        &[
            ("node.yaml", &node_yaml("n1", &["192.0.2.2"], &["10.244.1.0/24"])),
            (
                "bgpconfig.yaml",
                "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\nspec:\n  asNumber: 65001\n  nodeToNodeMeshEnabled: false\n  serviceClusterIPs:\n  - cidr: 192.16.0.0/12\n",
            ),
            ("filter.yaml", FILTER),
            ("tag.yaml", TAG),
            ("peers.yaml", &format!("{peer_a}---\n{peer_b}---\n{peer_c}")),
        ],
    );
    kbgp.wait_established("192.0.2.10");
    kbgp.wait_received("192.0.2.10", "198.18.7.0/24");
    // Import: the cluster prefix is refused, with the reason, and never reaches the kernel.
    let rej = wait_for("the rejected route", Duration::from_secs(15), || {
        let v = kbgp.json(&["show", "rib", "--rejected"])?;
        assert!(
            v["routes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["direction"] == "rejected"),
            "only rejected routes: {v}"
        );
        v["routes"]
            .as_array()
            .and_then(|r| r.iter().find(|x| x["prefix"] == "10.244.5.0/24").cloned())
            .ok_or_else(|| v.to_string())
    });
    assert_eq!(rej["reason"], "BGPFilter no-cluster-prefixes rule 1");
    assert_eq!(rej["peer"], "192.0.2.10");
    let (ok, text) = kbgp.cli(&["show", "rib", "--rejected"]);
    assert!(
        ok && text.contains("BGPFilter no-cluster-prefixes rule 1"),
        "{text}"
    );
    let r = wait_kernel(&k, "198.18.7.0/24 installed", |r| {
        r.contains("198.18.7.0/24")
    });
    assert!(!r.contains("10.244.5.0/24"), "{r}");
    // An import rule that changes a route: passed on changed (C sees the
    // community), listed as A sent it (the received route is kept beside
    // the changed one), counted once.
    let tagged = bird_c.wait_route("198.18.7.0/24");
    assert!(tagged.contains("(65010,77)"), "{tagged}");
    let got = kbgp.wait_received("192.0.2.10", "198.18.7.0/24");
    assert_eq!(got["best"], true, "{got}");
    assert!(!got.to_string().contains("65010:77"), "as received: {got}");
    let a_since = kbgp.peer("192.0.2.10").unwrap()["established_at"].clone();
    assert_eq!(kbgp.peer("192.0.2.10").unwrap()["prefixes_received"], 2);
    // The rule changes to Reject: re-run on what A sent, no route refresh or
    // session reset; the route leaves C and the kernel, is still listed as
    // received (now with its reason) and still counted.
    kbgp.write("tag.yaml", TAG_REJECT);
    wait_kernel(&k, "198.18.7.0/24 refused", |r| {
        !r.contains("198.18.7.0/24")
    });
    wait_for("C to lose 198.18.7.0/24", Duration::from_secs(15), || {
        let r = bird_c.cli("show route 198.18.7.0/24");
        if r.contains("198.18.7.0/24") {
            Err(r)
        } else {
            Ok(())
        }
    });
    let got = kbgp.wait_received("192.0.2.10", "198.18.7.0/24");
    assert_eq!(got["reason"], "BGPFilter tag-a rule 1", "{got}");
    assert_eq!(got["best"], false, "{got}");
    let pa = kbgp.peer("192.0.2.10").unwrap();
    assert_eq!(pa["prefixes_received"], 2, "{pa}");
    assert_eq!(pa["established_at"], a_since, "{pa}");
    assert_eq!(pa["established_count"], 1, "{pa}");
    // And back to accepting it unchanged (no tag rule at all).
    let untagged = peer_a.replace("  - tag-a\n", "");
    kbgp.write(
        "peers.yaml",
        &format!("{untagged}---\n{peer_b}---\n{peer_c}"),
    );
    kbgp.remove("tag.yaml");
    let back = bird_c.wait_route("198.18.7.0/24");
    assert!(!back.contains("(65010,77)"), "{back}");
    wait_kernel(&k, "198.18.7.0/24 back", |r| r.contains("198.18.7.0/24"));
    assert_eq!(kbgp.peer("192.0.2.10").unwrap()["prefixes_received"], 2);
    assert_eq!(kbgp.peer("192.0.2.10").unwrap()["established_count"], 1);

    // Export: the pod block goes out, the filtered service range does not.
    bird_a.wait_route("10.244.1.0/24");
    std::thread::sleep(Duration::from_secs(1));
    assert!(!bird_a
        .cli("show route 192.16.0.0/12")
        .contains("192.16.0.0/12"));
    // What kbgp says A holds (its export of each best path, built again).
    let advertised = |prefix: &str| -> bool {
        let v = kbgp.json(&["show", "rib", "--peer", "192.0.2.10"]).unwrap();
        v["routes"].as_array().unwrap().iter().any(|r| {
            r["direction"] == "advertised" && r["prefix"] == prefix && r["peer"] == "192.0.2.10"
        })
    };
    assert!(advertised("10.244.1.0/24") && !advertised("192.16.0.0/12"));
    let a_since = kbgp.peer("192.0.2.10").unwrap()["established_at"].clone();
    // A live export change: the pod block is now refused towards A too. A
    // loses it (withdrawn, no session reset); C, with no filter, keeps it.
    kbgp.write(
        "filter.yaml",
        &format!("{FILTER}  - action: Reject\n    matchOperator: Equal\n    cidr: 10.244.1.0/24\n"),
    );
    wait_for("A to lose 10.244.1.0/24", Duration::from_secs(15), || {
        let r = bird_a.cli("show route 10.244.1.0/24");
        if r.contains("10.244.1.0/24") {
            Err(r)
        } else {
            Ok(())
        }
    });
    assert!(!advertised("10.244.1.0/24"));
    bird_c.wait_route("10.244.1.0/24");
    // And back: A is sent it again.
    kbgp.write("filter.yaml", FILTER);
    bird_a.wait_route("10.244.1.0/24");
    assert!(advertised("10.244.1.0/24"));
    assert!(!bird_a
        .cli("show route 192.16.0.0/12")
        .contains("192.16.0.0/12"));
    let pa = kbgp.peer("192.0.2.10").unwrap();
    assert_eq!(pa["established_at"], a_since, "{pa}");
    assert_eq!(pa["established_count"], 1, "{pa}");

    // Max-prefix: B sends 3 prefixes with a limit of 2.
    wait_for(
        "B to see Maximum number of prefixes reached",
        Duration::from_secs(30),
        || {
            let out = bird_b.protocol("kbgp");
            if out.to_lowercase().contains("maximum number of prefixes") {
                Ok(())
            } else {
                Err(out)
            }
        },
    );
    let p = kbgp.peer("192.0.2.11").unwrap();
    assert_ne!(p["state"], "Established");
    assert!(
        p["last_error"]
            .as_str()
            .unwrap()
            .contains("Maximum Number of Prefixes Reached"),
        "{p}"
    );
    // Its routes are gone; A is untouched.
    wait_kernel(&k, "B's routes removed", |r| !r.contains("198.18.20.0/24"));
    assert_eq!(kbgp.peer("192.0.2.10").unwrap()["state"], "Established");
}
