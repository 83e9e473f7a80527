//! The JSON Lines check: after a run, every line of the flow log (and of
//! any rotated file) is parsed; each must be a `bulkhead.flow/v1` flow
//! record of the subject (enriched: endpoint `bench/subject`), allowed,
//! with one original-direction packet, whose tuple is one of the run's
//! driven flows (`Tuples::index`). Every driven flow must appear exactly
//! once. Parsing runs on all CPUs after the run (not in its timings).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use super::policy::Tuples;

/// Bytes read per step (then split between threads at line ends).
const READ_BYTES: usize = 32 << 20;

/// What the flow log held.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LogCheck {
    /// Files read (the log and any rotated ones).
    pub files: usize,
    /// Their total size.
    pub bytes: u64,
    /// Lines.
    pub lines: u64,
    /// Lines that are not a record as described above (unparseable,
    /// another schema or type, not enriched, not allowed, not exactly one
    /// packet, or a tuple the run did not drive).
    pub bad: u64,
    /// Driven flows that appear more than once (counted per extra line).
    pub duplicates: u64,
    /// Driven flows that do not appear.
    pub missing: u64,
    /// Records by `end_reason`.
    pub end_reasons: BTreeMap<String, u64>,
    /// The first bad line, if any (cut to 300 bytes).
    pub first_bad: Option<String>,
}

impl LogCheck {
    /// Every driven flow appears exactly once and nothing else does.
    pub fn complete(&self, driven: u64) -> bool {
        self.bad == 0 && self.duplicates == 0 && self.missing == 0 && self.lines == driven
    }
}

#[derive(Deserialize)]
struct Endpoint<'a> {
    namespace: &'a str,
    pod: &'a str,
}

#[derive(Deserialize)]
struct Addr<'a> {
    ip: &'a str,
    port: u16,
}

#[derive(Deserialize)]
struct Counts {
    orig: u64,
    reply: u64,
}

#[derive(Deserialize)]
struct Line<'a> {
    schema: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    end_reason: Option<&'a str>,
    endpoint: Option<Endpoint<'a>>,
    src: Addr<'a>,
    dst: Addr<'a>,
    packets: Counts,
    verdict: &'a str,
}

/// One line: the driven flow's index and end reason, or `None` if bad.
fn parse(line: &[u8], tuples: &Tuples, driven: u64) -> Option<(u64, String)> {
    let l: Line<'_> = serde_json::from_slice(line).ok()?;
    let ok = l.schema == "bulkhead.flow/v1"
        && l.kind == "flow"
        && l.verdict == "allowed"
        && l.packets.orig == 1
        && l.packets.reply == 0
        && l.endpoint
            .is_some_and(|e| e.namespace == "bench" && e.pod == "subject");
    if !ok {
        return None;
    }
    let dst: Ipv4Addr = l.dst.ip.parse().ok()?;
    let _src: Ipv4Addr = l.src.ip.parse().ok()?;
    let n = tuples
        .index(l.src.port, dst, l.dst.port)
        .filter(|&n| n < driven)?;
    Some((n, l.end_reason.unwrap_or("none").to_owned()))
}

#[derive(Default)]
struct Part {
    lines: u64,
    bad: u64,
    first_bad: Option<String>,
    found: Vec<u64>,
    reasons: BTreeMap<String, u64>,
}

fn parse_part(text: &[u8], tuples: &Tuples, driven: u64) -> Part {
    let mut p = Part::default();
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        p.lines += 1;
        match parse(line, tuples, driven) {
            Some((n, reason)) => {
                p.found.push(n);
                *p.reasons.entry(reason).or_default() += 1;
            }
            None => {
                p.bad += 1;
                if p.first_bad.is_none() {
                    let cut = &line[..line.len().min(300)];
                    p.first_bad = Some(String::from_utf8_lossy(cut).into_owned());
                }
            }
        }
    }
    p
}

/// Splits `buf` into about `n` parts at line ends.
fn split_lines(buf: &[u8], n: usize) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut rest = buf;
    let size = buf.len().div_ceil(n.max(1)).max(1);
    while !rest.is_empty() {
        let cut = if rest.len() <= size {
            rest.len()
        } else {
            rest[size..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |i| size + i + 1)
        };
        let (a, b) = rest.split_at(cut);
        parts.push(a);
        rest = b;
    }
    parts
}

/// The log `path` and its rotated files (`path.1`, `path.2`, ...).
fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut files = vec![path.to_path_buf()];
    for n in 1.. {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{n}"));
        let p = PathBuf::from(p);
        if !p.exists() {
            break;
        }
        files.push(p);
    }
    files
}

/// Checks the flow log at `path` against `driven` flows of `tuples`.
pub fn check(path: &Path, tuples: &Tuples, driven: u64) -> Result<LogCheck> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut seen = vec![0u64; driven.div_ceil(64) as usize];
    let mut out = LogCheck::default();
    let mut buf = Vec::with_capacity(READ_BYTES + (1 << 20));
    for file in log_files(path) {
        if !file.exists() {
            continue;
        }
        out.files += 1;
        let mut f = File::open(&file).with_context(|| format!("opening {}", file.display()))?;
        buf.clear();
        loop {
            let start = buf.len();
            buf.resize(start + READ_BYTES, 0);
            let got = f
                .read(&mut buf[start..])
                .with_context(|| format!("reading {}", file.display()))?;
            buf.truncate(start + got);
            out.bytes += got as u64;
            let eof = got == 0;
            // Whole lines now; a partial last line waits for more.
            let end = if eof {
                buf.len()
            } else {
                buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
            };
            if end > 0 {
                let parts: Vec<Part> = std::thread::scope(|s| {
                    let handles: Vec<_> = split_lines(&buf[..end], threads)
                        .into_iter()
                        .map(|chunk| s.spawn(move || parse_part(chunk, tuples, driven)))
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().expect("parser thread"))
                        .collect()
                });
                for p in parts {
                    out.lines += p.lines;
                    out.bad += p.bad;
                    if out.first_bad.is_none() {
                        out.first_bad = p.first_bad;
                    }
                    for (r, c) in p.reasons {
                        *out.end_reasons.entry(r).or_default() += c;
                    }
                    for n in p.found {
                        let (w, b) = ((n / 64) as usize, n % 64);
                        if seen[w] & (1 << b) != 0 {
                            out.duplicates += 1;
                        } else {
                            seen[w] |= 1 << b;
                        }
                    }
                }
                buf.drain(..end);
            }
            if eof {
                break;
            }
        }
    }
    let found: u64 = seen.iter().map(|w| u64::from(w.count_ones())).sum();
    out.missing = driven - found;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_whole_lines() {
        let text = b"a\nbb\nccc\ndddd\ne\n";
        for n in 1..6 {
            let parts = split_lines(text, n);
            assert_eq!(parts.concat(), text.to_vec());
            for p in &parts {
                assert_eq!(p.last(), Some(&b'\n'));
            }
        }
    }
}
