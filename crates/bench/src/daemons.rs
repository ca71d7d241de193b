//! The daemons under test, each configured the same way: AS 65000 at
//! 198.18.0.2, an eBGP session to the injector (AS 65001) and one to the
//! monitor (AS 65002), everything from the injector passed to the monitor,
//! no kernel route installation, connecting out (the tools listen).

use std::path::Path;

use anyhow::{Context, Result};
use tokio::process::{Child, Command};

fn spawn(cmd: &mut Command, log: &Path) -> Result<Child> {
    let f = std::fs::File::create(log)?;
    Ok(cmd
        .stdout(f.try_clone()?)
        .stderr(f)
        .kill_on_drop(true)
        .spawn()?)
}

/// kbgp with the configuration directory `cfg`.
/// KBGP_BENCH_WRAP="valgrind --tool=callgrind" runs it under a profiler.
fn spawn_kbgp(dir: &Path, kbgp: &Path, cfg: &Path, log: &Path) -> Result<Child> {
    let wrap: Vec<String> = std::env::var("KBGP_BENCH_WRAP")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let mut cmd = match wrap.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(kbgp);
            c
        }
        None => Command::new(kbgp),
    };
    spawn(
        cmd.args(["daemon", "--config-dir"])
            .arg(cfg)
            .args(["--node", "bench", "--log-level", "warn", "--api-socket"])
            .arg(dir.join("kbgp.sock")),
        log,
    )
}

/// FRR's bgpd with `conf`, bound to the daemon's address, no zebra.
fn spawn_frr(d: &Path, conf: &Path, log: &Path) -> Result<Child> {
    spawn(
        Command::new("/usr/lib/frr/bgpd")
            .args([
                "-S",
                "-Z",
                "-n",
                "-l",
                "198.18.0.2",
                "-p",
                "0",
                "-u",
                "root",
                "-g",
                "root",
                "-f",
            ])
            .arg(conf)
            .arg("-i")
            .arg(d.join("bgpd.pid"))
            .arg("--vty_socket")
            .arg(d)
            .arg("-z")
            .arg(d.join("zserv.api")),
        log,
    )
}

fn spawn_bird(dir: &Path, conf: &Path, log: &Path) -> Result<Child> {
    spawn(
        Command::new("bird")
            .arg("-f")
            .arg("-c")
            .arg(conf)
            .arg("-s")
            .arg(dir.join("bird.ctl")),
        log,
    )
}

fn spawn_gobgp(conf: &Path, log: &Path) -> Result<Child> {
    spawn(
        Command::new("gobgpd").arg("-f").arg(conf).args([
            "-t",
            "toml",
            "--api-hosts",
            "127.0.0.1:50051",
            "--log-level",
            "warn",
        ]),
        log,
    )
}

/// Scenario (c): the daemon (198.18.0.2, AS 65000, cluster id 198.18.0.2)
/// reflects between iBGP route-reflector clients at `clients`, connecting
/// out to each; no kernel routes.
pub fn start_rr(
    daemon: &str,
    dir: &Path,
    kbgp: &Path,
    clients: &[std::net::Ipv4Addr],
) -> Result<Child> {
    let log = dir.join(format!("{daemon}.log"));
    let each =
        |f: &dyn Fn(&std::net::Ipv4Addr) -> String| clients.iter().map(f).collect::<String>();
    match daemon {
        "kbgp" => {
            let cfg = dir.join("kbgp");
            std::fs::create_dir_all(&cfg)?;
            std::fs::write(
                cfg.join("bench.yaml"),
                "apiVersion: v1\nkind: Node\nmetadata: {name: bench}\nspec: {bgp: {routeReflectorClusterID: 198.18.0.2}}\n\
                 status: {addresses: [{type: InternalIP, address: 198.18.0.2}]}\n---\n\
                 apiVersion: kbgp.io/v1alpha1\nkind: BGPConfiguration\nmetadata: {name: default}\n\
                 spec: {asNumber: 65000, nodeToNodeMeshEnabled: false, programKernelRoutes: false}\n"
                    .to_string()
                    + &each(&|ip| {
                        format!(
                            "---\napiVersion: kbgp.io/v1alpha1\nkind: BGPPeer\nmetadata: {{name: c-{}}}\n\
                             spec: {{peerIP: {ip}, asNumber: 65000, sourceAddress: 198.18.0.2}}\n",
                            ip.to_string().replace('.', "-")
                        )
                    }),
            )?;
            spawn_kbgp(dir, kbgp, &cfg, &log)
        }
        "bird" => {
            let conf = dir.join("bird.conf");
            std::fs::write(
                &conf,
                "router id 198.18.0.2;\nprotocol device {}\nprotocol direct { ipv4; }\n\
                 template bgp rrc { local 198.18.0.2 as 65000; rr client; rr cluster id 198.18.0.2; strict bind; ipv4 { import all; export all; }; }\n"
                    .to_string()
                    + &each(&|ip| {
                        format!(
                            "protocol bgp c_{} from rrc {{ neighbor {ip} as 65000; }}\n",
                            ip.to_string().replace('.', "_")
                        )
                    }),
            )?;
            spawn_bird(dir, &conf, &log)
        }
        "frr" => {
            let d = dir.join("frr");
            std::fs::create_dir_all(&d)?;
            let conf = d.join("bgpd.conf");
            std::fs::write(
                &conf,
                "frr defaults traditional\nhostname dut\nrouter bgp 65000\n bgp router-id 198.18.0.2\n bgp cluster-id 198.18.0.2\n\
                 neighbor RR peer-group\n neighbor RR remote-as 65000\n neighbor RR update-source 198.18.0.2\n"
                    .to_string()
                    + &each(&|ip| format!(" neighbor {ip} peer-group RR\n"))
                    + " address-family ipv4 unicast\n  neighbor RR route-reflector-client\n exit-address-family\n",
            )?;
            spawn_frr(&d, &conf, &log)
        }
        "gobgp" => {
            let conf = dir.join("gobgp.toml");
            std::fs::write(
                &conf,
                "[global.config]\n  as = 65000\n  router-id = \"198.18.0.2\"\n  port = -1\n"
                    .to_string()
                    + &each(&|ip| {
                        format!(
                            "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{ip}\"\n    peer-as = 65000\n\
                             [neighbors.transport.config]\n    local-address = \"198.18.0.2\"\n\
                             [neighbors.route-reflector.config]\n    route-reflector-client = true\n    route-reflector-cluster-id = \"198.18.0.2\"\n"
                        )
                    }),
            )?;
            spawn_gobgp(&conf, &log)
        }
        other => Err(anyhow::anyhow!("unknown daemon {other:?}")).context("--daemon"),
    }
}

/// `kernel`: kbgp programs the kernel (scenario d); the others never do.
pub fn start(
    daemon: &str,
    dir: &Path,
    kbgp: &Path,
    kernel: bool,
    injectors: &[(std::net::Ipv4Addr, u32)],
) -> Result<Child> {
    let log = dir.join(format!("{daemon}.log"));
    // Scenario (b): nothing is exported to the injectors (BIRD: `export none`
    // on them in every scenario), so every daemon feeds only the monitor.
    let multi = injectors.len() > 1;
    match daemon {
        "kbgp" => {
            let cfg = dir.join("kbgp");
            std::fs::create_dir_all(&cfg)?;
            std::fs::write(
                cfg.join("bench.yaml"),
                format!("apiVersion: v1\nkind: Node\nmetadata: {{name: bench}}\nstatus: {{addresses: [{{type: InternalIP, address: 198.18.0.2}}]}}\n---\n\
                 apiVersion: kbgp.io/v1alpha1\nkind: BGPConfiguration\nmetadata: {{name: default}}\n\
                 spec: {{asNumber: 65000, nodeToNodeMeshEnabled: false, programKernelRoutes: {kernel}}}\n---\n\
                 apiVersion: kbgp.io/v1alpha1\nkind: BGPPeer\nmetadata: {{name: monitor}}\nspec: {{peerIP: 198.18.0.3, asNumber: 65002, ebgpMultihop: 2, sourceAddress: 198.18.0.2}}\n{}",
                    injectors
                        .iter()
                        .enumerate()
                        .map(|(i, (ip, asn))| format!(
                            "---\napiVersion: kbgp.io/v1alpha1\nkind: BGPPeer\nmetadata: {{name: injector{i}}}\n\
                             spec: {{peerIP: {ip}, asNumber: {asn}, transit: true, ebgpMultihop: 2, sourceAddress: 198.18.0.2{}}}\n",
                            if multi { ", filters: [no-export]" } else { "" }
                        ))
                        .collect::<String>()
                        + if multi {
                            "---\napiVersion: kbgp.io/v1alpha1\nkind: BGPFilter\nmetadata: {name: no-export}\nspec: {exportV4: [{action: Reject}]}\n"
                        } else {
                            ""
                        }
                ),
            )?;
            spawn_kbgp(dir, kbgp, &cfg, &log)
        }
        "bird" => {
            let conf = dir.join("bird.conf");
            std::fs::write(
                &conf,
                format!(
                    "router id 198.18.0.2;\nprotocol device {{}}\nprotocol direct {{ ipv4; }}\n{}\
                     protocol bgp monitor {{ local 198.18.0.2 as 65000; neighbor 198.18.0.3 as 65002; multihop; strict bind; ipv4 {{ import none; export all; }}; }}\n",
                    injectors
                        .iter()
                        .enumerate()
                        .map(|(i, (ip, asn))| format!(
                            "protocol bgp injector{i} {{ local 198.18.0.2 as 65000; neighbor {ip} as {asn}; multihop; strict bind; ipv4 {{ import all; export none; }}; }}\n"
                        ))
                        .collect::<String>()
                ),
            )?;
            spawn_bird(dir, &conf, &log)
        }
        "frr" => {
            let d = dir.join("frr");
            std::fs::create_dir_all(&d)?;
            let conf = d.join("bgpd.conf");
            std::fs::write(
                &conf,
                format!(
                    "frr defaults traditional\nhostname dut\nrouter bgp 65000\n bgp router-id 198.18.0.2\n no bgp ebgp-requires-policy\n{}\
                     neighbor 198.18.0.3 remote-as 65002\n neighbor 198.18.0.3 ebgp-multihop 2\n",
                    injectors
                        .iter()
                        .map(|(ip, asn)| format!(
                            " neighbor {ip} remote-as {asn}\n neighbor {ip} ebgp-multihop 2\n{}",
                            if multi { format!(" neighbor {ip} route-map NOEXPORT out\n") } else { String::new() }
                        ))
                        .collect::<String>()
                ) + if multi { "route-map NOEXPORT deny 10\n" } else { "" },
            )?;
            spawn_frr(&d, &conf, &log)
        }
        "gobgp" => {
            let conf = dir.join("gobgp.toml");
            std::fs::write(
                &conf,
                std::iter::once(
                    "[global.config]\n  as = 65000\n  router-id = \"198.18.0.2\"\n  port = -1\n".to_string(),
                )
                .chain(
                    injectors
                        .iter()
                        .map(|(ip, asn)| (ip.to_string(), *asn))
                        .chain([("198.18.0.3".to_string(), 65002)])
                        .map(|(ip, asn)| {
                            format!(
                                "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{ip}\"\n    peer-as = {asn}\n\
                                 [neighbors.transport.config]\n    local-address = \"198.18.0.2\"\n\
                                 [neighbors.ebgp-multihop.config]\n    enabled = true\n    multihop-ttl = 2\n{}",
                                if multi && asn != 65002 {
                                    "  [neighbors.apply-policy.config]\n    default-export-policy = \"reject-route\"\n"
                                } else {
                                    ""
                                }
                            )
                        }),
                )
                .collect::<String>(),
            )?;
            spawn_gobgp(&conf, &log)
        }
        other => Err(anyhow::anyhow!("unknown daemon {other:?}")).context("--daemon"),
    }
}
