//! Prometheus metrics (`--metrics-listen ADDR:PORT`, `GET /metrics`): taken
//! from the speaker's own snapshots at scrape time, so they cannot drift from
//! what `kbgp status` and `kbgp show` say.

use std::net::SocketAddr;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use speaker::{RibQuery, SpeakerHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, error, info};

type Labels = Vec<(String, String)>;

/// A bounded label for a rejection reason (the reason itself is free text).
pub fn reason_class(reason: &str) -> &'static str {
    if reason.starts_with("BGPFilter") {
        "filter"
    } else if reason.starts_with("denied by the admin") {
        "admin-deny"
    } else if reason.starts_with("not in a BGPAllowList") {
        "not-allowed"
    } else if reason.contains("our AS")
        || reason.contains("ORIGINATOR_ID")
        || reason.contains("CLUSTER_LIST")
        || reason.contains("cluster id")
    {
        "loop"
    } else {
        "other"
    }
}

/// The metrics text, or None when the speaker has stopped.
pub async fn render(speaker: &SpeakerHandle) -> Option<String> {
    let peers = speaker.status().await.ok()?;
    let global = speaker.global().await.ok()?;
    let rejected = speaker
        .rib(RibQuery {
            rejected: true,
            ..Default::default()
        })
        .await
        .ok()?;

    let mut reg = Registry::with_prefix("kbgp");
    let info = Family::<Labels, Gauge>::default();
    if let Some(g) = &global {
        info.get_or_create(&vec![
            ("node".into(), g.node.clone()),
            ("asn".into(), g.asn.to_string()),
            ("router_id".into(), g.router_id.to_string()),
        ])
        .set(1);
    }
    reg.register("info", "This node's BGP identity", info);

    let up = Family::<Labels, Gauge>::default();
    let established = Family::<Labels, Counter>::default();
    let received = Family::<Labels, Gauge>::default();
    let advertised = Family::<Labels, Gauge>::default();
    let msgs_in = Family::<Labels, Counter>::default();
    let msgs_out = Family::<Labels, Counter>::default();
    for p in &peers {
        let l = vec![
            ("peer".to_string(), p.key.clone()),
            ("peer_type".to_string(), p.peer_type.clone()),
        ];
        up.get_or_create(&l)
            .set(i64::from(p.state == bgp_fsm::State::Established));
        established
            .get_or_create(&l)
            .inc_by(u64::from(p.established_count));
        received.get_or_create(&l).set(p.prefixes_received as i64);
        advertised
            .get_or_create(&l)
            .set(p.prefixes_advertised as i64);
        for (fam, c) in [(&msgs_in, &p.received), (&msgs_out, &p.sent)] {
            for (kind, n) in [
                ("open", c.open),
                ("update", c.update),
                ("notification", c.notification),
                ("keepalive", c.keepalive),
                ("route_refresh", c.route_refresh),
            ] {
                let mut l = l.clone();
                l.push(("type".into(), kind.into()));
                fam.get_or_create(&l).inc_by(n);
            }
        }
    }
    reg.register("bgp_session_up", "1 when the session is Established", up);
    reg.register(
        "bgp_sessions_established",
        "Times the session came up",
        established,
    );
    reg.register(
        "bgp_prefixes_received",
        "Prefixes received and accepted from the peer",
        received,
    );
    reg.register(
        "bgp_prefixes_advertised",
        "Prefixes advertised to the peer",
        advertised,
    );
    reg.register("bgp_messages_received", "BGP messages received", msgs_in);
    reg.register("bgp_messages_sent", "BGP messages sent", msgs_out);

    let rej = Family::<Labels, Gauge>::default();
    for r in &rejected {
        rej.get_or_create(&vec![
            ("peer".into(), r.peer.clone()),
            ("reason".into(), reason_class(&r.reason).into()),
        ])
        .inc();
    }
    reg.register(
        "bgp_rejected_routes",
        "Routes refused on import now held (filter, admin-deny, not-allowed, loop, other); `kbgp show rib --rejected` lists them",
        rej,
    );
    let mut out = String::new();
    encode(&mut out, &reg).ok()?;
    Some(out)
}

/// Serve `GET /metrics` (and `/healthz`) on `addr`; errors are logged.
pub async fn serve(addr: SocketAddr, speaker: SpeakerHandle) {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            error!(%addr, "cannot serve metrics: {e}");
            return;
        }
    };
    info!(%addr, "serving metrics on /metrics");
    loop {
        let Ok((mut sock, from)) = listener.accept().await else {
            continue;
        };
        let speaker = speaker.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let n =
                match tokio::time::timeout(std::time::Duration::from_secs(5), sock.read(&mut buf))
                    .await
                {
                    Ok(Ok(n)) => n,
                    _ => return,
                };
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("");
            let (status, ctype, body) = match (req.split_whitespace().next(), path) {
                (Some("GET"), "/metrics") => match render(&speaker).await {
                    Some(b) => (
                        "200 OK",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        b,
                    ),
                    None => (
                        "503 Service Unavailable",
                        "text/plain",
                        "speaker stopped\n".into(),
                    ),
                },
                (Some("GET"), "/healthz") => ("200 OK", "text/plain", "ok\n".into()),
                _ => ("404 Not Found", "text/plain", "GET /metrics\n".into()),
            };
            debug!(%from, path, status, "metrics request");
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_fall_into_few_classes() {
        assert_eq!(reason_class("BGPFilter no-cluster rule 1"), "filter");
        assert_eq!(
            reason_class("denied by the admin: pod CIDR of node n1 10.244.1.0/24"),
            "admin-deny"
        );
        assert_eq!(
            reason_class("not in a BGPAllowList of namespace default"),
            "not-allowed"
        );
        assert_eq!(reason_class("AS path contains our AS"), "loop");
        assert_eq!(reason_class("something new"), "other");
    }
}
