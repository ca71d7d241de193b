//! Test lab: network namespaces made by the test, real daemons started in
//! them by PID, and cleanup of both on drop (also when the test fails).
//!
//! Addresses used live only inside these namespaces: 192.0.2.0/24,
//! 198.18.0.0/15, 2001:db8::/32 and the seeds' private addresses.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub const KBGP: &str = env!("CARGO_BIN_EXE_kbgp");

pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("run {args:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn sh_ok(args: &[&str]) -> (bool, String) {
    match Command::new(args[0]).args(&args[1..]).output() {
        Ok(o) => (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => (false, e.to_string()),
    }
}

/// Poll `f` until it returns Some, or panic after `timeout` with `what` and the last observation.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < timeout {
        match f() {
            Ok(v) => return v,
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("timed out after {timeout:?} waiting for {what}; last: {last}");
}

pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
    /// SIGTERM, then SIGKILL after a grace period; always reaped.
    pub fn stop(&mut self) {
        if self.alive() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let start = Instant::now();
            while self.alive() && start.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(50));
            }
            if self.alive() {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }
}

pub struct Lab {
    pub prefix: String,
    pub dir: PathBuf,
    namespaces: Vec<String>,
    procs: Vec<Proc>,
    /// Daemons that fork (FRR): PID files to kill from.
    pidfiles: Vec<PathBuf>,
    links: u32,
}

impl Lab {
    pub fn new(test: &str) -> Lab {
        assert!(
            sh(&["id", "-u"]).trim() == "0",
            "interop tests need root (network namespaces)"
        );
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!(
            "k{}{}",
            std::process::id() % 100_000,
            (b'a' + n as u8) as char
        );
        let dir = std::env::temp_dir().join(format!("kbgp-test-{test}-{prefix}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        sh(&["chmod", "755", dir.to_str().unwrap()]);
        Lab {
            prefix,
            dir,
            namespaces: vec![],
            procs: vec![],
            pidfiles: vec![],
            links: 0,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A namespace with loopback up, forwarding on, IPv6 on.
    pub fn ns(&mut self, name: &str) -> String {
        let ns = format!("{}-{name}", self.prefix);
        sh(&["ip", "netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        for kv in [
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
            "net.ipv6.conf.all.disable_ipv6=0",
        ] {
            sh(&["ip", "netns", "exec", &ns, "sysctl", "-qw", kv]);
        }
        ns
    }

    /// A veth between two namespaces with the given addresses (CIDR form, IPv6 without DAD).
    pub fn link(
        &mut self,
        a: &str,
        a_addrs: &[&str],
        b: &str,
        b_addrs: &[&str],
    ) -> (String, String) {
        self.links += 1;
        let ia = format!("{}{}a", self.prefix, self.links);
        let ib = format!("{}{}b", self.prefix, self.links);
        sh(&[
            "ip", "link", "add", &ia, "netns", a, "type", "veth", "peer", "name", &ib, "netns", b,
        ]);
        for (ns, ifn, addrs) in [(a, &ia, a_addrs), (b, &ib, b_addrs)] {
            for addr in addrs {
                if addr.contains(':') {
                    sh(&["ip", "-n", ns, "addr", "add", addr, "dev", ifn, "nodad"]);
                } else {
                    sh(&["ip", "-n", ns, "addr", "add", addr, "dev", ifn]);
                }
            }
            sh(&["ip", "-n", ns, "link", "set", ifn, "up"]);
        }
        (ia, ib)
    }

    pub fn spawn(&mut self, name: &str, ns: &str, args: &[&str]) -> usize {
        self.spawn_env(name, ns, args, &[])
    }

    pub fn spawn_env(
        &mut self,
        name: &str,
        ns: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> usize {
        let log = self.path(&format!("{name}.log"));
        let f = fs::File::create(&log).unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {args:?}: {e}"));
        self.procs.push(Proc {
            name: name.to_string(),
            child,
            log,
        });
        self.procs.len() - 1
    }

    pub fn proc(&mut self, idx: usize) -> &mut Proc {
        &mut self.procs[idx]
    }

    pub fn log(&self, name: &str) -> String {
        fs::read_to_string(self.path(&format!("{name}.log"))).unwrap_or_default()
    }

    // ---- kbgp ----

    /// Start `kbgp daemon` in `ns` on a copy of `cfg_dir` (or an empty dir).
    pub fn kbgp(&mut self, name: &str, ns: &str, node: &str, files: &[(&str, &str)]) -> Kbgp {
        let cfg = self.path(&format!("{name}-cfg"));
        fs::create_dir_all(&cfg).unwrap();
        for (f, text) in files {
            fs::write(cfg.join(f), text).unwrap();
        }
        self.kbgp_dir(name, ns, node, &cfg)
    }

    pub fn kbgp_dir(&mut self, name: &str, ns: &str, node: &str, cfg: &Path) -> Kbgp {
        self.kbgp_dir_args(name, ns, node, cfg, &[])
    }

    /// As `kbgp_dir`, with more daemon arguments.
    pub fn kbgp_dir_args(
        &mut self,
        name: &str,
        ns: &str,
        node: &str,
        cfg: &Path,
        extra: &[&str],
    ) -> Kbgp {
        let mut args = vec!["--config-dir", cfg.to_str().unwrap(), "--node", node];
        args.extend_from_slice(extra);
        let mut k = self.kbgp_daemon(name, ns, &args);
        k.cfg = cfg.to_path_buf();
        k
    }

    /// `kbgp daemon ARGS --api-socket ... --log-level debug` in `ns`, once its
    /// API socket is there (the configuration was read and applied).
    pub fn kbgp_daemon(&mut self, name: &str, ns: &str, args: &[&str]) -> Kbgp {
        let sock = self.path(&format!("{name}.sock"));
        let mut all = vec![KBGP, "daemon"];
        all.extend_from_slice(args);
        all.extend_from_slice(&[
            "--api-socket",
            sock.to_str().unwrap(),
            "--log-level",
            "debug",
        ]);
        let idx = self.spawn(name, ns, &all);
        let k = Kbgp {
            sock,
            cfg: PathBuf::new(),
            idx,
            name: name.to_string(),
        };
        wait_for(
            &format!("{name}: API socket (configuration read and applied)"),
            Duration::from_secs(30),
            || {
                if k.sock.exists() {
                    Ok(())
                } else {
                    Err(self.log(name))
                }
            },
        );
        k
    }

    // ---- BIRD ----

    pub fn bird(&mut self, name: &str, ns: &str, conf: &str) -> Bird {
        let c = self.path(&format!("{name}.conf"));
        fs::write(&c, conf).unwrap();
        let ctl = self.path(&format!("{name}.ctl"));
        let idx = self.spawn(
            name,
            ns,
            &[
                "bird",
                "-f",
                "-c",
                c.to_str().unwrap(),
                "-s",
                ctl.to_str().unwrap(),
            ],
        );
        let b = Bird { ctl, idx };
        wait_for("BIRD control socket", Duration::from_secs(10), || {
            if b.ctl.exists() {
                Ok(())
            } else {
                Err("no socket".into())
            }
        });
        b
    }

    // ---- FRR (bgpd only, no zebra) ----

    pub fn frr(&mut self, name: &str, ns: &str, conf: &str) -> Frr {
        let d = self.frr_dir(name);
        fs::write(d.join("frr.conf"), conf).unwrap();
        let idx = self.frr_daemon(
            name,
            ns,
            "bgpd",
            &d,
            "frr.conf",
            &["-S", "-u", "root", "-g", "root"],
        );
        self.frr_ready(d, idx)
    }

    // ---- GoBGP ----

    pub fn gobgp(&mut self, name: &str, ns: &str, conf_toml: &str) -> Gobgp {
        let c = self.path(&format!("{name}.toml"));
        fs::write(&c, conf_toml).unwrap();
        let idx = self.spawn(
            name,
            ns,
            &[
                "gobgpd",
                "-f",
                c.to_str().unwrap(),
                "-t",
                "toml",
                "--api-hosts",
                "127.0.0.1:50051",
                "--log-level",
                "debug",
            ],
        );
        let g = Gobgp {
            ns: ns.to_string(),
            idx,
        };
        wait_for("gobgpd API", Duration::from_secs(15), || {
            let (ok, out) = g.cli(&["global"]);
            if ok {
                Ok(())
            } else {
                Err(out)
            }
        });
        g
    }

    // ---- ExaBGP ----

    /// ExaBGP with `conf`; the received UPDATEs are written as JSON lines to `{name}.json`.
    pub fn exabgp(&mut self, name: &str, ns: &str, conf: &str) -> Exabgp {
        let c = self.path(&format!("{name}.conf"));
        fs::write(&c, conf).unwrap();
        let idx = self.spawn_env(
            name,
            ns,
            &["exabgp", c.to_str().unwrap()],
            &[
                ("exabgp.daemon.user", "root"),
                ("exabgp.log.destination", "stdout"),
                ("exabgp.daemon.drop", "false"),
            ],
        );
        Exabgp {
            json: self.path(&format!("{name}.json")),
            idx,
        }
    }

    /// A writer script for ExaBGP's process API: appends every JSON line to `path`.
    pub fn exabgp_sink(&self, name: &str) -> PathBuf {
        let script = self.path(&format!("{name}-sink.py"));
        let out = self.path(&format!("{name}.json"));
        fs::write(
            &script,
            format!(
                "import sys\nwith open({:?}, 'a') as f:\n    for line in sys.stdin:\n        f.write(line)\n        f.flush()\n",
                out.to_str().unwrap()
            ),
        )
        .unwrap();
        script
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for p in self.procs.iter_mut().rev() {
            p.stop();
        }
        for pf in &self.pidfiles {
            if let Ok(pid) = fs::read_to_string(pf) {
                let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
            }
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        if std::thread::panicking() {
            eprintln!("test files kept in {}", self.dir.display());
            for p in &self.procs {
                if let Ok(s) = fs::read_to_string(&p.log) {
                    let tail: Vec<&str> = s.lines().rev().take(40).collect();
                    eprintln!("---- {} (last lines) ----", p.name);
                    for l in tail.into_iter().rev() {
                        eprintln!("{l}");
                    }
                }
            }
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

pub struct Kbgp {
    pub sock: PathBuf,
    pub cfg: PathBuf,
    pub idx: usize,
    pub name: String,
}

impl Kbgp {
    pub fn cli(&self, args: &[&str]) -> (bool, String) {
        let mut a = vec![KBGP];
        a.extend_from_slice(args);
        a.extend_from_slice(&["--api-socket", self.sock.to_str().unwrap()]);
        sh_ok(&a)
    }

    pub fn json(&self, args: &[&str]) -> Result<Value, String> {
        let mut a = args.to_vec();
        a.extend_from_slice(&["-o", "json"]);
        let (ok, out) = self.cli(&a);
        if !ok {
            return Err(out);
        }
        serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))
    }

    pub fn peer(&self, addr: &str) -> Result<Value, String> {
        let v = self.json(&["show", "neighbors", addr])?;
        v["peers"]
            .get(0)
            .cloned()
            .ok_or_else(|| format!("no peer {addr}"))
    }

    pub fn wait_established(&self, addr: &str) -> Value {
        wait_for(
            &format!("kbgp session to {addr}"),
            Duration::from_secs(30),
            || {
                let p = self.peer(addr)?;
                if p["state"] == "Established" {
                    Ok(p)
                } else {
                    Err(p.to_string())
                }
            },
        )
    }

    /// Routes in kbgp's RIB (received or advertised).
    pub fn routes(&self, direction: &str, peer: &str) -> Result<Vec<Value>, String> {
        let v = self.json(&["show", "rib", "--peer", peer])?;
        Ok(v["routes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r["direction"] == direction)
            .collect())
    }

    pub fn wait_received(&self, peer: &str, prefix: &str) -> Value {
        wait_for(
            &format!("kbgp to receive {prefix} from {peer}"),
            Duration::from_secs(30),
            || {
                let r = self.routes("received", peer)?;
                r.into_iter()
                    .find(|x| x["prefix"] == prefix)
                    .ok_or_else(|| "not yet".to_string())
            },
        )
    }

    pub fn write(&self, file: &str, text: &str) {
        // Write then rename, so the daemon never reads half a file.
        let tmp = self.cfg.join(format!(".{file}.tmp"));
        fs::write(&tmp, text).unwrap();
        fs::rename(&tmp, self.cfg.join(file)).unwrap();
    }

    pub fn remove(&self, file: &str) {
        fs::remove_file(self.cfg.join(file)).unwrap();
    }
}

pub struct Bird {
    pub ctl: PathBuf,
    pub idx: usize,
}

impl Bird {
    pub fn cli(&self, cmd: &str) -> String {
        let mut a = vec!["birdc", "-s", self.ctl.to_str().unwrap()];
        a.extend(cmd.split_whitespace());
        sh_ok(&a).1
    }

    pub fn wait_route(&self, prefix: &str) -> String {
        wait_for(
            &format!("BIRD to have {prefix}"),
            Duration::from_secs(30),
            || {
                let out = self.cli(&format!("show route {prefix} all"));
                if out.contains(prefix) {
                    Ok(out)
                } else {
                    Err(out)
                }
            },
        )
    }

    pub fn protocol(&self, name: &str) -> String {
        self.cli(&format!("show protocols all {name}"))
    }
}

pub struct Frr {
    pub dir: PathBuf,
    pub idx: usize,
}

impl Frr {
    pub fn vtysh(&self, cmd: &str) -> String {
        sh_ok(&[
            "vtysh",
            "--vty_socket",
            self.dir.to_str().unwrap(),
            "-c",
            cmd,
        ])
        .1
    }

    pub fn json(&self, cmd: &str) -> Result<Value, String> {
        let out = self.vtysh(cmd);
        serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))
    }

    /// The best path of `prefix` in `afi` ("ipv4"/"ipv6"), once present.
    pub fn wait_route(&self, afi: &str, prefix: &str) -> Value {
        wait_for(
            &format!("FRR to have {prefix}"),
            Duration::from_secs(30),
            || {
                let v = self.json(&format!("show bgp {afi} unicast {prefix} json"))?;
                v["paths"].get(0).cloned().ok_or_else(|| v.to_string())
            },
        )
    }
}

pub struct Gobgp {
    pub ns: String,
    pub idx: usize,
}

impl Gobgp {
    pub fn cli(&self, args: &[&str]) -> (bool, String) {
        let mut a = vec![
            "ip",
            "netns",
            "exec",
            &self.ns,
            "gobgp",
            "-u",
            "127.0.0.1",
            "-p",
            "50051",
        ];
        a.extend_from_slice(args);
        sh_ok(&a)
    }

    pub fn rib(&self, family: &str) -> Result<Value, String> {
        let (ok, out) = self.cli(&["global", "rib", "-a", family, "-j"]);
        if !ok {
            return Err(out);
        }
        serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))
    }
}

pub struct Exabgp {
    pub json: PathBuf,
    pub idx: usize,
}

impl Exabgp {
    pub fn received(&self) -> Vec<Value> {
        fs::read_to_string(&self.json)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// A kbgp config directory's Node document.
pub fn node_yaml(name: &str, ips: &[&str], pod_cidrs: &[&str]) -> String {
    let addrs: String = ips
        .iter()
        .map(|ip| format!("  - type: InternalIP\n    address: {ip}\n"))
        .collect();
    let cidrs: String = pod_cidrs.iter().map(|c| format!("  - {c}\n")).collect();
    format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\nspec:\n  podCIDRs:\n{cidrs}status:\n  addresses:\n{addrs}")
}

pub fn peer_yaml(name: &str, ip: &str, asn: u32) -> String {
    format!("apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: {name}\nspec:\n  peerIP: {ip}\n  asNumber: {asn}\n")
}

/// Seed 002's BGPConfiguration (communities and prefix advertisements) with another AS.
pub fn seed002_config(asn: u32, mesh: bool) -> String {
    let text = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/seed-002/bgpconfig.yaml"),
    )
    .unwrap();
    text.replace("asNumber: 65535", &format!("asNumber: {asn}"))
        .replace(
            "nodeToNodeMeshEnabled: true",
            &format!("nodeToNodeMeshEnabled: {mesh}"),
        )
        .replace("  listenPort: 178\n", "")
}

impl Lab {
    /// A LAN: a bridge in its own namespace, one `eth0` per host namespace.
    pub fn lan(&mut self, hosts: &[(&str, &[&str])]) {
        let sw = self.ns("sw");
        sh(&["ip", "-n", &sw, "link", "add", "br0", "type", "bridge"]);
        sh(&["ip", "-n", &sw, "link", "set", "br0", "up"]);
        for (ns, addrs) in hosts {
            self.links += 1;
            let outer = format!("{}{}p", self.prefix, self.links);
            let tmp = format!("{}{}h", self.prefix, self.links);
            sh(&[
                "ip", "link", "add", &tmp, "netns", ns, "type", "veth", "peer", "name", &outer,
                "netns", &sw,
            ]);
            sh(&["ip", "-n", ns, "link", "set", &tmp, "name", "eth0"]);
            for a in *addrs {
                if a.contains(':') {
                    sh(&["ip", "-n", ns, "addr", "add", a, "dev", "eth0", "nodad"]);
                } else {
                    sh(&["ip", "-n", ns, "addr", "add", a, "dev", "eth0"]);
                }
            }
            sh(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
            sh(&[
                "ip", "-n", &sw, "link", "set", &outer, "master", "br0", "up",
            ]);
        }
    }

    /// Start kbgp on a copy of an examples/ directory.
    pub fn kbgp_example(&mut self, name: &str, ns: &str, node: &str, example: &str) -> Kbgp {
        self.kbgp_example_args(name, ns, node, example, &[])
    }

    pub fn kbgp_example_args(
        &mut self,
        name: &str,
        ns: &str,
        node: &str,
        example: &str,
        extra: &[&str],
    ) -> Kbgp {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples")
            .join(example);
        let cfg = self.path(&format!("{name}-cfg"));
        sh(&["cp", "-r", src.to_str().unwrap(), cfg.to_str().unwrap()]);
        self.kbgp_dir_args(name, ns, node, &cfg, extra)
    }
}

/// An HTTP GET from inside a namespace (Python's urllib: no curl needed).
pub fn http_get(ns: &str, url: &str) -> String {
    sh(&[
        "ip",
        "netns",
        "exec",
        ns,
        "python3",
        "-c",
        "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())",
        url,
    ])
}

/// `ip route show proto bgp` in a namespace: kbgp's routes (the output omits the `proto bgp` it filtered on).
pub fn bgp_routes(ns: &str) -> String {
    sh(&["ip", "-n", ns, "route", "show", "proto", "bgp"])
}

pub fn wait_kernel(ns: &str, what: &str, want: impl Fn(&str) -> bool) -> String {
    wait_for(what, Duration::from_secs(30), || {
        let r = bgp_routes(ns);
        if want(&r) {
            Ok(r)
        } else {
            Err(r)
        }
    })
}

/// Two namespaces `k` (kbgp: 192.0.2.2, 2001:db8::2) and `name` (the other
/// router: 192.0.2.1, 2001:db8::1) on one link.
pub fn dual_stack_pair(lab: &mut Lab, name: &str) -> (String, String) {
    let k = lab.ns("k");
    let other = lab.ns(name);
    lab.link(
        &k,
        &["192.0.2.2/24", "2001:db8::2/64"],
        &other,
        &["192.0.2.1/24", "2001:db8::1/64"],
    );
    (k, other)
}

/// kbgp node `n1` in `ns` (192.0.2.2, 2001:db8::2; pod CIDRs 192.168.170.0/24 and
/// 2001:db8:170::/64) with seed 002's BGPConfiguration in AS `asn`, peering with
/// `peers` as (name, address, AS).
pub fn seed002_node(lab: &mut Lab, ns: &str, asn: u32, peers: &[(&str, &str, u32)]) -> Kbgp {
    let peers: Vec<String> = peers
        .iter()
        .map(|(n, ip, a)| peer_yaml(n, ip, *a))
        .collect();
    lab.kbgp(
        "kbgp",
        ns,
        "n1",
        &[
            (
                "node.yaml",
                &node_yaml(
                    "n1",
                    &["192.0.2.2", "2001:db8::2"],
                    &["192.168.170.0/24", "2001:db8:170::/64"],
                ),
            ),
            ("bgpconfig.yaml", &seed002_config(asn, false)),
            ("peers.yaml", &peers.join("---\n")),
        ],
    )
}

impl Lab {
    /// FRR with zebra (needed for router advertisements, unnumbered peers and
    /// kernel routes) and bgpd, sharing one directory.
    pub fn frr_zebra(&mut self, name: &str, ns: &str, zebra_conf: &str, bgpd_conf: &str) -> Frr {
        let d = self.frr_dir(name);
        fs::write(d.join("zebra.conf"), zebra_conf).unwrap();
        fs::write(d.join("bgpd.conf"), bgpd_conf).unwrap();
        let user = ["-u", "frr", "-g", "frr"];
        self.frr_daemon(
            &format!("{name}-zebra"),
            ns,
            "zebra",
            &d,
            "zebra.conf",
            &user,
        );
        let zs = d.join("zserv.api");
        wait_for("zebra socket", Duration::from_secs(10), || {
            if zs.exists() {
                Ok(())
            } else {
                Err("no zserv".into())
            }
        });
        let idx = self.frr_daemon(name, ns, "bgpd", &d, "bgpd.conf", &user);
        self.frr_ready(d, idx)
    }

    /// A directory for one FRR instance, writable by FRR's user.
    fn frr_dir(&self, name: &str) -> PathBuf {
        let d = self.path(name);
        fs::create_dir_all(&d).unwrap();
        sh(&["chmod", "777", d.to_str().unwrap()]);
        d
    }

    /// Start one FRR daemon (`zebra` or `bgpd`) of the instance in `dir`, logging to stdout.
    fn frr_daemon(
        &mut self,
        name: &str,
        ns: &str,
        daemon: &str,
        dir: &Path,
        conf: &str,
        extra: &[&str],
    ) -> usize {
        let bin = format!("/usr/lib/frr/{daemon}");
        let conf = dir.join(conf);
        let pid = dir.join(format!("{daemon}.pid"));
        let zs = dir.join("zserv.api");
        let mut args = vec![
            bin.as_str(),
            "-f",
            conf.to_str().unwrap(),
            "-i",
            pid.to_str().unwrap(),
        ];
        args.extend([
            "-z",
            zs.to_str().unwrap(),
            "--vty_socket",
            dir.to_str().unwrap(),
            "--log",
            "stdout",
        ]);
        args.extend_from_slice(extra);
        self.spawn(name, ns, &args)
    }

    fn frr_ready(&self, dir: PathBuf, idx: usize) -> Frr {
        let f = Frr { dir, idx };
        wait_for("bgpd vty", Duration::from_secs(10), || {
            if f.dir.join("bgpd.vty").exists() {
                Ok(())
            } else {
                Err("no vty".into())
            }
        });
        f
    }

    /// A veth between two namespaces, ends named `ifname_a` / `ifname_b`, link-local only.
    pub fn p2p(&mut self, a: &str, ifname_a: &str, b: &str, ifname_b: &str) {
        self.links += 1;
        let ta = format!("{}{}a", self.prefix, self.links);
        let tb = format!("{}{}b", self.prefix, self.links);
        sh(&[
            "ip", "link", "add", &ta, "netns", a, "type", "veth", "peer", "name", &tb, "netns", b,
        ]);
        sh(&["ip", "-n", a, "link", "set", &ta, "name", ifname_a]);
        sh(&["ip", "-n", b, "link", "set", &tb, "name", ifname_b]);
        sh(&["ip", "-n", a, "link", "set", ifname_a, "up"]);
        sh(&["ip", "-n", b, "link", "set", ifname_b, "up"]);
    }
}

/// Wait until IPv6 link-local addresses in `ns` are usable (DAD done).
pub fn wait_link_local(ns: &str) {
    wait_for("link-local addresses", Duration::from_secs(10), || {
        let a = sh(&["ip", "-n", ns, "-6", "addr", "show", "scope", "link"]);
        if a.contains("fe80::") && !a.contains("tentative") {
            Ok(())
        } else {
            Err(a)
        }
    });
}

/// `ip route show DEST` in `ns`, polled until `want` holds; the last output.
pub fn wait_route(ns: &str, dest: &str, what: &str, want: impl Fn(&str) -> bool) -> String {
    wait_for(what, Duration::from_secs(30), || {
        let r = sh(&["ip", "-n", ns, "route", "show", dest]);
        if want(&r) {
            Ok(r)
        } else {
            Err(r)
        }
    })
}

/// A BIRD speaker in AS `asn` at `id` with a `protocol bgp kbgp` session to
/// kbgp at `kbgp` (AS 65001), announcing `routes` (as blackholes). `channel`
/// is the ipv4 channel body, e.g. "import all; export all;"; `quick_retry`
/// shortens BIRD's waits after errors (for tests that reset sessions).
pub fn bird_speaker(
    id: &str,
    asn: u32,
    kbgp: &str,
    routes: &[&str],
    channel: &str,
    quick_retry: bool,
) -> String {
    let statics: String = routes
        .iter()
        .map(|r| format!("route {r} blackhole; "))
        .collect();
    let statics = if routes.is_empty() {
        String::new()
    } else {
        format!("protocol static {{ ipv4; {statics}}}\n")
    };
    let retry = if quick_retry {
        " error wait time 1, 2;"
    } else {
        ""
    };
    format!(
        "router id {id};\nprotocol device {{}}\n{statics}\
         protocol bgp kbgp {{ local {id} as {asn}; neighbor {kbgp} as 65001; connect retry time 1;{retry} ipv4 {{ {channel} }}; }}\n"
    )
}
