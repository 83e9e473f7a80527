//! The proof's text for the window read and the denied attempts.

use std::fmt::Write as _;

use super::Proof;

/// `Window: ...` (only when one was asked for) and `Denied attempts: ...`
/// (only when there are any).
pub(super) fn text(s: &mut String, proof: &Proof) {
    let w = &proof.window;
    if !w.requested.is_all() {
        let end = |t: Option<bulkhead_flows::record::Timestamp>, open: &str| {
            t.map_or_else(|| open.to_owned(), |t| t.to_string())
        };
        let _ = writeln!(
            s,
            "Window: {} to {}{}{}.",
            end(w.since, "the beginning"),
            end(w.until, "the end"),
            if w.rounded {
                " (rounded outward to whole history buckets)"
            } else {
                ""
            },
            if w.partial {
                " — PARTIAL: the history no longer holds all of it"
            } else {
                ""
            }
        );
        for n in &w.notes {
            let _ = writeln!(s, "  {n}");
        }
    }
    if proof.denied_attempts.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "Denied attempts: edges the policies in force dropped ({}), {}:",
        proof.denied_attempts.len(),
        if proof.include_denied {
            "proposed as observed (--include-denied)"
        } else {
            "not proposed (--include-denied would propose them)"
        }
    );
    for d in &proof.denied_attempts {
        let _ = writeln!(
            s,
            "  {}: {} denied flow{}, first {}, last {}; decided by {}{}{}",
            d.edge,
            d.flows,
            if d.flows == 1 { "" } else { "s" },
            d.first,
            d.last,
            if d.policies.is_empty() {
                "no named policy".to_owned()
            } else {
                d.policies.join(", ")
            },
            if d.policies_truncated { ", ..." } else { "" },
            match d.allowed_flows {
                0 => String::new(),
                n => format!(
                    "; {n} allowed flow{} of it observed",
                    if n == 1 { "" } else { "s" }
                ),
            }
        );
    }
}
