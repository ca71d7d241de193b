//! Live configuration changes: a peer added or removed by editing a file does
//! not reset the other sessions; a bad file is refused and the last good
//! configuration stays; SIGHUP reloads at once.

mod common;
use std::time::Duration;

use common::*;

#[test]
fn peers_added_and_removed_live_without_resetting_others() {
    let mut lab = Lab::new("reload");
    let k = lab.ns("k");
    let a = lab.ns("a");
    let c = lab.ns("c");
    lab.link(&k, &["192.0.2.2/24"], &a, &["192.0.2.1/24"]);
    lab.link(&k, &["198.18.0.2/24"], &c, &["198.18.0.1/24"]);
    let _bird_a = lab.bird(
        "bird-a",
        &a,
        &bird_speaker(
            "192.0.2.1",
            65002,
            "192.0.2.2",
            &["198.18.100.0/24"],
            "import all; export all;",
            true,
        ),
    );
    let bird_c = lab.bird(
        "bird-c",
        &c,
        &bird_speaker(
            "198.18.0.1",
            65003,
            "198.18.0.2",
            &["198.18.200.0/24"],
            "import all; export all;",
            true,
        ),
    );
    let kbgp = lab.kbgp(
        "kbgp",
        &k,
        "n1",
        &[
            ("node.yaml", &node_yaml("n1", &["192.0.2.2"], &["10.244.1.0/24"])),
            ("bgpconfig.yaml", "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\nspec: {asNumber: 65001}\n"),
            ("peer-a.yaml", &peer_yaml("a", "192.0.2.1", 65002)),
        ],
    );
    let a0 = kbgp.wait_established("192.0.2.1");

    // Add peer C by writing a file.
    kbgp.write("peer-c.yaml", &peer_yaml("c", "198.18.0.1", 65003));
    kbgp.wait_established("198.18.0.1");
    bird_c.wait_route("10.244.1.0/24");
    let a1 = kbgp.peer("192.0.2.1").unwrap();
    assert_eq!(
        a1["established_at"], a0["established_at"],
        "adding a peer must not reset others"
    );
    assert_eq!(a1["established_count"], 1);

    // A bad file: refused with a clear error, both sessions stay.
    kbgp.write("broken.yaml", "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: x}\nspec: {peerIP: 192.0.2.9, asNumbr: 1}\n");
    wait_for("the rejection in the log", Duration::from_secs(10), || {
        let log = lab.log("kbgp");
        if log.contains("configuration rejected")
            && log.contains("broken.yaml")
            && log.contains("asNumbr")
        {
            Ok(())
        } else {
            Err("not yet".into())
        }
    });
    assert_eq!(kbgp.peer("198.18.0.1").unwrap()["state"], "Established");
    assert_eq!(kbgp.peer("192.0.2.1").unwrap()["established_count"], 1);
    kbgp.remove("broken.yaml");

    // Remove peer C: it gets Cease / Peer De-configured; A is untouched.
    kbgp.remove("peer-c.yaml");
    wait_for(
        "BIRD C to see Peer de-configured",
        Duration::from_secs(15),
        || {
            let out = bird_c.protocol("kbgp");
            if out.contains("Peer de-configured") {
                Ok(())
            } else {
                Err(out)
            }
        },
    );
    let (ok, _) = kbgp.cli(&["show", "neighbors", "198.18.0.1"]);
    assert!(!ok, "the removed peer is gone from the API");
    let a2 = kbgp.peer("192.0.2.1").unwrap();
    assert_eq!(a2["established_at"], a0["established_at"]);
    assert_eq!(a2["state"], "Established");

    // SIGHUP reloads at once.
    let pid = lab.proc(kbgp.idx).pid();
    // `ip netns exec` execs the daemon, so the child PID is kbgp's.
    sh(&["kill", "-HUP", &pid.to_string()]);
    wait_for("a SIGHUP reload", Duration::from_secs(5), || {
        if lab.log("kbgp").contains("SIGHUP") {
            Ok(())
        } else {
            Err("no".into())
        }
    });
    assert_eq!(kbgp.peer("192.0.2.1").unwrap()["established_count"], 1);
}

#[test]
fn cli_exit_codes_and_messages() {
    let (ok, out) = sh_ok(&[KBGP, "status", "--api-socket", "/nonexistent/kbgp.sock"]);
    assert!(!ok);
    assert!(out.contains("kbgp daemon is not running"), "{out}");
    let st = std::process::Command::new(KBGP)
        .args(["status", "--api-socket", "/nonexistent/kbgp.sock"])
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(3));
    // `check` validates a seed directory without running anything.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/seed-002");
    let (ok, out) = sh_ok(&[
        KBGP,
        "check",
        "--config-dir",
        dir,
        "--node",
        "kube-controlplane-001",
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("originate 192.168.170.0/24 (pod CIDR) 65535:120 65535:300:100"),
        "{out}"
    );
    assert!(
        out.contains("peer 172.21.1.18 port 178 remote-as 65535 (node-to-node mesh"),
        "{out}"
    );
    let (ok, out) = sh_ok(&[KBGP, "check", "--config-dir", dir, "--node", "nosuch"]);
    assert!(!ok && out.contains("no Node resource"), "{out}");
    // A daemon with an invalid directory refuses to start, saying why.
    let tmp = std::env::temp_dir().join(format!("kbgp-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(
        tmp.join("x.yaml"),
        "apiVersion: v1\nkind: Node\nmetadata: {name: n}\nspec: [\n",
    )
    .unwrap();
    let (ok, out) = sh_ok(&[
        KBGP,
        "daemon",
        "--config-dir",
        tmp.to_str().unwrap(),
        "--node",
        "n",
        "--api-socket",
        tmp.join("s").to_str().unwrap(),
    ]);
    assert!(
        !ok && out.contains("x.yaml, document 1: invalid YAML"),
        "{out}"
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}
