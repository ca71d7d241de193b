//! The command-line client: every command is a call on the daemon's API.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use api::{pb, Client, ClientError};

use crate::{ClientOpts, Output, Show};

fn fail(e: ClientError) -> u8 {
    eprintln!("kbgp: {e}");
    match e {
        ClientError::NotRunning(_) | ClientError::Connect { .. } => 3,
        ClientError::Rpc(_) => 1,
    }
}

async fn client(o: &ClientOpts) -> Result<Client, u8> {
    Client::connect(&o.api_socket).await.map_err(fail)
}

fn json<T: serde::Serialize>(v: &T) -> u8 {
    match serde_json::to_string_pretty(v) {
        Ok(s) => {
            println!("{s}");
            0
        }
        Err(e) => {
            eprintln!("kbgp: {e}");
            1
        }
    }
}

/// Calico-style SINCE: time of day when today (UTC), else the date.
fn since(unix: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, secs) = (unix / 86400, unix % 86400);
    if now / 86400 == days {
        format!(
            "{:02}:{:02}:{:02}",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        )
    } else {
        let (y, m, d) = civil_date(days);
        format!("{y:04}-{m:02}-{d:02}")
    }
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's algorithm).
pub fn civil_date(days: u64) -> (i64, i64, i64) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn duration(secs: u64) -> String {
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Render a table with `+---+` borders, as calicoctl does.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i >= w.len() {
                w.push(0);
            }
            w[i] = w[i].max(c.len());
        }
    }
    let sep = format!(
        "+{}+\n",
        w.iter()
            .map(|n| "-".repeat(n + 2))
            .collect::<Vec<_>>()
            .join("+")
    );
    let line = |cells: Vec<String>| {
        format!(
            "|{}|\n",
            w.iter()
                .enumerate()
                .map(|(i, width)| format!(
                    " {:<width$} ",
                    cells.get(i).map(String::as_str).unwrap_or("")
                ))
                .collect::<Vec<_>>()
                .join("|")
        )
    };
    let mut s = sep.clone();
    s += &line(header.iter().map(|h| h.to_string()).collect());
    s += &sep;
    for r in rows {
        s += &line(r.clone());
    }
    s += &sep;
    s
}

fn is_v6_peer(address: &str) -> bool {
    match address.parse::<std::net::IpAddr>() {
        Ok(a) => a.is_ipv6(),
        Err(_) => true, // an interface: IPv6 link-local
    }
}

pub async fn status(o: &ClientOpts) -> u8 {
    let mut c = match client(o).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let st = match c.status().await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if o.output == Output::Json {
        return json(&st);
    }
    println!("kbgp process is running.");
    println!(
        "Node {}, AS {}, router id {}, listening on port {}",
        st.node, st.asn, st.router_id, st.listen_port
    );
    let rows: Vec<(bool, Vec<String>)> = st
        .peers
        .iter()
        .map(|p| {
            let (state, info) = calico_state(p.state == "Established", &p.info, &p.last_error);
            (
                is_v6_peer(&p.address),
                vec![
                    p.address.clone(),
                    p.peer_type.clone(),
                    state.to_string(),
                    since(p.since),
                    info,
                ],
            )
        })
        .collect();
    print_peer_tables(&rows);
    0
}

/// calicoctl's STATE and INFO columns: `up` or `start`, and the session's
/// info with its last error added while it is not Established.
pub fn calico_state(established: bool, info: &str, last_error: &str) -> (&'static str, String) {
    if established {
        ("up", info.to_string())
    } else if !last_error.is_empty() && !info.contains(last_error) {
        ("start", format!("{info} ({last_error})"))
    } else {
        ("start", info.to_string())
    }
}

/// The IPv4 and IPv6 tables of `calicoctl node status`.
fn print_peer_tables(rows: &[(bool, Vec<String>)]) {
    for (fam, v6) in [("IPv4", false), ("IPv6", true)] {
        println!("\n{fam} BGP status");
        let rows: Vec<Vec<String>> = rows
            .iter()
            .filter(|(is6, _)| *is6 == v6)
            .map(|(_, r)| r.clone())
            .collect();
        if rows.is_empty() {
            println!("No {fam} peers found.");
        } else {
            print!(
                "{}",
                table(
                    &["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"],
                    &rows
                )
            );
        }
    }
}

/// `kbgp status --datastore kubernetes --node X`: the node's BGPNodeStatus,
/// as the daemon on that node last wrote it.
pub async fn cluster_status(o: &ClientOpts, node: &str, kubeconfig: Option<&Path>) -> u8 {
    let client = match datastore::cluster::client(kubeconfig).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kbgp: {e}");
            return 1;
        }
    };
    let st = match datastore::cluster::read_status(&client, node).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kbgp: {e}");
            return 1;
        }
    };
    if o.output == Output::Json {
        return json(&st);
    }
    println!(
        "kbgp status of node {node}, reported at {}.",
        st.last_updated
    );
    println!(
        "Node {node}, AS {}, router id {}, listening on port {}",
        st.as_number, st.router_id, st.listen_port
    );
    for e in &st.config_errors {
        println!("Configuration error: {e}");
    }
    let rows: Vec<(bool, Vec<String>)> = st
        .peers
        .iter()
        .map(|p| {
            (
                is_v6_peer(&p.peer_address),
                vec![
                    p.peer_address.clone(),
                    p.peer_type.clone(),
                    p.state.clone(),
                    since(p.since),
                    p.info.clone(),
                ],
            )
        })
        .collect();
    print_peer_tables(&rows);
    0
}

/// `kbgp crd`: the CRDs as a YAML stream.
pub fn crd(calico: bool, group: Option<&str>) -> u8 {
    let calico = calico || group == Some("projectcalico.org");
    match datastore::crd::to_yaml(calico, group) {
        Ok(y) if !y.is_empty() => {
            print!("{y}");
            0
        }
        Ok(_) => {
            eprintln!(
                "kbgp: no CRDs in group {:?} (kbgp.io or projectcalico.org)",
                group.unwrap_or("")
            );
            1
        }
        Err(e) => {
            eprintln!("kbgp: {e}");
            1
        }
    }
}

fn print_neighbor(p: &pb::Peer) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    println!(
        "BGP neighbor {} ({}, {}), remote AS {}, port {}",
        p.address, p.peer_type, p.source, p.remote_as, p.port
    );
    print!("  State {} since {}", p.state, since(p.since));
    if p.established_at > 0 {
        print!(
            ", up for {}",
            duration(now.saturating_sub(p.established_at))
        );
    }
    println!(", established {} time(s)", p.established_count);
    if !p.local_address.is_empty() {
        println!("  Local {}, remote {}", p.local_address, p.remote_address);
    }
    if p.state == "Established" {
        println!(
            "  Peer AS {}, router id {}, hold time {}s, keepalive {}s",
            p.peer_as, p.peer_router_id, p.hold_time, p.keepalive
        );
        println!("  Families: {}", p.families.join(", "));
        let mut neg = Vec::new();
        for (on, name) in [
            (p.four_octet_as, "4-octet AS"),
            (p.route_refresh, "route refresh"),
            (p.extended_next_hop, "extended next hop"),
            (p.extended_messages, "extended messages"),
        ] {
            if on {
                neg.push(name.to_string());
            }
        }
        if !p.add_path_rx.is_empty() {
            neg.push(format!("add-path receive {}", p.add_path_rx.join(" ")));
        }
        if !p.add_path_tx.is_empty() {
            neg.push(format!("add-path send {}", p.add_path_tx.join(" ")));
        }
        println!("  Negotiated: {}", neg.join(", "));
        println!("  Peer capabilities: {}", p.peer_capabilities.join(", "));
    }
    let (r, s) = (p.received.unwrap_or_default(), p.sent.unwrap_or_default());
    println!("  Messages       sent   received");
    for (name, a, b) in [
        ("OPEN", s.open, r.open),
        ("UPDATE", s.update, r.update),
        ("NOTIFICATION", s.notification, r.notification),
        ("KEEPALIVE", s.keepalive, r.keepalive),
        ("ROUTE-REFRESH", s.route_refresh, r.route_refresh),
        ("Total", s.total, r.total),
    ] {
        println!("    {name:<13}{a:>6} {b:>10}");
    }
    println!(
        "  Prefixes: received {}, advertised {}",
        p.prefixes_received, p.prefixes_advertised
    );
    if p.stalls > 0 {
        println!(
            "  Output: filled up {} times this session; {} destinations waiting for the peer to read",
            p.stalls, p.held_back
        );
    }
    if !p.last_error.is_empty() {
        println!("  Last error: {}", p.last_error);
    }
}

pub async fn show(o: &ClientOpts, what: Show) -> u8 {
    let mut c = match client(o).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    match what {
        Show::Neighbors { peer } => {
            let r = match c.neighbors(peer).await {
                Ok(r) => r,
                Err(e) => return fail(e),
            };
            if o.output == Output::Json {
                return json(&r);
            }
            for (i, p) in r.peers.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                print_neighbor(p);
            }
            0
        }
        Show::Rib {
            prefix,
            family,
            peer,
            rejected,
        } => {
            let req = pb::RibRequest {
                family: family.unwrap_or_default(),
                prefix: prefix.clone().unwrap_or_default(),
                peer: peer.unwrap_or_default(),
                rejected,
            };
            let r = match c.rib(req).await {
                Ok(r) => r,
                Err(e) => return fail(e),
            };
            if o.output == Output::Json {
                return json(&r);
            }
            if r.routes.is_empty() {
                if let Some(p) = prefix {
                    eprintln!("kbgp: no route for {p}");
                    return 1;
                }
                println!("No routes.");
                return 0;
            }
            let rows: Vec<Vec<String>> = r
                .routes
                .iter()
                .map(|x| {
                    let mut comm = x.communities.clone();
                    comm.extend(x.large_communities.iter().cloned());
                    let mark = if x.best {
                        ">"
                    } else if x.multipath {
                        "="
                    } else {
                        ""
                    };
                    vec![
                        mark.to_string(),
                        x.prefix.clone(),
                        x.direction.clone(),
                        x.peer.clone(),
                        x.next_hop.clone(),
                        x.as_path.clone(),
                        x.origin.clone(),
                        x.med.map(|m| m.to_string()).unwrap_or_default(),
                        x.local_pref.map(|m| m.to_string()).unwrap_or_default(),
                        comm.join(" "),
                        x.reason.clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &[
                        "",
                        "NETWORK",
                        "DIRECTION",
                        "PEER",
                        "NEXT HOP",
                        "AS PATH",
                        "ORIGIN",
                        "MED",
                        "LOCPRF",
                        "COMMUNITIES",
                        "REASON"
                    ],
                    &rows
                )
            );
            0
        }
    }
}

pub fn check(dir: &Path, node: &str, output: Output) -> u8 {
    let loaded = match datastore::load_dir(dir) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("kbgp: {e}");
            return 1;
        }
    };
    let d = match datastore::desired(&loaded.state, node) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("kbgp: {e}");
            return 1;
        }
    };
    if output == Output::Json {
        return json(&d);
    }
    let g = &d.global;
    println!(
        "Node {} AS {} router id {} listen port {}",
        g.node, g.asn, g.router_id, g.listen_port
    );
    for p in d.peers.values() {
        println!(
            "  peer {} port {} remote-as {} ({}, {})",
            p.key(),
            p.port,
            p.remote_as,
            p.peer_type.label(),
            p.source
        );
    }
    for o in d.originate.values() {
        let mut comm: Vec<String> = o
            .communities
            .iter()
            .map(|c| bgp_wire::attr::community_string(*c))
            .collect();
        comm.extend(o.large_communities.iter().map(|c| c.to_string()));
        println!("  originate {} ({}) {}", o.prefix, o.reason, comm.join(" "));
    }
    for i in &loaded.ignored {
        println!("  ignored {i}");
    }
    0
}

#[cfg(test)]
mod tests {
    #[test]
    fn calico_state_and_info() {
        assert_eq!(
            calico_state(true, "Established", "old error"),
            ("up", "Established".into())
        );
        assert_eq!(
            calico_state(false, "Active", "Connection refused"),
            ("start", "Active (Connection refused)".into())
        );
        // Not twice, and nothing to add without an error.
        assert_eq!(
            calico_state(false, "Active Socket: refused", "refused"),
            ("start", "Active Socket: refused".into())
        );
        assert_eq!(calico_state(false, "Idle", ""), ("start", "Idle".into()));
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(11016), (2000, 2, 29));
        assert_eq!(civil_date(20782), (2026, 11, 25));
    }

    use super::*;

    #[test]
    fn table_aligns_and_tolerates_ragged_rows() {
        let t = table(
            &["A", "BB"],
            &[
                vec!["xxx".into(), "y".into()],
                vec!["z".into()],
                vec!["1".into(), "2".into(), "extra".into()],
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[1], "| A   | BB |       |");
        assert_eq!(lines[3], "| xxx | y  |       |");
        assert_eq!(lines[4], "| z   |    |       |");
        assert!(lines.iter().all(|l| l.len() == lines[0].len()));
    }
}
