use super::*;

/// A previous result as Debian's `ptp` 1.1.1 prints it.
fn ptp_result() -> Value {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "veth9c2a1f3e", "mac": "de:ad:be:ef:00:01"},
            {"name": "eth0", "mac": "0a:58:0a:f4:00:05", "sandbox": "/run/netns/pod"}
        ],
        "ips": [{"interface": 1, "address": "10.244.0.5/24", "gateway": "10.244.0.1"}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {}
    })
}

#[test]
fn the_attachment_of_a_ptp_result() {
    let a = attachment(&ptp_result(), "eth0").unwrap();
    assert_eq!(a.host_interfaces, ["veth9c2a1f3e"]);
    assert_eq!(a.mac.as_deref(), Some("0a:58:0a:f4:00:05"));
    assert_eq!(a.ips, ["10.244.0.5".parse::<IpAddr>().unwrap()]);
}

#[test]
fn a_bridge_result_lists_every_host_interface_and_0_3_addresses_parse() {
    let prev = serde_json::json!({
        "cniVersion": "0.3.1",
        "interfaces": [
            {"name": "cni0", "mac": "aa:aa:aa:aa:aa:aa"},
            {"name": "veth1", "mac": "bb:bb:bb:bb:bb:bb"},
            {"name": "eth0", "mac": "02:00:00:00:00:07", "sandbox": "/var/run/netns/x"}
        ],
        "ips": [
            {"version": "4", "interface": 2, "address": "10.1.0.7/16"},
            {"version": "6", "interface": 2, "address": "fd00::7/64"},
            {"version": "4", "interface": 0, "address": "10.1.0.1/16"}
        ]
    });
    let a = attachment(&prev, "eth0").unwrap();
    assert_eq!(a.host_interfaces, ["cni0", "veth1"]);
    assert_eq!(a.ips.len(), 2, "the bridge's own address is not the pod's");
}

#[test]
fn a_result_without_addresses_or_host_side_is_refused() {
    let mut prev = ptp_result();
    prev["ips"] = serde_json::json!([]);
    assert_eq!(
        attachment(&prev, "eth0").unwrap_err().code,
        code::INVALID_CONFIG
    );
    let mut prev = ptp_result();
    prev["interfaces"].as_array_mut().unwrap().remove(0);
    assert_eq!(
        attachment(&prev, "eth0").unwrap_err().code,
        code::INVALID_CONFIG
    );
}

#[test]
fn configuration_defaults_and_fields() {
    let conf =
        NetConf::parse(br#"{"cniVersion":"1.0.0","name":"k8s","type":"bulkhead-cni"}"#).unwrap();
    assert_eq!(conf.socket, crate::wire::DEFAULT_SOCKET);
    assert_eq!(conf.timeout(), DEFAULT_TIMEOUT);
    assert_eq!(conf.failure_policy, FailurePolicy::Fail);
    let conf = NetConf::parse(
        br#"{"cniVersion":"0.3.1","name":"k8s","type":"bulkhead-cni","socket":"/s","timeout":"1m 30s","failurePolicy":"ignore"}"#,
    )
    .unwrap();
    assert_eq!(conf.timeout(), Duration::from_secs(90));
    assert_eq!(conf.failure_policy, FailurePolicy::Ignore);
    assert!(!conf.has_check());
    let e = NetConf::parse(br#"{"cniVersion":"0.2.0","name":"k8s"}"#).unwrap_err();
    assert_eq!(e.code, code::INCOMPATIBLE_VERSION);
    let e = NetConf::parse(br#"{"cniVersion":"1.0.0","timeout":"soon"}"#).unwrap_err();
    assert_eq!(e.code, code::DECODE_FAILURE);
    assert!(e.details.contains("soon"), "{e}");
}

#[test]
fn environment_and_pod_arguments() {
    let vars = |name: &str| {
        Some(
            match name {
            "CNI_CONTAINERID" => "abc",
            "CNI_NETNS" => "/run/netns/x",
            "CNI_IFNAME" => "eth0",
            "CNI_ARGS" => "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc",
            _ => return None,
        }
            .to_owned(),
        )
    };
    let env = Env::read(Command::Add, vars).unwrap();
    assert_eq!(env.pod(), Some(("shop", "web-0")));
    let e = Env::read(Command::Add, |n| {
        (n != "CNI_NETNS").then(|| vars(n)).flatten()
    })
    .unwrap_err();
    assert_eq!(e.code, code::INVALID_ENV);
    // DEL may come without a netns (the sandbox is gone).
    Env::read(Command::Del, |n| {
        (n != "CNI_NETNS").then(|| vars(n)).flatten()
    })
    .unwrap();
}

#[test]
fn version_negotiation() {
    let v = version_result(Some("0.4.0")).unwrap();
    assert_eq!(v["cniVersion"], "0.4.0");
    assert_eq!(
        v["supportedVersions"].as_array().unwrap().len(),
        SUPPORTED_VERSIONS.len()
    );
    assert_eq!(version_result(None).unwrap()["cniVersion"], "1.1.0");
    assert_eq!(
        version_result(Some("9.9.9")).unwrap_err().code,
        code::INCOMPATIBLE_VERSION
    );
    let e = CniError::new(code::NOT_ENFORCED, "m", "d").to_json("1.0.0");
    assert_eq!(
        e,
        serde_json::json!({"cniVersion":"1.0.0","code":100,"msg":"m","details":"d"})
    );
}
