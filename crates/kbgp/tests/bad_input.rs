//! Bad input never takes the daemon down or drops unrelated routes:
//! malformed UPDATEs from a raw client (RFC 7606), and bad configuration files.

mod common;
use std::time::Duration;

use common::*;

/// An UPDATE from raw attribute and NLRI bytes (no withdrawn routes).
fn update(attrs: &[u8], nlri: &[u8]) -> String {
    let mut b = vec![0xffu8; 16];
    b.extend_from_slice(&((19 + 4 + attrs.len() + nlri.len()) as u16).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(nlri);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const ORIGIN_IGP: &[u8] = &[0x40, 1, 1, 0];
const ORIGIN_BAD: &[u8] = &[0x40, 1, 1, 9];
// AS_PATH: one AS_SEQUENCE of AS 65005 (4-octet).
const AS_PATH: &[u8] = &[0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xed];
const NEXT_HOP: &[u8] = &[0x40, 3, 4, 192, 0, 2, 3];
// NEXT_HOP claiming 40 octets: overruns the attribute section.
const NEXT_HOP_OVERRUN: &[u8] = &[0x40, 3, 40, 192, 0, 2, 3];

fn nlri(a: u8, b: u8, c: u8) -> Vec<u8> {
    vec![24, a, b, c]
}

#[test]
fn malformed_updates_are_handled_per_rfc7606_and_other_peers_keep_serving() {
    let mut lab = Lab::new("rfc7606");
    let k = lab.ns("k");
    let b = lab.ns("b");
    lab.link(&k, &["192.0.2.2/24"], &b, &["192.0.2.1/24", "192.0.2.3/24"]);
    let bird = lab.bird(
        "bird",
        &b,
        "router id 192.0.2.1;\nprotocol device {}\nprotocol static { ipv4; route 198.18.1.0/24 blackhole; }\n\
         protocol bgp k4 { local 192.0.2.1 as 65002; neighbor 192.0.2.2 as 65001; ipv4 { import all; export all; }; }\n",
    );
    let raw_peer = "apiVersion: kbgp.io/v1alpha1\nkind: BGPPeer\nmetadata: {name: raw}\nspec: {peerIP: 192.0.2.3, asNumber: 65005, passive: true}\n";
    let kbgp = lab.kbgp(
        "kbgp",
        &k,
        "n1",
        &[
            ("node.yaml", &node_yaml("n1", &["192.0.2.2"], &["10.244.1.0/24"])),
            ("bgpconfig.yaml", "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\nspec: {asNumber: 65001}\n"),
            ("peers.yaml", &format!("{}---\n{raw_peer}", peer_yaml("bird", "192.0.2.1", 65002))),
        ],
    );
    let before = kbgp.wait_established("192.0.2.1");
    kbgp.wait_received("192.0.2.1", "198.18.1.0/24");
    assert_eq!(kbgp.peer("192.0.2.3").unwrap()["info"], "Passive");

    let good10 = update(
        &[ORIGIN_IGP, AS_PATH, NEXT_HOP].concat(),
        &nlri(198, 18, 10),
    );
    let good11 = update(
        &[ORIGIN_IGP, AS_PATH, NEXT_HOP].concat(),
        &nlri(198, 18, 11),
    );
    let bad_origin10 = update(
        &[ORIGIN_BAD, AS_PATH, NEXT_HOP].concat(),
        &nlri(198, 18, 10),
    );
    let overrun11 = update(
        &[ORIGIN_IGP, AS_PATH, NEXT_HOP_OVERRUN].concat(),
        &nlri(198, 18, 11),
    );
    let good12 = update(
        &[ORIGIN_IGP, AS_PATH, NEXT_HOP].concat(),
        &nlri(198, 18, 12),
    );
    // Prefix length 33: the NLRI cannot be parsed, so the session must be reset.
    let bad_nlri = update(
        &[ORIGIN_IGP, AS_PATH, NEXT_HOP].concat(),
        &[33, 198, 18, 13, 0, 0],
    );
    let tool = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/raw_bgp.py");
    let steps: Vec<String> = [
        format!("send:{good10}"),
        format!("send:{good11}"),
        "sleep:3".into(),
        format!("send:{bad_origin10}"),
        "sleep:3".into(),
        format!("send:{overrun11}"),
        "sleep:3".into(),
        format!("send:{good12}"),
        "sleep:3".into(),
        format!("send:{bad_nlri}"),
    ]
    .iter()
    .flat_map(|s| ["--step".to_string(), s.clone()])
    .collect();
    let mut args = vec![
        "python3",
        tool,
        "--connect",
        "192.0.2.2",
        "--bind",
        "192.0.2.3",
        "--asn",
        "65005",
        "--id",
        "192.0.2.3",
        "--hold",
        "4",
    ];
    args.extend(steps.iter().map(|s| s.as_str()));
    let raw = lab.spawn("raw", &b, &args);

    let has = |p: &str| {
        kbgp.routes("received", "192.0.2.3")
            .map(|r| r.iter().any(|x| x["prefix"] == p))
    };
    wait_for("both good routes", Duration::from_secs(10), || {
        match (has("198.18.10.0/24")?, has("198.18.11.0/24")?) {
            (true, true) => Ok(()),
            x => Err(format!("{x:?}")),
        }
    });
    // Bad ORIGIN: treat-as-withdraw of 198.18.10.0/24 only; the session stays up.
    wait_for(
        "treat-as-withdraw of 198.18.10.0/24",
        Duration::from_secs(10),
        || match (has("198.18.10.0/24")?, has("198.18.11.0/24")?) {
            (false, true) => Ok(()),
            x => Err(format!("{x:?}")),
        },
    );
    assert_eq!(kbgp.peer("192.0.2.3").unwrap()["state"], "Established");
    // Attribute overrun: treat-as-withdraw of 198.18.11.0/24.
    wait_for(
        "treat-as-withdraw of 198.18.11.0/24",
        Duration::from_secs(10),
        || {
            if has("198.18.11.0/24")? {
                Err("still there".into())
            } else {
                Ok(())
            }
        },
    );
    // The same session still takes good routes.
    wait_for(
        "198.18.12.0/24 after the bad ones",
        Duration::from_secs(10),
        || {
            if has("198.18.12.0/24")? {
                Ok(())
            } else {
                Err("not yet".into())
            }
        },
    );
    // The unparseable NLRI resets only this session, with UPDATE Message Error / Invalid Network Field.
    wait_for(
        "NOTIFICATION 3/10 to the raw client",
        Duration::from_secs(15),
        || {
            let log = lab_log(&kbgp);
            if log.contains("Invalid Network Field") {
                Ok(())
            } else {
                Err("no notification yet".into())
            }
        },
    );
    wait_for("raw client to see 3/10", Duration::from_secs(10), || {
        let out = std::fs::read_to_string(lab_path(&kbgp, "raw.log")).unwrap_or_default();
        if out.contains("\"code\": 3, \"subcode\": 10") {
            Ok(())
        } else {
            Err(out)
        }
    });
    // Routes of the reset session are gone, BIRD's session and route are untouched.
    wait_for("raw peer's routes removed", Duration::from_secs(10), || {
        if has("198.18.12.0/24")? {
            Err("still there".into())
        } else {
            Ok(())
        }
    });
    let after = kbgp.peer("192.0.2.1").unwrap();
    assert_eq!(after["state"], "Established");
    assert_eq!(after["established_at"], before["established_at"]);
    assert_eq!(after["established_count"], 1);
    kbgp.wait_received("192.0.2.1", "198.18.1.0/24");
    assert!(bird.protocol("k4").contains("Established"));
    assert!(lab.proc(kbgp.idx).alive(), "the daemon must still run");
    let _ = raw;
}

fn lab_path(k: &Kbgp, f: &str) -> std::path::PathBuf {
    k.sock.parent().unwrap().join(f)
}

fn lab_log(k: &Kbgp) -> String {
    std::fs::read_to_string(lab_path(k, &format!("{}.log", k.name))).unwrap_or_default()
}
