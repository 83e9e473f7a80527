//! `bulkhead flows`: recent and live flows from the agent's API (its Unix
//! socket), filtered, as JSON Lines or one aligned line per record for
//! people (like `hubble observe`).

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Args, ValueEnum};

use super::{CliError, Output};
use bulkhead_agent::api::client::{self, ClientError};
use bulkhead_agent::api::{DEFAULT_SOCKET, LOST_TYPE, SOCKET_NAME};
use bulkhead_flows::filter::{Filter, FilterError};
use bulkhead_flows::record::{
    AuditVerdict, FlowDirection, FlowRecord, FlowVerdict, IpProtocol, RecordKind,
};

/// A verdict to filter on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum VerdictArg {
    /// Passed.
    Allowed,
    /// Dropped by policy (or nothing passed).
    Denied,
    /// Was allowed, then a policy change stopped it.
    Revoked,
    /// Denied or stopped by a quarantine of the endpoint.
    Quarantined,
}

impl VerdictArg {
    fn as_str(self) -> &'static str {
        match self {
            VerdictArg::Allowed => "allowed",
            VerdictArg::Denied => "denied",
            VerdictArg::Revoked => "revoked",
            VerdictArg::Quarantined => "quarantined",
        }
    }
}

/// Arguments of `bulkhead flows`.
#[derive(Debug, Default, Args)]
pub struct FlowsArgs {
    /// The agent's API socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// The agent of this lab (`bulkhead lab up --name LAB`) instead of --socket.
    #[arg(long, value_name = "LAB", conflicts_with = "socket")]
    pub lab: Option<String>,
    /// With --lab: only this node's agent (its name or namespace); default
    /// every node's, one after the other (--follow needs one node).
    #[arg(long, value_name = "NODE", requires = "lab")]
    pub node: Option<String>,
    /// Flows of this pod (endpoint, source, destination or the backend of
    /// a Service connection).
    #[arg(long, value_name = "NS/NAME")]
    pub pod: Option<String>,
    /// Flows with an end in this namespace.
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Flows from or to this address.
    #[arg(long, value_name = "IP")]
    pub ip: Option<IpAddr>,
    /// Flows from or to this port.
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// Flows of this protocol (TCP, UDP, SCTP, ICMP, ICMPv6 or a number).
    #[arg(long, value_name = "P")]
    pub protocol: Option<String>,
    /// Flows with this verdict.
    #[arg(long, value_enum)]
    pub verdict: Option<VerdictArg>,
    /// Flows decided by this NetworkPolicy.
    #[arg(long, value_name = "NS/NAME")]
    pub policy: Option<String>,
    /// Show the last N matching records [default: 20, or 0 with --follow].
    #[arg(long, value_name = "N")]
    pub last: Option<usize>,
    /// Keep showing records as they come, until Ctrl-C.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Output format (times are UTC).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Errors of `bulkhead flows` (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum FlowsError {
    /// The socket does not exist.
    #[error("no agent API socket at {}: {hint}", path.display())]
    SocketMissing {
        /// The socket path.
        path: PathBuf,
        /// What to do.
        hint: String,
    },
    /// Nobody listens on the socket.
    #[error("nothing listens on {} (connection refused): {hint}", path.display())]
    Refused {
        /// The socket path.
        path: PathBuf,
        /// What to do.
        hint: String,
    },
    /// Connecting failed otherwise.
    #[error("connecting to {}: {source}{}", path.display(),
        if source.kind() == std::io::ErrorKind::PermissionDenied { " (the agent's API is root-only: run as root)" } else { "" })]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// `--follow` on a lab of several nodes without `--node`.
    #[error("lab {lab} has {nodes} nodes: --follow reads one agent; name it with --node")]
    FollowNeedsNode {
        /// The lab.
        lab: String,
        /// Its nodes with an agent.
        nodes: usize,
    },
    /// The filter is invalid.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// The API failed or refused the query.
    #[error(transparent)]
    Api(#[from] ClientError),
}

/// The query string of `/v1/flows` for `args`, validated as a filter.
pub fn query(args: &FlowsArgs) -> Result<String, FlowsError> {
    let ip = args.ip.map(|ip| ip.to_string());
    let port = args.port.map(|p| p.to_string());
    let mut pairs: Vec<(&str, &str)> = [
        ("pod", args.pod.as_deref()),
        ("namespace", args.namespace.as_deref()),
        ("ip", ip.as_deref()),
        ("port", port.as_deref()),
        ("protocol", args.protocol.as_deref()),
        ("verdict", args.verdict.map(VerdictArg::as_str)),
        ("policy", args.policy.as_deref()),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k, v?)))
    .collect();
    Filter::from_query(&bulkhead_agent::api::query::encode_query(
        pairs.iter().copied(),
    ))?;
    let last = args
        .last
        .unwrap_or(if args.follow { 0 } else { 20 })
        .to_string();
    pairs.push(("limit", &last));
    if args.follow {
        pairs.push(("follow", "1"));
    }
    Ok(bulkhead_agent::api::query::encode_query(pairs))
}

/// The sockets to use (one per node of a lab) and what to suggest when
/// nothing is there.
fn sockets_of(args: &FlowsArgs) -> Result<(Vec<PathBuf>, String), CliError> {
    let (sockets, hint) = agent_sockets(&args.socket, args.lab.as_deref(), args.node.as_deref())?;
    if let Some(lab) = &args.lab
        && args.follow
        && sockets.len() > 1
    {
        return Err(FlowsError::FollowNeedsNode {
            lab: lab.clone(),
            nodes: sockets.len(),
        }
        .into());
    }
    Ok((sockets, hint))
}

/// The API sockets of the agents a command talks to: `socket`, or those
/// of lab `lab`'s nodes (only `node`'s if given), in node order; and what
/// to suggest when nothing is there.
pub(crate) fn agent_sockets(
    socket: &Path,
    lab: Option<&str>,
    node: Option<&str>,
) -> Result<(Vec<PathBuf>, String), CliError> {
    Ok(match lab {
        Some(lab) => {
            bulkhead_lab::naming::check_lab_name(lab)?;
            let hint = format!(
                "is lab {lab} up with its agent? (`bulkhead lab up --name {lab}` without --no-agent)"
            );
            let state = bulkhead_lab::state::LabState::load(lab)?;
            let sockets = match &state {
                Some(state) => {
                    let nodes = state.node_indices(node)?;
                    let sockets: Vec<PathBuf> = nodes
                        .iter()
                        .filter_map(|&i| state.nodes[i].agent.as_ref())
                        .map(|a| a.api_socket.clone())
                        .collect();
                    if sockets.is_empty() {
                        return Err(bulkhead_lab::LabError::NoAgent {
                            name: lab.to_owned(),
                        }
                        .into());
                    }
                    sockets
                }
                None => vec![bulkhead_lab::state::lab_dir(lab).join(SOCKET_NAME)],
            };
            (sockets, hint)
        }
        None => (
            vec![socket.to_owned()],
            "start the agent (`bulkhead agent --manifests DIR`), or name another with \
             --socket PATH, or a lab's agent with --lab NAME"
                .to_owned(),
        ),
    })
}

/// Connects to an agent's API socket; a missing or refusing socket is
/// named with `hint` (what to do about it).
pub(crate) fn connect(path: &Path, hint: String) -> Result<UnixStream, FlowsError> {
    UnixStream::connect(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => FlowsError::SocketMissing {
            path: path.to_owned(),
            hint,
        },
        std::io::ErrorKind::ConnectionRefused => FlowsError::Refused {
            path: path.to_owned(),
            hint,
        },
        _ => FlowsError::Connect {
            path: path.to_owned(),
            source,
        },
    })
}

/// Runs `bulkhead flows`: each socket's records in turn (a lab's nodes,
/// in node order; each record names its node).
pub fn run(args: &FlowsArgs) -> Result<(), CliError> {
    let query = query(args)?;
    let (paths, hint) = sockets_of(args)?;
    for path in paths {
        run_one(args, &query, path, hint.clone())?;
    }
    Ok(())
}

/// `bulkhead flows` against one agent's socket.
fn run_one(args: &FlowsArgs, query: &str, path: PathBuf, hint: String) -> Result<(), CliError> {
    let stream = connect(&path, hint)?;
    let connect_err = |source| FlowsError::Connect {
        path: path.clone(),
        source,
    };
    let closer = stream.try_clone().map_err(connect_err)?;
    let resp = client::get(stream, &format!("/v1/flows?{query}")).map_err(FlowsError::from)?;
    let stop = Arc::new(AtomicBool::new(false));
    if args.follow {
        // Ctrl-C (or SIGTERM) closes the connection: the read below ends.
        let mut signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
        ])
        .map_err(connect_err)?;
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            if signals.forever().next().is_some() {
                stop.store(true, Ordering::SeqCst);
                let _ = closer.shutdown(std::net::Shutdown::Both);
            }
        });
    }
    let color = args.output == Output::Text
        && std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let mut out = std::io::stdout().lock();
    let mut lines = BufReader::new(resp);
    let mut line = String::new();
    let mut warned = false;
    loop {
        line.clear();
        match lines.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) if stop.load(Ordering::SeqCst) => break,
            Err(e) => return Err(FlowsError::Api(ClientError::Io(e)).into()),
        }
        let text = line.trim_end();
        if text.is_empty() {
            continue; // heartbeat
        }
        match args.output {
            Output::Json => writeln!(out, "{text}")?,
            Output::Text => match parse_line(text) {
                Line::Record(r) => writeln!(out, "{}", render(&r, color))?,
                Line::Lost(n) => {
                    out.flush()?;
                    eprintln!(
                        "warning: {n} flow records were dropped for this reader (it fell behind)"
                    );
                }
                Line::Unknown(why) => {
                    if !warned {
                        warned = true;
                        tracing::warn!(error = %why, "unreadable record (a newer agent?); showing such records as received");
                    }
                    writeln!(out, "{text}")?;
                }
            },
        }
    }
    out.flush()?;
    Ok(())
}

/// A line of the API's JSON Lines.
#[derive(Debug)]
pub enum Line {
    /// A flow record or event.
    Record(Box<FlowRecord>),
    /// Records dropped for this reader.
    Lost(u64),
    /// Not a record this version reads (the reason).
    Unknown(String),
}

/// Reads one line of `/v1/flows`.
pub fn parse_line(text: &str) -> Line {
    match serde_json::from_str::<FlowRecord>(text) {
        Ok(r) => Line::Record(Box::new(r)),
        Err(e) => {
            let v: Option<serde_json::Value> = serde_json::from_str(text).ok();
            match v.as_ref().filter(|v| v["type"] == LOST_TYPE) {
                Some(v) => Line::Lost(v["lost"].as_u64().unwrap_or(0)),
                None => Line::Unknown(e.to_string()),
            }
        }
    }
}

/// `Nov 14 22:13:20.123` (UTC) from RFC 3339 `2023-11-14T22:13:20.123Z`.
pub(crate) fn short_time(rfc3339: &str) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = rfc3339
        .get(5..7)
        .and_then(|m| m.parse::<usize>().ok())
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)));
    match (month, rfc3339.get(8..10), rfc3339.get(11..23)) {
        (Some(m), Some(d), Some(t)) => format!("{m} {d} {t}"),
        _ => rfc3339.to_owned(),
    }
}

/// One end: `ns/pod:port` for a pod, the address otherwise (no port for ICMP).
fn peer(a: &bulkhead_flows::record::Address, protocol: IpProtocol) -> String {
    let host = match &a.pod {
        Some(p) => format!("{}/{}", p.namespace, p.pod),
        None if a.ip.is_ipv6() => format!("[{}]", a.ip),
        None => a.ip.to_string(),
    };
    let ported = matches!(protocol.name(), Some("TCP" | "UDP" | "SCTP"));
    if ported {
        format!("{host}:{}", a.port)
    } else if a.pod.is_none() {
        a.ip.to_string()
    } else {
        host
    }
}

/// TCP flags seen either way, SYN and ACK first.
fn flags(r: &FlowRecord) -> String {
    const ORDER: [(u8, &str); 8] = [
        (0x02, "SYN"),
        (0x10, "ACK"),
        (0x08, "PSH"),
        (0x01, "FIN"),
        (0x04, "RST"),
        (0x20, "URG"),
        (0x40, "ECE"),
        (0x80, "CWR"),
    ];
    let bits = r.tcp_flags.map_or(0, |f| f.orig.0 | f.reply.0);
    ORDER
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(",")
}

/// The deciding policies: `ns/allow rule 0` for an allowing rule,
/// `isolated by ns/deny` for an isolating policy, and for a cluster-admin
/// rule its tier, rule (name or index) and action:
/// `ClusterNetworkPolicy/guard Admin rule "no-db" Deny`.
fn policies(r: &FlowRecord) -> String {
    let allowing: Vec<String> = r
        .policies
        .iter()
        .filter_map(|p| {
            let i = p.rule?;
            Some(match (&p.tier, &p.action) {
                (Some(tier), Some(action)) => {
                    let rule = p
                        .rule_name
                        .as_ref()
                        .map_or_else(|| i.to_string(), |n| format!("{n:?}"));
                    format!("{} {tier} rule {rule} {action}", p.name)
                }
                _ => format!("{} rule {i}", p.name),
            })
        })
        .collect();
    let isolating: Vec<&str> = r
        .policies
        .iter()
        .filter(|p| p.rule.is_none())
        .map(|p| &*p.name)
        .collect();
    let mut parts = allowing;
    if !isolating.is_empty() {
        parts.push(format!("isolated by {}", isolating.join(", ")));
    }
    parts.join("; ")
}

/// One line for a person, like `hubble observe`:
/// `Nov 22 17:40:01.123  x/a:43512 (egress) -> y/b:80  TCP  ALLOWED  x/allow-80 rule 0  3↑ 2↓ pkts  SYN,ACK  closed`.
/// A connection through a Service shows the frontend, the Service and the
/// backend: `-> 10.96.0.10:80 (svc y/b) => y/b-0:8080`.
/// Colors (ANSI) only when `color`.
pub fn render(r: &FlowRecord, color: bool) -> String {
    format!(
        "{}  {}",
        short_time(&r.end.to_string()),
        render_body(r, color)
    )
}

/// [`render`] without the time in front.
pub fn render_body(r: &FlowRecord, color: bool) -> String {
    let mut src = peer(&r.src, r.protocol);
    let mut dst = peer(&r.dst, r.protocol);
    if let Some(svc) = &r.service {
        // `10.96.0.10:80 (svc prod/db) => prod/db-0:5432`
        if let Some(key) = svc.key() {
            dst.push_str(&format!(" (svc {key})"));
        }
        if let Some(b) = &svc.backend {
            dst.push_str(&format!(" => {}", peer(&b.address, r.protocol)));
        }
    }
    match r.direction {
        FlowDirection::Egress => src.push_str(" (egress)"),
        FlowDirection::Ingress => dst.push_str(" (ingress)"),
    }
    let (verdict, paint) = match r.verdict {
        FlowVerdict::Allowed => ("ALLOWED", "32"),
        FlowVerdict::Denied => ("DENIED", "31"),
        FlowVerdict::Revoked => ("REVOKED", "33"),
        FlowVerdict::Quarantined => ("QUARANTINED", "35"),
    };
    let verdict_col = if color {
        format!("\x1b[{paint}m{verdict:<7}\x1b[0m")
    } else {
        format!("{verdict:<7}")
    };
    let pols = policies(r);
    let why = match (r.verdict, r.drop_reason) {
        (FlowVerdict::Allowed, _) if pols.is_empty() => "not isolated".to_owned(),
        (FlowVerdict::Allowed, _) => pols,
        (_, reason) => {
            let reason = reason.map_or_else(|| "dropped".to_owned(), |r| r.to_string());
            if pols.is_empty() {
                format!("({reason})")
            } else {
                format!("({reason}; {pols})")
            }
        }
    };
    let mut line = format!(
        "{src:<34} -> {dst:<34} {:<6} {verdict_col}  {why}",
        r.protocol.to_string(),
    );
    let counts = match r.kind {
        RecordKind::Flow => format!("{}↑ {}↓ pkts", r.packets.orig, r.packets.reply),
        RecordKind::Event => String::new(),
    };
    let dropped = (r.dropped.packets > 0).then(|| format!("{} dropped", r.dropped.packets));
    let tail = match (r.kind, r.event) {
        (RecordKind::Event, Some(e)) => Some(match e {
            bulkhead_flows::record::EventType::NewFlow => "new flow",
            bulkhead_flows::record::EventType::Drop => "drop",
        }),
        (RecordKind::Event, None) => Some("event"),
        (RecordKind::Flow, _) => r.end_reason.map(|e| e.as_str()),
    };
    let flags = flags(r);
    // What the staged (audit-mode) policies say, after what passed.
    let audit = r.audit.as_ref().map(|a| {
        let names: Vec<&str> = a.policies.iter().map(|p| &*p.name).collect();
        let verdict = match a.verdict {
            AuditVerdict::Allowed => "audit: allowed",
            AuditVerdict::WouldDeny => "AUDIT: WOULD DENY",
        };
        format!("[{verdict} by {}]", names.join(", "))
    });
    for part in [
        Some(counts),
        dropped,
        Some(flags),
        tail.map(str::to_owned),
        audit,
    ]
    .into_iter()
    .flatten()
    .filter(|p| !p.is_empty())
    {
        line.push_str("  ");
        line.push_str(&part);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(json: serde_json::Value) -> FlowRecord {
        let mut base = serde_json::json!({
            "schema": "bulkhead.flow/v1", "type": "flow", "node": "n1",
            "start": "2024-11-22T17:40:00.000Z", "end": "2024-11-22T17:40:01.123Z",
            "end_reason": "closed", "ifindex": 7,
            "endpoint": {"namespace": "x", "pod": "a", "labels": {}},
            "direction": "egress",
            "src": {"ip": "10.0.0.1", "port": 43512, "namespace": "x", "pod": "a", "labels": {}},
            "dst": {"ip": "10.0.0.2", "port": 80, "namespace": "y", "pod": "b", "labels": {}},
            "protocol": "TCP",
            "packets": {"orig": 3, "reply": 2}, "bytes": {"orig": 180, "reply": 120},
            "dropped": {"packets": 0, "bytes": 0},
            "tcp_flags": {"orig": ["SYN", "ACK"], "reply": ["SYN", "ACK"]},
            "verdict": "allowed", "drop_reason": null,
            "policies": [{"name": "x/allow-80", "rule": 0}], "revision": 4
        });
        for (k, v) in json.as_object().unwrap() {
            base[k] = v.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn renders_an_allowed_flow() {
        let line = render(&record(serde_json::json!({})), false);
        assert_eq!(
            line,
            "Nov 22 17:40:01.123  x/a:43512 (egress)                 -> y/b:80                             \
             TCP    ALLOWED  x/allow-80 rule 0  3↑ 2↓ pkts  SYN,ACK  closed"
        );
        let colored = render(&record(serde_json::json!({})), true);
        assert!(colored.contains("\x1b[32mALLOWED\x1b[0m"), "{colored}");
    }

    #[test]
    fn renders_the_service_and_its_backend() {
        let r = record(serde_json::json!({
            "dst": {"ip": "10.96.0.10", "port": 80, "external": true},
            "service": {
                "namespace": "y", "name": "b", "ip": "10.96.0.10", "port": 80,
                "backend": {"ip": "10.0.0.2", "port": 8080, "namespace": "y", "pod": "b-0",
                            "labels": {}, "allowed": false}
            },
            "verdict": "denied", "drop_reason": "policy_denied",
            "policies": [{"name": "x/egress"}],
        }));
        let line = render(&r, false);
        assert!(
            line.contains("-> 10.96.0.10:80 (svc y/b) => y/b-0:8080 TCP"),
            "{line}"
        );
        assert!(
            line.contains("DENIED   (policy_denied; isolated by x/egress)"),
            "{line}"
        );
    }

    #[test]
    fn renders_the_audit_verdict() {
        let r = record(serde_json::json!({
            "audit": {"verdict": "would_deny", "policies": [{"name": "y/staged"}]}
        }));
        assert!(
            render(&r, false).ends_with("closed  [AUDIT: WOULD DENY by y/staged]"),
            "{}",
            render(&r, false)
        );
        let r = record(serde_json::json!({
            "audit": {"verdict": "allowed", "policies": [{"name": "y/staged"}]}
        }));
        assert!(render(&r, false).ends_with("[audit: allowed by y/staged]"));
    }

    #[test]
    fn renders_a_drop_with_an_external_peer_on_ingress() {
        let r = record(serde_json::json!({
            "type": "event", "event": "drop", "end_reason": null, "direction": "ingress",
            "src": {"ip": "2001:db8::9", "port": 5555, "external": true},
            "dropped": {"packets": 1, "bytes": 74},
            "tcp_flags": {"orig": ["SYN"], "reply": []},
            "verdict": "denied", "drop_reason": "policy_denied",
            "policies": [{"name": "y/deny-all"}],
        }));
        let line = render(&r, false);
        assert!(
            line.starts_with("Nov 22 17:40:01.123  [2001:db8::9]:5555  "),
            "{line}"
        );
        assert!(line.contains("-> y/b:80 (ingress) "), "{line}");
        assert!(
            line.ends_with(
                "DENIED   (policy_denied; isolated by y/deny-all)  1 dropped  SYN  drop"
            ),
            "{line}"
        );
    }

    #[test]
    fn renders_icmp_without_ports_and_unrestricted_flows() {
        let r = record(serde_json::json!({
            "protocol": "ICMP", "tcp_flags": null, "policies": [], "end_reason": "idle",
            "dst": {"ip": "192.0.2.1", "port": 0, "external": true},
        }));
        let line = render(&r, false);
        assert!(line.contains("x/a (egress)"), "{line}");
        assert!(line.contains("-> 192.0.2.1 "), "{line}");
        assert!(
            line.contains("ICMP   ALLOWED  not isolated  3↑ 2↓ pkts  idle"),
            "{line}"
        );
    }

    #[test]
    fn reads_lost_and_unknown_lines() {
        assert!(matches!(
            parse_line(r#"{"type":"lost","lost":6}"#),
            Line::Lost(6)
        ));
        assert!(matches!(
            parse_line(r#"{"schema":"other"}"#),
            Line::Unknown(_)
        ));
        assert!(matches!(parse_line("not json"), Line::Unknown(_)));
        let r = serde_json::to_string(&record(serde_json::json!({}))).unwrap();
        assert!(matches!(parse_line(&r), Line::Record(_)));
    }

    #[test]
    fn builds_percent_encoded_queries() {
        let args = FlowsArgs {
            pod: Some("x/a b".into()),
            ip: Some("2001:db8::1".parse().unwrap()),
            port: Some(80),
            protocol: Some("tcp".into()),
            verdict: Some(VerdictArg::Denied),
            policy: Some("y/deny&all".into()),
            ..FlowsArgs::default()
        };
        assert_eq!(
            query(&args).unwrap(),
            "pod=x%2Fa+b&ip=2001%3Adb8%3A%3A1&port=80&protocol=tcp&verdict=denied\
             &policy=y%2Fdeny%26all&limit=20"
        );
        let follow = FlowsArgs {
            namespace: Some("prod".into()),
            follow: true,
            ..FlowsArgs::default()
        };
        assert_eq!(query(&follow).unwrap(), "namespace=prod&limit=0&follow=1");
        let last = FlowsArgs {
            last: Some(5),
            follow: true,
            ..FlowsArgs::default()
        };
        assert_eq!(query(&last).unwrap(), "limit=5&follow=1");
        let bad = FlowsArgs {
            pod: Some("no-namespace".into()),
            ..FlowsArgs::default()
        };
        assert!(matches!(query(&bad), Err(FlowsError::Filter(_))));
        let bad = FlowsArgs {
            protocol: Some("gre".into()),
            ..FlowsArgs::default()
        };
        assert!(matches!(query(&bad), Err(FlowsError::Filter(_))));
    }

    #[test]
    fn missing_sockets_are_named_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let e = connect(&path, "start it".into()).unwrap_err();
        assert!(matches!(e, FlowsError::SocketMissing { .. }));
        assert!(e.to_string().contains(&*path.to_string_lossy()));
        assert!(e.to_string().ends_with("start it"));
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let e = connect(&path, "start it".into()).unwrap_err();
        assert!(matches!(e, FlowsError::Refused { .. }), "{e}");
    }
}
