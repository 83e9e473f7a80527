//! A unified diff of a file's edits, for `--dry-run`.

use std::fmt::Write as _;
use std::path::Path;

use super::documents::Line;
use super::edit::Change;

/// Lines of context around each change.
const CONTEXT: usize = 3;

/// The unified diff of `changes` (sorted, not overlapping) to `old`.
pub fn unified(path: &Path, old: &[Line<'_>], changes: &[Change]) -> String {
    let mut out = String::new();
    if changes.is_empty() {
        return out;
    }
    let _ = writeln!(out, "--- {}", path.display());
    let _ = writeln!(out, "+++ {}", path.display());
    // Changes whose context overlaps share a hunk.
    let mut hunks: Vec<(usize, usize, Vec<&Change>)> = Vec::new();
    for c in changes {
        let start = c.first.saturating_sub(CONTEXT);
        let end = (c.first + c.removed + CONTEXT).min(old.len());
        match hunks.last_mut() {
            Some((_, e, cs)) if start <= *e => {
                *e = end.max(*e);
                cs.push(c);
            }
            _ => hunks.push((start, end, vec![c])),
        }
    }
    // Lines added by earlier hunks, for the new file's line numbers.
    let mut shift: isize = 0;
    for (start, end, cs) in hunks {
        let delta: isize = cs
            .iter()
            .map(|c| c.insert.len() as isize - c.removed as isize)
            .sum();
        let old_len = end - start;
        let _ = writeln!(
            out,
            "@@ -{},{} +{},{} @@",
            start + 1,
            old_len,
            (start as isize + shift + 1),
            (old_len as isize + delta)
        );
        shift += delta;
        let mut i = start;
        let mut cs = cs.into_iter().peekable();
        while i < end || cs.peek().is_some() {
            if let Some(c) = cs.next_if(|c| c.first == i) {
                for l in &old[i..i + c.removed] {
                    let _ = writeln!(out, "-{}", l.text);
                }
                for l in &c.insert {
                    let _ = writeln!(out, "+{}", l.trim_end_matches(['\n', '\r']));
                }
                i += c.removed;
                continue;
            }
            if i >= end {
                break;
            }
            let _ = writeln!(out, " {}", old[i].text);
            i += 1;
        }
    }
    out
}
