//! Byte-level checks of the encoder against RFC 7011, and a small decoder
//! that reads messages the way a collector does (templates first).

use std::collections::HashMap;
use std::net::UdpSocket;

use super::*;
use crate::record::tests_support::sample;
use crate::record::{Dropped, Reason};

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// A decoded data record: (element id, enterprise) → raw value.
type Decoded = HashMap<(u16, u32), Vec<u8>>;

/// Decodes one message with the templates it carries or `known` ones.
fn decode(msg: &[u8], known: &mut HashMap<u16, Vec<Field>>) -> Vec<(u16, Decoded)> {
    assert_eq!(be16(msg, 0), VERSION);
    assert_eq!(be16(msg, 2) as usize, msg.len(), "message length");
    let mut out = Vec::new();
    let mut at = HEADER_LEN;
    while at < msg.len() {
        let (id, len) = (be16(msg, at), be16(msg, at + 2) as usize);
        assert!(len >= 4 && at + len <= msg.len(), "set length");
        assert_eq!(len % 4, 0, "sets are padded to 4 bytes");
        let set = &msg[at + 4..at + len];
        if id == TEMPLATE_SET_ID {
            let mut p = 0;
            while p + 4 <= set.len() {
                let (tid, n) = (be16(set, p), be16(set, p + 2));
                p += 4;
                let mut fields = Vec::new();
                for _ in 0..n {
                    let (ie, flen) = (be16(set, p), be16(set, p + 2));
                    p += 4;
                    if ie & 0x8000 != 0 {
                        fields.push((ie & 0x7fff, flen, be32(set, p)));
                        p += 4;
                    } else {
                        fields.push((ie, flen, 0));
                    }
                }
                known.insert(tid, fields);
            }
            assert_eq!(p, set.len());
        } else {
            let fields = &known[&id];
            let min: usize = fields
                .iter()
                .map(|f| if f.1 == VARIABLE { 1 } else { f.1 as usize })
                .sum();
            let mut p = 0;
            while set.len() - p >= min {
                let mut rec = Decoded::new();
                for &(ie, flen, pen) in fields {
                    let n = if flen == VARIABLE {
                        let l = set[p] as usize;
                        p += 1;
                        if l == 255 {
                            p += 2;
                            be16(set, p - 2) as usize
                        } else {
                            l
                        }
                    } else {
                        flen as usize
                    };
                    rec.insert((ie, pen), set[p..p + n].to_vec());
                    p += n;
                }
                out.push((id, rec));
            }
            assert!(set[p..].iter().all(|b| *b == 0), "padding is zero");
            assert!(set.len() - p < 4);
        }
        at += len;
    }
    out
}

fn num(v: &[u8]) -> u64 {
    v.iter().fold(0, |a, b| a << 8 | *b as u64)
}

#[test]
fn header_and_template_set_bytes() {
    let mut e = Encoder::new(7);
    e.begin(true);
    let msg = e.finish(0x6000_0000).to_vec();
    // Header: version 10, length, export time, sequence 0, domain 7.
    assert_eq!(&msg[..4], &[0, 10, (msg.len() >> 8) as u8, msg.len() as u8]);
    assert_eq!(&msg[4..16], &[0x60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]);
    // Template set: id 2; two templates of 21 fields, 6 of them enterprise
    // (8 bytes each), and two translated ones with 4 more fields, 2 of
    // them enterprise: 4 + 2 * (4 + 15 * 4 + 6 * 8) + 2 * (112 + 2 * 4 +
    // 2 * 8) = 500.
    assert_eq!(be16(&msg, 16), 2);
    assert_eq!(be16(&msg, 18), 500);
    assert_eq!(msg.len(), 16 + 500);
    // First template: id 256, 21 fields, flowStartMilliseconds/8 first.
    assert_eq!(&msg[20..28], &[1, 0, 0, 21, 0, 152, 0, 8]);
    // sourceIPv4Address (8)/4 and destinationIPv4Address (12)/4.
    assert_eq!(&msg[32..40], &[0, 8, 0, 4, 0, 12, 0, 4]);
    // First enterprise element: E bit + 1, length 1, PEN 32473.
    let e1 = 24 + 15 * 4;
    assert_eq!(&msg[e1..e1 + 8], &[0x80, 1, 0, 1, 0, 0, 0x7e, 0xd9]);
    // policyNames: variable length (65535).
    assert_eq!(
        &msg[e1 + 16..e1 + 24],
        &[0x80, 3, 0xff, 0xff, 0, 0, 0x7e, 0xd9]
    );
    // Second template: id 257, IPv6 addresses (27, 28)/16.
    let t2 = 20 + 112;
    assert_eq!(&msg[t2..t2 + 4], &[1, 1, 0, 21]);
    assert_eq!(&msg[t2 + 12..t2 + 20], &[0, 27, 0, 16, 0, 28, 0, 16]);
}

#[test]
fn variable_length_encoding() {
    let mut b = Vec::new();
    put_varlen(&mut b, b"abc");
    assert_eq!(b, [3, b'a', b'b', b'c']);
    let mut b = Vec::new();
    put_varlen(&mut b, &[b'x'; 254]);
    assert_eq!((b[0], b.len()), (254, 255));
    let mut b = Vec::new();
    put_varlen(&mut b, &[b'x'; 300]);
    assert_eq!(&b[..3], &[255, 0x01, 0x2c]);
    assert_eq!(b.len(), 303);
    let mut b = Vec::new();
    put_varlen(&mut b, b"");
    assert_eq!(b, [0]);
}

#[test]
fn data_records_per_direction_bytes() {
    let r = sample(); // TCP 10.0.0.1:40000 -> 2001:db8::1:443: IPv6 template
    let mut v4 = sample();
    v4.dst.ip = "192.0.2.7".parse().unwrap();
    let mut e = Encoder::new(1);
    e.begin(false);
    e.add(&v4);
    let msg = e.finish(1).to_vec();
    // One data set of two records (orig, reply) of 60 fixed bytes and
    // 15 + 5 + 6 + 15 variable: 2 * 101 + 4 = 206, padded to 208.
    assert_eq!(be16(&msg, 16), TEMPLATE_V4);
    assert_eq!(be16(&msg, 18), 208);
    assert_eq!(msg.len(), 16 + 208);
    assert_eq!(&msg[msg.len() - 2..], &[0, 0]);
    let d = &msg[20..];
    assert_eq!(num(&d[0..8]), 1_700_000_000_123); // flowStartMilliseconds
    assert_eq!(num(&d[8..16]), 1_700_000_001_456); // flowEndMilliseconds
    assert_eq!(&d[16..24], &[10, 0, 0, 1, 192, 0, 2, 7]);
    assert_eq!(&d[24..28], &[0x9c, 0x40, 0x01, 0xbb]); // 40000, 443
    assert_eq!(d[28], 6); // TCP
    assert_eq!(&d[29..31], &[0, 0x13]); // FIN SYN ACK
    assert_eq!(num(&d[31..39]), 3);
    assert_eq!(num(&d[39..47]), 300);
    assert_eq!(&d[47..55], &[0, 0, 0, 0, 0, 0, 0, 7]); // in 0, out 7 (leaves the pod)
    assert_eq!(&d[55..60], &[1, FORWARDED, 3, 1, 0]); // egress, forwarded, closed, allowed, no drop
    assert_eq!(d[60], 14);
    assert_eq!(&d[61..75], b"prod/allow-web");
    assert_eq!(&d[75..80], b"\x04prod");
    // The reply: addresses and ports swapped, reply counts, enters the pod.
    let d = &d[101..];
    assert_eq!(&d[16..24], &[192, 0, 2, 7, 10, 0, 0, 1]);
    assert_eq!(&d[24..28], &[0x01, 0xbb, 0x9c, 0x40]);
    assert_eq!(num(&d[31..39]), 2);
    assert_eq!(num(&d[39..47]), 200);
    assert_eq!(&d[47..56], &[0, 0, 0, 7, 0, 0, 0, 0, 0]);

    // Sequence: 2 data records sent; a mixed message opens one set per
    // template.
    assert_eq!(e.sequence(), 2);
    e.clear();
    e.begin(true);
    e.add(&v4);
    e.add(&r);
    let msg = e.finish(1).to_vec();
    assert_eq!(be32(&msg, 8), 2);
    assert_eq!(e.sequence(), 6);
    let mut known = HashMap::new();
    let recs = decode(&msg, &mut known);
    assert_eq!(
        recs.iter().map(|r| r.0).collect::<Vec<_>>(),
        [256, 256, 257, 257]
    );
    let v6 = &recs[2].1;
    assert_eq!(
        v6[&(27, 0)],
        "::ffff:10.0.0.1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets()
    );
    assert_eq!(
        v6[&(28, 0)],
        "2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets()
    );
    assert_eq!(v6[&(ie::ENDPOINT_WORKLOAD, PEN)], b"Deployment/web");
}

#[test]
fn dropped_packets_get_their_own_record() {
    let mut r = sample();
    r.packets.reply = 0;
    r.packets.orig = 0;
    r.dropped = Dropped {
        packets: 4,
        bytes: 240,
    };
    r.drop_reason = Some(Reason(DropReason::PolicyDenied as u8));
    r.verdict = FlowVerdict::Denied;
    let recs: Vec<_> = data_records(&r).collect();
    assert_eq!(recs.len(), 1);
    assert_eq!((recs[0].packets, recs[0].forwarding), (4, DROPPED_ACL_DENY));
    let mut e = Encoder::new(1);
    e.begin(true);
    e.add(&r);
    let msg = e.finish(1).to_vec();
    let d = &decode(&msg, &mut HashMap::new())[0].1;
    assert_eq!(d[&(89, 0)], [129]);
    assert_eq!(d[&(ie::VERDICT, PEN)], [2]);
    assert_eq!(d[&(ie::DROP_REASON, PEN)], [1]);
    assert_eq!(num(&d[&(2, 0)]), 4);
}

/// A connection through a Service: its original-direction and dropped
/// records carry the backend as the post-NAT destination (IANA 226/282 and
/// 228) with the Service and backend pod names; its reply uses the plain
/// template.
#[test]
fn service_records_carry_the_backend_as_post_nat_destination() {
    use crate::record::{Address, Backend, PodInfo, ServiceInfo};
    use std::sync::Arc;
    let db = Arc::new(PodInfo {
        namespace: "prod".into(),
        pod: "db-0".into(),
        workload: None,
        labels: Default::default(),
    });
    let mut r = sample();
    r.dst.ip = "10.96.0.10".parse().unwrap();
    r.dst.port = 80;
    r.dropped = Dropped {
        packets: 1,
        bytes: 60,
    };
    r.service = Some(ServiceInfo {
        namespace: Some("prod".into()),
        name: Some("db".into()),
        ip: r.dst.ip,
        port: 80,
        backend: Some(Backend {
            address: Address {
                ip: "10.0.0.2".parse().unwrap(),
                port: 5432,
                pod: Some(db),
                external: false,
            },
            allowed: true,
        }),
    });
    let mut e = Encoder::new(1);
    e.begin(true);
    e.add(&r);
    let msg = e.finish(1).to_vec();
    assert!(msg.len() <= 16 + 500 + Encoder::size_hint(&r));
    let mut known = HashMap::new();
    let recs = decode(&msg, &mut known);
    let nat = &known[&TEMPLATE_V4_NAT];
    assert_eq!(
        &nat[21..23],
        &[(POST_NAT_DST_V4, 4, 0), (POST_NAPT_DST_PORT, 2, 0)]
    );
    assert_eq!(known[&TEMPLATE_V6_NAT][21], (POST_NAT_DST_V6, 16, 0));
    let ids: Vec<u16> = recs.iter().map(|r| r.0).collect();
    assert_eq!(ids, [TEMPLATE_V4_NAT, TEMPLATE_V4, TEMPLATE_V4_NAT]);
    for (_, d) in [&recs[0], &recs[2]] {
        assert_eq!(d[&(12, 0)], [10, 96, 0, 10]);
        assert_eq!(d[&(POST_NAT_DST_V4, 0)], [10, 0, 0, 2]);
        assert_eq!(num(&d[&(POST_NAPT_DST_PORT, 0)]), 5432);
        assert_eq!(d[&(ie::SERVICE_NAME, PEN)], b"prod/db");
        assert_eq!(d[&(ie::BACKEND_POD, PEN)], b"prod/db-0");
    }
    assert!(!recs[1].1.contains_key(&(POST_NAT_DST_V4, 0)));
    // Without a backend: the plain templates.
    r.service.as_mut().unwrap().backend = None;
    assert!(data_records(&r).all(|d| d.post_nat.is_none()));
}

#[test]
fn exporter_sends_templates_then_data_with_sequence_numbers() {
    let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
    collector
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut cfg = IpfixConfig::new(collector.local_addr().unwrap());
    cfg.max_message = 800;
    let mut x = Box::new(IpfixExporter::start(cfg).unwrap());
    let mut v4 = sample();
    v4.dst.ip = "192.0.2.7".parse().unwrap();
    let r = Arc::new(v4);
    for _ in 0..5 {
        x.export(&r);
    }
    x.flush();
    let s = x.finish();
    assert_eq!((s.submitted, s.exported, s.pending), (5, 5, 0));
    let mut known = HashMap::new();
    let mut buf = [0u8; 65536];
    let mut seqs = Vec::new();
    let mut records = 0;
    while records < 10 {
        let n = collector.recv(&mut buf).unwrap();
        let msg = &buf[..n];
        assert!(n <= 800, "max_message respected: {n}");
        seqs.push(be32(msg, 8));
        let recs = decode(msg, &mut known);
        for (_, d) in &recs {
            let orig = d[&(8, 0)] == [10, 0, 0, 1];
            assert_eq!(
                d[&(12, 0)],
                if orig { [192, 0, 2, 7] } else { [10, 0, 0, 1] }
            );
            assert_eq!(num(&d[&(2, 0)]), if orig { 3 } else { 2 });
        }
        records += recs.len() as u32;
    }
    assert!(known.contains_key(&TEMPLATE_V4) && known.contains_key(&TEMPLATE_V6));
    // Each message's sequence number counts the data records before it.
    assert_eq!(seqs[0], 0);
    assert!(seqs.windows(2).all(|w| w[1] > w[0]), "{seqs:?}");
    assert_eq!(records, 10);
}
