//! The agent's small JSON files beside its state file (CNI registrations,
//! quarantines): read once when the agent starts, rewritten whole and
//! atomically, owner-only, on every change.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// What the file at `path` holds: `Ok(None)` when there is none, `Err`
/// (what is wrong, for the caller to log) when it cannot be read or
/// decoded.
pub(crate) fn read<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("unreadable: {e}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Writes `value` to `path` atomically (a temporary file renamed over it),
/// in an owner-only directory.
pub(crate) fn write<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    if let Some(dir) = path.parent() {
        bulkhead_policy::private::own_dir(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    bulkhead_policy::private::write_atomic(path, &tmp, &bytes)
}
