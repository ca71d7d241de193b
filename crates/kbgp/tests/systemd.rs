//! kbgp as a systemd service: the notify protocol (READY, WATCHDOG,
//! RELOADING, STOPPING) seen on a socket the test owns, the unit file
//! accepted by `systemd-analyze verify`, and a SIGHUP reload (with file
//! polling off) that adds a peer without resetting the existing session.

mod common;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::*;

fn recv_until(sock: &UnixDatagram, want: &str, got: &mut Vec<String>) {
    let start = Instant::now();
    let mut buf = [0u8; 512];
    while start.elapsed() < Duration::from_secs(15) {
        if got.iter().any(|m| m.contains(want)) {
            return;
        }
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    panic!("no {want:?} from kbgp; got {got:?}");
}

#[test]
fn sd_notify_watchdog_sighup_reload_and_unit_file() {
    let mut lab = Lab::new("systemd");
    let k = lab.ns("k");
    let a = lab.ns("a");
    let c = lab.ns("c");
    lab.lan(&[
        (&k, &["192.0.2.2/24"]),
        (&a, &["192.0.2.10/24"]),
        (&c, &["192.0.2.12/24"]),
    ]);
    lab.bird(
        "a",
        &a,
        &bird_speaker(
            "192.0.2.10",
            65010,
            "192.0.2.2",
            &[],
            "import all; export none;",
            false,
        ),
    );
    lab.bird(
        "c",
        &c,
        &bird_speaker(
            "192.0.2.12",
            65020,
            "192.0.2.2",
            &[],
            "import all; export none;",
            false,
        ),
    );
    let cfg = lab.path("kbgp-cfg");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("node.yaml"),
        node_yaml("host", &["192.0.2.2"], &[]),
    )
    .unwrap();
    std::fs::write(
        cfg.join("bgpconfig.yaml"),
        "apiVersion: kbgp.io/v1alpha1\nkind: BGPConfiguration\nmetadata: {name: default}\nspec: {asNumber: 65001, nodeToNodeMeshEnabled: false, prefixes: [192.0.2.2/32]}\n",
    )
    .unwrap();
    std::fs::write(cfg.join("peer-a.yaml"), peer_yaml("a", "192.0.2.10", 65010)).unwrap();

    let notify_path = lab.path("notify.sock");
    let sock = UnixDatagram::bind(&notify_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let api = lab.path("kbgp.sock");
    let idx = lab.spawn_env(
        "kbgp",
        &k,
        &[
            KBGP,
            "daemon",
            "--config-dir",
            cfg.to_str().unwrap(),
            "--node",
            "host",
            "--api-socket",
            api.to_str().unwrap(),
            "--poll-interval",
            "3600",
        ],
        &[
            ("NOTIFY_SOCKET", notify_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
            ("JOURNAL_STREAM", "8:1"),
        ],
    );
    let mut got = Vec::new();
    recv_until(&sock, "READY=1", &mut got);
    recv_until(&sock, "WATCHDOG=1", &mut got);
    // Under systemd, log lines carry no timestamp of their own (the journal adds one).
    std::thread::sleep(Duration::from_millis(300));
    let first = lab.log("kbgp");
    assert!(
        first.lines().next().is_some_and(|l| !l.starts_with("20")),
        "{first}"
    );

    let kbgp = Kbgp {
        sock: api,
        cfg: cfg.clone(),
        idx,
        name: "kbgp".into(),
    };
    let a0 = kbgp.wait_established("192.0.2.10");
    // Edit, then SIGHUP: the new peer comes up, the old session is untouched.
    std::fs::write(cfg.join("peer-c.yaml"), peer_yaml("c", "192.0.2.12", 65020)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        kbgp.peer("192.0.2.12").is_err(),
        "no reload without SIGHUP (polling is off)"
    );
    let pid = lab.proc(idx).pid().to_string();
    got.clear();
    sh(&["kill", "-HUP", &pid]);
    recv_until(&sock, "RELOADING=1", &mut got);
    recv_until(&sock, "READY=1", &mut got);
    kbgp.wait_established("192.0.2.12");
    let a1 = kbgp.peer("192.0.2.10").unwrap();
    assert_eq!(a1["established_at"], a0["established_at"]);
    assert_eq!(a1["established_count"], 1);

    got.clear();
    sh(&["kill", "-TERM", &pid]);
    recv_until(&sock, "STOPPING=1", &mut got);
    let start = Instant::now();
    while lab.proc(idx).alive() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!lab.proc(idx).alive(), "kbgp exits after SIGTERM");

    // The unit file, pointed at this build, passes systemd's own checks.
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/systemd/kbgp.service"
    ))
    .unwrap();
    let unit = unit.replace("/usr/local/bin/kbgp", KBGP);
    let unit_path = lab.path("kbgp.service");
    std::fs::write(&unit_path, unit).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", unit_path.to_str().unwrap()])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        !text.contains("kbgp.service:"),
        "systemd-analyze complains: {text}"
    );
}
