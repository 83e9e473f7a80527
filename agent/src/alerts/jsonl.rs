//! Alerts as JSON Lines, appended to a file (`--alerts-jsonl`): one
//! object per alert, the detector's [`Alert`] fields plus `schema`
//! ([`SCHEMA`]), `time` (when it was raised, RFC 3339), `node` and
//! `responses` (what the automatic response did, when it did anything).
//! `bulkhead baseline accept --from-alerts` reads them back.
//!
//! Each line is one `write` to a file opened for appending, so lines of
//! concurrent writers do not interleave and a crash leaves whole lines.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use super::alertmanager::rfc3339;
use bulkhead_learn::baseline::detect::Alert;

/// The `schema` of every line.
pub const SCHEMA: &str = "bulkhead.alert/v1";

/// One line.
#[derive(Debug, Serialize)]
pub struct AlertLine<'a> {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// When it was raised (RFC 3339).
    pub time: String,
    /// The node that raised it.
    pub node: &'a str,
    /// The alert.
    #[serde(flatten)]
    pub alert: &'a Alert,
    /// What the automatic response did (`--respond`), if anything.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub responses: Vec<String>,
}

impl<'a> AlertLine<'a> {
    /// `alert`, raised on `node` at `now_ms`.
    pub fn new(alert: &'a Alert, node: &'a str, now_ms: u64) -> Self {
        Self {
            schema: SCHEMA,
            time: rfc3339(UNIX_EPOCH + Duration::from_millis(now_ms)),
            node,
            alert,
            responses: Vec::new(),
        }
    }
}

/// An open alerts file.
#[derive(Debug)]
pub struct JsonlSink {
    file: File,
}

impl JsonlSink {
    /// Opens `path` for appending (created if absent).
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self { file })
    }

    /// Appends one line; whether it was written (a failure is logged).
    pub fn write(&mut self, line: &AlertLine<'_>) -> bool {
        let mut bytes = serde_json::to_vec(line).expect("alerts serialize");
        bytes.push(b'\n');
        match self.file.write_all(&bytes) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "writing an alert to the alerts file");
                false
            }
        }
    }
}
