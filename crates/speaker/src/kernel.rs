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

/// How often the table is read when the backend cannot tell of changes.
pub(crate) const TABLE_POLL: Duration = Duration::from_secs(2);
/// How often it is read anyway when it can (BIRD's kernel scan: 60 s).
pub(crate) const SAFETY_POLL: Duration = Duration::from_secs(30);
/// How long a burst of changes is given to end before the table is read.
const SETTLE: Duration = Duration::from_millis(100);

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
    let mut seen = Seen::default();
    // Told of changes, the table is read again when one comes and otherwise
    // only now and then (a full table's dump costs the kernel most of a
    // second); else it is polled.
    let mut changes = b.changes();
    let mut tick = tokio::time::interval(if changes.is_some() {
        SAFETY_POLL
    } else {
        TABLE_POLL
    });
    loop {
        tokio::select! {
            // Route batches first: a dump while a table is going in would
            // only delay it.
            biased;
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
            c = next_change(&mut changes) => {
                if c.is_none() {
                    warn!("kernel change notifications stopped; polling the table");
                    changes = None;
                    tick = tokio::time::interval(TABLE_POLL);
                    continue;
                }
                // A link going down is a burst of changes: let it settle.
                tokio::time::sleep(SETTLE).await;
                while changes.as_mut().is_some_and(|c| c.try_recv().is_ok()) {}
                seen.refresh(&mut b, &events).await;
                tick.reset();
            }
            _ = tick.tick() => seen.refresh(&mut b, &events).await,
        }
    }
}

async fn next_change(changes: &mut Option<mpsc::Receiver<()>>) -> Option<()> {
    match changes {
        Some(c) => c.recv().await,
        None => std::future::pending().await,
    }
}

/// The kernel table and addresses last told to the main loop.
#[derive(Default)]
struct Seen {
    table: Option<Vec<KernelRoute>>,
    addresses: Option<Vec<(u32, std::net::IpAddr)>>,
}

impl Seen {
    async fn refresh<B: Backend>(
        &mut self,
        b: &mut B,
        events: &mpsc::UnboundedSender<KernelEvent>,
    ) {
        match b.table().await {
            Ok(t) => {
                if self.table.as_ref() != Some(&t) {
                    self.table = Some(t.clone());
                    let _ = events.send(KernelEvent::Table(t));
                }
            }
            Err(e) => warn!("cannot read the kernel table: {e}"),
        }
        match b.addresses().await {
            Ok(mut a) => {
                a.sort();
                if self.addresses.as_ref() != Some(&a) {
                    self.addresses = Some(a.clone());
                    let _ = events.send(KernelEvent::Addresses(a));
                }
            }
            Err(e) => warn!("cannot read interface addresses: {e}"),
        }
    }
}
