//! The report for people (aligned text) and as JSON Lines (the format is in
//! the [module doc](super)).

use std::fmt::Write as _;

use serde::Serialize;

use super::SCHEMA;
use super::report::{Group, Party, PolicyReport, Readiness, Summary};
use bulkhead_flows::record::{AuditVerdict, FlowDirection, IpProtocol, Timestamp};

/// `1 flow`, `2 flows`.
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The readiness line: what promoting the policy to enforce would do.
pub fn readiness_line(s: &Summary) -> String {
    let span = |a: Option<Timestamp>, b: Option<Timestamp>| match (a, b) {
        (Some(a), Some(b)) => format!("{a}..{b}"),
        _ => "-".to_owned(),
    };
    match s.readiness() {
        Readiness::Ready => format!(
            "no would-deny in {} ({}): ready to promote",
            plural(s.audited_flows, "audited flow", "audited flows"),
            span(s.first, s.last),
        ),
        Readiness::WouldBreak => format!(
            "{} of {} audited, the last ending {}: promoting would break them",
            plural(s.would_deny_flows, "would-deny flow", "would-deny flows"),
            s.audited_flows,
            s.last_would_deny.map_or("-".to_owned(), |t| t.to_string()),
        ),
        Readiness::NoData => "no audited flows: nothing to judge by (is it in audit mode, \
             and did an endpoint it selects have traffic?)"
            .to_owned(),
    }
}

const HEADER: [&str; 9] = [
    "SUBJECT",
    "DIRECTION",
    "PEER",
    "PROTOCOL",
    "PORT",
    "FLOWS",
    "PACKETS",
    "FIRST",
    "LAST",
];

/// Columns holding numbers, aligned right.
const NUMERIC: [bool; 9] = [false, false, false, false, true, true, true, false, false];

fn row(g: &Group) -> [String; 9] {
    let k = &g.key;
    [
        k.subject.to_string(),
        k.direction.as_str().to_owned(),
        k.peer.to_string(),
        k.protocol.to_string(),
        k.port.map_or("-".to_owned(), |p| p.to_string()),
        g.stats.flows.to_string(),
        g.stats.packets.to_string(),
        g.stats.first.to_string(),
        g.stats.last.to_string(),
    ]
}

/// An aligned table, each line indented by two spaces.
fn table(out: &mut String, groups: &[Group]) {
    let header = HEADER.map(str::to_owned);
    let rows: Vec<[String; 9]> = std::iter::once(header)
        .chain(groups.iter().map(row))
        .collect();
    let mut width = [0; 9];
    for r in &rows {
        for (w, cell) in width.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for r in &rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            let w = width[i];
            if NUMERIC[i] {
                let _ = write!(line, "  {cell:>w$}");
            } else {
                let _ = write!(line, "  {cell:<w$}");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// The report for people: per policy a header, the readiness line, a
/// table of would-deny groups and the number of allowed ones.
pub fn text(policies: &[PolicyReport]) -> String {
    if policies.is_empty() {
        return "no flow records with an audit verdict: no policy in audit mode \
                (annotation bulkhead.io/mode: audit) selected an endpoint that had traffic\n"
            .to_owned();
    }
    let mut out = String::new();
    for (i, p) in policies.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let s = &p.summary;
        let _ = writeln!(out, "policy {}", p.policy);
        let _ = writeln!(out, "  {}", readiness_line(s));
        if !p.would_deny.is_empty() {
            table(&mut out, &p.would_deny);
        }
        if s.audited_flows > 0 && p.allowed.is_empty() {
            out.push_str("  no allowed groups\n");
        } else if s.audited_flows > 0 {
            let allowed: u64 = p.allowed.iter().map(|g| g.stats.flows).sum();
            let _ = writeln!(
                out,
                "  {} ({})",
                plural(p.allowed.len() as u64, "allowed group", "allowed groups"),
                plural(allowed, "flow", "flows"),
            );
        }
    }
    out
}

/// A `"type": "summary"` line.
#[derive(Serialize)]
struct SummaryLine<'a> {
    schema: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    policy: &'a str,
    readiness: Readiness,
    audited_flows: u64,
    would_deny_flows: u64,
    would_deny_groups: usize,
    allowed_groups: usize,
    first: Option<Timestamp>,
    last: Option<Timestamp>,
    last_would_deny: Option<Timestamp>,
}

/// A `"type": "group"` line.
#[derive(Serialize)]
struct GroupLine<'a> {
    schema: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    policy: &'a str,
    verdict: AuditVerdict,
    direction: FlowDirection,
    subject: &'a Party,
    peer: &'a Party,
    protocol: IpProtocol,
    port: Option<u16>,
    flows: u64,
    packets: u64,
    first: Timestamp,
    last: Timestamp,
}

/// The report as JSON Lines: per policy its summary, then its would-deny
/// groups, then its allowed groups.
pub fn json_lines(policies: &[PolicyReport]) -> String {
    let mut out = String::new();
    for p in policies {
        let s = &p.summary;
        push_line(
            &mut out,
            &SummaryLine {
                schema: SCHEMA,
                kind: "summary",
                policy: &p.policy,
                readiness: s.readiness(),
                audited_flows: s.audited_flows,
                would_deny_flows: s.would_deny_flows,
                would_deny_groups: s.would_deny_groups,
                allowed_groups: s.allowed_groups,
                first: s.first,
                last: s.last,
                last_would_deny: s.last_would_deny,
            },
        );
        for g in p.would_deny.iter().chain(&p.allowed) {
            push_line(
                &mut out,
                &GroupLine {
                    schema: SCHEMA,
                    kind: "group",
                    policy: &p.policy,
                    verdict: g.key.verdict,
                    direction: g.key.direction,
                    subject: &g.key.subject,
                    peer: &g.key.peer,
                    protocol: g.key.protocol,
                    port: g.key.port,
                    flows: g.stats.flows,
                    packets: g.stats.packets,
                    first: g.stats.first,
                    last: g.stats.last,
                },
            );
        }
    }
    out
}

fn push_line(out: &mut String, line: &impl Serialize) {
    // Plain structs of strings and numbers: serializing cannot fail.
    out.push_str(&serde_json::to_string(line).expect("serializable"));
    out.push('\n');
}
