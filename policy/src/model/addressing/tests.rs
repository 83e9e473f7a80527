use super::*;
use crate::model::{AddressClaim, Origin, Workload};

fn pod(ns: &str, name: &str, ips: &[&str]) -> Pod {
    Pod {
        namespace: ns.into(),
        name: name.into(),
        source: Workload {
            kind: "Pod".into(),
            name: name.into(),
        },
        owner: None,
        labels: Default::default(),
        ports: vec![],
        ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
        claim: Default::default(),
        node: None,
        off_network: None,
        origin: Origin::default(),
    }
}

#[test]
fn assigns_in_order_skipping_taken_and_gateway() {
    let mut pods = vec![
        pod("a", "p1", &[]),
        pod("a", "p2", &["10.244.0.3"]),
        pod("b", "p3", &[]),
    ];
    AddressPlan::default().assign(&mut pods).unwrap();
    assert_eq!(
        pods[0].ips,
        vec![
            "10.244.0.2".parse::<IpAddr>().unwrap(),
            "fd00:10:244::2".parse().unwrap()
        ]
    );
    assert_eq!(pods[1].ips, vec!["10.244.0.3".parse::<IpAddr>().unwrap()]);
    assert_eq!(pods[2].ips[0], "10.244.0.4".parse::<IpAddr>().unwrap());
    assert_eq!(pods[2].ips[1], "fd00:10:244::3".parse::<IpAddr>().unwrap());
}

#[test]
fn ignore_status_reassigns_everything() {
    let mut pods = vec![pod("a", "p1", &["1.2.3.4"])];
    let plan = AddressPlan {
        cidrs: vec!["192.168.0.0/30".parse().unwrap()],
        ignore_status: true,
        ..AddressPlan::default()
    };
    plan.assign(&mut pods).unwrap();
    assert_eq!(pods[0].ips, vec!["192.168.0.2".parse::<IpAddr>().unwrap()]);
}

#[test]
fn exhaustion_and_two_cidrs_of_a_family_are_errors() {
    let plan = AddressPlan {
        cidrs: vec!["192.168.0.0/30".parse().unwrap()],
        ignore_status: false,
        ..AddressPlan::default()
    };
    let mut pods = vec![pod("a", "p1", &[]), pod("a", "p2", &[])];
    assert!(matches!(
        plan.assign(&mut pods),
        Err(AddressingError::Exhausted { .. })
    ));
    let two_v4 = AddressPlan {
        cidrs: vec!["10.0.0.0/8".parse().unwrap(), "11.0.0.0/8".parse().unwrap()],
        ignore_status: false,
        ..AddressPlan::default()
    };
    assert!(matches!(
        two_v4.assign(&mut []),
        Err(AddressingError::TwoCidrsOfOneFamily { .. })
    ));
}

#[test]
fn a_contested_address_goes_to_the_running_most_recently_started_pod() {
    let claim = |running, started| AddressClaim {
        running,
        started_unix: started,
    };
    let contested: IpAddr = "10.244.9.9".parse().unwrap();
    // (pods with their claims, who keeps the address)
    let cases = [
        ([claim(false, Some(5)), claim(true, Some(1))], "a/p2"),
        ([claim(true, Some(1)), claim(true, Some(5))], "a/p2"),
        ([claim(true, Some(5)), claim(true, None)], "a/p1"),
        ([claim(true, Some(5)), claim(true, Some(5))], "a/p1"),
    ];
    for (claims, keeper) in cases {
        let mut pods = vec![
            pod("a", "p1", &["10.244.9.9", "fd00::9"]),
            pod("a", "p2", &["10.244.9.9"]),
        ];
        pods[0].claim = claims[0];
        pods[1].claim = claims[1];
        let conflicts = AddressPlan::default().assign(&mut pods).unwrap();
        assert_eq!(conflicts.len(), 1, "{claims:?}");
        assert_eq!(conflicts[0].kept_by, keeper, "{claims:?}");
        assert_eq!(conflicts[0].addr, contested);
        let (winner, loser) = if keeper == "a/p1" { (0, 1) } else { (1, 0) };
        assert!(pods[winner].ips.contains(&contested));
        assert!(!pods[loser].ips.contains(&contested));
        // The loser is not given a new address from the CIDRs.
        assert!(pods[loser].ips.iter().all(|ip| {
            !"10.244.0.0/16".parse::<IpNetwork>().unwrap().contains(*ip) || *ip == contested
        }));
    }
}

fn service(name: &str, kind: crate::model::ServiceType, ips: &[&str]) -> crate::model::Service {
    crate::model::Service {
        namespace: "a".into(),
        name: name.into(),
        kind,
        cluster_ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
        ports: vec![crate::model::ServicePort {
            name: None,
            protocol: crate::model::Protocol::Tcp,
            port: 80,
            target_port: crate::model::TargetPort::Number(80),
            node_port: None,
        }],
        ..Default::default()
    }
}

#[test]
fn services_get_addresses_and_node_ports_only_from_a_plan_that_has_them() {
    use crate::model::{IpFamily, ServiceType};
    let mut services = vec![
        service("np", ServiceType::NodePort, &[]),
        service("set", ServiceType::ClusterIp, &["10.96.0.2"]),
    ];
    let api = AddressPlan {
        cidrs: vec![],
        ignore_status: false,
        service_cidrs: vec![],
        node_ports: None,
    };
    let mut untouched = services.clone();
    assert!(api.assign_services(&mut untouched).unwrap().is_empty());
    services[1].ip_families = vec![IpFamily::V4];
    assert_eq!(
        untouched, services,
        "nothing given out; families of the addresses"
    );
    AddressPlan::default()
        .assign_services(&mut services)
        .unwrap();
    assert_eq!(
        services[0].cluster_ips,
        vec!["10.96.0.3".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(services[0].ip_families, [IpFamily::V4]);
    assert_eq!(services[0].ports[0].node_port, Some(30000));
    assert_eq!(services[1].ip_families, [IpFamily::V4]);
    let two_v6 = AddressPlan {
        service_cidrs: vec!["fd00::/112".parse().unwrap(), "fd01::/112".parse().unwrap()],
        ..AddressPlan::default()
    };
    assert!(matches!(
        two_v6.assign_services(&mut []),
        Err(AddressingError::TwoServiceCidrsOfOneFamily { .. })
    ));
}
