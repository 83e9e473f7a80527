//! A fake pipeline behind the API.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::super::*;

/// A fake pipeline: a history of records and bounded, lossy subscriptions.
#[derive(Default)]
pub(super) struct Fake {
    pub records: Mutex<Vec<String>>,
    pub subs: Mutex<Vec<(SyncSender<String>, Arc<AtomicU64>)>>,
    pub live: Arc<AtomicUsize>,
    pub failing: bool,
    pub queries: Mutex<Vec<String>>,
    /// What `/v1/history` answers: `None` is an agent without a history.
    pub history: Option<Result<String, String>>,
    /// What `/v1/timeline` serves.
    pub timeline: Option<crate::timeline::TimelineSource>,
    /// The quarantines `/v1/quarantine` serves: `None` is an agent without.
    pub quarantine: Option<Arc<crate::quarantine::QuarantineStore>>,
}

pub(super) fn record(n: u32) -> String {
    format!(r#"{{"type":"flow","n":{n}}}"#)
}

impl Fake {
    fn check(&self, query: &str) -> Result<(), String> {
        self.queries.lock().unwrap().push(query.to_owned());
        match query.split('&').find(|p| p.starts_with("bad")) {
            Some(p) => Err(format!("unknown filter {p}")),
            None => Ok(()),
        }
    }

    pub(super) fn publish(&self, rec: String) {
        self.records.lock().unwrap().push(rec.clone());
        self.subs
            .lock()
            .unwrap()
            .retain(|(tx, lost)| match tx.try_send(rec.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    lost.fetch_add(1, Ordering::SeqCst);
                    true
                }
                Err(TrySendError::Disconnected(_)) => false,
            });
    }

    pub(super) fn lose(&self, n: u64) {
        for (_, lost) in self.subs.lock().unwrap().iter() {
            lost.fetch_add(n, Ordering::SeqCst);
        }
    }

    pub(super) fn end_subscriptions(&self) {
        self.subs.lock().unwrap().clear();
    }
}

impl ApiBackend for Fake {
    fn metrics(&self) -> String {
        "# HELP fake Things.\n# TYPE fake counter\nfake_total 7\n# EOF\n".to_owned()
    }

    fn health(&self) -> Health {
        Health {
            status: if self.failing {
                HealthStatus::Failing
            } else {
                HealthStatus::Ok
            },
            detail: serde_json::json!({ "revision": 3 }),
        }
    }

    fn recent_flows(&self, query: &str, limit: usize) -> Result<Vec<String>, String> {
        self.check(query)?;
        let r = self.records.lock().unwrap();
        Ok(r[r.len().saturating_sub(limit)..].to_vec())
    }

    fn follow(&self, query: &str, last: usize) -> Result<Box<dyn FlowStream>, String> {
        self.check(query)?;
        let (tx, rx) = sync_channel(4);
        let lost = Arc::new(AtomicU64::new(0));
        let records = self.records.lock().unwrap();
        let backlog = records[records.len().saturating_sub(last)..].to_vec();
        self.subs.lock().unwrap().push((tx, Arc::clone(&lost)));
        self.live.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(FakeStream {
            backlog,
            rx,
            lost,
            live: Arc::clone(&self.live),
        }))
    }

    fn accounting(&self) -> serde_json::Value {
        serde_json::json!({ "balanced": true })
    }

    fn quarantine(&self) -> Option<Arc<crate::quarantine::QuarantineStore>> {
        self.quarantine.clone()
    }

    fn history(&self, _: bulkhead_learn::Window) -> Result<String, HistoryError> {
        match &self.history {
            None => Err(HistoryError::NotKept),
            Some(Ok(json)) => Ok(json.clone()),
            Some(Err(why)) => Err(HistoryError::Read(why.clone().into())),
        }
    }

    fn timeline(&self, query: &TimelineQuery) -> Result<String, TimelineError> {
        self.timeline
            .as_ref()
            .map_or(Err(TimelineError::NotKept), |t| t.json(query))
    }
}

struct FakeStream {
    backlog: Vec<String>,
    rx: Receiver<String>,
    lost: Arc<AtomicU64>,
    pub live: Arc<AtomicUsize>,
}

impl FlowStream for FakeStream {
    fn next(&mut self, timeout: Duration) -> Next {
        if !self.backlog.is_empty() {
            return Next::Record(self.backlog.remove(0));
        }
        let lost = self.lost.swap(0, Ordering::SeqCst);
        if lost > 0 {
            return Next::Lost(lost);
        }
        match self.rx.recv_timeout(timeout) {
            Ok(r) => Next::Record(r),
            Err(RecvTimeoutError::Timeout) => Next::Idle,
            Err(RecvTimeoutError::Disconnected) => Next::Closed,
        }
    }
}

impl Drop for FakeStream {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(super) fn fake(n: u32) -> Arc<Fake> {
    let f = Arc::new(Fake::default());
    for i in 0..n {
        f.publish(record(i));
    }
    f
}

/// A backend that is alive but not ready (or ready, as told).
pub(super) struct Probe {
    pub ready: Result<(), String>,
}

impl ApiBackend for Probe {
    fn metrics(&self) -> String {
        String::new()
    }
    fn health(&self) -> Health {
        Health {
            status: HealthStatus::Ok,
            detail: serde_json::Value::Null,
        }
    }
    fn ready(&self) -> Result<(), String> {
        self.ready.clone()
    }
    fn recent_flows(&self, _: &str, _: usize) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }
    fn follow(&self, _: &str, _: usize) -> Result<Box<dyn FlowStream>, String> {
        Err("no flows here".to_owned())
    }
    fn accounting(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    fn history(&self, _: bulkhead_learn::Window) -> Result<String, HistoryError> {
        Err(HistoryError::NotKept)
    }
}
