//! Reading flow records from a JSON Lines file (what the JSON Lines
//! exporter and `bulkhead flows --output json` write) into a [`History`].

use std::io::BufRead;
use std::path::{Path, PathBuf};

use super::edge::History;
use super::window::Window;
use bulkhead_flows::record::FlowRecord;

/// Why a flow file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("reading {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A line is not a `bulkhead.flow/v1` record.
    #[error("{path}:{line}: not a bulkhead.flow/v1 record")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The error (with its column).
        #[source]
        source: serde_json::Error,
    },
}

/// Reads every record of a JSON Lines file; blank lines are skipped, any
/// other line that is not a record fails the whole read.
pub fn read_jsonl(path: &Path) -> Result<History, ReadError> {
    read_jsonl_window(path, Window::ALL)
}

/// [`read_jsonl`] of the records that overlap `window` (exactly: record by
/// record).
pub fn read_jsonl_window(path: &Path, window: Window) -> Result<History, ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut history = History::default();
    let mut line = String::new();
    let mut number = 0;
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(io)? == 0 {
            break;
        }
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        let record: FlowRecord =
            serde_json::from_str(&line).map_err(|source| ReadError::Malformed {
                path: path.to_path_buf(),
                line: number,
                source,
            })?;
        if window.overlaps(record.start, record.end) {
            history.add_record(&record);
        }
    }
    Ok(history)
}
