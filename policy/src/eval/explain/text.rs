//! The text `bulkhead explain` prints: one connection's verdict and the
//! rules behind it, per side (egress of the source, ingress of the
//! destination), or a Service connection's per backend. Shared by the CLI
//! and the agent's map (`/v1/map/edge`), so both say the same.

use std::io::Write;

use super::{Explanation, RuleRef, ServiceExplanation, SideExplanation};

/// The text of one connection's explanation.
pub fn connection(e: &Explanation) -> String {
    let mut out = Vec::new();
    write_text(&mut out, e).expect("writing to memory");
    String::from_utf8_lossy(&out).into_owned()
}

/// The text of a Service connection's explanation.
pub fn service(s: &ServiceExplanation) -> String {
    let mut out = Vec::new();
    write_service(&mut out, s).expect("writing to memory");
    String::from_utf8_lossy(&out).into_owned()
}

fn name(end: &super::EndpointInfo) -> String {
    let addr = end.addr;
    match &end.pod {
        Some(p) => format!("{p} ({addr})"),
        None if end.node => format!("{addr} (the node)"),
        None => format!("{addr} (not a pod)"),
    }
}

/// One rule as the text names it (`ns/p ingress[0].from[1]: peer · port`).
pub fn rule_line(r: &RuleRef, direction: &str) -> String {
    let peers = if direction == "egress" { "to" } else { "from" };
    if let (Some(tier), Some(action)) = (r.tier, r.action) {
        // A cluster-admin rule: tier, priority, name and action first (its
        // port entries are the API's protocols, so no index).
        let mut at = format!(
            "{} ({tier} tier, priority {}) {direction}[{}]",
            r.policy,
            r.priority.unwrap_or_default(),
            r.rule
        );
        if let Some(n) = &r.name {
            at.push_str(&format!(" {n:?}"));
        }
        if let Some(p) = r.peer {
            at.push_str(&format!(".{peers}[{p}]"));
        }
        return format!("{at} {action}: {} · {}", r.peer_text, r.port_text);
    }
    let mut at = format!("{} {direction}[{}]", r.policy, r.rule);
    if let Some(p) = r.peer {
        at.push_str(&format!(".{peers}[{p}]"));
    }
    if let Some(p) = r.port {
        at.push_str(&format!(".ports[{p}]"));
    }
    format!("{at}: {} · {}", r.peer_text, r.port_text)
}

fn write_side(out: &mut impl Write, s: &SideExplanation, what: &str) -> std::io::Result<()> {
    write_enforced(out, s, what)?;
    let d = s.direction.as_str();
    if let Some(a) = &s.audit {
        let verdict = if a.verdict == "allowed" {
            format!("✓ would allow {what}")
        } else {
            format!("✗ would deny {what}")
        };
        writeln!(
            out,
            "  audit (staged: {}): {verdict} if promoted",
            a.policies.join(", ")
        )?;
    }
    if !s.learning.is_empty() {
        writeln!(
            out,
            "  learning (not enforced): {} select it for {d}",
            s.learning.join(", ")
        )?;
    }
    Ok(())
}

fn write_enforced(out: &mut impl Write, s: &SideExplanation, what: &str) -> std::io::Result<()> {
    let d = s.direction.as_str();
    let who = s.pod.as_deref().unwrap_or("the address");
    match s.verdict {
        "not-a-pod" => return writeln!(out, "{d}: ✓ not a pod, no {d} policy applies"),
        "not-isolated" if s.admin_policies.is_empty() => {
            return writeln!(
                out,
                "{d} of {who}: ✓ allowed: no policy selects it for {d} (not isolated)"
            );
        }
        _ => {}
    }
    if !s.admin_policies.is_empty() {
        writeln!(
            out,
            "{d} of {who}: cluster-admin policies {}",
            s.admin_policies.join(", ")
        )?;
    }
    if s.isolated {
        writeln!(out, "{d} of {who}: isolated by {}", s.policies.join(", "))?;
    } else {
        writeln!(out, "{d} of {who}: no NetworkPolicy selects it for {d}")?;
    }
    if s.verdict == "from-node" {
        return writeln!(
            out,
            "  ✓ allowed: the peer is the pod's own node, which Kubernetes always lets in"
        );
    }
    for r in &s.passed {
        writeln!(out, "  ↷ passed to the next tier by {}", rule_line(r, d))?;
    }
    if let Some(r) = &s.denied_by {
        writeln!(out, "  ✗ denied by {}", rule_line(r, d))?;
    } else if s.verdict == "not-isolated" {
        writeln!(out, "  ✓ allowed: no rule decides {what}")?;
    } else if s.allowed_by.is_empty() {
        writeln!(out, "  ✗ denied: no {d} rule allows {what}")?;
    } else {
        writeln!(out, "  ✓ allowed by:")?;
        for r in &s.allowed_by {
            writeln!(out, "      {}", rule_line(r, d))?;
        }
    }
    let near_misses = [
        (
            "rules that match the peer but not this protocol/port",
            &s.peer_matches_port_does_not,
        ),
        (
            "rules that match this protocol/port but not the peer",
            &s.port_matches_peer_does_not,
        ),
    ];
    for (title, rules) in near_misses {
        if !rules.is_empty() {
            writeln!(out, "  {title}:")?;
        }
        for r in rules {
            writeln!(out, "      {}", rule_line(r, d))?;
        }
    }
    Ok(())
}

/// Writes one connection's explanation.
pub fn write_text(out: &mut impl Write, e: &Explanation) -> std::io::Result<()> {
    let what = format!("{} {}", e.protocol, e.port);
    writeln!(out, "{what}  {} → {}", name(&e.src), name(&e.dst))?;
    writeln!(
        out,
        "verdict: {}\n",
        if e.allowed { "ALLOWED" } else { "DENIED" }
    )?;
    write_side(out, &e.egress, &what)?;
    write_side(out, &e.ingress, &what)
}

/// Writes a Service connection's explanation, per backend.
pub fn write_service(out: &mut impl Write, s: &ServiceExplanation) -> std::io::Result<()> {
    let f = &s.frontend;
    let at = match f.addr {
        Some(std::net::IpAddr::V6(a)) => format!(" [{a}]:{}", f.port),
        Some(a) => format!(" {a}:{}", f.port),
        None => format!(" port {}", f.port),
    };
    let client = s
        .backends
        .first()
        .map_or_else(String::new, |b| format!("{} → ", name(&b.explanation.src)));
    let n = s.backends.len();
    writeln!(
        out,
        "{} {}  {client}svc {}{at} ({n} backend{})",
        s.protocol,
        f.port,
        s.service,
        if n == 1 { "" } else { "s" }
    )?;
    let allowed = s.backends.iter().filter(|b| b.explanation.allowed).count();
    let verdict = match s.verdict {
        "allowed" => "ALLOWED to every backend".to_owned(),
        "denied" => "DENIED to every backend".to_owned(),
        "no-backends" => format!(
            "NO BACKENDS: {}",
            s.no_backends.as_deref().unwrap_or("none")
        ),
        _ => format!("ALLOWED to {allowed} of {n} backends, DENIED to the others"),
    };
    writeln!(out, "verdict: {verdict}")?;
    for b in &s.backends {
        let e = &b.explanation;
        let what = format!("{} {}", e.protocol, e.port);
        writeln!(
            out,
            "\nbackend {} → {what}: {}",
            name(&e.dst),
            if e.allowed { "ALLOWED" } else { "DENIED" }
        )?;
        // Each backend's sides, indented under it.
        let mut sides = Vec::new();
        write_side(&mut sides, &e.egress, &what)?;
        write_side(&mut sides, &e.ingress, &what)?;
        for line in String::from_utf8_lossy(&sides).lines() {
            writeln!(out, "  {line}")?;
        }
    }
    Ok(())
}
