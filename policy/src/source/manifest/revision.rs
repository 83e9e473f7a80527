//! The manifest source's revision: a stable hash of the files the loader
//! reads. The agent computes it when inotify reports a change (never on a
//! timer), and tools compare it with the state file's `enforced_revision`
//! to know a sync is done.

use std::path::Path;

use super::walk::{self, Limits, WalkError};

#[cfg(test)]
mod tests;

/// A stable hash (CRC-64) of the manifest files under `path` (names and
/// contents, in path order), hex: the files the loader reads, found and
/// read by the same bounded walk ([`walk`]), contents streamed (never
/// held whole). Tools compare it with the state file's `enforced_revision` to
/// know a sync is done. When the walk or a read fails (a limit, an
/// unreadable file), the hash is that of the error's text: it still
/// changes, so the agent loads, fails with the same error and reports it.
pub fn content_hash(path: &Path) -> String {
    content_hash_within(path, &Limits::DEFAULT)
}

/// [`content_hash`] within `limits`.
pub fn content_hash_within(path: &Path, limits: &Limits) -> String {
    const CRC: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_ECMA_182);
    let mut digest = CRC.digest();
    if let Err(e) = hash_files(path, limits, &mut digest) {
        digest = CRC.digest();
        digest.update(b"error\0");
        digest.update(e.to_string().as_bytes());
    }
    format!("{:016x}", digest.finalize())
}

/// Feeds each file's name, content and length to `digest`.
fn hash_files(
    path: &Path,
    limits: &Limits,
    digest: &mut crc::Digest<'_, u64>,
) -> Result<(), WalkError> {
    let mut reader = walk::Reader::new(*limits);
    for file in walk::walk(path, limits)? {
        digest.update(file.as_os_str().as_encoded_bytes());
        digest.update(&[0]);
        let len = reader.stream(&file, |chunk| digest.update(chunk))?;
        digest.update(&len.to_le_bytes());
    }
    Ok(())
}
