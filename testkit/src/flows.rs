//! A sample flow record, for tests of what consumes records (the same
//! record as the flow pipeline's own unit tests use).

use std::sync::Arc;

use bulkhead_common::PROTO_TCP;
use bulkhead_flows::record::{
    Address, Counts, Dropped, EndReason, FlowDirection, FlowRecord, FlowVerdict, IpProtocol,
    PodInfo, PolicyRef, RecordKind, Schema, TcpFlags, TcpFlagsPair, Timestamp,
};

/// A TCP flow from prod/web-1 to an external address.
pub fn flow_record() -> FlowRecord {
    let web = Arc::new(PodInfo {
        namespace: "prod".into(),
        pod: "web-1".into(),
        workload: Some("Deployment/web".into()),
        labels: [("app".to_string(), "web".to_string())].into(),
    });
    FlowRecord {
        schema: Schema,
        kind: RecordKind::Flow,
        event: None,
        node: "node-a".into(),
        start: Timestamp(1_700_000_000_123),
        end: Timestamp(1_700_000_001_456),
        end_reason: Some(EndReason::Closed),
        ifindex: 7,
        endpoint: Some(web.clone()),
        direction: FlowDirection::Egress,
        src: Address {
            ip: "10.0.0.1".parse().unwrap(),
            port: 40000,
            pod: Some(web),
            external: false,
        },
        dst: Address {
            ip: "2001:db8::1".parse().unwrap(),
            port: 443,
            pod: None,
            external: true,
        },
        service: None,
        protocol: IpProtocol(PROTO_TCP),
        packets: Counts { orig: 3, reply: 2 },
        bytes: Counts {
            orig: 300,
            reply: 200,
        },
        dropped: Dropped::default(),
        tcp_flags: Some(TcpFlagsPair {
            orig: TcpFlags(0x13),
            reply: TcpFlags(0x12),
        }),
        verdict: FlowVerdict::Allowed,
        drop_reason: None,
        policies: vec![PolicyRef {
            name: "prod/allow-web".into(),
            rule: Some(0),
            ..Default::default()
        }]
        .into(),
        revision: 4,
        audit: None,
    }
}
