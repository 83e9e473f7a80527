//! NetworkPolicy YAML, written by hand in one canonical layout: block
//! style, fields in the API's order, `matchLabels` for single-value `In`
//! requirements, plain scalars where YAML reads them back as the same
//! string and JSON-quoted ones elsewhere. Byte-identical for equal input,
//! with comments where the caller gives them. (No maintained YAML crate
//! writes comments; the loader reads the result back, see the tests.)

use std::fmt::Write as _;

use bulkhead_policy::model::{
    Direction, MODE_ANNOTATION, NamespaceScope, Peer, Policy, PortMatch, Requirement, Selector,
};

/// Where a comment goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// Above the document.
    Header,
    /// Where a direction's rules would be, when it has none.
    NoRules(Direction),
    /// Above rule `i` of a direction.
    Rule(Direction, usize),
    /// Above peer `j` of rule `i`.
    Peer(Direction, usize, usize),
}

/// A scalar, plain when safe.
pub fn scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        );
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).expect("strings serialize")
    }
}

fn comments(out: &mut String, indent: usize, lines: Vec<String>) {
    for l in lines {
        let _ = writeln!(out, "{:indent$}# {l}", "");
    }
}

fn selector(out: &mut String, indent: usize, field: &str, s: &Selector) {
    let pad = " ".repeat(indent);
    if s.is_everything() {
        let _ = writeln!(out, "{pad}{field}: {{}}");
        return;
    }
    let _ = writeln!(out, "{pad}{field}:");
    let (labels, exprs): (Vec<&Requirement>, Vec<&Requirement>) = s
        .requirements()
        .iter()
        .partition(|r| matches!(r, Requirement::In(_, v) if v.len() == 1));
    if !labels.is_empty() {
        let _ = writeln!(out, "{pad}  matchLabels:");
        for r in labels {
            if let Requirement::In(k, v) = r {
                let _ = writeln!(out, "{pad}    {}: {}", scalar(k), scalar(&v[0]));
            }
        }
    }
    if !exprs.is_empty() {
        let _ = writeln!(out, "{pad}  matchExpressions:");
        for r in exprs {
            let (op, values) = match r {
                Requirement::In(_, v) => ("In", Some(v)),
                Requirement::NotIn(_, v) => ("NotIn", Some(v)),
                Requirement::Exists(_) => ("Exists", None),
                Requirement::DoesNotExist(_) => ("DoesNotExist", None),
            };
            let _ = writeln!(out, "{pad}    - key: {}", scalar(r.key()));
            let _ = writeln!(out, "{pad}      operator: {op}");
            if let Some(vs) = values {
                let _ = writeln!(out, "{pad}      values:");
                for v in vs {
                    let _ = writeln!(out, "{pad}        - {}", scalar(v));
                }
            }
        }
    }
}

/// One policy as a YAML document (no `---`), with comments from `note`;
/// its own mode, if any, as the `bulkhead.io/mode` annotation.
pub fn policy(p: &Policy, note: &dyn Fn(Place) -> Vec<String>) -> String {
    let mut out = String::new();
    comments(&mut out, 0, note(Place::Header));
    out.push_str("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n");
    let _ = writeln!(out, "  name: {}", scalar(&p.name));
    let _ = writeln!(out, "  namespace: {}", scalar(&p.namespace));
    // Only a policy's own mode is written: one inherited from its
    // namespace or the agent is not part of the policy.
    if let Some(mode) = p.mode {
        out.push_str("  annotations:\n");
        let _ = writeln!(out, "    {}: {}", scalar(MODE_ANNOTATION), mode.as_str());
    }
    out.push_str("spec:\n");
    selector(&mut out, 2, "podSelector", &p.pod_selector);
    out.push_str("  policyTypes:\n");
    for d in Direction::ALL {
        if p.rules(d).is_some() {
            let _ = writeln!(
                out,
                "    - {}",
                match d {
                    Direction::Ingress => "Ingress",
                    Direction::Egress => "Egress",
                }
            );
        }
    }
    for d in Direction::ALL {
        let Some(rules) = p.rules(d) else { continue };
        if rules.is_empty() {
            comments(&mut out, 2, note(Place::NoRules(d)));
            continue;
        }
        let _ = writeln!(out, "  {}:", d.as_str());
        let peers_field = match d {
            Direction::Ingress => "from",
            Direction::Egress => "to",
        };
        for (i, rule) in rules.iter().enumerate() {
            comments(&mut out, 4, note(Place::Rule(d, i)));
            if rule.peers.is_none() && rule.ports.is_none() {
                out.push_str("    - {}\n");
                continue;
            }
            let mut first = true;
            let mut item = |out: &mut String, rest: &str| {
                let lead = if std::mem::take(&mut first) {
                    "- "
                } else {
                    "  "
                };
                let _ = writeln!(out, "    {lead}{rest}");
            };
            if let Some(peers) = &rule.peers {
                item(&mut out, &format!("{peers_field}:"));
                for (j, peer) in peers.iter().enumerate() {
                    comments(&mut out, 8, note(Place::Peer(d, i, j)));
                    match peer {
                        Peer::Pods { namespaces, pods } => {
                            let mut lines = String::new();
                            if let NamespaceScope::Selected(ns) = namespaces {
                                selector(&mut lines, 10, "namespaceSelector", ns);
                            }
                            selector(&mut lines, 10, "podSelector", pods);
                            let _ = write!(out, "        - {}", &lines[10..]);
                        }
                        Peer::IpBlock(b) => {
                            out.push_str("        - ipBlock:\n");
                            let _ = writeln!(out, "            cidr: {}", b.cidr);
                            if !b.except.is_empty() {
                                out.push_str("            except:\n");
                                for e in &b.except {
                                    let _ = writeln!(out, "              - {e}");
                                }
                            }
                        }
                    }
                }
            }
            if let Some(ports) = &rule.ports {
                item(&mut out, "ports:");
                for spec in ports {
                    let _ = writeln!(out, "        - protocol: {}", spec.protocol);
                    match &spec.port {
                        PortMatch::Any => {}
                        PortMatch::Range(lo, hi) => {
                            let _ = writeln!(out, "          port: {lo}");
                            if hi != lo {
                                let _ = writeln!(out, "          endPort: {hi}");
                            }
                        }
                        PortMatch::Named(n) => {
                            let _ = writeln!(out, "          port: {}", scalar(n));
                        }
                    }
                }
            }
        }
    }
    out
}

/// A policy without comments (for diffs).
pub fn plain(p: &Policy) -> String {
    policy(p, &|_| Vec::new())
}
