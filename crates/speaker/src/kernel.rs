//! The kernel task: applies route batches through a [`fib::Backend`] and
//! reads the kernel table for next-hop resolution every few seconds.

use std::time::Duration;

use fib::{Backend, KernelRoute, Op, Route};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// Which kernel to program.
#[derive(Clone)]
pub enum KernelChoice {
    /// Linux, over rtnetlink.
    Netlink,
    /// An in-memory fake (tests).
    Memory(fib::Memory),
}

pub(crate) enum KernelEvent {
    /// kbgp's routes found in the kernel when the task started (possibly stale).
    Ours(Vec<Route>),
    /// The kernel table changed.
    Table(Vec<KernelRoute>),
    /// Interface addresses changed: (ifindex, address).
    Addresses(Vec<(u32, std::net::IpAddr)>),
}

/// A batch of route changes, and who to tell once it is applied.
pub(crate) type KernelTx =
    mpsc::UnboundedSender<(Vec<Op>, Option<tokio::sync::oneshot::Sender<()>>)>;

pub(crate) const TABLE_POLL: Duration = Duration::from_secs(2);

pub(crate) fn spawn(
    choice: &KernelChoice,
    table: u32,
    events: mpsc::UnboundedSender<KernelEvent>,
) -> Result<KernelTx, String> {
    let (tx, rx) = mpsc::unbounded_channel();
    match choice {
        KernelChoice::Netlink => {
            let b = fib::netlink::Netlink::new(table, fib::RTPROT_BGP)?;
            tokio::spawn(run(b, rx, events));
        }
        KernelChoice::Memory(m) => {
            tokio::spawn(run(m.clone(), rx, events));
        }
    }
    Ok(tx)
}

async fn run<B: Backend>(
    mut b: B,
    mut rx: mpsc::UnboundedReceiver<(Vec<Op>, Option<tokio::sync::oneshot::Sender<()>>)>,
    events: mpsc::UnboundedSender<KernelEvent>,
) {
    match b.ours().await {
        Ok(v) => {
            if !v.is_empty() {
                info!(
                    routes = v.len(),
                    "kbgp routes found in the kernel from an earlier run"
                );
            }
            let _ = events.send(KernelEvent::Ours(v));
        }
        Err(e) => warn!("cannot read kernel routes: {e}"),
    }
    let mut last: Option<Vec<KernelRoute>> = None;
    let mut last_addrs: Option<Vec<(u32, std::net::IpAddr)>> = None;
    let mut tick = tokio::time::interval(TABLE_POLL);
    loop {
        tokio::select! {
            ops = rx.recv() => {
                let Some((ops, done)) = ops else { return };
                let n = ops.len();
                let res = b.apply(ops).await;
                let errors: Vec<String> = res.into_iter().filter_map(Result::err).collect();
                if !errors.is_empty() {
                    warn!(failed = errors.len(), of = n, first = %errors[0], "kernel route update errors");
                }
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
            _ = tick.tick() => {
                match b.table().await {
                    Ok(t) => {
                        if last.as_ref() != Some(&t) {
                            last = Some(t.clone());
                            let _ = events.send(KernelEvent::Table(t));
                        }
                    }
                    Err(e) => warn!("cannot read the kernel table: {e}"),
                }
                match b.addresses().await {
                    Ok(mut a) => {
                        a.sort();
                        if last_addrs.as_ref() != Some(&a) {
                            last_addrs = Some(a.clone());
                            let _ = events.send(KernelEvent::Addresses(a));
                        }
                    }
                    Err(e) => warn!("cannot read interface addresses: {e}"),
                }
            }
        }
    }
}
