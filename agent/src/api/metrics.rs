//! `/metrics`: the backend's OpenMetrics text plus the API's own metrics,
//! served as OpenMetrics to scrapers that accept it (Prometheus does) and
//! as Prometheus text 0.0.4 to everyone else.

/// Whether an `Accept` header takes OpenMetrics text.
pub fn accepts_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|t| {
            let mut parts = t.split(';').map(str::trim);
            let is_om = parts
                .next()
                .is_some_and(|m| m.eq_ignore_ascii_case("application/openmetrics-text"));
            // `q=0` refuses it.
            is_om && !parts.any(|p| p.replace(' ', "") == "q=0")
        })
    })
}

/// `text` (OpenMetrics, `# EOF` optional) with `extra` (OpenMetrics) added
/// before the end, ending with `# EOF`.
pub fn join_openmetrics(text: &str, extra: &str) -> String {
    let mut out = String::with_capacity(text.len() + extra.len() + 8);
    for line in text.lines().filter(|l| l.trim() != "# EOF") {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(extra);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("# EOF\n");
    out
}

/// OpenMetrics text as Prometheus text 0.0.4: counter families get their
/// `_total` name, `info` families their `_info` name (as gauges),
/// `stateset` is a gauge and other types untyped; `# UNIT`, `# EOF`,
/// `_created` samples and exemplars go.
pub fn to_prometheus(text: &str) -> String {
    use std::collections::HashMap;
    let mut kinds: HashMap<&str, &str> = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (it.next(), it.next()) {
                kinds.insert(name, kind);
            }
        }
    }
    // The 0.0.4 name and type of an OpenMetrics family.
    let family = |name: &str| -> (String, &'static str) {
        match kinds.get(name).copied() {
            Some("counter") if !name.ends_with("_total") => (format!("{name}_total"), "counter"),
            Some("counter") => (name.to_owned(), "counter"),
            Some("gauge") => (name.to_owned(), "gauge"),
            Some("histogram") => (name.to_owned(), "histogram"),
            Some("summary") => (name.to_owned(), "summary"),
            Some("info") => (format!("{name}_info"), "gauge"),
            Some("stateset") => (name.to_owned(), "gauge"),
            _ => (name.to_owned(), "untyped"),
        }
    };
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.push_str(&format!("# HELP {} {help}\n", family(name).0));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split_whitespace().next().unwrap_or_default();
            let (name, kind) = family(name);
            out.push_str(&format!("# TYPE {name} {kind}\n"));
        } else if line.starts_with('#') || line.trim().is_empty() {
            // # UNIT, # EOF, comments.
        } else {
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let created = line[..name_end]
                .strip_suffix("_created")
                .is_some_and(|base| kinds.contains_key(base));
            if created {
                continue;
            }
            // Exemplars follow ` # ` after the value (outside label values,
            // which come first and are closed by `}`).
            let after_labels = line[name_end..]
                .find('}')
                .map_or(name_end, |i| name_end + i);
            let sample = match line[after_labels..].find(" # ") {
                Some(i) => &line[..after_labels + i],
                None => line,
            };
            out.push_str(sample.trim_end());
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OM: &str = "# HELP bulkhead_flows Flow records.\n# TYPE bulkhead_flows counter\n\
        bulkhead_flows_total{verdict=\"allowed\"} 3 # {trace_id=\"a\"} 1\n\
        bulkhead_flows_created{verdict=\"allowed\"} 1.7e9\n\
        # HELP bulkhead_up Whether the agent runs.\n# TYPE bulkhead_up gauge\nbulkhead_up 1\n\
        # HELP bulkhead_build Build.\n# TYPE bulkhead_build info\nbulkhead_build_info{version=\"1\"} 1\n\
        # HELP bulkhead_sync_seconds Since sync.\n# TYPE bulkhead_sync_seconds gauge\n# UNIT bulkhead_sync_seconds seconds\n\
        bulkhead_sync_seconds 0.5\n# EOF\n";

    #[test]
    fn converts_openmetrics_to_prometheus_text() {
        assert_eq!(
            to_prometheus(OM),
            "# HELP bulkhead_flows_total Flow records.\n# TYPE bulkhead_flows_total counter\n\
             bulkhead_flows_total{verdict=\"allowed\"} 3\n\
             # HELP bulkhead_up Whether the agent runs.\n# TYPE bulkhead_up gauge\nbulkhead_up 1\n\
             # HELP bulkhead_build_info Build.\n# TYPE bulkhead_build_info gauge\nbulkhead_build_info{version=\"1\"} 1\n\
             # HELP bulkhead_sync_seconds Since sync.\n# TYPE bulkhead_sync_seconds gauge\n\
             bulkhead_sync_seconds 0.5\n"
        );
    }

    #[test]
    fn joins_before_eof() {
        let joined = join_openmetrics(OM, "# TYPE x gauge\nx 1\n");
        assert!(joined.ends_with("bulkhead_sync_seconds 0.5\n# TYPE x gauge\nx 1\n# EOF\n"));
        assert_eq!(joined.matches("# EOF").count(), 1);
        assert_eq!(join_openmetrics("", ""), "# EOF\n");
    }

    #[test]
    fn negotiates() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
            version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(accepts_openmetrics(Some(prometheus)));
        assert!(!accepts_openmetrics(Some("text/plain")));
        assert!(!accepts_openmetrics(Some(
            "application/openmetrics-text; q=0"
        )));
        assert!(!accepts_openmetrics(None));
    }

    /// The flow metrics as the agent serves them to scrapers without
    /// OpenMetrics pass Prometheus's own parser and linter (`promtool check
    /// metrics`, from `cargo xtask setup`'s prometheus package), every flow
    /// family populated, the per-tier decisions included.
    #[test]
    fn promtool_accepts_the_prometheus_text() {
        use std::io::Write as _;
        use std::process::{Command, Stdio};
        let m = bulkhead_flows::metrics::Metrics::new();
        let allowed = r#"{"schema": "bulkhead.flow/v1", "type": "flow", "node": "node-a",
            "start": "2023-11-14T22:13:20.123Z", "end": "2023-11-14T22:13:21.456Z",
            "end_reason": "closed", "ifindex": 7,
            "endpoint": {"namespace": "prod", "pod": "web-1", "labels": {"app": "web"}},
            "direction": "egress",
            "src": {"ip": "10.0.0.1", "port": 40000, "namespace": "prod", "pod": "web-1", "labels": {"app": "web"}},
            "dst": {"ip": "2001:db8::1", "port": 443, "external": true},
            "protocol": "TCP", "packets": {"orig": 3, "reply": 2}, "bytes": {"orig": 300, "reply": 200},
            "dropped": {"packets": 0, "bytes": 0}, "verdict": "allowed", "drop_reason": null,
            "policies": [{"name": "prod/allow-web", "rule": 0}], "revision": 4}"#;
        let denied = allowed
            .replace(r#""verdict": "allowed""#, r#""verdict": "denied""#)
            .replace(r#""drop_reason": null"#, r#""drop_reason": "policy_denied""#)
            .replace(
                r#""dropped": {"packets": 0, "bytes": 0}"#,
                r#""dropped": {"packets": 2, "bytes": 120}"#,
            )
            .replace(
                r#"[{"name": "prod/allow-web", "rule": 0}]"#,
                r#"[{"name": "ClusterNetworkPolicy/guard", "rule": 1, "tier": "Admin", "action": "Deny", "rule_name": "no-telnet"}]"#,
            );
        for json in [allowed, &denied] {
            let r: bulkhead_flows::record::FlowRecord =
                serde_json::from_str(json).expect("a flow record");
            m.observe(&r);
        }
        m.set_map_fill("CT", 1, 2);
        m.error("sync");
        let text = to_prometheus(&m.render());
        for line in [
            r#"bulkhead_policy_decisions_total{tier="networkpolicy",action="allow",direction="egress"} 1"#,
            r#"bulkhead_policy_decisions_total{tier="admin",action="deny",direction="egress"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
        }
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool (cargo xtask setup installs prometheus)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("writing to promtool");
        let out = child.wait_with_output().expect("promtool");
        assert!(
            out.status.success(),
            "promtool: {}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
