//! kbgp-bench: one measurement of one daemon, run inside the benchmark's
//! network namespace (see bench/run.sh). The injector (198.18.0.1, AS 65001)
//! and the monitor (198.18.0.3, AS 65002) both listen; the daemon under test
//! (198.18.0.2, AS 65000) connects to both. Once both sessions are up, the
//! injector sends the table and the monitor times until it holds every prefix,
//! then the same for withdrawing all of it. Prints one JSON line.

mod daemons;
mod rr;
mod table;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bgp_fsm::{RemoteAs, SessionCfg};
use bgp_wire::update::{pack_announce, pack_withdraw, NextHop};
use bgp_wire::{frame_len, Ctx, Family, Message, Nlri, MAX_LEN_EXTENDED};
use bytes::BytesMut;
use clap::Parser;
use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub const INJECTOR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const DUT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const MONITOR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
/// Next hop of injected routes: in the benchmark subnet, not a local address.
pub const NEXT_HOP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);

#[derive(Parser)]
#[command(name = "kbgp-bench")]
struct Args {
    /// kbgp, bird, frr or gobgp.
    #[arg(long)]
    daemon: String,
    #[arg(long, default_value_t = 100_000)]
    prefixes: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Working directory for the daemon's configuration and logs.
    #[arg(long)]
    workdir: std::path::PathBuf,
    /// The kbgp binary.
    #[arg(long, default_value = "target/release/kbgp")]
    kbgp: std::path::PathBuf,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Scenario (d), kernel install: with `--daemon ip`, time `ip -batch`
    /// adding the table's routes; with `--daemon kbgp`, run kbgp with kernel
    /// programming on and time until the kernel holds every route.
    #[arg(long)]
    kernel: bool,
    /// Scenario (c): the daemon is a route reflector for this many iBGP
    /// clients (198.19.0.1 onwards, AS 65000), each announcing one /26 and
    /// ten /32s; converged when every client holds every other client's
    /// prefixes. `--prefixes` is not used.
    #[arg(long, default_value_t = 0)]
    rr_clients: usize,
    /// Scenario (b): this many injectors (198.18.0.10+i, AS 65100+i) announce
    /// the same prefixes, injector i prepending its AS i+1 times; converged
    /// when the monitor holds every prefix via injector 0 (AS 65100).
    #[arg(long, default_value_t = 1)]
    peers: usize,
}

/// The injectors: one (198.18.0.1, AS 65001), or scenario (b)'s several.
fn injectors(k: usize) -> Vec<(Ipv4Addr, u32)> {
    if k <= 1 {
        vec![(INJECTOR, 65001)]
    } else {
        (0..k)
            .map(|i| (Ipv4Addr::new(198, 18, 0, 10 + i as u8), 65100 + i as u32))
            .collect()
    }
}

/// Routes of protocol 186 (bgp) in the main table: counted once, untimed.
fn kernel_count() -> Result<usize> {
    let out = std::process::Command::new("ip")
        .args(["-4", "route", "show", "proto", "186"])
        .output()?;
    Ok(out.stdout.iter().filter(|b| **b == b'\n').count())
}

/// Is exactly `p` in the kernel's table (not a covering route)?
fn kernel_has(p: &IpNet) -> bool {
    let Ok(out) = std::process::Command::new("ip")
        .args(["-4", "route", "get", &p.addr().to_string(), "fibmatch"])
        .output()
    else {
        return false;
    };
    let s = String::from_utf8_lossy(&out.stdout);
    out.status.success() && s.split_whitespace().next() == Some(&p.to_string())
}

/// Scenario (d) baseline: `ip -batch` of the same routes, as one command.
fn ip_batch(a: &Args, all: &[Nlri]) -> Result<()> {
    use std::fmt::Write as _;
    let mut batch = String::with_capacity(all.len() * 48);
    for n in all {
        let _ = writeln!(batch, "route replace {} via {NEXT_HOP} proto 186", n.prefix);
    }
    let f = a.workdir.join("routes.batch");
    std::fs::write(&f, batch)?;
    let t0 = Instant::now();
    let st = std::process::Command::new("ip")
        .arg("-batch")
        .arg(&f)
        .status()?;
    let install = t0.elapsed();
    if !st.success() {
        bail!("ip -batch failed");
    }
    let count = kernel_count()?;
    if count != all.len() {
        bail!("ip -batch installed {count} routes, not {}", all.len());
    }
    println!(
        "{}",
        serde_json::json!({
            "scenario": "kernel", "daemon": "ip", "prefixes": all.len(),
            "install_ms": install.as_millis(),
        })
    );
    Ok(())
}

/// Listen on `addr`:179, accept the daemon's connection and bring the session up.
async fn session(addr: Ipv4Addr, asn: u32) -> Result<(TcpStream, BytesMut)> {
    session_on(listen(addr)?, addr, asn).await
}

fn listen(addr: Ipv4Addr) -> Result<TcpListener> {
    let s = tokio::net::TcpSocket::new_v4()?;
    s.set_reuseaddr(true)?;
    s.bind(SocketAddr::new(IpAddr::V4(addr), 179))
        .with_context(|| format!("listen on {addr}:179"))?;
    Ok(s.listen(16)?)
}

/// Accept the daemon's connection on `l` and bring the session up as
/// `addr` (router id), AS `asn`, with a daemon of AS 65000.
async fn session_on(l: TcpListener, addr: Ipv4Addr, asn: u32) -> Result<(TcpStream, BytesMut)> {
    let (mut s, _) = l.accept().await?;
    s.set_nodelay(true)?;
    let mut cfg = SessionCfg::new(asn, RemoteAs::Number(65000), addr);
    cfg.hold_time = 180;
    cfg.families = vec![Family::IPV4_UNICAST];
    cfg.extended_messages = false;
    let ctx = Ctx::modern();
    s.write_all(&Message::Open(cfg.open()).to_bytes(&ctx))
        .await?;
    s.write_all(&Message::Keepalive.to_bytes(&ctx)).await?;
    let mut buf = BytesMut::with_capacity(1 << 20);
    let (mut got_open, mut got_ka) = (false, false);
    while !(got_open && got_ka) {
        match next_msg(&mut s, &mut buf, &ctx).await? {
            Message::Open(o) => {
                if o.hold_time != 0 && o.hold_time < 3 {
                    bail!("bad hold time");
                }
                got_open = true;
            }
            Message::Keepalive => got_ka = true,
            Message::Notification(n) => bail!("daemon sent {n}"),
            _ => {}
        }
    }
    Ok((s, buf))
}

async fn next_msg<R: tokio::io::AsyncRead + Unpin>(
    s: &mut R,
    buf: &mut BytesMut,
    ctx: &Ctx,
) -> Result<Message> {
    loop {
        if let Some(len) = frame_len(buf, MAX_LEN_EXTENDED).map_err(|n| anyhow::anyhow!("{n}"))? {
            if buf.len() >= len {
                let f = buf.split_to(len);
                return Message::decode(&f, ctx).map_err(|n| anyhow::anyhow!("decode: {n}"));
            }
        }
        if s.read_buf(buf).await? == 0 {
            bail!("connection closed");
        }
    }
}

/// Write `bytes` (whole BGP messages) in chunks of about 1 MB that end on
/// message boundaries, so keepalives can go in between.
async fn write_chunks(
    w: &tokio::sync::Mutex<tokio::net::tcp::OwnedWriteHalf>,
    bytes: &[u8],
) -> Result<()> {
    let mut start = 0;
    while start < bytes.len() {
        let mut end = start;
        while end < bytes.len() && end - start < (1 << 20) {
            let len = u16::from_be_bytes([bytes[end + 16], bytes[end + 17]]) as usize;
            end += len;
        }
        w.lock().await.write_all(&bytes[start..end]).await?;
        start = end;
    }
    Ok(())
}

/// A `/proc/PID/status` field in kB (VmHWM: peak RSS, VmRSS: RSS now).
fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The command name and CPU ms (utime + stime) of a `/proc/.../stat` line
/// (a process's or a thread's).
fn stat_cpu(stat: &str) -> (&str, u64) {
    let (head, after) = stat.rsplit_once(')').unwrap_or(("", ""));
    let comm = head.split_once('(').map_or("", |(_, c)| c);
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of the line (utime, stime) in clock ticks of 10 ms.
    let ticks: u64 = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (comm, ticks * 10)
}

/// (peak RSS kB, CPU ms) of a process.
fn proc_stats(pid: u32) -> (u64, u64) {
    let hwm = status_kb(pid, "VmHWM:");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    (hwm, stat_cpu(&stat).1)
}

/// CPU ms of a process's threads named `name` (kbgp's main loop is
/// `kbgp-main`): how the daemon's CPU splits between its decision thread
/// and the rest.
fn thread_cpu_ms(pid: u32, name: &str) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.flatten()
        .map(|t| std::fs::read_to_string(t.path().join("stat")).unwrap_or_default())
        .map(|stat| match stat_cpu(&stat) {
            (comm, ms) if comm == name => ms,
            _ => 0,
        })
        .sum()
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Args::parse();
    std::fs::create_dir_all(&a.workdir)?;
    if a.rr_clients > 0 {
        return rr::run(&a).await;
    }
    let t_gen = Instant::now();
    let groups = table::generate(a.prefixes, a.seed, NEXT_HOP);
    let ctx = Ctx::modern();
    let inj_list = injectors(a.peers);
    let multi = inj_list.len() > 1;
    let mut announces: Vec<BytesMut> = Vec::new();
    let mut updates = 0;
    let mut all: Vec<Nlri> = Vec::with_capacity(a.prefixes);
    for (i, (_, asn)) in inj_list.iter().enumerate() {
        let mut announce = BytesMut::new();
        for (attrs, nlri) in &groups {
            let mut attrs = attrs.clone();
            if multi {
                if let Some(p) = attrs.as_path.as_mut() {
                    p.prepend(*asn, i + 1);
                }
            }
            updates += pack_announce(
                &ctx,
                &attrs,
                Family::IPV4_UNICAST,
                NextHop::V4(NEXT_HOP),
                nlri,
                &mut announce,
            );
            if i == 0 {
                all.extend_from_slice(nlri);
            }
        }
        announces.push(announce);
    }
    let mut withdraw = BytesMut::new();
    pack_withdraw(&ctx, Family::IPV4_UNICAST, &all, &mut withdraw);
    let gen_ms = t_gen.elapsed().as_millis();
    if a.kernel && a.daemon == "ip" {
        return ip_batch(&a, &all);
    }
    if a.kernel && a.daemon != "kbgp" {
        bail!("--kernel measures kbgp or ip");
    }

    // The tools listen before the daemon starts.
    let inj_tasks: Vec<_> = inj_list
        .iter()
        .map(|(addr, asn)| tokio::spawn(session(*addr, *asn)))
        .collect();
    let mon = tokio::spawn(session(MONITOR, 65002));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut child = daemons::start(&a.daemon, &a.workdir, &a.kbgp, a.kernel, &inj_list)?;
    let pid = child.id().context("daemon pid")?;
    let deadline = Duration::from_secs(a.timeout);
    let mut inj_ws = Vec::new();
    for t in inj_tasks {
        let (inj_s, _) = tokio::time::timeout(deadline, t)
            .await
            .context("injector session timeout")???;
        let (mut r, w) = inj_s.into_split();
        // Drain what a daemon sends back to the injector, so it never blocks on it.
        tokio::spawn(async move {
            let mut b = vec![0u8; 1 << 16];
            while matches!(r.read(&mut b).await, Ok(n) if n > 0) {}
        });
        inj_ws.push(Arc::new(tokio::sync::Mutex::new(w)));
    }
    let (mon_s, mut mon_buf) = tokio::time::timeout(deadline, mon)
        .await
        .context("monitor session timeout")???;
    // Keepalives every 30 s on every session, between whole messages.
    let (mut mon_s, mon_w) = mon_s.into_split();
    let mon_w = Arc::new(tokio::sync::Mutex::new(mon_w));
    for w in inj_ws.iter().cloned().chain([mon_w.clone()]) {
        tokio::spawn(async move {
            let ka = Message::Keepalive.to_bytes(&Ctx::modern());
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                if w.lock().await.write_all(&ka).await.is_err() {
                    return;
                }
            }
        });
    }
    let idle = proc_stats(pid);
    let idle_main = thread_cpu_ms(pid, "kbgp-main");
    // Let the daemon settle (initial End-of-RIBs, own routes) before timing.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // (prefixes held, of which by the wanted path)
    let (count_tx, mut count_rx) = watch::channel((0usize, 0usize));
    let target = a.prefixes;
    // Scenario (b): a prefix counts once its path is injector 0's (AS 65100
    // right after the daemon's own AS).
    let want_via = multi.then_some(65100u32);
    // Announcements the monitor received in all (a prefix re-announced as
    // better paths arrive counts each time).
    let announced = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let announced_mon = announced.clone();
    let monitor = tokio::spawn(async move {
        let mut held: hashbrown::HashMap<IpNet, bool> = hashbrown::HashMap::with_capacity(target);
        let mut good = 0usize;
        let ctx = Ctx::modern();
        loop {
            match next_msg(&mut mon_s, &mut mon_buf, &ctx).await {
                Ok(Message::Update(u)) => {
                    for n in u.withdrawals() {
                        if held.remove(&n.prefix) == Some(true) {
                            good -= 1;
                        }
                    }
                    let ok = match want_via {
                        None => true,
                        Some(asn) => {
                            u.attrs.as_path.as_ref().and_then(|p| {
                                p.segments().next().and_then(|(_, a)| a.get(1).copied())
                            }) == Some(asn)
                        }
                    };
                    for (n, _) in u.announcements() {
                        // (The bench's own addresses, 198.18.0.0/15's first /16.)
                        if matches!(n.prefix, IpNet::V4(v) if v.addr().octets()[..2] == [198, 18]) {
                            continue;
                        }
                        announced_mon.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if held.insert(n.prefix, ok) == Some(true) {
                            good -= 1;
                        }
                        if ok {
                            good += 1;
                        }
                    }
                    // Only states the bench waits for are sent (all held via
                    // the wanted path, or none): a send per UPDATE woke the
                    // waiting task hundreds of thousands of times, a core's
                    // worth of the machine the daemon under test runs on.
                    if held.is_empty() || (held.len() >= target && good == held.len()) {
                        let _ = count_tx.send((held.len(), good));
                    }
                }
                Ok(Message::Notification(n)) => {
                    return Err::<(), anyhow::Error>(anyhow::anyhow!(
                        "daemon sent {n} to the monitor"
                    ))
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    });
    let table_bytes: usize = announces.iter().map(|b| b.len()).sum();
    let t0 = Instant::now();
    // Every injector at once.
    let writes: Vec<_> = inj_ws
        .iter()
        .cloned()
        .zip(announces.into_iter().map(|b| b.freeze()))
        .map(|(w, b)| tokio::spawn(async move { write_chunks(&w, &b).await }))
        .collect();
    for wt in writes {
        wt.await??;
    }
    let inject_ms = t0.elapsed().as_millis();
    if a.kernel {
        // The last prefix injected is the last one the daemon installs.
        let last = all.last().context("empty table")?.prefix;
        let t_kernel = tokio::time::timeout(deadline, async {
            while !kernel_has(&last) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            t0.elapsed()
        })
        .await
        .context("kernel install timeout")?;
        let mut count = kernel_count()?;
        let t_wait = Instant::now();
        while count < target && t_wait.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            count = kernel_count()?;
        }
        let loaded = proc_stats(pid);
        let _ = child.kill().await;
        if count < target {
            bail!("kbgp installed {count} routes, not {target}");
        }
        println!(
            "{}",
            serde_json::json!({
                "scenario": "kernel", "daemon": "kbgp", "prefixes": target,
                "install_ms": t_kernel.as_millis(), "complete": count >= target,
                "rss_peak_kb": loaded.0, "cpu_total_ms": loaded.1,
            })
        );
        return Ok(());
    }
    tokio::time::timeout(deadline, count_rx.wait_for(|(h, g)| *h >= target && g == h))
        .await
        .context("convergence timeout")??;
    let converge = t0.elapsed();
    let announced = announced.load(std::sync::atomic::Ordering::Relaxed);
    let loaded = proc_stats(pid);
    let loaded_main = thread_cpu_ms(pid, "kbgp-main");
    let rss_converged = status_kb(pid, "VmRSS:");
    let t1 = Instant::now();
    let withdraw = withdraw.freeze();
    for w in &inj_ws {
        write_chunks(w, &withdraw).await?;
    }
    tokio::time::timeout(deadline, count_rx.wait_for(|(h, _)| *h == 0))
        .await
        .context("withdraw timeout")??;
    let withdraw_t = t1.elapsed();
    let done = proc_stats(pid);
    monitor.abort();
    // SIGTERM first (a profiler wrapping the daemon writes its data on exit).
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
            "daemon": a.daemon,
            "prefixes": a.prefixes,
            "attribute_sets": groups.len(),
            "updates": updates,
            "table_bytes": table_bytes,
            "peers": inj_list.len(),
            "generate_ms": gen_ms,
            "inject_write_ms": inject_ms,
            "converge_ms": converge.as_millis(),
            "monitor_announcements": announced,
            "withdraw_ms": withdraw_t.as_millis(),
            "rss_idle_kb": idle.0,
            "rss_converged_kb": rss_converged,
            "rss_peak_kb": loaded.0.max(done.0),
            "cpu_converge_ms": loaded.1.saturating_sub(idle.1),
            "cpu_converge_main_loop_ms": loaded_main.saturating_sub(idle_main),
            "cpu_total_ms": done.1,
        })
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::stat_cpu;

    #[test]
    fn a_stat_line_gives_its_command_and_cpu() {
        // utime 7 and stime 5 ticks (fields 14 and 15); a command name may
        // hold spaces and parentheses.
        let line = "4242 (kbgp-main) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 3 0 10 0 0";
        assert_eq!(stat_cpu(line), ("kbgp-main", 120));
        let odd = "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 30 2 0 0 20 0 1 0 1 0 0";
        assert_eq!(stat_cpu(odd), ("a (b) c", 320));
        assert_eq!(stat_cpu(""), ("", 0));
    }
}
