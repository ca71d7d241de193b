//! A peer that stops reading must not stall the daemon: while its output is
//! full, kbgp holds back its changes (one bit per destination) and keeps
//! serving everyone else; when it reads again it gets the table as it is
//! now, withdrawals of what went meanwhile included.

mod common;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;

/// Prefixes the injector announces (/32s from 198.18.0.0, inside the
/// 198.18.0.0/15 benchmark range; they are routes only, no traffic goes there).
const N: u32 = 100_000;
/// Rounds of the whole table, each with other large communities (so each
/// round changes every route: ~7 MB of UPDATEs to every peer).
const ROUNDS: u32 = 8;

fn host(i: u32) -> String {
    format!(
        "{}/32",
        Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i)
    )
}

/// What a peer should hold at the end: prefix -> round * 10^6 + i, from
/// its large community (65005, round, i).
fn expected() -> BTreeMap<String, u64> {
    let mut want = BTreeMap::new();
    for i in 0..N {
        // 0..1000 are withdrawn after the last round; 0..500 come back (round 9).
        let round = match i {
            0..500 => 9,
            500..1000 => continue,
            _ => ROUNDS,
        };
        want.insert(host(i), (round * 1_000_000 + i) as u64);
    }
    want
}

fn vm_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_peer_that_stops_reading_does_not_stall_the_others_and_catches_up() {
    let mut lab = Lab::new("slowpeer");
    let k = lab.ns("k");
    let b = lab.ns("b");
    lab.link(
        &k,
        &["192.0.2.2/24"],
        &b,
        &["192.0.2.1/24", "192.0.2.3/24", "192.0.2.4/24"],
    );
    let bird = lab.bird(
        "bird",
        &b,
        "router id 192.0.2.1;\nprotocol device {}\n\
         protocol bgp k4 { local 192.0.2.1 as 65002; neighbor 192.0.2.2 as 65001; ipv4 { import all; export none; }; }\n",
    );
    // The injector's routes are passed on to the other eBGP peers (transit).
    let passive = |name: &str, ip: &str, asn: u32, transit: bool| {
        format!("apiVersion: kbgp.io/v1alpha1\nkind: BGPPeer\nmetadata: {{name: {name}}}\nspec: {{peerIP: {ip}, asNumber: {asn}, passive: true, transit: {transit}}}\n")
    };
    let kbgp = lab.kbgp(
        "kbgp",
        &k,
        "n1",
        &[
            ("node.yaml", &node_yaml("n1", &["192.0.2.2"], &[])),
            ("bgpconfig.yaml", "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\nspec: {asNumber: 65001}\n"),
            (
                "peers.yaml",
                &format!(
                    "{}---\n{}---\n{}",
                    peer_yaml("bird", "192.0.2.1", 65002),
                    passive("injector", "192.0.2.3", 65005, true),
                    passive("stuck", "192.0.2.4", 65006, false)
                ),
            ),
        ],
    );
    kbgp.wait_established("192.0.2.1");
    let tool = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/raw_bgp.py");

    // The peer that stops reading once its session is up.
    let resume = lab.path("resume");
    let table = lab.path("stuck.json");
    let stuck_args = [
        "python3",
        tool,
        "--connect",
        "192.0.2.2",
        "--bind",
        "192.0.2.4",
        "--asn",
        "65006",
        "--id",
        "192.0.2.4",
        "--rcvbuf",
        "4096",
        "--pause-read",
        resume.to_str().unwrap(),
        "--table",
        table.to_str().unwrap(),
        "--hold",
        "600",
    ];
    lab.spawn("stuck", &b, &stuck_args);
    kbgp.wait_established("192.0.2.4");
    wait_for(
        "the stuck peer to stop reading",
        Duration::from_secs(10),
        || {
            let log = std::fs::read_to_string(lab.path("stuck.log")).unwrap_or_default();
            if log.contains("\"paused\"") {
                Ok(())
            } else {
                Err(log)
            }
        },
    );

    // The injector: ROUNDS full tables, then withdraw 0..1000, then 0..500 again.
    let mut steps: Vec<String> = Vec::new();
    for r in 1..=ROUNDS {
        steps.push(format!("table:{r}:0:{N}"));
        steps.push("sleep:2".into());
    }
    steps.push("withdraw:0:1000".into());
    steps.push("sleep:2".into());
    steps.push("table:9:0:500".into());
    let mut args: Vec<String> = [
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
        "600",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for s in &steps {
        args.push("--step".into());
        args.push(s.clone());
    }
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    lab.spawn("injector", &b, &args);

    // BIRD gets the final table while the stuck peer reads nothing.
    let want = expected();
    let last = host(N - 1);
    wait_for(
        "BIRD to hold the final table",
        Duration::from_secs(120),
        || {
            let count = bird.cli("show route count");
            let r0 = bird.cli(&format!("show route {} all", host(0)));
            let rn = bird.cli(&format!("show route {last} all"));
            let gone = bird.cli(&format!("show route {} all", host(700)));
            let ok = count.contains(&format!("{} of {} routes", want.len(), want.len()))
                && r0.contains("BGP.large_community: (65005, 9, 0)")
                && rn.contains(&format!(
                    "BGP.large_community: (65005, {ROUNDS}, {})",
                    N - 1
                ))
                && !gone.contains(&host(700));
            if ok {
                Ok(())
            } else {
                Err(format!("{count} / {r0} / {rn} / {gone}"))
            }
        },
    );
    let st = kbgp.peer("192.0.2.4").unwrap();
    assert_eq!(st["state"], "Established", "{st}");
    let stalls = st["stalls"].as_u64().unwrap_or(0);
    assert!(stalls >= 1, "the stuck peer's output never filled: {st}");
    assert!(st["held_back"].as_u64().unwrap_or(0) > 0, "{st}");
    // What is queued for it stays bounded: about 8 MiB in the outbox and
    // 4 MiB for the writer, whatever was sent meanwhile (about 55 MB).
    let pid = lab.proc(kbgp.idx).pid();
    let (rss, hwm) = (vm_kib(pid, "VmRSS:"), vm_kib(pid, "VmHWM:"));
    eprintln!("kbgp RSS {rss} KiB, peak {hwm} KiB, stalls {stalls}");
    let log = std::fs::read_to_string(lab.path("stuck.log")).unwrap_or_default();
    assert!(!log.contains("\"reading\""), "it was meant to be paused");

    // It reads again and ends up with exactly the final table.
    std::fs::write(&resume, "").unwrap();
    wait_for(
        "the stuck peer to catch up",
        Duration::from_secs(120),
        || {
            let got: BTreeMap<String, u64> = std::fs::read_to_string(&table)
                .ok()
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or_default();
            if got == want {
                Ok(())
            } else {
                let missing = want.keys().filter(|p| !got.contains_key(*p)).count();
                let extra = got.keys().filter(|p| !want.contains_key(*p)).count();
                let wrong = want
                    .iter()
                    .filter(|(p, m)| got.get(*p).is_some_and(|g| g != *m))
                    .count();
                Err(format!(
                    "{} held: {missing} missing, {extra} extra, {wrong} with an old community",
                    got.len()
                ))
            }
        },
    );
    let st = kbgp.peer("192.0.2.4").unwrap();
    assert_eq!(st["held_back"].as_u64().unwrap_or(0), 0, "{st}");
    assert_eq!(st["established_count"], 1, "{st}");
    let b = kbgp.peer("192.0.2.1").unwrap();
    assert_eq!(b["established_count"], 1, "{b}");
    assert!(lab.proc(kbgp.idx).alive(), "the daemon must still run");
}
