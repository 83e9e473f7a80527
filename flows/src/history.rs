//! Recent flow records in memory (a bounded ring, newest kept) for
//! `bulkhead flows` queries, and live subscriptions for `--follow`. Each
//! subscriber has its own bounded queue: a subscriber that does not keep up
//! loses records (counted), the pipeline never waits for it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::filter::Filter;
use super::record::FlowRecord;

/// Default number of records kept.
pub const DEFAULT_HISTORY: usize = 10_000;
/// Default queue length of a subscription.
pub const DEFAULT_SUBSCRIPTION_QUEUE: usize = 4_096;

struct Subscriber {
    id: u64,
    filter: Filter,
    tx: SyncSender<Arc<FlowRecord>>,
    lost: Arc<AtomicU64>,
}

/// The recent history and its subscribers.
pub struct History {
    capacity: usize,
    ring: Mutex<VecDeque<Arc<FlowRecord>>>,
    subscribers: Mutex<Vec<Subscriber>>,
    /// Records lost by all subscribers (slow readers).
    subscriber_lost: AtomicU64,
    /// Records pushed.
    pushed: AtomicU64,
    /// The next subscription's id.
    next_id: AtomicU64,
}

/// A live feed of new records matching a filter.
pub struct Subscription {
    id: SubscriptionId,
    rx: Receiver<Arc<FlowRecord>>,
    lost: Arc<AtomicU64>,
}

/// Names a subscription, to end it from another thread
/// ([`History::unsubscribe`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SubscriptionId(u64);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl History {
    /// A history keeping the newest `capacity` records.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            ring: Mutex::new(VecDeque::with_capacity(capacity.clamp(1, 65_536))),
            subscribers: Mutex::new(Vec::new()),
            subscriber_lost: AtomicU64::new(0),
            pushed: AtomicU64::new(0),
            next_id: AtomicU64::new(0),
        }
    }

    /// Most records kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Records kept now.
    pub fn len(&self) -> usize {
        lock(&self.ring).len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records pushed since start.
    pub fn pushed(&self) -> u64 {
        self.pushed.load(Ordering::Acquire)
    }

    /// Records subscribers lost because their queue was full.
    pub fn subscriber_lost(&self) -> u64 {
        self.subscriber_lost.load(Ordering::Relaxed)
    }

    /// Live subscriptions.
    pub fn subscribers(&self) -> usize {
        lock(&self.subscribers).len()
    }

    /// Adds records (oldest first) and hands them to subscribers.
    pub fn push_all(&self, records: &[Arc<FlowRecord>]) {
        if records.is_empty() {
            return;
        }
        {
            let mut ring = lock(&self.ring);
            for r in records
                .iter()
                .skip(records.len().saturating_sub(self.capacity))
            {
                if ring.len() == self.capacity {
                    ring.pop_front();
                }
                ring.push_back(r.clone());
            }
        }
        let mut subs = lock(&self.subscribers);
        subs.retain(|s| {
            for r in records {
                if !s.filter.matches(r) {
                    continue;
                }
                match s.tx.try_send(r.clone()) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        s.lost.fetch_add(1, Ordering::Relaxed);
                        self.subscriber_lost.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(TrySendError::Disconnected(_)) => return false,
                }
            }
            true
        });
        // Last: once `pushed` counts a record, subscribers have had it.
        self.pushed
            .fetch_add(records.len() as u64, Ordering::Release);
    }

    /// Adds one record.
    pub fn push(&self, record: Arc<FlowRecord>) {
        self.push_all(std::slice::from_ref(&record));
    }

    /// Up to `limit` records matching `filter`, newest first.
    pub fn query(&self, filter: &Filter, limit: usize) -> Vec<Arc<FlowRecord>> {
        lock(&self.ring)
            .iter()
            .rev()
            .filter(|r| filter.matches(r))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Up to `limit` records for which `keep` holds, newest first.
    pub fn query_by(
        &self,
        keep: impl Fn(&FlowRecord) -> bool,
        limit: usize,
    ) -> Vec<Arc<FlowRecord>> {
        lock(&self.ring)
            .iter()
            .rev()
            .filter(|r| keep(r))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Subscribes to new records matching `filter`, through a queue of
    /// `queue` records.
    pub fn subscribe(&self, filter: Filter, queue: usize) -> Subscription {
        let (tx, rx) = std::sync::mpsc::sync_channel(queue.max(1));
        let lost = Arc::new(AtomicU64::new(0));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.subscribers).push(Subscriber {
            id,
            filter,
            tx,
            lost: lost.clone(),
        });
        Subscription {
            id: SubscriptionId(id),
            rx,
            lost,
        }
    }

    /// Ends subscription `id`: nothing more is queued to it, and once its
    /// reader has taken what is queued it sees the feed closed (so a
    /// reader blocked on it wakes). Ending one that ended is a no-op.
    pub fn unsubscribe(&self, id: SubscriptionId) {
        lock(&self.subscribers).retain(|s| s.id != id.0);
    }
}

impl Subscription {
    /// Its id, for [`History::unsubscribe`].
    pub fn id(&self) -> SubscriptionId {
        self.id
    }

    /// The next record, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Arc<FlowRecord>, RecvTimeoutError> {
        self.rx.recv_timeout(timeout)
    }

    /// The next record if one is queued.
    pub fn try_recv(&self) -> Result<Arc<FlowRecord>, TryRecvError> {
        self.rx.try_recv()
    }

    /// Records this subscriber lost because its queue was full.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::FlowVerdict;
    use crate::record::tests_support::sample;

    fn rec(port: u16, verdict: FlowVerdict) -> Arc<FlowRecord> {
        let mut r = sample();
        r.dst.port = port;
        r.verdict = verdict;
        Arc::new(r)
    }

    #[test]
    fn keeps_the_newest_and_queries_newest_first() {
        let h = History::new(3);
        for p in 1..=5 {
            h.push(rec(p, FlowVerdict::Allowed));
        }
        h.push_all(&[rec(6, FlowVerdict::Denied)]);
        assert_eq!(h.len(), 3);
        let all: Vec<u16> = h
            .query(&Filter::default(), 10)
            .iter()
            .map(|r| r.dst.port)
            .collect();
        assert_eq!(all, vec![6, 5, 4]);
        let two: Vec<u16> = h
            .query(&Filter::default(), 2)
            .iter()
            .map(|r| r.dst.port)
            .collect();
        assert_eq!(two, vec![6, 5]);
        let denied = Filter {
            verdict: Some(FlowVerdict::Denied),
            ..Default::default()
        };
        assert_eq!(h.query(&denied, 10).len(), 1);
        // A batch larger than the ring keeps its newest.
        let batch: Vec<_> = (10..20).map(|p| rec(p, FlowVerdict::Allowed)).collect();
        h.push_all(&batch);
        assert_eq!(h.query(&Filter::default(), 1)[0].dst.port, 19);
        assert_eq!(h.pushed(), 16);
    }

    #[test]
    fn unsubscribe_closes_one_feed_after_what_is_queued() {
        let h = History::new(10);
        let a = h.subscribe(Filter::default(), 10);
        let b = h.subscribe(Filter::default(), 10);
        h.push(rec(1, FlowVerdict::Allowed));
        let id = a.id();
        let waiter = std::thread::spawn(move || {
            let first = a.recv_timeout(Duration::MAX).map(|r| r.dst.port);
            (first, a.recv_timeout(Duration::MAX).is_err())
        });
        h.unsubscribe(id);
        assert_eq!(waiter.join().unwrap(), (Ok(1), true));
        h.push(rec(2, FlowVerdict::Allowed));
        assert_eq!(h.subscribers(), 1);
        let ports: Vec<u16> = std::iter::from_fn(|| b.try_recv().ok())
            .map(|r| r.dst.port)
            .collect();
        assert_eq!(ports, vec![1, 2]);
    }

    #[test]
    fn slow_subscriber_loses_records_without_blocking() {
        let h = History::new(100);
        let slow = h.subscribe(Filter::default(), 2);
        let denied_only = h.subscribe(
            Filter {
                verdict: Some(FlowVerdict::Denied),
                ..Default::default()
            },
            100,
        );
        for p in 0..50 {
            h.push(rec(
                p,
                if p % 10 == 0 {
                    FlowVerdict::Denied
                } else {
                    FlowVerdict::Allowed
                },
            ));
        }
        assert_eq!(slow.lost(), 48);
        assert_eq!(h.subscriber_lost(), 48);
        assert_eq!(slow.try_recv().unwrap().dst.port, 0);
        assert_eq!(slow.try_recv().unwrap().dst.port, 1);
        assert!(slow.try_recv().is_err());
        let got: Vec<u16> = std::iter::from_fn(|| denied_only.try_recv().ok())
            .map(|r| r.dst.port)
            .collect();
        assert_eq!(got, vec![0, 10, 20, 30, 40]);
        assert_eq!(denied_only.lost(), 0);
        drop(slow);
        h.push(rec(99, FlowVerdict::Allowed));
        assert_eq!(h.subscribers(), 1);
    }
}
