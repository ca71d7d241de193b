//! Cluster mode: kbgp reads its configuration from the Kubernetes API.
//!
//! No kube-apiserver can be installed on the test machines, so these tests
//! run `tests/tools/fake_apiserver.py`, a fake API server that speaks the
//! real HTTP list/watch protocol; kbgp's kube-rs client talks to it
//! unchanged, and so does `kubectl`, which applies kbgp's CRDs and the
//! seeds' YAML exactly as a user would. The peer is a real BIRD in a
//! namespace; routes are read from BIRD itself.
//!
//! LAN 172.21.1.0/24 (seed 002) inside namespaces made by the test:
//! ToR (BIRD) .254, kube-controlplane-001 .8, kube-worker-001 .18, the API
//! server .100.

mod common;
use common::*;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

const API_ADDR: &str = "172.21.1.100";
const CP: &str = "kube-controlplane-001";
const WORKER: &str = "kube-worker-001";

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn tool(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tools")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

/// The fake API server in its own namespace, and kubectl pointed at it.
struct ApiServer {
    ns: String,
    kubeconfig: PathBuf,
    cache: PathBuf,
    state: PathBuf,
    idx: usize,
    dir: PathBuf,
}

impl ApiServer {
    fn start(lab: &mut Lab, ns: &str) -> ApiServer {
        let kubeconfig = lab.path("kubeconfig");
        fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"http://{API_ADDR}:6443\"}}\n\
                 users:\n- name: test\n  user: {{}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: test}}\n\
                 current-context: fake\n"
            ),
        )
        .unwrap();
        let mut a = ApiServer {
            ns: ns.to_string(),
            kubeconfig,
            cache: lab.path("kubectl-cache"),
            state: lab.path("apiserver-state.json"),
            idx: 0,
            dir: lab.dir.clone(),
        };
        a.idx = a.spawn(lab);
        a
    }

    fn spawn(&self, lab: &mut Lab) -> usize {
        let idx = lab.spawn(
            "apiserver",
            &self.ns,
            &[
                "python3",
                &tool("fake_apiserver.py"),
                "--host",
                "0.0.0.0",
                "--port",
                "6443",
                "--state",
                self.state.to_str().unwrap(),
            ],
        );
        wait_for(
            "the fake API server",
            Duration::from_secs(10),
            || match self.kubectl(&["get", "--raw", "/version"]) {
                (true, out) => Ok(out),
                (false, out) => Err(out),
            },
        );
        idx
    }

    fn kubectl(&self, args: &[&str]) -> (bool, String) {
        let mut a = vec![
            "ip",
            "netns",
            "exec",
            &self.ns,
            "kubectl",
            "--kubeconfig",
            self.kubeconfig.to_str().unwrap(),
            "--cache-dir",
            self.cache.to_str().unwrap(),
        ];
        a.extend_from_slice(args);
        sh_ok(&a)
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        let (ok, out) = self.kubectl(args);
        assert!(ok, "kubectl {args:?}: {out}");
        out
    }

    fn apply(&self, name: &str, yaml: &str) -> String {
        let f = self.dir.join(format!("{name}.yaml"));
        fs::write(&f, yaml).unwrap();
        self.kubectl_ok(&["apply", "-f", f.to_str().unwrap()])
    }

    fn stats(&self) -> Value {
        serde_json::from_str(&self.kubectl_ok(&["get", "--raw", "/fake/stats"])).unwrap()
    }
}

/// The seed 002 LAN, BIRD as the ToR (iBGP, AS 65535, nodes on port 178),
/// the API server, CRDs and the seed's YAML applied with kubectl, and kbgp
/// on both nodes in cluster mode.
struct Cluster {
    lab: Lab,
    api: ApiServer,
    bird: Bird,
    cp: Kbgp,
    worker: Kbgp,
}

fn seed_002_cluster(test: &str) -> Cluster {
    let mut lab = Lab::new(test);
    let tor = lab.ns("tor");
    let cp = lab.ns("cp");
    let worker = lab.ns("w1");
    let apins = lab.ns("api");
    lab.lan(&[
        (&tor, &["172.21.1.254/24"]),
        (&cp, &["172.21.1.8/24"]),
        (&worker, &["172.21.1.18/24"]),
        (&apins, &["172.21.1.100/24"]),
    ]);
    let api = ApiServer::start(&mut lab, &apins);

    // CRDs as `kbgp crd --calico` prints them, then the seed unchanged.
    let crds = sh(&[KBGP, "crd", "--calico"]);
    let out = api.apply("crds", &crds);
    assert!(out.contains("bgppeers.projectcalico.org created"), "{out}");
    let out = api.kubectl_ok(&["api-resources", "--api-group=projectcalico.org"]);
    assert!(
        out.contains("BGPConfiguration") && out.contains("BGPPeer"),
        "{out}"
    );
    let seed = examples().join("seed-002");
    let out = api.kubectl_ok(&["apply", "-f", seed.to_str().unwrap()]);
    for want in [
        "bgpconfiguration.projectcalico.org/default created",
        "bgppeer.projectcalico.org/global-peer created",
        "node/kube-controlplane-001 created",
        "service/kube-dns created",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }

    let bird = lab.bird(
        "tor",
        &tor,
        "router id 172.21.1.254;\nprotocol device {}\n\
         template bgp node { local 172.21.1.254 as 65535; direct; connect retry time 1; error wait time 1, 2;\n\
           ipv4 { import all; export none; gateway direct; }; }\n\
         protocol bgp cp from node { neighbor 172.21.1.8 port 178 as 65535; }\n\
         protocol bgp w1 from node { neighbor 172.21.1.18 port 178 as 65535; }\n",
    );
    let cp_k = start_kbgp(&mut lab, &api, "kbgp-cp", &cp, CP);
    let worker_k = start_kbgp(&mut lab, &api, "kbgp-w1", &worker, WORKER);
    Cluster {
        lab,
        api,
        bird,
        cp: cp_k,
        worker: worker_k,
    }
}

fn start_kbgp(lab: &mut Lab, api: &ApiServer, name: &str, ns: &str, node: &str) -> Kbgp {
    let kubeconfig = api.kubeconfig.to_str().unwrap().to_string();
    lab.kbgp_daemon(
        name,
        ns,
        &[
            "--datastore",
            "kubernetes",
            "--kubeconfig",
            &kubeconfig,
            "--node",
            node,
        ],
    )
}

/// BIRD's routes for a prefix: one line per path, with the peer and gateway.
fn bird_paths(bird: &Bird, prefix: &str) -> String {
    bird.cli(&format!("show route {prefix}"))
}

fn wait_bird(bird: &Bird, prefix: &str, what: &str, want: impl Fn(&str) -> bool) -> String {
    wait_bird_for(bird, prefix, what, Duration::from_secs(30), want)
}

fn wait_bird_for(
    bird: &Bird,
    prefix: &str,
    what: &str,
    timeout: Duration,
    want: impl Fn(&str) -> bool,
) -> String {
    wait_for(what, timeout, || {
        let out = bird_paths(bird, prefix);
        if want(&out) {
            Ok(out)
        } else {
            Err(out)
        }
    })
}

/// `kbgp status --datastore kubernetes --node NODE`, run in the API server's
/// namespace, where no kbgp runs at all.
fn cluster_status(api: &ApiServer, node: &str) -> (bool, String) {
    sh_ok(&[
        "ip",
        "netns",
        "exec",
        &api.ns,
        KBGP,
        "status",
        "--datastore",
        "kubernetes",
        "--node",
        node,
        "--kubeconfig",
        api.kubeconfig.to_str().unwrap(),
    ])
}

fn updates_sent(k: &Kbgp, peer: &str) -> u64 {
    let p = k.peer(peer).unwrap();
    p["sent"]["update"].as_u64().unwrap_or(0)
}

#[test]
fn seed_002_applied_with_kubectl_status_and_events_back_in_the_cluster() {
    let c = seed_002_cluster("cluster-seed002");

    // Sessions to the ToR and the node mesh, all from objects in the API.
    c.cp.wait_established("172.21.1.254");
    c.cp.wait_established("172.21.1.18");
    c.worker.wait_established("172.21.1.254");

    // Both nodes' pod blocks reach the ToR with seed 002's communities.
    for (prefix, via) in [
        ("192.168.170.0/24", "172.21.1.8"),
        ("192.168.181.0/24", "172.21.1.18"),
    ] {
        let r = c.bird.wait_route(prefix);
        assert!(r.contains(&format!("via {via}")), "{prefix}: {r}");
        assert!(r.contains("BGP.community: (65535,120)"), "{r}");
        assert!(r.contains("BGP.large_community: (65535, 300, 100)"), "{r}");
    }
    c.bird.wait_route("192.16.0.0/12");

    // Status back to the cluster: BGPNodeStatus via kubectl and via kbgp.
    let st = wait_for(
        "BGPNodeStatus of the control plane with both peers up",
        Duration::from_secs(20),
        || {
            let (ok, out) = c
                .api
                .kubectl(&["get", "bgpnodestatuses.kbgp.io", CP, "-o", "json"]);
            if !ok {
                return Err(out);
            }
            let v: Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
            let peers = v["status"]["peers"].as_array().cloned().unwrap_or_default();
            let up = peers.iter().filter(|p| p["state"] == "up").count();
            if up == 2 {
                Ok(v)
            } else {
                Err(out)
            }
        },
    );
    assert_eq!(st["status"]["asNumber"], 65535);
    assert_eq!(st["status"]["routerID"], "172.21.1.8");
    let types: Vec<&str> = st["status"]["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["peerType"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"global") && types.contains(&"node-to-node mesh"),
        "{types:?}"
    );
    wait_for("both nodes' BGPNodeStatus", Duration::from_secs(20), || {
        let out = c.api.kubectl_ok(&["get", "bgpnodestatuses.kbgp.io"]);
        if out.contains(CP) && out.contains(WORKER) {
            Ok(())
        } else {
            Err(out)
        }
    });

    // deploy/kubernetes applies as a user would apply it (the CRDs there are
    // the ones applied above: unchanged).
    let deploy = examples().join("../deploy/kubernetes");
    let out = c.api.kubectl_ok(&["apply", "-f", deploy.to_str().unwrap()]);
    for want in [
        "daemonset.apps/kbgp created",
        "clusterrole.rbac.authorization.k8s.io/kbgp created",
        "serviceaccount/kbgp created",
        "customresourcedefinition.apiextensions.k8s.io/bgpnodestatuses.kbgp.io unchanged",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    let out = c.api.kubectl_ok(&["get", "bgpnodestatuses.kbgp.io"]);
    assert!(out.contains(CP) && out.contains(WORKER), "{out}");

    // `kbgp status --datastore kubernetes --node X` reads another node's
    // sessions from the API.
    let out = wait_for(
        "the worker's status with the ToR up",
        Duration::from_secs(20),
        || match cluster_status(&c.api, WORKER) {
            (true, out) if out.contains("| 172.21.1.254 | global            | up    |") => Ok(out),
            (_, out) => Err(out),
        },
    );
    assert!(
        out.contains("Node kube-worker-001, AS 65535, router id 172.21.1.18"),
        "{out}"
    );
    assert!(
        out.contains("| 172.21.1.254 | global            | up    |"),
        "{out}"
    );
    // A node with no status object: a clear error, non-zero.
    let (ok, out) = cluster_status(&c.api, "nope");
    assert!(!ok && out.contains("no BGPNodeStatus \"nope\""), "{out}");

    // Events on the Node for sessions that came up.
    let ev = wait_for("SessionEstablished events", Duration::from_secs(20), || {
        let out = c
            .api
            .kubectl_ok(&["get", "events.events.k8s.io", "-A", "-o", "json"]);
        if out.contains("SessionEstablished") && out.contains("BGP session with 172.21.1.254") {
            Ok(out)
        } else {
            Err(out)
        }
    });
    assert!(ev.contains("\"kind\": \"Node\""), "{ev}");

    // A bad object is refused with an Event on it; everything else stays.
    let before = updates_sent(&c.cp, "172.21.1.254");
    let count = c.cp.peer("172.21.1.254").unwrap()["established_count"].clone();
    c.api.apply(
        "bad-peer",
        "apiVersion: kbgp.io/v1alpha1\nkind: BGPPeer\nmetadata: {name: bad}\nspec: {peerIP: not-an-address, asNumber: 65001}\n",
    );
    wait_for("ConfigRejected event", Duration::from_secs(20), || {
        let out = c
            .api
            .kubectl_ok(&["get", "events.events.k8s.io", "-A", "-o", "json"]);
        if out.contains("ConfigRejected") && out.contains("not-an-address") {
            Ok(())
        } else {
            Err(out)
        }
    });
    let p = c.cp.peer("172.21.1.254").unwrap();
    assert_eq!(p["state"], "Established");
    assert_eq!(p["established_count"], count, "{p}");
    // The bad object holds up nothing else: a new peer still applies.
    c.api.apply(
        "extra-peer",
        "apiVersion: kbgp.io/v1alpha1\nkind: BGPPeer\nmetadata: {name: extra}\nspec: {peerIP: 172.21.1.77, asNumber: 65077, node: kube-controlplane-001}\n",
    );
    wait_for(
        "the extra peer, despite the bad one",
        Duration::from_secs(20),
        || c.cp.peer("172.21.1.77").map(|_| ()),
    );
    // BGPNodeStatus lists the refusal (it is written within 2 s of a change).
    wait_for(
        "configErrors in BGPNodeStatus",
        Duration::from_secs(20),
        || {
            let st = c
                .api
                .kubectl_ok(&["get", "bgpnodestatuses.kbgp.io", CP, "-o", "json"]);
            if st.contains("not-an-address") {
                Ok(())
            } else {
                Err(st)
            }
        },
    );
    c.api
        .kubectl_ok(&["delete", "bgppeers.kbgp.io", "bad", "extra"]);

    // 410 Gone: the API server compacts its history; every watch must relist.
    // The relist finds what kbgp already had: no UPDATE is sent, no session reset.
    let gone_before = c.api.stats()["gone"].as_u64().unwrap();
    let lists_before = c.api.stats()["lists"].as_u64().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let sent_before = updates_sent(&c.cp, "172.21.1.254");
    assert!(sent_before >= before);
    let f = c.lab.path("empty.json");
    fs::write(&f, "{}").unwrap();
    c.api.kubectl_ok(&[
        "create",
        "--raw",
        "/fake/compact",
        "-f",
        f.to_str().unwrap(),
    ]);
    wait_for(
        "watches to relist after 410 Gone",
        Duration::from_secs(30),
        || {
            let s = c.api.stats();
            // Two kbgp instances, each watching every kind.
            if s["gone"].as_u64().unwrap() >= gone_before + 10
                && s["lists"].as_u64().unwrap() >= lists_before + 10
            {
                Ok(())
            } else {
                Err(s.to_string())
            }
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        updates_sent(&c.cp, "172.21.1.254"),
        sent_before,
        "a relist must not re-announce anything"
    );
    let p = c.cp.peer("172.21.1.254").unwrap();
    assert_eq!(p["state"], "Established");
    assert_eq!(p["established_count"], count, "{p}");

    // After the relist, watches carry changes again: a new node joins the mesh.
    c.api.apply(
        "node3",
        &node_yaml("kube-worker-002", &["172.21.1.28"], &["192.168.190.0/24"]),
    );
    wait_for("the new node's mesh peer", Duration::from_secs(20), || {
        c.cp.peer("172.21.1.28").map(|_| ())
    });
}

#[test]
fn load_balancer_local_follows_its_endpoint_and_survives_an_api_outage() {
    let mut c = seed_002_cluster("cluster-lb");
    c.cp.wait_established("172.21.1.254");
    c.worker.wait_established("172.21.1.254");
    c.bird.wait_route("192.168.181.0/24");

    // Admit LoadBalancer IPs from 198.18.10.0/24, then a Local service whose
    // only endpoint runs on the worker.
    c.api.kubectl_ok(&[
        "patch",
        "bgpconfigurations.projectcalico.org",
        "default",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"serviceLoadBalancerIPs":[{"cidr":"198.18.10.0/24"}]}}"#,
    ]);
    c.api.apply(
        "web",
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n\
         spec: {type: LoadBalancer, clusterIP: 192.16.0.50, clusterIPs: [192.16.0.50], externalTrafficPolicy: Local,\n\
           ports: [{port: 80}]}\n",
    );
    c.api.kubectl_ok(&[
        "patch",
        "service",
        "web",
        "--subresource=status",
        "--type",
        "merge",
        "-p",
        r#"{"status":{"loadBalancer":{"ingress":[{"ip":"198.18.10.5"}]}}}"#,
    ]);
    let slice = |node: &str| {
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-abcde\n  namespace: default\n  \
             labels: {{kubernetes.io/service-name: web}}\naddressType: IPv4\nendpoints:\n- addresses: [10.0.0.7]\n  \
             nodeName: {node}\n  conditions: {{ready: true}}\nports: [{{port: 80}}]\n"
        )
    };
    c.api.apply("slice", &slice(WORKER));
    // Only the worker advertises the /32 (and the Local service's cluster IP).
    let r = wait_bird(&c.bird, "198.18.10.5/32", "LB IP via the worker", |o| {
        o.contains("via 172.21.1.18")
    });
    assert!(!r.contains("via 172.21.1.8 "), "{r}");
    wait_bird(
        &c.bird,
        "192.16.0.50/32",
        "Local cluster IP via the worker",
        |o| o.contains("via 172.21.1.18"),
    );
    std::thread::sleep(Duration::from_secs(2));
    let r = bird_paths(&c.bird, "198.18.10.5/32");
    assert!(!r.contains("via 172.21.1.8 ") && !r.contains("[cp "), "{r}");

    // The endpoint moves to the control plane: the worker withdraws, the control plane announces.
    c.api.apply("slice", &slice(CP));
    wait_bird(
        &c.bird,
        "198.18.10.5/32",
        "LB IP moved to the control plane",
        |o| o.contains("via 172.21.1.8") && !o.contains("via 172.21.1.18"),
    );

    // The API server goes away for 30 s: no route and no session is lost.
    let sessions = |c: &Cluster| {
        (
            c.cp.peer("172.21.1.254").unwrap()["established_count"].clone(),
            c.worker.peer("172.21.1.254").unwrap()["established_count"].clone(),
        )
    };
    let before = sessions(&c);
    c.lab.proc(c.api.idx).stop();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        for p in ["192.168.170.0/24", "192.168.181.0/24", "198.18.10.5/32"] {
            let r = bird_paths(&c.bird, p);
            assert!(r.contains(p), "{p} lost during the API outage: {r}");
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    assert_eq!(
        sessions(&c),
        before,
        "a session was reset during the outage"
    );
    let p = c.cp.peer("172.21.1.254").unwrap();
    assert_eq!(p["state"], "Established");

    // The API server comes back (same state, no watch history): the watches
    // reconnect, and changes flow again: deleting the service withdraws it.
    c.api.idx = c.api.spawn(&mut c.lab);
    c.api.kubectl_ok(&["delete", "service", "web"]);
    // (The watches retry with a back-off of at most 8 s, jittered.)
    wait_bird_for(
        &c.bird,
        "198.18.10.5/32",
        "LB IP withdrawn after the outage",
        Duration::from_secs(45),
        |o| !o.contains("198.18.10.5"),
    );
    assert_eq!(sessions(&c), before);
    let log = c.lab.log("kbgp-cp");
    assert!(
        log.contains("watch failed"),
        "the outage should show in the log"
    );
}

/// User and system CPU seconds of a process, from /proc (ticks of 10 ms).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    ticks as f64 / 100.0
}

#[test]
fn waits_quietly_for_its_node_then_peers_only_with_pods_on_it() {
    let mut lab = Lab::new("cluster-wait");
    let node = lab.ns("n1");
    let apins = lab.ns("api");
    lab.lan(&[(&node, &["172.21.1.8/24"]), (&apins, &["172.21.1.100/24"])]);
    let api = ApiServer::start(&mut lab, &apins);
    api.apply("crds", &sh(&[KBGP, "crd"]));
    api.apply(
        "config",
        "apiVersion: kbgp.io/v1alpha1\nkind: BGPConfiguration\nmetadata: {name: default}\n\
         spec: {asNumber: 65010, nodeToNodeMeshEnabled: false}\n---\n\
         apiVersion: kbgp.io/v1alpha1\nkind: BGPPeer\nmetadata: {name: lbs}\n\
         spec: {podSelector: app == 'lb', remoteAs: external}\n",
    );

    // Its Node object does not exist yet: kbgp waits, without spinning and
    // without a flood of log lines.
    let kubeconfig = api.kubeconfig.to_str().unwrap().to_string();
    let sock = lab.path("kbgp.sock");
    let idx = lab.spawn(
        "kbgp",
        &node,
        &[
            KBGP,
            "daemon",
            "--datastore",
            "kubernetes",
            "--kubeconfig",
            &kubeconfig,
            "--node",
            "ghost",
            "--api-socket",
            sock.to_str().unwrap(),
        ],
    );
    std::thread::sleep(Duration::from_secs(5));
    assert!(lab.proc(idx).alive(), "{}", lab.log("kbgp"));
    assert!(!sock.exists(), "configured without its Node");
    let log = lab.log("kbgp");
    let waits = log.matches("waiting for a valid configuration").count();
    assert!((1..=10).contains(&waits), "{waits} waiting lines: {log}");
    let cpu = cpu_seconds(lab.proc(idx).pid());
    assert!(cpu < 1.0, "{cpu} s of CPU while waiting");

    // The Node appears: kbgp starts.
    api.apply(
        "node",
        &node_yaml("ghost", &["172.21.1.8"], &["10.244.1.0/24"]),
    );
    wait_for(
        "kbgp to start once its Node exists",
        Duration::from_secs(20),
        || {
            if sock.exists() {
                Ok(())
            } else {
                Err(lab.log("kbgp"))
            }
        },
    );
    let k = Kbgp {
        sock: sock.clone(),
        cfg: PathBuf::new(),
        idx,
        name: "kbgp".into(),
    };

    // Two selected pods, one on this node and one elsewhere: only the first is a peer.
    let pod = |name: &str, node: &str, ip: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default, labels: {{app: lb}}}}\n\
             spec: {{nodeName: {node}, containers: [{{name: c, image: x}}]}}\n\
             status: {{phase: Running, podIP: {ip}, podIPs: [{{ip: {ip}}}]}}\n"
        )
    };
    api.apply("pod-here", &pod("lb-here", "ghost", "172.21.1.50"));
    api.apply("pod-there", &pod("lb-there", "elsewhere", "172.21.1.51"));
    wait_for(
        "the pod on this node as a peer",
        Duration::from_secs(20),
        || k.peer("172.21.1.50").map(|_| ()),
    );
    assert!(
        k.peer("172.21.1.51").is_err(),
        "a pod of another node became a peer"
    );
    // The API was only asked for this node's pods.
    let requests = lab.log("apiserver");
    let pods: Vec<&str> = requests
        .lines()
        .filter(|l| l.contains("GET /api/v1/pods"))
        .collect();
    assert!(!pods.is_empty(), "{requests}");
    assert!(
        pods.iter()
            .all(|l| l.contains("fieldSelector=spec.nodeName%3Dghost")),
        "{pods:?}"
    );
}
