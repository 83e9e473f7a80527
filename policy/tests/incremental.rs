//! The incremental compiler against the full compile: on random models and
//! random changes, the image kept incrementally equals the full compile's
//! after every change, and the fast path's writes turn the image before into it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use bulkhead_policy::model::{Direction, PortMatch, PortSpec, Protocol, Rule};
use bulkhead_testkit::{Rng, random_model, random_modes, random_tiered_model};

use bulkhead_policy::compile::compile_on_node;
use bulkhead_policy::compile::image::NodeImage;
use bulkhead_policy::compile::incremental::{
    Change, Incremental, LocalPod, Outcome, Stats, full_image,
};

/// The full compile's image of the incremental state's model.
fn reference(inc: &Incremental) -> NodeImage {
    let compiled = compile_on_node(inc.model(), inc.node_ips());
    full_image(inc.model(), &compiled, inc.local())
}

/// A fresh address near `a` (same /24 or /120 most of the time, so it
/// often shares the ipBlocks of `a`), numbered by `k`.
fn near(a: IpAddr, k: u8) -> IpAddr {
    match a {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            IpAddr::from([o[0], o[1], o[2], 100 + k])
        }
        IpAddr::V6(v6) => {
            let mut s = v6.segments();
            s[7] = 0x100 + u16::from(k);
            IpAddr::from(s)
        }
    }
}

/// One random change: a replica of a pod arriving, a pod relabelled like
/// another, a pod deleted, a pod with random labels, or the local set
/// changing.
fn random_change(r: &mut Rng, inc: &mut Incremental, k: &mut u8) -> Outcome {
    let pods = inc.model().pods.clone();
    if pods.is_empty() {
        return inc.apply(Change::Model(inc.model().clone()));
    }
    let template = r.pick(&pods).clone();
    *k += 1;
    if r.chance(40) && !inc.model().policies.is_empty() {
        return random_policy_change(r, inc);
    }
    match r.below(5) {
        0 | 1 => {
            let mut pod = template;
            pod.name = format!("r{k}");
            pod.ips = pod.ips.iter().map(|&a| near(a, *k)).collect();
            inc.apply(Change::PodUpsert(pod))
        }
        2 => {
            let mut pod = r.pick(&pods).clone();
            pod.labels = template.labels.clone();
            inc.apply(Change::PodUpsert(pod))
        }
        3 => inc.apply(Change::PodDelete {
            namespace: template.namespace.clone(),
            name: template.name.clone(),
        }),
        _ => {
            let mut local = inc.local().clone();
            let key = template.key();
            if local.remove(&key).is_none() {
                let mac = r.chance(50).then_some([2, 0, 0, 0, 0, *k]);
                local.insert(
                    key,
                    LocalPod {
                        ifindex: 100 + u32::from(*k),
                        mac,
                    },
                );
            }
            inc.set_local(local)
        }
    }
}

/// A policy changed: a rule of some policy appended to it (peers and ports
/// the model uses already: the fast path's case), its last rule dropped, a
/// rule's ports moved, or the whole policy deleted.
fn random_policy_change(r: &mut Rng, inc: &mut Incremental) -> Outcome {
    let policies = inc.model().policies.clone();
    let mut p = r.pick(&policies).clone();
    let d = *r.pick(&Direction::ALL);
    let donors: Vec<Rule> = policies
        .iter()
        .flat_map(|q| q.rules(d).unwrap_or_default().to_vec())
        .collect();
    let rules = match d {
        Direction::Ingress => &mut p.ingress,
        Direction::Egress => &mut p.egress,
    };
    match r.below(4) {
        0 if !donors.is_empty() => {
            if let Some(rules) = rules {
                rules.push(r.pick(&donors).clone());
            }
        }
        1 => {
            if let Some(rules) = rules {
                rules.pop();
            }
        }
        2 => {
            let port = 70 + r.below(30) as u16;
            if let Some(rule) = rules.as_mut().and_then(|rs| rs.first_mut()) {
                rule.ports = Some(vec![PortSpec {
                    protocol: *r.pick(&[Protocol::Tcp, Protocol::Udp]),
                    port: PortMatch::Range(port, port + r.below(3) as u16),
                }]);
            }
        }
        _ => {
            return inc.apply(Change::PolicyDelete {
                namespace: p.namespace,
                name: p.name,
            });
        }
    }
    inc.apply(Change::PolicyUpsert(p))
}

#[test]
fn incremental_image_equals_the_full_compile_after_every_change() {
    let mut totals = Stats::default();
    for seed in 0..150 {
        let mut r = Rng(seed);
        // Half the models have cluster-admin policies (tiered tables,
        // which policy changes do not take the fast path into).
        let mut m = if seed % 2 == 0 {
            random_model(&mut r)
        } else {
            random_tiered_model(&mut r)
        };
        random_modes(&mut r, &mut m);
        let local: BTreeMap<String, LocalPod> = m
            .pods
            .iter()
            .enumerate()
            .filter(|_| r.chance(50))
            .map(|(i, p)| {
                let l = LocalPod {
                    ifindex: 10 + i as u32,
                    mac: None,
                };
                (p.key(), l)
            })
            .collect();
        let node_ips = m.node_ips.clone();
        let mut inc = Incremental::new(m, node_ips, local);
        let mut k = 0u8;
        for step in 0..25 {
            let before = inc.image().clone();
            let outcome = random_change(&mut r, &mut inc, &mut k);
            let want = reference(&inc);
            if *inc.image() != want && std::env::var("INC_DEBUG").is_ok() {
                let got = inc.image();
                let ids: Vec<_> = got
                    .identities
                    .iter()
                    .filter(|(k, v)| want.identities.get(*k) != Some(*v))
                    .collect();
                let ids2: Vec<_> = want
                    .identities
                    .iter()
                    .filter(|(k, v)| got.identities.get(*k) != Some(*v))
                    .collect();
                let pol = got
                    .policy
                    .iter()
                    .filter(|(k, v)| want.policy.get(*k) != Some(*v))
                    .count();
                let pol2 = want
                    .policy
                    .iter()
                    .filter(|(k, v)| got.policy.get(*k) != Some(*v))
                    .count();
                let eps: Vec<_> = got
                    .endpoints
                    .iter()
                    .filter(|(k, v)| want.endpoints.get(*k) != Some(*v))
                    .collect();
                let eps2: Vec<_> = want
                    .endpoints
                    .iter()
                    .filter(|(k, v)| got.endpoints.get(*k) != Some(*v))
                    .collect();
                eprintln!(
                    "seed {seed} step {step}: ids got {ids:?}\n want {ids2:?}\n policy {pol}/{pol2}\n eps {eps:?}\n want {eps2:?}"
                );
            }
            assert!(
                *inc.image() == want,
                "seed {seed} step {step}: the image differs from the full compile's ({outcome:?})"
            );
            if let Outcome::Delta(delta) = &outcome {
                let mut replay = before;
                replay.apply(delta);
                assert_eq!(replay, want, "seed {seed} step {step}: the delta");
                assert_eq!(
                    replay.effective(delta).len(),
                    0,
                    "seed {seed} step {step}: applied twice, the delta changes nothing"
                );
            }
        }
        let s = inc.stats();
        totals.fast += s.fast;
        totals.full += s.full;
        totals.fast_policies += s.fast_policies;
        assert!(!inc.refresh(), "seed {seed}: a refresh changed the image");
    }
    eprintln!(
        "fast {} ({} policies) / full {}",
        totals.fast, totals.fast_policies, totals.full
    );
    assert!(
        totals.fast_policies > 100,
        "policy changes take the fast path too"
    );
    // The fast path is no dead code: most replica arrivals take it.
    assert!(
        totals.fast > totals.full / 2,
        "fast {} / full {}",
        totals.fast,
        totals.full
    );
}
