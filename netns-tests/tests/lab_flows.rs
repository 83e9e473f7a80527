//! Flow visibility (issue 4) on real packets, in one lab with its agent:
//! pods x/a, y/a and y/b (IPv4 and IPv6); namespace y isolated for
//! ingress (`y/default-deny`), y/b open to x/a on TCP 80 and UDP 81
//! (`y/allow-xa`). Real `nfcapd` and `prometheus` run in the lab's node
//! namespace; the agent exports IPFIX to the one and serves /metrics to
//! the other.
//!
//! Traffic, over both families, with sizes the test knows: a TCP
//! connection x/a → y/b:80 carrying [`TCP_BYTES`] each way, then closed;
//! [`UDP_COUNT`] datagrams of [`UDP_SIZE`] bytes x/a → y/b:81, each
//! echoed; one TCP SYN x/a → y/b:82 (denied: port); [`DENIED_COUNT`]
//! datagrams y/a → y/b:81 (denied: peer). Then:
//!
//! 1. `bulkhead flows --lab` (JSON, with filters, and text) and the lab's
//!    `flows.jsonl` hold one record per connection and endpoint (egress at
//!    the client, ingress at the server) with the right pods, addresses,
//!    ports, protocol, verdict, drop reason, deciding policies and exact
//!    packet and byte counts (frames as the TC programs see them,
//!    Ethernet header included; TCP segments from the client's
//!    `TCP_INFO`);
//! 2. `nfdump -r` on nfcapd's files shows every direction of every such
//!    record with the same counts;
//! 3. Prometheus, through its HTTP API, has exactly the denied packets in
//!    `bulkhead_drops_total{reason="policy_denied"}` and
//!    `bulkhead_kernel_drops_total`, and the kernel's flow counters;
//! 4. `/v1/accounting` on the agent's socket: the identity holds and
//!    nothing was lost;
//! 5. with nfcapd stopped, more traffic still passes and is recorded, the
//!    agent stays healthy (`/healthz`), and the IPFIX exporter counts its
//!    failed sends (`bulkhead_flow_records_lost_total{stage="ipfix"}`).
//!
//! IPFIX over UDP sends its templates with the first message and then
//! every 30 s; a collector that misses them cannot decode anything until
//! the next refresh. The node namespace only exists once `lab up` made
//! it, so the test runs `lab up` on a thread and starts nfcapd as soon as
//! the namespace's loopback is up, which is well before the agent's flow
//! pipeline sends its first message (if the agent's API socket, bound
//! right after the pipeline starts, already exists then, the test waits
//! one template refresh).

mod lab_support;
#[path = "lab_support/traffic.rs"]
mod traffic;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use bulkhead_netns_tests::collectors::{NfRecord, Nfcapd, Prometheus};
use serde_json::Value;

use lab_support::{Lab, bulkhead_bin, privileged, serial, snapshot};
use traffic::{
    Attempt, ETH, Pod, Served, TCP_SYN, TCP_TS, TcpExchange, TcpServer, UdpEcho, ip_header,
    syn_frame, tcp_attempt, tcp_exchange, udp_blackhole, udp_exchange, udp_frame,
};

/// UDP port of nfcapd in the node namespace (fresh: every port is free).
const IPFIX_PORT: u16 = 4739;
/// TCP port of the agent's /metrics in the node namespace.
const METRICS_PORT: u16 = 9617;
/// Payload bytes each way of an allowed TCP connection (below the MSS: one
/// data segment each way, no GSO).
const TCP_BYTES: usize = 1000;
/// Datagrams of an allowed UDP exchange.
const UDP_COUNT: usize = 5;
/// Their payload.
const UDP_SIZE: usize = 200;
/// Datagrams y/a sends to y/b (denied).
const DENIED_COUNT: usize = 3;
/// Their payload.
const DENIED_SIZE: usize = 100;
/// Allowed TCP port.
const TCP_PORT: u16 = 80;
/// Allowed UDP port.
const UDP_PORT: u16 = 81;
/// A TCP port of y/b nobody may reach (and nothing listens on).
const DENIED_TCP_PORT: u16 = 82;
/// Bound of every wait for records, metrics or the identity.
const WAIT: Duration = Duration::from_secs(20);

/// The policy that allows x/a into y/b.
const ALLOW: &str = "y/allow-xa";
/// Every policy that isolates y/b for ingress (the deciding policies of a
/// denied record), sorted.
const ISOLATING: [&str; 2] = ["y/allow-xa", "y/default-deny"];

/// The lab: three pods without container ports (so the lab's own servers
/// hold none; the test's servers answer) and the two policies of y.
fn manifests() -> String {
    lab_support::xa_into_yb()
}

/// Whether `lo` is up in namespace `netns`.
fn loopback_up(netns: &str) -> bool {
    if !Path::new("/run/netns").join(netns).exists() {
        return false;
    }
    Command::new("ip")
        .args(["-n", netns, "-o", "link", "show", "lo"])
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(",UP"))
}

/// `lab up` with the flow exports, nfcapd started in the node namespace
/// before the agent's first IPFIX message (see the module docs), and
/// Prometheus.
fn up_with_collectors(lab: &Lab, node: &str) -> (Nfcapd, Prometheus) {
    let ipfix = format!("127.0.0.1:{IPFIX_PORT}");
    let metrics = format!("127.0.0.1:{METRICS_PORT}");
    let args = [
        "--ipfix",
        &ipfix,
        "--metrics-addr",
        &metrics,
        "--flow-idle-timeout",
        "2",
    ];
    let socket = lab.dir().join("agent.sock");
    // Built (if need be) now, not while racing the lab.
    bulkhead_bin();
    let start = Instant::now();
    let (nfcapd, prometheus, agent_first) = thread::scope(|s| {
        let up = s.spawn(|| lab.up(&args));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !loopback_up(node) {
            if up.is_finished() || Instant::now() >= deadline {
                let out = up.join().expect("lab up thread");
                panic!("the node namespace never came up: lab up {:?}", out.status);
            }
            thread::sleep(Duration::from_millis(5));
        }
        let nfcapd = Nfcapd::start(node, IPFIX_PORT).expect("start nfcapd");
        // The agent starts its flow pipeline, then binds its API socket;
        // the pipeline sends its first message (with the templates) one
        // drain interval (250 ms) after it starts. No socket yet: nfcapd
        // will get the templates.
        let agent_first = socket.exists();
        eprintln!(
            "nfcapd ready {:?} after lab up began (agent's API already up: {agent_first})",
            start.elapsed()
        );
        let prometheus =
            Prometheus::start(node, &[&metrics], Duration::from_millis(500)).expect("prometheus");
        let out = up.join().expect("lab up thread");
        assert!(out.status.success(), "lab up failed");
        (nfcapd, prometheus, agent_first)
    });
    eprintln!("lab up with collectors took {:?}", start.elapsed());
    if agent_first {
        // Rare: the agent may have sent its templates before nfcapd
        // listened; they come again within 30 s.
        eprintln!("waiting for the IPFIX template refresh (30 s)");
        thread::sleep(Duration::from_secs(31));
    }
    (nfcapd, prometheus)
}

/// `GET path` on the agent's API socket: the body (a non-2xx status
/// panics with the agent's message).
fn api_get(lab: &Lab, path: &str) -> String {
    let socket = lab.dir().join("agent.sock");
    let stream = UnixStream::connect(&socket)
        .unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut resp = bulkhead_agent::api::client::get(stream, path)
        .unwrap_or_else(|e| panic!("GET {path} on the agent's socket: {e}"));
    let mut body = String::new();
    resp.read_to_string(&mut body).expect("read the body");
    body
}

/// The agent's accounting.
fn accounting(lab: &Lab) -> Value {
    serde_json::from_str(&api_get(lab, "/v1/accounting")).expect("accounting JSON")
}

/// Runs `bulkhead flows --lab NAME --last 5000 extra...` quietly (it is
/// polled); stdout.
fn flows_cli(lab: &Lab, extra: &[&str]) -> String {
    let out = Command::new(bulkhead_bin())
        .args(["flows", "--lab", &lab.name, "--last", "5000"])
        .args(extra)
        .output()
        .expect("run bulkhead flows");
    assert!(
        out.status.success(),
        "bulkhead flows {extra:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// `bulkhead flows --output json extra...`: the records.
fn flows_json(lab: &Lab, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["--output", "json"];
    args.extend_from_slice(extra);
    lab_support::json_lines(&flows_cli(lab, &args))
}

/// One connection as seen at one endpoint: what selects its record.
#[derive(Clone, Debug)]
struct Want {
    /// What it is, for messages.
    what: String,
    /// `namespace/name` of the endpoint.
    endpoint: String,
    /// `egress` or `ingress`.
    direction: &'static str,
    /// `TCP` or `UDP`.
    protocol: &'static str,
    /// The client pod, its address and (when the test knows it) port.
    src_pod: String,
    src: IpAddr,
    sport: Option<u16>,
    /// The server pod and address.
    dst_pod: String,
    dst: SocketAddr,
}

impl Want {
    /// Whether `r` is a flow record of this connection at this endpoint.
    fn matches(&self, r: &Value) -> bool {
        let pod = |v: &Value| {
            format!(
                "{}/{}",
                v["namespace"].as_str().unwrap_or("?"),
                v["pod"].as_str().unwrap_or("?")
            )
        };
        r["type"] == "flow"
            && pod(&r["endpoint"]) == self.endpoint
            && r["direction"] == self.direction
            && r["protocol"] == self.protocol
            && r["src"]["ip"]
                .as_str()
                .and_then(|s| s.parse::<IpAddr>().ok())
                == Some(self.src)
            && self.sport.is_none_or(|p| r["src"]["port"] == p)
            && r["dst"]["ip"]
                .as_str()
                .and_then(|s| s.parse::<IpAddr>().ok())
                == Some(self.dst.ip())
            && r["dst"]["port"] == self.dst.port()
    }

    /// The matching records.
    fn find<'a>(&self, records: &'a [Value]) -> Vec<&'a Value> {
        records.iter().filter(|r| self.matches(r)).collect()
    }

    /// Its single record: checks the parts every record shares.
    fn one<'a>(&self, records: &'a [Value]) -> &'a Value {
        let found = self.find(records);
        assert_eq!(
            found.len(),
            1,
            "{}: one record expected: {found:#?}",
            self.what
        );
        let r = found[0];
        assert_eq!(r["schema"], "bulkhead.flow/v1", "{}: {r}", self.what);
        assert!(r["ifindex"].as_u64().unwrap_or(0) > 0, "{}: {r}", self.what);
        assert!(
            r["start"].as_str() <= r["end"].as_str(),
            "{}: {r}",
            self.what
        );
        for (side, pod) in [("src", &self.src_pod), ("dst", &self.dst_pod)] {
            let (ns, name) = pod.split_once('/').unwrap();
            assert_eq!(r[side]["namespace"], ns, "{} {side}: {r}", self.what);
            assert_eq!(r[side]["pod"], name, "{} {side}: {r}", self.what);
            assert!(
                r[side].get("external").is_none(),
                "{} {side}: {r}",
                self.what
            );
        }
        r
    }
}

/// What the test sent over one family.
struct Sent {
    /// IPv4, else IPv6.
    v4: bool,
    /// The allowed TCP connection x/a → y/b.
    tcp: TcpExchange,
    /// x/a's socket of the allowed UDP exchange.
    udp_client: SocketAddr,
    /// y/a's socket of the denied datagrams.
    udp_denied_client: SocketAddr,
}

/// The pods.
struct Pods {
    xa: Pod,
    ya: Pod,
    yb: Pod,
}

impl Pods {
    /// The records `s` must give, by key: `tcp` (allowed TCP), `udp`
    /// (allowed UDP), `syn` (denied TCP), `deny` (denied UDP), each with
    /// `_c` (egress at the client) and `_s` (ingress at y/b).
    fn wants(&self, s: &Sent) -> BTreeMap<String, Want> {
        let fam = if s.v4 { "IPv4" } else { "IPv6" };
        let yb = &self.yb;
        let connections = [
            (
                "tcp",
                "allowed TCP",
                &self.xa,
                "TCP",
                Some(s.tcp.client.port()),
                TCP_PORT,
            ),
            (
                "udp",
                "allowed UDP",
                &self.xa,
                "UDP",
                Some(s.udp_client.port()),
                UDP_PORT,
            ),
            ("syn", "denied TCP", &self.xa, "TCP", None, DENIED_TCP_PORT),
            (
                "deny",
                "denied UDP",
                &self.ya,
                "UDP",
                Some(s.udp_denied_client.port()),
                UDP_PORT,
            ),
        ];
        let mut wants = BTreeMap::new();
        for (key, what, client, protocol, sport, dport) in connections {
            for (side, endpoint, direction) in [("c", client, "egress"), ("s", yb, "ingress")] {
                let want = Want {
                    what: format!("{what} ({fam}, {direction} at {})", endpoint.name),
                    endpoint: endpoint.name.clone(),
                    direction,
                    protocol,
                    src_pod: client.name.clone(),
                    src: client.ip(s.v4),
                    sport,
                    dst_pod: yb.name.clone(),
                    dst: SocketAddr::new(yb.ip(s.v4), dport),
                };
                wants.insert(format!("{key}_{side}"), want);
            }
        }
        wants
    }
}

/// Polls `bulkhead flows` until every wanted record is there; the records.
fn wait_for_records(lab: &Lab, wants: &[Want]) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let records = flows_json(lab, &[]);
        let missing: Vec<&Want> = wants
            .iter()
            .filter(|w| w.find(&records).is_empty())
            .collect();
        if missing.is_empty() {
            eprintln!("{} wanted records after {:?}", wants.len(), start.elapsed());
            return records;
        }
        if start.elapsed() >= WAIT {
            let flows: Vec<&Value> = records.iter().filter(|r| r["type"] == "flow").collect();
            panic!(
                "no record within {WAIT:?} of: {missing:#?}\nflow records: {flows:#?}\nagent log:\n{}",
                std::fs::read_to_string(lab.dir().join("agent.log")).unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(250));
    }
}

/// Names and rules of a record's `policies`.
fn policies(r: &Value) -> Vec<(String, Option<u64>)> {
    r["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_owned(), p["rule"].as_u64()))
        .collect()
}

/// The TCP flags of one direction.
fn flags(r: &Value, dir: &str) -> BTreeSet<String> {
    r["tcp_flags"][dir]
        .as_array()
        .unwrap_or_else(|| panic!("tcp_flags.{dir} in {r}"))
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect()
}

/// `field` (`packets` or `bytes`) of a record: (orig, reply).
fn counts(r: &Value, field: &str) -> (u64, u64) {
    (
        r[field]["orig"].as_u64().unwrap(),
        r[field]["reply"].as_u64().unwrap(),
    )
}

/// The dropped (packets, bytes) of a record.
fn dropped(r: &Value) -> (u64, u64) {
    (
        r["dropped"]["packets"].as_u64().unwrap(),
        r["dropped"]["bytes"].as_u64().unwrap(),
    )
}

/// Checks the records of one family against what was sent (point 1).
fn check_records(pods: &Pods, s: &Sent, records: &[Value]) {
    let w = pods.wants(s);
    let r = |k: &str| (w[k].one(records), &w[k].what);
    let isolating: Vec<(String, Option<u64>)> =
        ISOLATING.iter().map(|p| (p.to_string(), None)).collect();
    let allowing = vec![(ALLOW.to_owned(), Some(0))];

    // Allowed TCP: the same packets at both ends; every segment the client
    // sent or received (TCP_INFO), headers known: the SYN and SYN-ACK
    // carry 40 bytes of TCP header, every other segment 32 (timestamps).
    let ip = ip_header(s.tcp.server.ip());
    let (c, what) = r("tcp_c");
    let (sv, _) = r("tcp_s");
    for (rec, pol) in [(c, &vec![]), (sv, &allowing)] {
        assert_eq!(rec["src"]["port"], s.tcp.client.port(), "{what}: {rec}");
        assert_eq!(rec["verdict"], "allowed", "{what}: {rec}");
        assert!(rec["drop_reason"].is_null(), "{what}: {rec}");
        assert_eq!(dropped(rec), (0, 0), "{what}: {rec}");
        assert_eq!(rec["end_reason"], "closed", "{what}: {rec}");
        assert_eq!(&policies(rec), pol, "{what}: {rec}");
        for dir in ["orig", "reply"] {
            let f = flags(rec, dir);
            assert!(
                ["SYN", "ACK", "FIN"].iter().all(|x| f.contains(*x)),
                "{what} {dir} flags: {rec}"
            );
        }
    }
    assert_eq!(
        counts(c, "packets"),
        counts(sv, "packets"),
        "{what}: both ends saw the same packets:\n{c}\n{sv}"
    );
    assert_eq!(
        counts(c, "bytes"),
        counts(sv, "bytes"),
        "{what}: both ends saw the same bytes:\n{c}\n{sv}"
    );
    let (po, pr) = counts(c, "packets");
    let (bo, br) = counts(c, "bytes");
    let payload = TCP_BYTES as u64;
    // At least the SYN (SYN-ACK) and one data segment each way, each with
    // Ethernet, IP and a minimal TCP header.
    assert!(po >= 2 && pr >= 2, "{what}: packets {po}/{pr}: {c}");
    assert!(
        bo >= payload + po * (ETH + ip + 20),
        "{what}: bytes {bo}: {c}"
    );
    assert!(
        br >= payload + pr * (ETH + ip + 20),
        "{what}: bytes {br}: {c}"
    );
    // Exactly the segments the client's socket counted.
    assert_eq!(
        (po, pr),
        (s.tcp.segs_out, s.tcp.segs_in),
        "{what}: packets vs TCP_INFO: {c}"
    );
    let tcp_bytes = |segs: u64| payload + segs * (ETH + ip + TCP_TS) + (TCP_SYN - TCP_TS);
    assert_eq!(
        (bo, br),
        (tcp_bytes(po), tcp_bytes(pr)),
        "{what}: bytes: {c}"
    );

    // Allowed UDP: every datagram and its echo, exactly.
    let frame = udp_frame(s.udp_client.ip(), UDP_SIZE);
    let n = UDP_COUNT as u64;
    for (k, pol) in [("udp_c", &vec![]), ("udp_s", &allowing)] {
        let (rec, what) = r(k);
        assert_eq!(counts(rec, "packets"), (n, n), "{what}: {rec}");
        assert_eq!(
            counts(rec, "bytes"),
            (n * frame, n * frame),
            "{what}: {rec}"
        );
        assert_eq!(dropped(rec), (0, 0), "{what}: {rec}");
        assert_eq!(rec["verdict"], "allowed", "{what}: {rec}");
        assert!(rec["drop_reason"].is_null(), "{what}: {rec}");
        assert_eq!(rec["end_reason"], "idle", "{what}: {rec}");
        assert_eq!(&policies(rec), pol, "{what}: {rec}");
        assert!(rec["tcp_flags"].is_null(), "{what}: no TCP flags: {rec}");
    }

    // Denied TCP: one SYN left x/a (passed there: x/a is not isolated for
    // egress) and was dropped at y/b.
    let syn = syn_frame(s.tcp.server.ip());
    let (c, what) = r("syn_c");
    let (sv, _) = r("syn_s");
    assert_eq!(c["src"]["port"], sv["src"]["port"], "{what}: {c}\n{sv}");
    assert_eq!(counts(c, "packets"), (1, 0), "{what}: {c}");
    assert_eq!(counts(c, "bytes"), (syn, 0), "{what}: {c}");
    assert_eq!(dropped(c), (0, 0), "{what}: {c}");
    assert_eq!(c["verdict"], "allowed", "{what}: {c}");
    assert_eq!(policies(c), vec![], "{what}: {c}");
    assert_eq!(counts(sv, "packets"), (0, 0), "{what}: {sv}");
    assert_eq!(dropped(sv), (1, syn), "{what}: {sv}");
    assert_eq!(sv["verdict"], "denied", "{what}: {sv}");
    assert_eq!(sv["drop_reason"], "policy_denied", "{what}: {sv}");
    let mut got = policies(sv);
    got.sort();
    assert_eq!(got, isolating, "{what}: {sv}");
    assert!(flags(sv, "orig").contains("SYN"), "{what}: {sv}");

    // Denied UDP: y/a's datagrams passed its egress, were dropped at y/b.
    let frame = udp_frame(s.udp_denied_client.ip(), DENIED_SIZE);
    let n = DENIED_COUNT as u64;
    let (c, what) = r("deny_c");
    let (sv, _) = r("deny_s");
    assert_eq!(counts(c, "packets"), (n, 0), "{what}: {c}");
    assert_eq!(counts(c, "bytes"), (n * frame, 0), "{what}: {c}");
    assert_eq!(c["verdict"], "allowed", "{what}: {c}");
    assert_eq!(policies(c), vec![], "{what}: {c}");
    assert_eq!(counts(sv, "packets"), (0, 0), "{what}: {sv}");
    assert_eq!(dropped(sv), (n, n * frame), "{what}: {sv}");
    assert_eq!(sv["verdict"], "denied", "{what}: {sv}");
    assert_eq!(sv["drop_reason"], "policy_denied", "{what}: {sv}");
    let mut got = policies(sv);
    got.sort();
    assert_eq!(got, isolating, "{what}: {sv}");
}

/// Sends this family's traffic (the servers run in y/b).
fn send(pods: &Pods, v4: bool) -> Sent {
    let yb = pods.yb.ip(v4);
    let tcp = tcp_exchange(&pods.xa, SocketAddr::new(yb, TCP_PORT), TCP_BYTES);
    let udp_client = udp_exchange(&pods.xa, SocketAddr::new(yb, UDP_PORT), UDP_COUNT, UDP_SIZE);
    let attempt = tcp_attempt(
        &pods.xa,
        SocketAddr::new(yb, DENIED_TCP_PORT),
        Duration::from_millis(300),
    );
    assert_eq!(
        attempt,
        Attempt::TimedOut,
        "x/a → y/b:{DENIED_TCP_PORT} must be dropped"
    );
    let (udp_denied_client, answers) = udp_blackhole(
        &pods.ya,
        SocketAddr::new(yb, UDP_PORT),
        DENIED_COUNT,
        DENIED_SIZE,
        Duration::from_millis(300),
    );
    assert_eq!(answers, 0, "y/a → y/b:{UDP_PORT} must be dropped");
    eprintln!(
        "IPv{}: TCP {} → {} ({} segments out, {} in), UDP from {udp_client}, denied UDP from {udp_denied_client}",
        if v4 { 4 } else { 6 },
        tcp.client,
        tcp.server,
        tcp.segs_out,
        tcp.segs_in
    );
    Sent {
        v4,
        tcp,
        udp_client,
        udp_denied_client,
    }
}

/// The IPFIX data records a flow record becomes (see docs/flows.md): the
/// original direction, the reply, the dropped packets; each
/// ((src, sport, dst, dport, proto), (packets, bytes)).
type NfKey = (IpAddr, u16, IpAddr, u16, u8);

fn data_records(r: &Value) -> Vec<(NfKey, (u64, u64))> {
    let ip = |v: &Value| v["ip"].as_str().unwrap().parse::<IpAddr>().unwrap();
    let port = |v: &Value| u16::try_from(v["port"].as_u64().unwrap()).unwrap();
    let proto = match r["protocol"].as_str() {
        Some("TCP") => 6,
        Some("UDP") => 17,
        other => panic!("protocol {other:?}"),
    };
    let (s, d) = (&r["src"], &r["dst"]);
    let orig = (ip(s), port(s), ip(d), port(d), proto);
    let reply = (ip(d), port(d), ip(s), port(s), proto);
    let (po, pr) = counts(r, "packets");
    let (bo, br) = counts(r, "bytes");
    let (dp, db) = dropped(r);
    [(orig, (po, bo)), (reply, (pr, br)), (orig, (dp, db))]
        .into_iter()
        .filter(|(_, (p, _))| *p > 0)
        .collect()
}

/// Point 2: nfcapd received every direction of every record.
fn check_nfcapd(nfcapd: &mut Nfcapd, records: &[&Value]) {
    nfcapd.stop().expect("stop nfcapd");
    let got: Vec<NfRecord> = nfcapd.records().expect("nfdump");
    let mut want: BTreeMap<NfKey, Vec<(u64, u64)>> = BTreeMap::new();
    for r in records {
        for (k, v) in data_records(r) {
            want.entry(k).or_default().push(v);
        }
    }
    let mut have: BTreeMap<NfKey, Vec<(u64, u64)>> = BTreeMap::new();
    for n in &got {
        let k = (n.src, n.sport, n.dst, n.dport, n.proto);
        if want.contains_key(&k) {
            have.entry(k).or_default().push((n.packets, n.bytes));
        }
    }
    for v in want.values_mut().chain(have.values_mut()) {
        v.sort();
    }
    if want != have {
        panic!(
            "nfdump shows other flows than the records:\nwanted {want:#?}\nnfdump {have:#?}\n\
             all nfdump records: {got:#?}\nnfcapd log:\n{}",
            nfcapd.log()
        );
    }
    let n: usize = want.values().map(Vec::len).sum();
    eprintln!(
        "nfdump: {n} data records match ({} decoded in all)",
        got.len()
    );
    // nfdump decodes the standard elements the exporter sends.
    let denied = got
        .iter()
        .find(|n| {
            want.contains_key(&(n.src, n.sport, n.dst, n.dport, n.proto))
                && n.dport == DENIED_TCP_PORT
        })
        .expect("the denied SYN in nfdump");
    eprintln!("nfdump record of a denied SYN: {:?}", denied.raw);
}

/// The value of a single-series Prometheus query (0 when empty).
fn scalar(samples: &[bulkhead_netns_tests::collectors::Sample]) -> f64 {
    samples.iter().map(|(_, v)| v).sum()
}

/// Point 3: Prometheus scraped the drop and kernel counters, and the
/// exporters' counters of `settled` (the accounting once no flow was in
/// flight; the lab is quiet: nothing but the test's traffic makes flows).
///
/// The drop counters must equal the test's denied packets exactly: in
/// this lab nothing else is denied (no probes run; the lab's servers only
/// answer; neighbour discovery and ARP are not judged by policy), and
/// every denied packet is counted once, at y/b's ingress.
fn check_prometheus(prometheus: &Prometheus, denied_packets: u64, packets: u64, settled: &Value) {
    let start = Instant::now();
    let want = denied_packets as f64;
    for expr in [
        r#"sum(bulkhead_drops_total{reason="policy_denied"})"#,
        r#"sum(bulkhead_kernel_drops_total{reason="policy_denied"})"#,
    ] {
        let got = prometheus
            .wait_for(expr, |s| scalar(s) >= want, WAIT)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(
            scalar(&got),
            want,
            "{expr}: every denied packet, no other: {got:?}"
        );
    }
    let by_ns = prometheus
        .query(r#"sum by (namespace) (bulkhead_drops_total{reason="policy_denied"})"#)
        .expect("query");
    assert_eq!(by_ns.len(), 1, "{by_ns:?}");
    assert_eq!(
        by_ns[0].0.get("namespace").map(String::as_str),
        Some("y"),
        "{by_ns:?}"
    );
    let kernel = prometheus
        .wait_for(
            r#"bulkhead_kernel_flow_total{stat="packets_accounted"}"#,
            |s| scalar(s) >= packets as f64,
            WAIT,
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    let created = prometheus
        .query(r#"bulkhead_kernel_flow_total{stat="entries_created"}"#)
        .expect("query");
    assert!(scalar(&created) > 0.0, "{created:?}");
    for name in ["jsonl", "ipfix"] {
        let exported = exporter(settled, name)["exported"].as_u64().unwrap() as f64;
        let expr = format!(r#"bulkhead_flow_records_exported_total{{exporter="{name}"}}"#);
        prometheus
            .wait_for(&expr, |s| scalar(s) == exported, WAIT)
            .unwrap_or_else(|e| {
                panic!(
                    "{name} exported {exported} as of the settled accounting \
                     {settled:#}\n{e:#}"
                )
            });
    }
    let lost = prometheus
        .query("sum(bulkhead_flow_records_lost_total)")
        .expect("query");
    assert_eq!(scalar(&lost), 0.0, "nothing lost: {lost:?}");
    eprintln!(
        "prometheus: drops, kernel drops and kernel flow counters ({kernel:?}) in {:?}",
        start.elapsed()
    );
}

/// Sums an exporter's `lost` map.
fn lost_total(e: &Value) -> u64 {
    e["lost"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
}

/// Polls `/v1/accounting` until the identity holds (no flow in flight)
/// and no exporter has records pending; the accounting.
fn settled_accounting(lab: &Lab) -> Value {
    let start = Instant::now();
    loop {
        let a = accounting(lab);
        let pending = a["exporters"]
            .as_array()
            .is_none_or(|v| v.iter().any(|e| e["pending"] != 0));
        if a["holds"] == true && !pending {
            return a;
        }
        if start.elapsed() >= WAIT {
            panic!(
                "the accounting did not settle (identity, nothing pending) within {WAIT:?}: {a:#}"
            );
        }
        thread::sleep(Duration::from_millis(250));
    }
}

/// Point 4: the identity, stage by stage, and nothing lost.
fn check_accounting(a: &Value) {
    let k = &a["kernel"];
    let n = |v: &Value| {
        v.as_u64()
            .unwrap_or_else(|| panic!("not a number: {v} in {a:#}"))
    };
    let emitted = n(&k["entries_created"]) + n(&k["fallback_sent"]) + n(&k["fallback_lost"]);
    let received = n(&a["received"]["entries_drained"]) + n(&a["received"]["fallback_events"]);
    assert_eq!(emitted, received + n(&k["fallback_lost"]), "{a:#}");
    for stat in ["fallback_lost", "lost_packets", "lost_bytes", "events_lost"] {
        assert_eq!(n(&k[stat]), 0, "kernel {stat}: {a:#}");
    }
    let exporters = a["exporters"].as_array().expect("exporters");
    let names: BTreeSet<&str> = exporters
        .iter()
        .filter_map(|e| e["exporter"].as_str())
        .collect();
    assert!(names.contains("jsonl") && names.contains("ipfix"), "{a:#}");
    for e in exporters {
        assert_eq!(n(&e["submitted"]), n(&a["cache"]["records"]), "{e}");
        assert_eq!(
            n(&e["submitted"]),
            n(&e["exported"]) + lost_total(e) + n(&e["pending"]),
            "{e}"
        );
        assert_eq!(lost_total(e), 0, "nothing lost: {e}");
    }
    assert_eq!(n(&a["subscriber_lost"]), 0, "{a:#}");
}

/// The exporter named `name` in an accounting.
fn exporter<'a>(a: &'a Value, name: &str) -> &'a Value {
    a["exporters"]
        .as_array()
        .and_then(|v| v.iter().find(|e| e["exporter"] == name))
        .unwrap_or_else(|| panic!("no {name} exporter in {a:#}"))
}

/// The flow records of the lab's JSON Lines file.
fn jsonl(lab: &Lab) -> Vec<Value> {
    let text = std::fs::read_to_string(lab.dir().join("flows.jsonl")).unwrap_or_default();
    // The writer may be mid-line: only complete lines.
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// Polls the JSON Lines file until it holds every record of `want`.
fn check_jsonl(lab: &Lab, want: &[&Value]) {
    let start = Instant::now();
    loop {
        let file = jsonl(lab);
        let missing: Vec<&&Value> = want.iter().filter(|w| !file.contains(w)).collect();
        if missing.is_empty() {
            assert!(
                file.iter()
                    .all(|r| r["type"] == "flow" && r["schema"] == "bulkhead.flow/v1"),
                "flows.jsonl holds flow records only"
            );
            return;
        }
        if start.elapsed() >= WAIT {
            panic!("flows.jsonl lacks {missing:#?}\nit has {file:#?}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Whether `r` involves pod `pod` (endpoint, source or destination).
fn involves(r: &Value, pod: &str) -> bool {
    let (ns, name) = pod.split_once('/').unwrap();
    ["endpoint", "src", "dst"]
        .iter()
        .any(|k| r[*k]["namespace"] == ns && r[*k]["pod"] == name)
}

/// The filters of `bulkhead flows` and its text output.
fn check_cli(lab: &Lab, ours: &[&Value]) {
    let denied = flows_json(lab, &["--verdict", "denied"]);
    assert!(
        denied.iter().all(|r| r["verdict"] == "denied"),
        "{denied:#?}"
    );
    for r in ours {
        let listed = denied.contains(r);
        assert_eq!(listed, r["verdict"] == "denied", "--verdict denied and {r}");
    }
    let yb = flows_json(lab, &["--pod", "y/b"]);
    assert!(yb.iter().all(|r| involves(r, "y/b")), "{yb:#?}");
    for r in ours {
        assert!(yb.contains(r), "--pod y/b lacks {r}");
    }
    let xa_udp = flows_json(lab, &["--pod", "x/a", "--protocol", "UDP"]);
    assert!(
        xa_udp
            .iter()
            .all(|r| involves(r, "x/a") && r["protocol"] == "UDP"),
        "{xa_udp:#?}"
    );
    let want = ours
        .iter()
        .filter(|r| involves(r, "x/a") && r["protocol"] == "UDP")
        .count();
    assert_eq!(want, 4, "allowed UDP at x/a and y/b, both families");
    assert_eq!(
        ours.iter().filter(|r| xa_udp.contains(r)).count(),
        want,
        "--pod x/a --protocol UDP"
    );

    // People: one line per record, pods, ports and verdict on it.
    let text = flows_cli(lab, &["--output", "text", "--pod", "y/b"]);
    eprintln!("bulkhead flows --output text --pod y/b (last lines):");
    let lines: Vec<&str> = text.lines().collect();
    for l in lines.iter().rev().take(8).rev() {
        eprintln!("  {l}");
    }
    assert!(
        lines.iter().all(|l| l.contains(" -> ")
            && ["ALLOWED", "DENIED", "REVOKED"]
                .iter()
                .any(|v| l.contains(v))),
        "{text}"
    );
    for r in ours {
        let end = |k: &str| {
            format!(
                "{}/{}:{}",
                r[k]["namespace"].as_str().unwrap(),
                r[k]["pod"].as_str().unwrap(),
                r[k]["port"]
            )
        };
        let (src, dst) = (end("src"), end("dst"));
        let (src, dst) = if r["direction"] == "egress" {
            (format!("{src} (egress)"), dst)
        } else {
            (src, format!("{dst} (ingress)"))
        };
        let verdict = r["verdict"].as_str().unwrap().to_uppercase();
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&src) && l.contains(&dst) && l.contains(&verdict)),
            "no text line with {src} -> {dst} {verdict}:\n{text}"
        );
    }
}

/// Point 5: nfcapd is gone; traffic passes, records are written, the
/// agent is healthy, and the IPFIX exporter counts its failures.
fn check_exporter_failure(lab: &Lab, pods: &Pods, prometheus: &Prometheus, before: &Value) {
    let start = Instant::now();
    let ipfix_before = exporter(before, "ipfix").clone();
    // Two rounds, each recorded before the next: at least two IPFIX
    // messages go to the dead collector (a connected UDP socket learns of
    // the ICMP port unreachable only at the send after).
    for round in 0..2 {
        let yb = pods.yb.ip(true);
        let udp = udp_exchange(&pods.xa, SocketAddr::new(yb, UDP_PORT), UDP_COUNT, UDP_SIZE);
        let tcp = tcp_exchange(&pods.xa, SocketAddr::new(yb, TCP_PORT), TCP_BYTES);
        let xa_ip = pods.xa.ip(true);
        let want = |what: &str, endpoint: &str, direction, protocol, sport: u16, dport| Want {
            what: format!("{what} after nfcapd stopped, round {round} ({direction} at {endpoint})"),
            endpoint: endpoint.to_owned(),
            direction,
            protocol,
            src_pod: pods.xa.name.clone(),
            src: xa_ip,
            sport: Some(sport),
            dst_pod: pods.yb.name.clone(),
            dst: SocketAddr::new(yb, dport),
        };
        let wants = [
            want("UDP", "x/a", "egress", "UDP", udp.port(), UDP_PORT),
            want("UDP", "y/b", "ingress", "UDP", udp.port(), UDP_PORT),
            want("TCP", "x/a", "egress", "TCP", tcp.client.port(), TCP_PORT),
            want("TCP", "y/b", "ingress", "TCP", tcp.client.port(), TCP_PORT),
        ];
        let records = wait_for_records(lab, &wants);
        let got: Vec<&Value> = wants.iter().map(|w| w.one(&records)).collect();
        for r in &got {
            assert_eq!(r["verdict"], "allowed", "{r}");
        }
        check_jsonl(lab, &got);
    }
    let health: Value = serde_json::from_str(&api_get(lab, "/healthz")).expect("health JSON");
    eprintln!("healthz with the collector down: {health}");
    assert_ne!(health["status"], "failing", "{health}");

    // Every record reached the exporter; those sent to the dead collector
    // are counted as lost, not as exported.
    let a = settled_accounting(lab);
    let ipfix = exporter(&a, "ipfix");
    let submitted =
        ipfix["submitted"].as_u64().unwrap() - ipfix_before["submitted"].as_u64().unwrap();
    let exported = ipfix["exported"].as_u64().unwrap() - ipfix_before["exported"].as_u64().unwrap();
    let lost = lost_total(ipfix) - lost_total(&ipfix_before);
    eprintln!(
        "ipfix with the collector down: {submitted} submitted, {exported} exported, {lost} lost: {ipfix}"
    );
    assert!(submitted >= 8, "{ipfix}");
    assert!(
        lost >= 1,
        "IPFIX sends to a collector that is down must be counted as lost; \
         {submitted} records went to 127.0.0.1:{IPFIX_PORT} with nothing listening, \
         counted as {exported} exported and {lost} lost: {ipfix}"
    );
    assert_eq!(
        exporter(&a, "jsonl")["lost"],
        exporter(before, "jsonl")["lost"]
    );
    let expr = r#"sum(bulkhead_flow_records_lost_total{stage="ipfix"})"#;
    prometheus
        .wait_for(expr, |s| scalar(s) >= lost as f64, WAIT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("exporter failure checked in {:?}", start.elapsed());
}

#[test]
fn flows_of_real_traffic_in_every_output() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let before = snapshot();
    let test_start = Instant::now();
    {
        let name = format!("fl{}", std::process::id() % 10_000);
        let lab = Lab::new(&name, &manifests());
        let node = bulkhead_lab::naming::node_netns(&name);
        let (mut nfcapd, prometheus) = up_with_collectors(&lab, &node);

        let all = Pod::all(&lab.state());
        let pod = |n: &str| {
            all.iter()
                .find(|p| p.name == n)
                .unwrap_or_else(|| panic!("{n}"))
                .clone()
        };
        let pods = Pods {
            xa: pod("x/a"),
            ya: pod("y/a"),
            yb: pod("y/b"),
        };
        let mut servers: Vec<(bool, Served, Served)> = [true, false]
            .into_iter()
            .map(|v4| {
                let ip = pods.yb.ip(v4);
                (
                    v4,
                    TcpServer::start(&pods.yb.netns, SocketAddr::new(ip, TCP_PORT)),
                    UdpEcho::start(&pods.yb.netns, SocketAddr::new(ip, UDP_PORT)),
                )
            })
            .collect();

        let sent: Vec<Sent> = [true, false]
            .into_iter()
            .map(|v4| send(&pods, v4))
            .collect();
        let wants: Vec<Want> = sent
            .iter()
            .flat_map(|s| pods.wants(s).into_values())
            .collect();
        let records = wait_for_records(&lab, &wants);

        // 1. The records, the JSON Lines file, the filters, the text.
        for s in &sent {
            check_records(&pods, s, &records);
        }
        let ours: Vec<&Value> = wants.iter().map(|w| w.one(&records)).collect();
        check_jsonl(&lab, &ours);
        check_cli(&lab, &ours);

        // 4. The identity, with no flow in flight.
        let settled = settled_accounting(&lab);
        check_accounting(&settled);

        // 3. Prometheus: every denied packet, nothing else denied.
        let denied_packets: u64 = ours.iter().map(|r| dropped(r).0).sum();
        assert_eq!(denied_packets, 2 * (1 + DENIED_COUNT as u64));
        let packets: u64 = ours
            .iter()
            .map(|r| {
                let (o, p) = counts(r, "packets");
                o + p + dropped(r).0
            })
            .sum();
        check_prometheus(&prometheus, denied_packets, packets, &settled);

        // 2. nfcapd (stopped: its files are complete).
        check_nfcapd(&mut nfcapd, &ours);

        // 5. The collector is gone.
        check_exporter_failure(&lab, &pods, &prometheus, &settled);

        // The servers saw exactly the allowed traffic.
        for (v4, tcp, udp) in &mut servers {
            let rounds = if *v4 { 3 } else { 1 };
            let conns = tcp.stop();
            assert_eq!(
                conns.len(),
                rounds,
                "TCP server IPv{}: {conns:?}",
                if *v4 { 4 } else { 6 }
            );
            assert!(
                conns
                    .iter()
                    .all(|(peer, n)| peer.ip() == pods.xa.ip(*v4) && *n == TCP_BYTES),
                "{conns:?}"
            );
            let got = udp.stop();
            assert_eq!(got.len(), rounds * UDP_COUNT, "UDP echo: {got:?}");
            assert!(
                got.iter()
                    .all(|(peer, n)| peer.ip() == pods.xa.ip(*v4) && *n == UDP_SIZE),
                "{got:?}"
            );
        }
        drop(servers);
        drop(prometheus);
        drop(nfcapd);
    }
    assert_eq!(snapshot(), before, "lab down left something behind");
    eprintln!("whole test: {:?}", test_start.elapsed());
}
