//! The part every exporter with a writer thread shares: a bounded queue in
//! front of the thread, non-blocking hand-over with losses counted by
//! reason, a waiting hand-over at stop, and a bounded wait for the thread
//! at finish.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{ExportCounters, ExportStats, LogLimiter, LossReason};
use crate::record::FlowRecord;

/// A bounded queue feeding a writer thread.
pub struct Queued {
    /// Exporter name (metrics label, log lines).
    name: &'static str,
    tx: Option<SyncSender<Arc<FlowRecord>>>,
    counters: Arc<ExportCounters>,
    thread: Option<JoinHandle<()>>,
    done: Receiver<()>,
    limiter: LogLimiter,
    finish_timeout: Duration,
}

impl Queued {
    /// Starts thread `thread_name` running `write` over the queue (of
    /// `queue` records); `write` returns when the queue is closed and
    /// empty. `counters` are shared with the writer, which counts what it
    /// exports or loses.
    pub fn spawn(
        name: &'static str,
        thread_name: &str,
        queue: usize,
        counters: Arc<ExportCounters>,
        log_interval: Duration,
        finish_timeout: Duration,
        write: impl FnOnce(Receiver<Arc<FlowRecord>>) + Send + 'static,
    ) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel(queue.max(1));
        let (done_tx, done) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name(thread_name.into())
            .spawn(move || {
                write(rx);
                let _ = done_tx.send(());
            })?;
        Ok(Self {
            name,
            tx: Some(tx),
            counters,
            thread: Some(thread),
            done,
            limiter: LogLimiter::new(log_interval),
            finish_timeout,
        })
    }

    /// Hands over a record without blocking; a full queue or a dead writer
    /// loses it, counted.
    pub fn export(&mut self, record: &Arc<FlowRecord>) {
        self.counters.submitted(1);
        let Some(tx) = &self.tx else {
            self.counters.lost(LossReason::WriteError, 1);
            return;
        };
        match tx.try_send(record.clone()) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.counters.lost(LossReason::QueueFull, 1);
                if let Some(more) = self.limiter.check() {
                    tracing::warn!(
                        exporter = self.name,
                        lost_since_last_report = more + 1,
                        "flow exporter falls behind: records lost (queue full)"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                self.counters.lost(LossReason::WriteError, 1);
                if let Some(more) = self.limiter.check() {
                    tracing::error!(
                        exporter = self.name,
                        lost_since_last_report = more + 1,
                        "flow exporter's writer stopped"
                    );
                }
            }
        }
    }

    /// Hands over a record, waiting for room (at stop).
    pub fn export_waiting(&mut self, record: &Arc<FlowRecord>) {
        self.counters.submitted(1);
        let sent = self.tx.as_ref().map(|tx| tx.send(record.clone()));
        if !matches!(sent, Some(Ok(()))) {
            // The writer is gone (it failed to start or died).
            self.counters.lost(LossReason::WriteError, 1);
        }
    }

    /// The counters now.
    pub fn stats(&self) -> ExportStats {
        self.counters.stats(self.name)
    }

    /// Closes the queue and waits (at most the finish timeout) for the
    /// writer to write what is queued.
    pub fn finish(mut self) -> ExportStats {
        drop(self.tx.take());
        match self.done.recv_timeout(self.finish_timeout) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                if let Some(t) = self.thread.take() {
                    let _ = t.join();
                }
            }
            Err(RecvTimeoutError::Timeout) => tracing::warn!(
                exporter = self.name,
                timeout = ?self.finish_timeout,
                "flow exporter's writer did not finish; records still queued are reported pending"
            ),
        }
        self.counters.stats(self.name)
    }
}
