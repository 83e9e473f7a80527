//! The JSON form of records.
use super::tests_support::sample;
use super::*;

#[test]
fn json_form_is_the_documented_one() {
    let v = serde_json::to_value(sample()).unwrap();
    assert_eq!(v["schema"], "bulkhead.flow/v1");
    assert_eq!(v["type"], "flow");
    assert!(v.get("event").is_none());
    assert_eq!(v["start"], "2023-11-14T22:13:20.123Z");
    assert_eq!(v["end_reason"], "closed");
    assert_eq!(v["endpoint"]["workload"], "Deployment/web");
    assert_eq!(v["src"]["namespace"], "prod");
    assert_eq!(v["src"]["labels"]["app"], "web");
    assert!(v["src"].get("external").is_none());
    assert_eq!(v["dst"]["external"], true);
    assert_eq!(v["dst"]["ip"], "2001:db8::1");
    assert_eq!(v["protocol"], "TCP");
    assert_eq!(v["packets"]["orig"], 3);
    assert_eq!(
        v["tcp_flags"]["orig"],
        serde_json::json!(["FIN", "SYN", "ACK"])
    );
    assert_eq!(v["verdict"], "allowed");
    assert!(v["drop_reason"].is_null());
    assert_eq!(v["policies"][0]["name"], "prod/allow-web");
    assert_eq!(v["policies"][0]["rule"], 0);
}

#[test]
fn round_trips() {
    let r = sample();
    let text = serde_json::to_string(&r).unwrap();
    let back: FlowRecord = serde_json::from_str(&text).unwrap();
    assert_eq!(back, r);
    let mut odd = sample();
    odd.protocol = IpProtocol(47);
    odd.drop_reason = Some(Reason(1));
    odd.endpoint = None;
    let text = serde_json::to_string(&odd).unwrap();
    assert!(text.contains("\"protocol\":47"));
    assert!(text.contains("\"drop_reason\":\"policy_denied\""));
    assert_eq!(serde_json::from_str::<FlowRecord>(&text).unwrap(), odd);
}

#[test]
fn rejects_other_schema() {
    let text = serde_json::to_string(&sample())
        .unwrap()
        .replace("bulkhead.flow/v1", "bulkhead.flow/v2");
    assert!(serde_json::from_str::<FlowRecord>(&text).is_err());
}

#[test]
fn verdicts() {
    assert_eq!(FlowVerdict::of(5, 0, 0), FlowVerdict::Allowed);
    assert_eq!(FlowVerdict::of(0, 1, 1), FlowVerdict::Denied);
    assert_eq!(FlowVerdict::of(0, 1, 2), FlowVerdict::Denied);
    assert_eq!(FlowVerdict::of(5, 1, 2), FlowVerdict::Allowed);
    assert_eq!(FlowVerdict::of(5, 1, 3), FlowVerdict::Revoked);
}

#[test]
fn timestamps_from_monotonic() {
    assert_eq!(
        Timestamp::from_monotonic(5_000_000_000, 1_000_000_000_000_000_000).0,
        1_000_000_005_000
    );
    assert_eq!(Timestamp::from_monotonic(1, -10).0, 0);
}

#[test]
fn protocol_and_reason_names() {
    assert_eq!(IpProtocol::parse("icmpv6"), Some(IpProtocol(58)));
    assert_eq!(IpProtocol::parse("47"), Some(IpProtocol(47)));
    assert_eq!(IpProtocol::parse("gre"), None);
    assert_eq!(Reason(3).to_string(), "policy_revoked");
    assert_eq!(Reason(200).to_string(), "reason_200");
    assert_eq!(Reason::parse("reason_200"), Some(Reason(200)));
    assert_eq!(
        ip_of(Ipv6Addr::from([0, 0, 0, 0, 0, 0xffff, 0x0a00, 1]).octets()).to_string(),
        "10.0.0.1"
    );
}
