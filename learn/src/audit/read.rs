//! Reading flow records, JSON Lines, from a file or any reader (the
//! agent's API answer), naming the source and line of a bad one.

use std::io::BufRead;
use std::path::Path;

use bulkhead_flows::record::FlowRecord;

/// Why records could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The source could not be opened or read.
    #[error("reading {origin}")]
    Io {
        /// The file, or the agent's API.
        origin: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A line is not a `bulkhead.flow/v1` record.
    #[error("{origin}:{line}: not a bulkhead.flow/v1 record")]
    Malformed {
        /// The file, or the agent's API.
        origin: String,
        /// 1-based line number.
        line: usize,
        /// The error (with its column).
        #[source]
        source: serde_json::Error,
    },
}

/// Reads every record of JSON Lines from `reader` into `each`; blank lines
/// (the API's heartbeats) are skipped, any other line that is not a record
/// fails the whole read: a report over part of the input would look
/// complete. `origin` names the source in errors.
pub fn read_lines(
    reader: impl BufRead,
    origin: &str,
    mut each: impl FnMut(FlowRecord),
) -> Result<(), ReadError> {
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|source| ReadError::Io {
            origin: origin.to_owned(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line).map_err(|source| ReadError::Malformed {
            origin: origin.to_owned(),
            line: i + 1,
            source,
        })?;
        each(record);
    }
    Ok(())
}

/// Reads every record of a JSON Lines file into `each` (see [`read_lines`]).
pub fn read_file(path: &Path, each: impl FnMut(FlowRecord)) -> Result<(), ReadError> {
    let origin = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| ReadError::Io {
        origin: origin.clone(),
        source,
    })?;
    read_lines(
        std::io::BufReader::with_capacity(1 << 20, file),
        &origin,
        each,
    )
}
