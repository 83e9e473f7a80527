use super::*;
use crate::model::{Origin, Workload};

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
    };
    plan.assign(&mut pods).unwrap();
    assert_eq!(pods[0].ips, vec!["192.168.0.2".parse::<IpAddr>().unwrap()]);
}

#[test]
fn exhaustion_and_duplicates_are_errors() {
    let plan = AddressPlan {
        cidrs: vec!["192.168.0.0/30".parse().unwrap()],
        ignore_status: false,
    };
    let mut pods = vec![pod("a", "p1", &[]), pod("a", "p2", &[])];
    assert!(matches!(
        plan.assign(&mut pods),
        Err(AddressingError::Exhausted { .. })
    ));
    let mut dup = vec![pod("a", "p1", &["1.1.1.1"]), pod("a", "p2", &["1.1.1.1"])];
    assert!(matches!(
        AddressPlan::default().assign(&mut dup),
        Err(AddressingError::DuplicateAddress { .. })
    ));
    let two_v4 = AddressPlan {
        cidrs: vec!["10.0.0.0/8".parse().unwrap(), "11.0.0.0/8".parse().unwrap()],
        ignore_status: false,
    };
    assert!(matches!(
        two_v4.assign(&mut []),
        Err(AddressingError::TwoCidrsOfOneFamily { .. })
    ));
}
