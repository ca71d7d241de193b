//! Scenario (c): the daemon under test is a route reflector for K iBGP
//! clients (AS 65000 everywhere). Client i listens on 198.19.0.0 + i + 1
//! (addresses of the run's namespace) and, once every session is up, all
//! clients at once announce one /26 (from 10.0.0.0/8) and ten /32s (from
//! 172.16.0.0/12) with their own address as next hop. Converged when every
//! client holds the 11 × (K − 1) prefixes of the others.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bgp_wire::update::{pack_announce, NextHop};
use bgp_wire::{AsPath, Ctx, Family, Message, Nlri, Origin, PathAttrs};
use bytes::BytesMut;
use ipnet::{IpNet, Ipv4Net};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};

use crate::{daemons, listen, next_msg, proc_stats, session_on, Args};

/// Prefixes each client announces: one /26 and ten /32s.
pub const PER_CLIENT: usize = 11;

pub fn client_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 0, 0)) + i as u32 + 1)
}

/// Client i's prefixes, index 0 the /26.
pub fn client_prefixes(i: usize) -> Vec<Nlri> {
    let base26 = u32::from(Ipv4Addr::new(10, 0, 0, 0)) + (i as u32) * 64;
    let base32 = u32::from(Ipv4Addr::new(172, 16, 0, 0)) + (i as u32) * 16;
    std::iter::once(Ipv4Net::new(base26.into(), 26).unwrap())
        .chain((0..10).map(|j| Ipv4Net::new((base32 + j).into(), 32).unwrap()))
        .map(|p| Nlri::new(IpNet::V4(p)))
        .collect()
}

/// The inverse of [`client_prefixes`]: (client, index) of a prefix of the scenario.
pub fn prefix_index(p: &IpNet) -> Option<(usize, usize)> {
    let IpNet::V4(p) = p else { return None };
    let a = u32::from(p.addr());
    match p.prefix_len() {
        26 if p.addr().octets()[0] == 10 => Some((((a - (10 << 24)) / 64) as usize, 0)),
        32 if Ipv4Net::new(Ipv4Addr::new(172, 16, 0, 0), 12)
            .unwrap()
            .contains(&p.addr()) =>
        {
            let off = a - u32::from(Ipv4Addr::new(172, 16, 0, 0));
            ((off % 16) < 10).then_some(((off / 16) as usize, 1 + (off % 16) as usize))
        }
        _ => None,
    }
}

/// One client: bring the session up, report it, wait for the start, announce,
/// then count the other clients' prefixes until it holds them all.
async fn client(
    i: usize,
    k: usize,
    l: tokio::net::TcpListener,
    up: mpsc::Sender<usize>,
    mut start: watch::Receiver<Option<Instant>>,
    done: mpsc::Sender<(usize, Duration)>,
) -> Result<()> {
    let addr = client_addr(i);
    let (s, mut buf) = session_on(l, addr, 65000).await?;
    let ctx = Ctx::modern();
    let attrs = PathAttrs {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::default()),
        local_pref: Some(100),
        ..Default::default()
    };
    let mut announce = BytesMut::new();
    pack_announce(
        &ctx,
        &attrs,
        Family::IPV4_UNICAST,
        NextHop::V4(addr),
        &client_prefixes(i),
        &mut announce,
    );
    let (mut r, w) = s.into_split();
    let w = Arc::new(tokio::sync::Mutex::new(w));
    // Keepalives every 30 s.
    let kw = w.clone();
    let ka_task = tokio::spawn(async move {
        let ka = Message::Keepalive.to_bytes(&Ctx::modern());
        loop {
            tokio::time::sleep(Duration::from_secs(30)).await;
            if kw.lock().await.write_all(&ka).await.is_err() {
                return;
            }
        }
    });
    let _ = up.send(i).await;
    let t0 = *start.wait_for(|s| s.is_some()).await?;
    let t0 = t0.context("start")?;
    w.lock().await.write_all(&announce).await?;
    // One bit per prefix of the scenario (others' only).
    let target = PER_CLIENT * (k - 1);
    let mut held = vec![false; PER_CLIENT * k];
    let mut count = 0usize;
    let mut reported = false;
    let res = loop {
        let m = match next_msg(&mut r, &mut buf, &ctx).await {
            Ok(m) => m,
            Err(e) => break Err(e),
        };
        match m {
            Message::Update(u) => {
                for n in u.withdrawals() {
                    if let Some((c, j)) = prefix_index(&n.prefix) {
                        if c < k && c != i && std::mem::take(&mut held[c * PER_CLIENT + j]) {
                            count -= 1;
                        }
                    }
                }
                for (n, _) in u.announcements() {
                    if let Some((c, j)) = prefix_index(&n.prefix) {
                        if c < k
                            && c != i
                            && !std::mem::replace(&mut held[c * PER_CLIENT + j], true)
                        {
                            count += 1;
                        }
                    }
                }
                if count == target && !reported {
                    reported = true;
                    let _ = done.send((i, t0.elapsed())).await;
                }
            }
            Message::Notification(n) => {
                break Err(anyhow::anyhow!("daemon sent {n} to client {i}"))
            }
            _ => {}
        }
    };
    ka_task.abort();
    res
}

/// Why the first client task that ended failed (for the error message).
async fn first_error(tasks: Vec<tokio::task::JoinHandle<Result<()>>>) -> String {
    for t in tasks {
        if t.is_finished() {
            if let Ok(Err(e)) = t.await {
                return format!(": a client failed: {e:#}");
            }
        } else {
            t.abort();
        }
    }
    String::new()
}

pub async fn run(a: &Args) -> Result<()> {
    let k = a.rr_clients;
    if !(2..=60_000).contains(&k) {
        bail!("--rr-clients: 2 to 60000");
    }
    let clients: Vec<Ipv4Addr> = (0..k).map(client_addr).collect();
    // Every client listens before the daemon starts.
    let (up_tx, mut up_rx) = mpsc::channel(k);
    let (done_tx, mut done_rx) = mpsc::channel(k);
    let (start_tx, start_rx) = watch::channel(None);
    let mut tasks = Vec::with_capacity(k);
    for (i, addr) in clients.iter().enumerate() {
        let l = listen(*addr)?;
        tasks.push(tokio::spawn(client(
            i,
            k,
            l,
            up_tx.clone(),
            start_rx.clone(),
            done_tx.clone(),
        )));
    }
    drop((up_tx, done_tx));
    let t_start = Instant::now();
    let mut child = daemons::start_rr(&a.daemon, &a.workdir, &a.kbgp, &clients)?;
    let pid = child.id().context("daemon pid")?;
    let deadline = Duration::from_secs(a.timeout);
    let mut n_up = 0;
    let establish = tokio::time::timeout(deadline, async {
        while n_up < k {
            if up_rx.recv().await.is_none() {
                break;
            }
            n_up += 1;
        }
    })
    .await;
    if establish.is_err() || n_up < k {
        bail!(
            "{n_up} of {k} client sessions came up{}",
            first_error(tasks).await
        );
    }
    let establish_ms = t_start.elapsed().as_millis();
    // Let the daemon settle (End-of-RIBs, its own routes) before timing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = proc_stats(pid);
    let t0 = Instant::now();
    start_tx.send(Some(t0))?;
    let mut converged = Duration::ZERO;
    let mut n_done = 0;
    tokio::time::timeout(deadline, async {
        while n_done < k {
            match done_rx.recv().await {
                Some((_, t)) => {
                    converged = converged.max(t);
                    n_done += 1;
                }
                None => break,
            }
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("{n_done} of {k} clients converged before the timeout"))?;
    if n_done < k {
        bail!(
            "{n_done} of {k} clients converged{}",
            first_error(tasks).await
        );
    }
    let loaded = proc_stats(pid);
    tasks.iter().for_each(|t| t.abort());
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    if tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
    println!(
        "{}",
        serde_json::json!({
            "scenario": "rr",
            "daemon": a.daemon,
            "clients": k,
            "prefixes": k * PER_CLIENT,
            "establish_ms": establish_ms,
            "converge_ms": converged.as_millis(),
            "rss_idle_kb": idle.0,
            "rss_peak_kb": loaded.0,
            "rss_per_client_kb": loaded.0 as f64 / k as f64,
            "cpu_converge_ms": loaded.1.saturating_sub(idle.1),
            "cpu_total_ms": loaded.1,
        })
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_map_back_to_their_client() {
        for i in [0, 1, 999, 4095] {
            for (j, n) in client_prefixes(i).iter().enumerate() {
                assert_eq!(prefix_index(&n.prefix), Some((i, j)), "{}", n.prefix);
            }
        }
        assert_eq!(prefix_index(&"198.18.0.0/15".parse().unwrap()), None);
        assert_eq!(prefix_index(&"172.16.0.10/32".parse().unwrap()), None);
        assert_eq!(client_addr(0), Ipv4Addr::new(198, 19, 0, 1));
        assert_eq!(client_addr(999), Ipv4Addr::new(198, 19, 3, 232));
    }
}
