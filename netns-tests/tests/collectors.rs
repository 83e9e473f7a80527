//! The real collectors of the flow-export tests work: `nfcapd` decodes a
//! hand-made IPFIX message, and `prometheus` scrapes a static `/metrics`.
//! Each test runs in its own network namespace.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{IpAddr, Ipv4Addr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bulkhead_netns_tests::collectors::{
    Nfcapd, PROMETHEUS_JOB, Prometheus, free_udp_port, in_netns,
};
use bulkhead_netns_tests::privileged;

/// A network namespace with `lo` up, deleted on drop (its name in `.0`).
struct Netns(String, #[allow(dead_code)] bulkhead_netkit::Netns);

impl Netns {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "bhcol-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        // `recreate`: a leftover of an earlier process with the same pid goes.
        let ns = bulkhead_netkit::Netns::recreate(&name).expect("a namespace");
        ns.netlink().unwrap().set_up("lo").unwrap();
        Self(name, ns)
    }
}

/// Information elements (RFC 7012 numbers and lengths) of the test template.
const FIELDS: &[(u16, u16)] = &[
    (8, 4),   // sourceIPv4Address
    (12, 4),  // destinationIPv4Address
    (7, 2),   // sourceTransportPort
    (11, 2),  // destinationTransportPort
    (4, 1),   // protocolIdentifier
    (1, 8),   // octetDeltaCount
    (2, 8),   // packetDeltaCount
    (152, 8), // flowStartMilliseconds
    (153, 8), // flowEndMilliseconds
];

/// An enterprise-specific element appended to the template (enterprise bit
/// set, element 1 of PEN 32473, the documentation number of RFC 5612), as
/// Bulkhead's exporter may send: nfcapd must skip it and still decode.
const ENTERPRISE_FIELD: (u16, u16, u32) = (0x8000 | 1, 4, 32473);

const TEMPLATE_ID: u16 = 256;

/// One flow of the test message.
struct Flow {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    proto: u8,
    bytes: u64,
    packets: u64,
    start_ms: u64,
    end_ms: u64,
}

/// An IPFIX message (RFC 7011): header, a template set with the template,
/// and a data set with one record per flow.
fn ipfix_message(export_secs: u32, sequence: u32, domain: u32, flows: &[Flow]) -> Vec<u8> {
    let mut template = Vec::new();
    template.extend(TEMPLATE_ID.to_be_bytes());
    template.extend(u16::try_from(FIELDS.len() + 1).unwrap().to_be_bytes());
    for (id, len) in FIELDS {
        template.extend(id.to_be_bytes());
        template.extend(len.to_be_bytes());
    }
    let (id, len, pen) = ENTERPRISE_FIELD;
    template.extend(id.to_be_bytes());
    template.extend(len.to_be_bytes());
    template.extend(pen.to_be_bytes());

    let mut records = Vec::new();
    for f in flows {
        records.extend(f.src.octets());
        records.extend(f.dst.octets());
        records.extend(f.sport.to_be_bytes());
        records.extend(f.dport.to_be_bytes());
        records.push(f.proto);
        records.extend(f.bytes.to_be_bytes());
        records.extend(f.packets.to_be_bytes());
        records.extend(f.start_ms.to_be_bytes());
        records.extend(f.end_ms.to_be_bytes());
        records.extend(0xdead_beef_u32.to_be_bytes());
    }

    let set = |set_id: u16, body: &[u8]| {
        let mut s = Vec::new();
        s.extend(set_id.to_be_bytes());
        s.extend(u16::try_from(4 + body.len()).unwrap().to_be_bytes());
        s.extend(body);
        s
    };
    let mut body = set(2, &template);
    body.extend(set(TEMPLATE_ID, &records));

    let mut msg = Vec::new();
    msg.extend(10u16.to_be_bytes()); // version
    msg.extend(u16::try_from(16 + body.len()).unwrap().to_be_bytes());
    msg.extend(export_secs.to_be_bytes());
    msg.extend(sequence.to_be_bytes());
    msg.extend(domain.to_be_bytes());
    msg.extend(body);
    msg
}

#[test]
fn nfcapd_decodes_a_handmade_ipfix_message() {
    if !privileged() {
        return;
    }
    let ns = Netns::new();
    let port = free_udp_port(&ns.0).expect("free port");
    let mut nfcapd = Nfcapd::start(&ns.0, port).expect("start nfcapd");

    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let now_ms = u64::try_from(now.as_millis()).unwrap();
    let flows = [
        Flow {
            src: Ipv4Addr::new(10, 1, 2, 3),
            dst: Ipv4Addr::new(10, 4, 5, 6),
            sport: 40000,
            dport: 8080,
            proto: 6,
            bytes: 1234,
            packets: 5,
            start_ms: now_ms - 2_250,
            end_ms: now_ms - 1_125,
        },
        Flow {
            src: Ipv4Addr::new(10, 4, 5, 6),
            dst: Ipv4Addr::new(10, 1, 2, 3),
            sport: 53,
            dport: 33333,
            proto: 17,
            bytes: 80,
            packets: 1,
            start_ms: now_ms - 500,
            end_ms: now_ms - 500,
        },
    ];
    let msg = ipfix_message(u32::try_from(now.as_secs()).unwrap(), 0, 42, &flows);
    let socket = in_netns(&ns.0, || UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)))
        .unwrap()
        .expect("bind UDP in the namespace");
    socket.send_to(&msg, nfcapd.addr()).expect("send IPFIX");

    // Readable without stopping, once nfcapd rotates its file (2 s).
    let live = nfcapd
        .wait_for_records(|r| r.len() == flows.len(), Duration::from_secs(10))
        .expect("records after rotation");

    nfcapd.stop().expect("stop nfcapd");
    let records = nfcapd.records().expect("nfdump");
    assert_eq!(records, live, "stopping adds nothing, loses nothing");
    eprintln!("nfdump fields: {:?}", records[0].raw.keys());
    // nfcapd logs counters per rotation: "... Sequence Errors: 0, Bad Packets: 0".
    let log = nfcapd.log();
    for counter in ["Sequence Errors: ", "Bad Packets: "] {
        let values: Vec<&str> = log
            .split(counter)
            .skip(1)
            .map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next().unwrap())
            .collect();
        assert!(
            !values.is_empty(),
            "no {counter:?} in the nfcapd log:\n{log}"
        );
        assert!(
            values.iter().all(|v| *v == "0"),
            "{counter:?} not 0:\n{log}"
        );
    }

    assert_eq!(records.len(), flows.len(), "{records:#?}");
    for f in &flows {
        let r = records
            .iter()
            .find(|r| r.sport == f.sport)
            .unwrap_or_else(|| panic!("no record from port {}: {records:#?}", f.sport));
        assert_eq!(r.src, IpAddr::V4(f.src));
        assert_eq!(r.dst, IpAddr::V4(f.dst));
        assert_eq!(r.dport, f.dport);
        assert_eq!(r.proto, f.proto);
        assert_eq!(r.bytes, f.bytes);
        assert_eq!(r.packets, f.packets);
        assert_eq!(r.first, UNIX_EPOCH + Duration::from_millis(f.start_ms));
        assert_eq!(r.last, UNIX_EPOCH + Duration::from_millis(f.end_ms));
        assert_eq!(r.raw["ip4_router"], "127.0.0.1", "the exporter's address");
    }
}

/// Serves `body` as `/metrics` on a listener bound inside `netns` until
/// `stop` is set; returns the `host:port`.
fn serve_metrics(netns: &str, body: &'static str, stop: Arc<AtomicBool>) -> String {
    let listener = in_netns(netns, || TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .unwrap()
        .expect("bind /metrics in the namespace");
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok((stream, _)) = listener.accept() else {
                thread::sleep(Duration::from_millis(20));
                continue;
            };
            stream.set_nonblocking(false).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            // The request line and headers, up to the blank line.
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if line == "\r\n" || line == "\n" {
                    break;
                }
                line.clear();
            }
            let _ = write!(
                &stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

#[test]
fn prometheus_scrapes_a_static_metrics_endpoint() {
    if !privileged() {
        return;
    }
    let ns = Netns::new();
    let stop = Arc::new(AtomicBool::new(false));
    let target = serve_metrics(
        &ns.0,
        "# HELP test_drops_total Packets dropped.\n\
         # TYPE test_drops_total counter\n\
         test_drops_total{reason=\"policy_denied\"} 7\n",
        stop.clone(),
    );
    let prometheus =
        Prometheus::start(&ns.0, &[&target], Duration::from_secs(1)).expect("start prometheus");

    let samples = prometheus
        .wait_for(
            "test_drops_total",
            |s| !s.is_empty(),
            Duration::from_secs(20),
        )
        .expect("scraped");
    stop.store(true, Ordering::Relaxed);
    assert_eq!(samples.len(), 1, "{samples:?}");
    let (labels, value) = &samples[0];
    assert_eq!(*value, 7.0);
    assert_eq!(labels["reason"], "policy_denied");
    assert_eq!(labels["job"], PROMETHEUS_JOB);
    assert_eq!(labels["instance"], target);
    let up = prometheus.query("up").expect("query up");
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].1, 1.0, "{up:?}");
}

/// Bulkhead's own IPFIX exporter to nfcapd: a connection through a
/// Service (client to ClusterIP 10.96.0.10:80, translated to the backend
/// 10.0.0.2:5432) reaches the collector with the backend as the standard
/// post-NAT destination (postNATDestinationIPv4Address 226,
/// postNAPTDestinationTransportPort 228), which nfdump reads as its NAT
/// translation fields.
#[test]
fn nfcapd_reads_the_backend_of_a_service_connection_as_post_nat_destination() {
    use bulkhead_flows::export::Exporter as _;
    use bulkhead_flows::export::ipfix::{IpfixConfig, IpfixExporter};
    use bulkhead_flows::record::{Address, Backend, PodInfo, ServiceInfo, Timestamp};
    if !privileged() {
        return;
    }
    let ns = Netns::new();
    let port = free_udp_port(&ns.0).expect("free port");
    let mut nfcapd = Nfcapd::start(&ns.0, port).expect("start nfcapd");

    let now_ms = u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let mut r = bulkhead_testkit::flow_record();
    r.start = Timestamp(now_ms - 2_000);
    r.end = Timestamp(now_ms - 1_000);
    let frontend: IpAddr = "10.96.0.10".parse().unwrap();
    r.dst = Address {
        ip: frontend,
        port: 80,
        pod: None,
        external: true,
    };
    r.service = Some(ServiceInfo {
        namespace: Some("prod".into()),
        name: Some("db".into()),
        ip: frontend,
        port: 80,
        backend: Some(Backend {
            address: Address {
                ip: "10.0.0.2".parse().unwrap(),
                port: 5432,
                pod: Some(Arc::new(PodInfo {
                    namespace: "prod".into(),
                    pod: "db-0".into(),
                    workload: None,
                    labels: Default::default(),
                })),
                external: false,
            },
            allowed: true,
        }),
    });
    let mut exporter = in_netns(&ns.0, || {
        IpfixExporter::start(IpfixConfig::new(nfcapd.addr()))
    })
    .unwrap()
    .expect("IPFIX exporter in the namespace");
    exporter.export(&Arc::new(r));
    exporter.flush();
    let stats = Box::new(exporter).finish();
    assert!(
        stats.exported == 1 && stats.lost.values().all(|n| *n == 0),
        "{stats:?}"
    );

    // The original direction and the reply.
    let records = nfcapd
        .wait_for_records(|r| r.len() == 2, Duration::from_secs(10))
        .expect("records after rotation");
    nfcapd.stop().expect("stop nfcapd");
    let orig = records
        .iter()
        .find(|r| r.dport == 80)
        .unwrap_or_else(|| panic!("no original direction: {records:#?}"));
    assert_eq!(orig.dst, frontend);
    // nfdump 1.7.1 prints the port as a string.
    let field = |k: &str| {
        orig.raw
            .get(k)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
    };
    assert_eq!(
        field("dst4_xlt_ip").as_deref(),
        Some("10.0.0.2"),
        "{:#?}",
        orig.raw
    );
    assert_eq!(
        field("dst_xlt_port").as_deref(),
        Some("5432"),
        "{:#?}",
        orig.raw
    );
    // The reply names no translation.
    let reply = records.iter().find(|r| r.sport == 80).expect("the reply");
    assert_eq!(reply.raw.get("dst4_xlt_ip"), None, "{:#?}", reply.raw);
}
