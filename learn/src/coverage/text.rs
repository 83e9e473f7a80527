//! The proof for people: what `propose` writes to stderr.

use super::Proof;
use crate::propose::{Flagged, Proposal};
use crate::render::{flags, plural};

/// `  subject direction peer PROTO/port: N flows, first .., last ..`.
fn entry(f: &Flagged, proposal: &Proposal) -> String {
    let o = &f.observed;
    format!(
        "  {} {} {} {}/{}: {} flow{}, first {}, last {}{}",
        f.subject,
        f.direction,
        o.peer,
        o.protocol,
        o.port,
        o.flows,
        if o.flows == 1 { "" } else { "s" },
        o.first,
        o.last,
        flags(o, &proposal.thresholds)
    )
}

/// The proof for people (stderr).
pub fn text(proof: &Proof, proposal: &Proposal) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Proposal: {} policies from {} observed edges.",
        proposal.policies.len(),
        proof.edges
    );
    let _ = writeln!(
        s,
        "Coverage: {}/{} replayed edges allowed ({:.1}%){}{}{}{}.",
        proof.allowed,
        proof.proposable,
        proof.coverage_percent,
        match proof.left_out_edges {
            0 => String::new(),
            n => format!(
                "; {n} more left out below --min-flows {} (on purpose)",
                proposal.thresholds.min_flows
            ),
        },
        match proposal.scan_left_out().count() {
            0 => String::new(),
            n => format!("; {n} scan probe edges left out (on purpose)"),
        },
        match (proof.guardrail_denied, proof.allowed_by_admin) {
            (0, 0) => String::new(),
            (d, a) => format!(
                "; {d} more denied by a cluster-admin tier (not proposable), \
                 {a} allowed by the Admin tier"
            ),
        },
        if proof.complete() {
            ""
        } else {
            " — NOT ALL: a bug, please report"
        }
    );
    for d in &proof.denied {
        let _ = writeln!(
            s,
            "  DENIED {} ({} → {}): {}",
            d.edge, d.src, d.dst, d.verdict
        );
    }
    let th = &proposal.thresholds;
    if !proof.left_out.is_empty() {
        let _ = writeln!(
            s,
            "Left out: below --min-flows {}, in no rule on purpose, not counted against \
             coverage ({} edge{}, {} entries):",
            th.min_flows,
            proof.left_out_edges,
            if proof.left_out_edges == 1 { "" } else { "s" },
            proof.left_out.len()
        );
        for f in &proof.left_out {
            let _ = writeln!(s, "{}", entry(f, proposal));
        }
        for e in &proof.left_out_allowed {
            let _ = writeln!(s, "  still allowed by another rule: {e}");
        }
    }
    let _ = writeln!(
        s,
        "Rare or recent: {} rare (below --rare-below {} flows), {} recent (first seen in \
         the last {}% of the window){}",
        proof.rare,
        th.rare_below,
        proof.recent,
        th.recent_percent,
        if proof.flagged.is_empty() {
            "."
        } else {
            ", fewest flows first:"
        }
    );
    for f in &proof.flagged {
        let _ = writeln!(s, "{}", entry(f, proposal));
    }
    if !proof.unverifiable.is_empty() {
        let _ = writeln!(s, "Not replayed ({}):", proof.unverifiable.len());
        for u in &proof.unverifiable {
            let _ = writeln!(s, "  {u}");
        }
    }
    if !proof.unexpressible.is_empty() {
        let _ = writeln!(
            s,
            "Not expressible in NetworkPolicy, denied once the policies apply ({}):",
            proof.unexpressible.len()
        );
        for u in &proof.unexpressible {
            let _ = writeln!(s, "  {u}");
        }
    }
    tier_text(&mut s, proof, proposal);
    super::attempts::text(&mut s, proof);
    infra_text(&mut s, proof);
    scan_text(&mut s, proof, proposal);
    if !proof.unselectable.is_empty() {
        let _ = writeln!(s, "No policy (no stable labels to select by):");
        for u in &proof.unselectable {
            let _ = writeln!(s, "  {u}");
        }
    }
    let _ = writeln!(
        s,
        "Beyond observed: {} (policy, direction, peer) entries.",
        proof.beyond_observed.len()
    );
    for b in &proof.beyond_observed {
        let _ = writeln!(
            s,
            "  {} {} {}: {}",
            b.policy,
            b.direction,
            b.peer,
            b.ports.join(", ")
        );
    }
    for a in &proof.also_selects {
        let _ = writeln!(s, "  {} also selects {}", a.policy, a.workloads.join(", "));
    }
    let st = &proof.stability;
    match (st.last_new_edge, st.last_seen, st.stable_for_seconds) {
        (Some(n), Some(l), Some(secs)) => {
            let _ = writeln!(
                s,
                "Stability: last new edge {n}; last observation {l}; no new edge for {}.",
                humantime::format_duration(std::time::Duration::from_secs(secs as u64))
            );
        }
        _ => {
            let _ = writeln!(s, "Stability: nothing observed.");
        }
    }
    let d = &proof.diff;
    let _ = writeln!(
        s,
        "Diff against the manifests: {} added, {} changed, {} unchanged, {} stale{}.",
        d.added.len(),
        d.changed.len(),
        d.unchanged.len(),
        d.stale.len(),
        if d.no_change() { " (no change)" } else { "" }
    );
    for (k, t) in &d.text {
        let _ = writeln!(s, "--- {k} (manifests)\n+++ {k} (proposal)\n{t}");
    }
    for k in &d.stale {
        let _ = writeln!(s, "  stale: {k} (no longer proposed)");
    }
    s
}

/// The scans' and the workloads without a proposal's part of [`text`].
fn scan_text(s: &mut String, proof: &Proof, proposal: &Proposal) {
    use std::fmt::Write as _;
    if !proof.scans.is_empty() {
        let _ = writeln!(
            s,
            "Scans: sources with --scan-targets {} or more probe edges (at most {} flows, \
             no payload) ({}):",
            proposal.thresholds.scan_targets,
            crate::propose::scan::PROBE_MAX_FLOWS,
            proof.scans.len()
        );
        for sc in &proof.scans {
            let _ = writeln!(
                s,
                "  scan from {}: {} to {}, ports {}, {}..{}; {}",
                sc.source,
                plural(sc.probes, "probe", "probes"),
                plural(sc.peers.len() as u64, "peer", "peers"),
                sc.ports,
                sc.first,
                sc.last,
                if proposal.keep_scans {
                    "proposed (--keep-scans)"
                } else {
                    "left out, --keep-scans to include"
                }
            );
        }
        for e in &proof.scan_allowed {
            let _ = writeln!(s, "  still allowed by another rule: {e}");
        }
    }
    if !proof.unproposed_workloads.is_empty() {
        let _ = writeln!(
            s,
            "Workloads without a proposal: no policy of their own, so they stay as open as \
             today; what the proposed policies do to their traffic ({}; a policy's ingress \
             judges traffic from the workload, its egress traffic to it):",
            proof.unproposed_workloads.len()
        );
        for u in &proof.unproposed_workloads {
            let _ = writeln!(s, "  {}: {}", u.workload, u.reason.text());
            if !u.denied_by.is_empty() {
                let _ = writeln!(s, "    denied by: {}", u.denied_by.join(", "));
            }
            if !u.allowed_by.is_empty() {
                let _ = writeln!(s, "    allowed by: {}", u.allowed_by.join("; "));
            }
        }
    }
}

/// The cluster-admin tiers' part of [`text`].
fn tier_text(s: &mut String, proof: &Proof, proposal: &Proposal) {
    use std::fmt::Write as _;
    if !proof.tier_denied.is_empty() {
        let _ = writeln!(
            s,
            "Denied by a cluster-admin tier, left out: a NetworkPolicy allow cannot \
             override it ({}):",
            proof.tier_denied.len()
        );
        for f in &proof.tier_denied {
            let _ = writeln!(s, "  {f}");
        }
    }
    if !proof.admin_accepted.is_empty() {
        let what = if proposal.include_admin_accepted {
            "proposed anyway where NetworkPolicy can express them (--include-admin-accepted)"
        } else {
            "which decides before NetworkPolicy: no rule proposed \
             (--include-admin-accepted proposes them)"
        };
        let _ = writeln!(
            s,
            "Accepted by the Admin tier, {what} ({}):",
            proof.admin_accepted.len()
        );
        for f in &proof.admin_accepted {
            let _ = writeln!(s, "  {f}");
        }
    }
    if !proof.baseline_lifted.is_empty() {
        let _ = writeln!(
            s,
            "The Baseline tier denies these today; the proposed policies select their \
             pods, so NetworkPolicy decides instead and allows them ({}):",
            proof.baseline_lifted.len()
        );
        for f in &proof.baseline_lifted {
            let _ = writeln!(s, "  {f}");
        }
    }
}

/// The infrastructure and internet-facing sections.
fn infra_text(s: &mut String, proof: &Proof) {
    use std::fmt::Write as _;
    if !proof.infrastructure.is_empty() {
        let _ = writeln!(s, "Infrastructure ({}):", proof.infrastructure.len());
        for f in &proof.infrastructure {
            let role = match f.role {
                crate::propose::infra::Role::DnsServer => "DNS server",
                crate::propose::infra::Role::ApiServer => "API server",
            };
            let _ = writeln!(s, "  {role} {}: {}", f.workload, f.note);
        }
    }
    if !proof.internet_facing.is_empty() {
        let _ = writeln!(s, "Internet-facing ({}):", proof.internet_facing.len());
        for f in &proof.internet_facing {
            let what = match (f.ports.is_empty(), f.open_to_all) {
                (true, _) => "no ingress observed on its target ports: none opened".to_owned(),
                (false, true) => format!("{} open to all external addresses", f.ports.join(", ")),
                (false, false) => format!(
                    "{} kept to the observed sources (--keep-observed-sources)",
                    f.ports.join(", ")
                ),
            };
            let _ = writeln!(
                s,
                "  {} (behind {}): {what}",
                f.workload,
                f.services.join(", ")
            );
        }
    }
}
