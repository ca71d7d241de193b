//! The kernel task: applies route batches through a [`fib::Backend`] and
//! reads the kernel table for next-hop resolution every few seconds.

use std::time::Duration;

use fib::{Backend, KernelRoute, Op, Route};
use tokio::sync::mpsc;
use tokio::time::Instant;
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
/// Reads of the table after changes are at least this many times their own
/// duration apart.
const READ_SHARE: u32 = 10;

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
    // only now and then; else it is polled.
    let mut changes = b.changes();
    let mut tick = tokio::time::interval(if changes.is_some() {
        SAFETY_POLL
    } else {
        TABLE_POLL
    });
    // When the table is to be read again after a change.
    let mut due: Option<Instant> = None;
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
                } else if due.is_none() {
                    due = Some(seen.next_read(Instant::now()));
                }
            }
            _ = until(due) => {
                due = None;
                seen.refresh(&mut b, &events).await;
                tick.reset();
            }
            _ = tick.tick() => {
                due = None;
                seen.refresh(&mut b, &events).await;
            }
        }
    }
}

async fn until(due: Option<Instant>) {
    match due {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn next_change(changes: &mut Option<mpsc::Receiver<()>>) -> Option<()> {
    match changes {
        Some(c) => c.recv().await,
        None => std::future::pending().await,
    }
}

/// The kernel table and addresses last told to the main loop, and what
/// reading them cost.
#[derive(Default)]
struct Seen {
    table: Option<Vec<KernelRoute>>,
    addresses: Option<Vec<(u32, std::net::IpAddr)>>,
    /// When the last read ended and how long it took.
    last: Option<(Instant, Duration)>,
}

impl Seen {
    /// When to read the table after a change seen at `now`: once a burst
    /// (a link going down) has had [`SETTLE`] to end, and no sooner than
    /// [`READ_SHARE`] times the last read's duration after it, so changes
    /// that never stop (pods coming and going on a node with a full table,
    /// whose dump the kernel takes most of a second to write) cost at most
    /// a tenth of a core.
    fn next_read(&self, now: Instant) -> Instant {
        let settle = now + SETTLE;
        match self.last {
            Some((end, took)) => settle.max(end + (took * READ_SHARE).min(SAFETY_POLL)),
            None => settle,
        }
    }

    async fn refresh<B: Backend>(
        &mut self,
        b: &mut B,
        events: &mpsc::UnboundedSender<KernelEvent>,
    ) {
        let start = Instant::now();
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
        let end = Instant::now();
        self.last = Some((end, end - start));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A kernel whose table takes `cost` to read and that tells of changes.
    struct Slow {
        cost: Duration,
        reads: Arc<AtomicUsize>,
        changes: Option<mpsc::Receiver<()>>,
        applied: Arc<AtomicUsize>,
    }

    impl Backend for Slow {
        async fn apply(&mut self, ops: Vec<Op>) -> Vec<Result<(), String>> {
            self.applied.fetch_add(ops.len(), Ordering::SeqCst);
            ops.iter().map(|_| Ok(())).collect()
        }
        async fn ours(&mut self) -> Result<Vec<Route>, String> {
            Ok(Vec::new())
        }
        async fn table(&mut self) -> Result<Vec<KernelRoute>, String> {
            tokio::time::sleep(self.cost).await;
            self.reads.fetch_add(1, Ordering::SeqCst);
            Ok(Vec::new())
        }
        async fn addresses(&mut self) -> Result<Vec<(u32, std::net::IpAddr)>, String> {
            Ok(Vec::new())
        }
        fn changes(&mut self) -> Option<mpsc::Receiver<()>> {
            self.changes.take()
        }
    }

    fn start(
        cost: Duration,
    ) -> (
        Arc<AtomicUsize>,
        Arc<AtomicUsize>,
        mpsc::Sender<()>,
        KernelTx,
    ) {
        let reads = Arc::new(AtomicUsize::new(0));
        let applied = Arc::new(AtomicUsize::new(0));
        let (change_tx, change_rx) = mpsc::channel(1);
        let b = Slow {
            cost,
            reads: reads.clone(),
            changes: Some(change_rx),
            applied: applied.clone(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let (events, _) = mpsc::unbounded_channel();
        tokio::spawn(run(b, rx, events));
        (reads, applied, change_tx, tx)
    }

    #[tokio::test(start_paused = true)]
    async fn changes_are_read_soon_and_never_in_a_storm() {
        // A small table: read about SETTLE after a change.
        let (reads, _, changes, _tx) = start(Duration::from_millis(1));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let first = reads.load(Ordering::SeqCst);
        assert_eq!(first, 1, "the first read, at start");
        let _ = changes.try_send(());
        tokio::time::sleep(SETTLE + Duration::from_millis(20)).await;
        assert_eq!(reads.load(Ordering::SeqCst), 2, "read again after a change");

        // A table that takes 500 ms to read, changes every 50 ms for 20 s:
        // reads at most every 5.5 s, not every 0.6 s; route batches are
        // applied while a read waits.
        let (reads, applied, changes, tx) = start(Duration::from_millis(500));
        for i in 0..400 {
            let _ = changes.try_send(());
            if i % 40 == 0 {
                let (done, wait) = tokio::sync::oneshot::channel();
                tx.send((
                    vec![Op::Delete("192.0.2.0/24".parse().unwrap())],
                    Some(done),
                ))
                .unwrap();
                tokio::time::timeout(Duration::from_millis(600), wait)
                    .await
                    .expect("a batch waits at most for a read under way")
                    .unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let n = reads.load(Ordering::SeqCst);
        assert!((3..=6).contains(&n), "{n} reads in 20 s");
        assert_eq!(applied.load(Ordering::SeqCst), 10);
    }
}
