//! JSON Lines: one `bulkhead.flow/v1` record per line, to stdout or to a
//! file rotated by size (`file`, then `file.1` .. `file.N`, `file.1` the
//! newest), which is what Loki's promtail, Vector and Fluent Bit tail.
//!
//! Records cross a bounded queue to a writer thread, which serializes them
//! into a reusable buffer and writes in batches. A full queue (slow disk,
//! slow reader on stdout) or a failed write (disk full) counts the records
//! as lost and is logged at most once per interval; the pipeline never
//! waits.
//!
//! The files are the owner's only (0600, also a file made by an older
//! version when it is opened again): flows say who talks to whom.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Duration;

use super::queued::Queued;
use super::{ExportCounters, ExportStats, Exporter, LogLimiter, LossReason};
use crate::record::FlowRecord;

/// Where lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JsonlTarget {
    /// Standard output.
    Stdout,
    /// A file, rotated by size.
    File {
        /// The file.
        path: PathBuf,
        /// Rotate before the file would exceed this many bytes.
        max_bytes: u64,
        /// Rotated files kept (`path.1` .. `path.N`); 0 keeps none.
        keep: usize,
    },
}

/// Configuration of the JSON Lines exporter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonlConfig {
    /// Where lines go.
    pub target: JsonlTarget,
    /// Records queued for the writer before new ones are lost.
    pub queue: usize,
    /// Failures are logged at most once per interval.
    pub log_interval: Duration,
    /// How long [`Exporter::finish`] waits for the queue to be written.
    pub finish_timeout: Duration,
}

impl JsonlConfig {
    /// Default rotation size: 100 MiB.
    pub const DEFAULT_MAX_BYTES: u64 = 100 << 20;
    /// Default rotated files kept.
    pub const DEFAULT_KEEP: usize = 5;

    /// Defaults for a target.
    pub fn new(target: JsonlTarget) -> Self {
        Self {
            target,
            queue: 65_536,
            log_interval: Duration::from_secs(10),
            finish_timeout: Duration::from_secs(10),
        }
    }

    /// A file target with default rotation.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self::new(JsonlTarget::File {
            path: path.into(),
            max_bytes: Self::DEFAULT_MAX_BYTES,
            keep: Self::DEFAULT_KEEP,
        })
    }
}

/// Why the JSON Lines exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum JsonlError {
    /// The file could not be opened.
    #[error("opening flow log {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The writer thread could not be started.
    #[error("starting the flow log writer: {source}")]
    Spawn {
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// The JSON Lines exporter.
pub struct JsonlExporter {
    queued: Queued,
}

/// Batches are written when they reach this size (or the queue is empty).
const BATCH_BYTES: usize = 256 << 10;

impl JsonlExporter {
    /// Opens the target and starts the writer thread.
    pub fn start(config: JsonlConfig) -> Result<Self, JsonlError> {
        let out = match &config.target {
            JsonlTarget::Stdout => Out::Stdout,
            JsonlTarget::File {
                path,
                max_bytes,
                keep,
            } => {
                let (file, size) = open(path).map_err(|source| JsonlError::Open {
                    path: path.clone(),
                    source,
                })?;
                Out::File(FileOut {
                    path: path.clone(),
                    file: Some(file),
                    size,
                    max_bytes: *max_bytes,
                    keep: *keep,
                })
            }
        };
        let counters = Arc::new(ExportCounters::default());
        let mut writer = Writer {
            out,
            buf: Vec::with_capacity(BATCH_BYTES + 4096),
            line: Vec::with_capacity(2048),
            buf_records: 0,
            broken_line: false,
            counters: counters.clone(),
            limiter: LogLimiter::new(config.log_interval),
        };
        let queued = Queued::spawn(
            "jsonl",
            "flows-jsonl",
            config.queue,
            counters,
            config.log_interval,
            config.finish_timeout,
            move |rx| writer.run(rx),
        )
        .map_err(|source| JsonlError::Spawn { source })?;
        Ok(Self { queued })
    }
}

impl Exporter for JsonlExporter {
    fn name(&self) -> &'static str {
        "jsonl"
    }

    fn export_waiting(&mut self, record: &Arc<FlowRecord>) {
        self.queued.export_waiting(record);
    }

    fn export(&mut self, record: &Arc<FlowRecord>) {
        self.queued.export(record);
    }

    fn flush(&mut self) {
        // The writer thread writes whenever its queue runs empty.
    }

    fn stats(&self) -> ExportStats {
        self.queued.stats()
    }

    fn finish(self: Box<Self>) -> ExportStats {
        self.queued.finish()
    }
}

/// Opens the log for appending, owner-only (see [`bulkhead_policy::private`]).
fn open(path: &Path) -> std::io::Result<(File, u64)> {
    let file = bulkhead_policy::private::open_append(path)?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

enum Out {
    Stdout,
    File(FileOut),
}

struct FileOut {
    path: PathBuf,
    /// `None` after a failure: reopened at the next write.
    file: Option<File>,
    size: u64,
    max_bytes: u64,
    keep: usize,
}

impl FileOut {
    fn rotated(&self, n: usize) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        p.into()
    }

    /// `path` → `path.1` → ... → `path.keep` (the oldest falls off), and a
    /// new empty `path`.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for n in (1..self.keep).rev() {
                let from = self.rotated(n);
                if from.exists() {
                    std::fs::rename(&from, self.rotated(n + 1))?;
                }
            }
            std::fs::rename(&self.path, self.rotated(1))?;
        }
        let (f, size) = open(&self.path)?;
        self.file = Some(f);
        self.size = size;
        Ok(())
    }

    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() {
            let (f, size) = open(&self.path)?;
            self.file = Some(f);
            self.size = size;
        }
        let f = self.file.as_mut().expect("opened");
        let r = f.write_all(data);
        match r {
            Ok(()) => {
                self.size += data.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.file = None;
                Err(e)
            }
        }
    }
}

struct Writer {
    out: Out,
    buf: Vec<u8>,
    line: Vec<u8>,
    buf_records: u64,
    /// A failed write may have left a partial line: start the next write
    /// on a new line.
    broken_line: bool,
    counters: Arc<ExportCounters>,
    limiter: LogLimiter,
}

impl Writer {
    fn run(&mut self, rx: Receiver<Arc<FlowRecord>>) {
        while let Ok(first) = rx.recv() {
            self.push(&first);
            loop {
                match rx.try_recv() {
                    Ok(r) => {
                        self.push(&r);
                        if self.buf.len() >= BATCH_BYTES {
                            self.write_buf();
                        }
                    }
                    Err(TryRecvError::Empty) => {
                        self.write_buf();
                        break;
                    }
                    Err(TryRecvError::Disconnected) => {
                        self.write_buf();
                        return;
                    }
                }
            }
        }
    }

    fn push(&mut self, record: &FlowRecord) {
        self.line.clear();
        if let Err(e) = serde_json::to_writer(&mut self.line, record) {
            self.counters.lost(LossReason::EncodeError, 1);
            if let Some(more) = self.limiter.check() {
                tracing::error!(error = %e, lost_since_last_report = more + 1, "encoding a flow record");
            }
            return;
        }
        self.line.push(b'\n');
        if let Out::File(f) = &self.out {
            let pending = f.size + self.buf.len() as u64;
            if pending > 0 && pending + self.line.len() as u64 > f.max_bytes {
                self.write_buf();
                if let Out::File(f) = &mut self.out
                    && let Err(e) = f.rotate()
                {
                    // Keep appending to whatever `path` is; try again after
                    // another max_bytes.
                    f.size = 0;
                    if let Some(more) = self.limiter.check() {
                        tracing::error!(path = %f.path.display(), error = %e, suppressed = more, "rotating the flow log");
                    }
                }
            }
        }
        self.buf.extend_from_slice(&self.line);
        self.buf_records += 1;
    }

    fn write_buf(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if self.broken_line {
            self.buf.insert(0, b'\n');
        }
        let r = match &mut self.out {
            Out::Stdout => {
                let mut s = std::io::stdout().lock();
                s.write_all(&self.buf).and_then(|()| s.flush())
            }
            Out::File(f) => f.write(&self.buf),
        };
        let n = std::mem::take(&mut self.buf_records);
        self.buf.clear();
        match r {
            Ok(()) => {
                self.broken_line = false;
                self.counters.exported(n);
            }
            Err(e) => {
                self.broken_line = true;
                self.counters.lost(LossReason::WriteError, n);
                if let Some(more) = self.limiter.check() {
                    tracing::error!(error = %e, records = n, suppressed_failures = more, "writing the flow log: records lost");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests_support::sample;

    fn config(dir: &Path, max_bytes: u64, keep: usize) -> JsonlConfig {
        JsonlConfig {
            target: JsonlTarget::File {
                path: dir.join("flows.jsonl"),
                max_bytes,
                keep,
            },
            queue: 10_000,
            log_interval: Duration::from_secs(10),
            finish_timeout: Duration::from_secs(10),
        }
    }

    fn lines(p: &Path) -> Vec<FlowRecord> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn writes_one_record_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut e = Box::new(JsonlExporter::start(config(dir.path(), 1 << 30, 2)).unwrap());
        let r = Arc::new(sample());
        for _ in 0..100 {
            e.export(&r);
        }
        let s = e.finish();
        assert_eq!((s.submitted, s.exported, s.pending), (100, 100, 0));
        let got = lines(&dir.path().join("flows.jsonl"));
        assert_eq!(got.len(), 100);
        assert_eq!(got[0], *r);
    }

    #[test]
    fn rotates_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let r = Arc::new(sample());
        let line = serde_json::to_vec(&*r).unwrap().len() as u64 + 1;
        // Room for exactly 3 lines per file.
        let mut e = Box::new(JsonlExporter::start(config(dir.path(), 3 * line + 1, 2)).unwrap());
        for _ in 0..11 {
            e.export(&r);
        }
        let s = e.finish();
        assert_eq!(s.exported, 11);
        let base = dir.path().join("flows.jsonl");
        let size = |p: &Path| std::fs::metadata(p).unwrap().len();
        assert_eq!(lines(&base).len(), 2);
        assert_eq!(size(&dir.path().join("flows.jsonl.1")), 3 * line);
        assert_eq!(size(&dir.path().join("flows.jsonl.2")), 3 * line);
        assert!(!dir.path().join("flows.jsonl.3").exists());
        for p in ["flows.jsonl", "flows.jsonl.1", "flows.jsonl.2"] {
            assert!(size(&dir.path().join(p)) <= 3 * line + 1);
        }
    }

    #[test]
    fn full_queue_loses_and_counts_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), 1 << 30, 1);
        cfg.queue = 1;
        let mut e = Box::new(JsonlExporter::start(cfg).unwrap());
        let r = Arc::new(sample());
        let t = std::time::Instant::now();
        for _ in 0..20_000 {
            e.export(&r);
        }
        assert!(t.elapsed() < Duration::from_secs(5));
        let s = e.finish();
        assert!(s.lost["queue_full"] > 0, "{s:?}");
        assert!(s.holds() && s.pending == 0, "{s:?}");
        assert_eq!(
            lines(&dir.path().join("flows.jsonl")).len() as u64,
            s.exported
        );
    }

    #[test]
    fn write_errors_count_records_as_lost() {
        // /dev/full: every write fails with ENOSPC, as on a full disk.
        if !Path::new("/dev/full").exists() {
            return;
        }
        let cfg = JsonlConfig {
            target: JsonlTarget::File {
                path: "/dev/full".into(),
                max_bytes: u64::MAX,
                keep: 0,
            },
            ..JsonlConfig::new(JsonlTarget::Stdout)
        };
        let mut e = Box::new(JsonlExporter::start(cfg).unwrap());
        let r = Arc::new(sample());
        for _ in 0..10 {
            e.export(&r);
        }
        let s = e.finish();
        assert_eq!(s.exported, 0);
        assert_eq!(s.lost["write_error"], 10);
        assert!(s.holds());
    }

    #[test]
    fn files_are_owner_only_also_when_made_looser_before() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("flows.jsonl");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let r = Arc::new(sample());
        let line = serde_json::to_vec(&*r).unwrap().len() as u64 + 1;
        // Rotates after 2 lines: the new file is owner-only too.
        let mut e = Box::new(JsonlExporter::start(config(dir.path(), 2 * line + 1, 1)).unwrap());
        for _ in 0..3 {
            e.export(&r);
        }
        e.finish();
        assert_eq!(mode(&base), 0o600);
        assert_eq!(mode(&dir.path().join("flows.jsonl.1")), 0o600);
        // A log an older version made world-readable is fixed on reopen.
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Box::new(JsonlExporter::start(config(dir.path(), 1 << 30, 1)).unwrap());
        e.finish();
        assert_eq!(mode(&base), 0o600);
    }
}
