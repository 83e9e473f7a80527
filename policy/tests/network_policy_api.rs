//! The network-policy-api conformance scenarios
//! (kubernetes-sigs/network-policy-api `conformance/`: its base manifests
//! and tests, transcribed as data under `network_policy_api/`, see the
//! README there) against Bulkhead's loader, compiler and reference
//! evaluator.
//!
//! Every step of every scenario is loaded on its own (the topology plus
//! the objects in force at that step), compiled, and each connection
//! upstream checks there is answered three ways that must agree:
//! `Compiled::allowed`, `Compiled::evaluate` and `connectivity()`; the
//! answer must be upstream's. A connection through a Service (`via:
//! service`) is answered by `explain` of its ClusterIP, per backend (each
//! backend's answer agreeing with those three), and must be upstream's on
//! every backend. A test per profile reports every mismatch of every
//! scenario at once.
//!
//! The same data runs on real packets in
//! `netns-tests/tests/network_policy_api_packets.rs`.

#[path = "network_policy_api/data.rs"]
#[allow(dead_code)] // Shared with the packet harness, which uses the rest.
mod data;

use std::collections::BTreeSet;
use std::net::IpAddr;

use bulkhead_policy::compile::{Compiled, compile};
use bulkhead_policy::eval::Verdict;
use bulkhead_policy::eval::connectivity::{Connection, Peer, connectivity};
use bulkhead_policy::eval::explain::{self, Answer, PeerArg};
use bulkhead_policy::model::addressing::AddressPlan;
use bulkhead_policy::model::{Model, OffNetwork, Pod};
use bulkhead_policy::source::manifest::load_dir;

use data::{Expect, Scenario, Step, Via};

/// The whole topology as YAML: `base.yaml` and `host-network.yaml`.
fn topology_yaml() -> String {
    format!("{}\n---\n{}", data::base(), data::host_network())
}

/// The topology alone, loaded (for its addresses and pod names).
fn topology() -> Model {
    load(&topology_yaml(), None).unwrap_or_else(|e| panic!("the topology does not load: {e}"))
}

/// Loads `base` plus `policies` from a temporary directory.
fn load(base: &str, policies: Option<&str>) -> Result<Model, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("base.yaml"), base).expect("write base");
    if let Some(p) = policies {
        std::fs::write(dir.path().join("policies.yaml"), p).expect("write policies");
    }
    load_dir(dir.path(), &AddressPlan::default()).map_err(|e| e.to_string())
}

/// Checks one step; returns one line per mismatch (empty: all agree).
fn check_step(
    base: &str,
    topology: &Model,
    scenario: &Scenario,
    n: usize,
    step: &Step,
) -> Vec<String> {
    let at = format!("{} step {} ({:?})", scenario.file, n + 1, step.name);
    let policies = data::expand(step, topology);
    let model = match load(base, Some(&policies)) {
        Ok(m) => m,
        Err(e) => return vec![format!("{at}: load failed: {e}")],
    };
    for pod in &topology.pods {
        let (_, now) = model.pod(&pod.key()).expect("the topology's pods stay");
        assert_eq!(now.ips, pod.ips, "{at}: {} changed address", pod.key());
    }
    let compiled = compile(&model);
    let connections = connectivity(&model, &compiled);
    data::checked(step)
        .filter_map(|e| {
            check_one(&model, &compiled, &connections, e).map(|why| format!("{at}: {e}: {why}"))
        })
        .collect()
}

/// One expectation; `Some(reason)` on a mismatch or disagreement.
fn check_one(
    model: &Model,
    compiled: &Compiled,
    connections: &[Connection],
    e: &Expect,
) -> Option<String> {
    if e.via == Via::Service {
        return check_service(model, compiled, connections, e);
    }
    let (sa, da) = (data::pod_ipv4(model, &e.from), data::pod_ipv4(model, &e.to));
    let (got, verdict) = match agreed(compiled, connections, e, sa, (&e.to, da), e.port) {
        Ok(v) => v,
        Err(why) => return Some(why),
    };
    (got != e.allowed).then(|| {
        format!(
            "Bulkhead says {}: {verdict:?}",
            if got { "allowed" } else { "denied" }
        )
    })
}

/// The verdict on `e.from` (address `sa`) connecting to pod `to` (key,
/// address) on `port` of `e`'s protocol, if `Compiled::allowed`,
/// `Compiled::evaluate` and `connectivity()` agree on it (`connectivity()`
/// lists no pod's connections to itself: then the first two).
fn agreed(
    compiled: &Compiled,
    connections: &[Connection],
    e: &Expect,
    sa: IpAddr,
    (to, da): (&str, IpAddr),
    port: u16,
) -> Result<(bool, Verdict), String> {
    let proto = e.proto();
    let got = compiled.allowed(sa, da, proto.number(), port);
    let verdict = compiled.evaluate(sa, da, proto.number(), port);
    if verdict.allowed() != got {
        return Err(format!("evaluate() says {verdict:?}, allowed() says {got}"));
    }
    if e.from != to {
        let listed = connections
            .iter()
            .filter(|c| c.src == Peer::Pod(e.from.clone()) && c.dst == Peer::Pod(to.to_owned()))
            .filter(|c| c.family.is_none_or(|f| f == "IPv4"))
            .any(|c| c.allowed.get(proto).contains(port));
        if listed != got {
            return Err(format!(
                "connectivity() says {listed}, allowed() says {got} (to {to})"
            ));
        }
    }
    Ok((got, verdict))
}

/// A `via: service` expectation: `explain` of the connection to the
/// Service's ClusterIP, which judges it on each backend (the connection
/// to the backend's address and target port, as the dataplane judges it
/// after kube-proxy's translation); each backend's answer must agree with
/// [`agreed`], and the Service's verdict (`allowed`: to every backend,
/// `denied`: to none) must be upstream's.
fn check_service(
    model: &Model,
    compiled: &Compiled,
    connections: &[Connection],
    e: &Expect,
) -> Option<String> {
    let frontend = data::service_ipv4(model, &e.to);
    let answer = explain::answer(
        model,
        compiled,
        &PeerArg::Pod(e.from.clone()),
        &PeerArg::Addr(frontend),
        e.proto(),
        e.port,
    );
    let svc = match answer {
        Ok(Answer::Service(svc)) => svc,
        Ok(Answer::Connection(_)) => {
            return Some(format!(
                "explain does not take {frontend}:{} for a frontend of {}",
                e.port, e.to
            ));
        }
        Err(err) => return Some(format!("explain failed: {err}")),
    };
    if svc.service != e.to {
        return Some(format!("{frontend} is the ClusterIP of {}", svc.service));
    }
    let mut per_backend = Vec::new();
    for b in &svc.backends {
        let x = &b.explanation;
        match agreed(
            compiled,
            connections,
            e,
            x.src.addr,
            (&b.pod, x.dst.addr),
            x.port,
        ) {
            Ok((got, _)) if got == x.allowed => {}
            Ok((got, _)) => {
                return Some(format!(
                    "explain says {} to backend {}, allowed() says {got}",
                    x.allowed, b.pod
                ));
            }
            Err(why) => return Some(why),
        }
        per_backend.push(format!(
            "{} {}",
            b.pod,
            if x.allowed { "allowed" } else { "denied" }
        ));
    }
    let want = if e.allowed { "allowed" } else { "denied" };
    (svc.verdict != want).then(|| {
        format!(
            "Bulkhead says {} through {frontend}:{} ({})",
            svc.verdict,
            e.port,
            per_backend.join(", ")
        )
    })
}

/// Runs every scenario of `api`/`channel`; panics listing every mismatch.
fn run_profile(api: &str, channel: &str) {
    let base = topology_yaml();
    let topology = topology();
    let scenarios: Vec<Scenario> = data::scenarios()
        .into_iter()
        .filter(|s| s.profile.api == api && s.profile.channel == channel)
        .collect();
    assert!(!scenarios.is_empty(), "no {api} {channel} scenarios");
    let (mut steps, mut checks, mut failures) = (0, 0, Vec::new());
    for s in &scenarios {
        for (n, step) in s.steps.iter().enumerate() {
            steps += 1;
            checks += data::checked(step).count();
            failures.extend(check_step(&base, &topology, s, n, step));
        }
    }
    eprintln!(
        "{api} {channel}: {} scenarios, {steps} steps, {checks} connections checked{}",
        scenarios.len(),
        if data::skip_admin() {
            " (BULKHEAD_NPAPI_SKIP_ADMIN: admin objects left out, allowed ones only)"
        } else {
            ""
        }
    );
    assert!(
        failures.is_empty(),
        "{} of {checks} connections differ from upstream's expectations:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn v1alpha2_standard() {
    run_profile("v1alpha2", "standard");
}

#[test]
fn v1alpha2_experimental() {
    run_profile("v1alpha2", "experimental");
}

#[test]
fn v1alpha1_core() {
    run_profile("v1alpha1", "core");
}

#[test]
fn v1alpha1_extended() {
    run_profile("v1alpha1", "extended");
}

/// The hostNetwork pods are what a cluster reports: two, each on its own
/// node, its address its node's InternalIP, which no pod-network pod has.
#[test]
fn host_network_pods_carry_their_node_address() {
    let topology = topology();
    let host: Vec<&Pod> = topology
        .pods
        .iter()
        .filter(|p| data::is_host_network(&p.key()))
        .collect();
    assert_eq!(host.len(), 2, "centaur-0 and centaur-1");
    assert_eq!(topology.nodes.len(), 2, "node-0 and node-1");
    for pod in host {
        let key = pod.key();
        assert_eq!(pod.off_network, Some(OffNetwork::HostNetwork), "{key}");
        let node_name = pod
            .node
            .as_deref()
            .unwrap_or_else(|| panic!("{key}: no node"));
        let node = topology
            .nodes
            .iter()
            .find(|n| n.name == node_name)
            .unwrap_or_else(|| panic!("{key}: no node {node_name}"));
        let ip = data::pod_ipv4(&topology, &key);
        assert!(
            node.addresses.contains(&ip),
            "{key}: {ip} is not {node:?}'s"
        );
        let others = topology
            .pods
            .iter()
            .filter(|p| p.off_network.is_none() && p.ips.contains(&ip));
        assert_eq!(others.count(), 0, "{key}: {ip} is also a pod's");
    }
}

/// The data is whole: every scenario parses, names its upstream source and
/// a known profile, has steps each with manifests and expectations, and
/// every expectation names pods of the topology, a protocol and a port
/// upstream's pods serve (the hostNetwork pods: theirs); one through a
/// Service names a Service of the step's manifests, one of its ports, and
/// backends among upstream's pods that serve its target port.
#[test]
fn data_is_complete() {
    let topology = topology();
    assert_eq!(
        topology.pods.len(),
        10,
        "two pods in each of four namespaces, two hostNetwork pods"
    );
    let pods = data::pod_keys(&topology);
    let scenarios = data::scenarios();
    assert!(!scenarios.is_empty(), "no scenarios");
    let mut names = BTreeSet::new();
    for s in &scenarios {
        let at = &s.file;
        assert!(
            names.insert(s.name.clone()),
            "{at}: duplicate scenario {}",
            s.name
        );
        assert_eq!(
            s.upstream.repository, "kubernetes-sigs/network-policy-api",
            "{at}"
        );
        assert!(
            s.upstream.test.starts_with("conformance/tests/"),
            "{at}: {}",
            s.upstream.test
        );
        for c in [&s.upstream.test_commit, &s.upstream.manifests_commit] {
            assert!(
                c.len() == 40 && c.chars().all(|x| x.is_ascii_hexdigit()),
                "{at}: commit {c}"
            );
        }
        assert!(
            matches!(
                (s.profile.api.as_str(), s.profile.channel.as_str()),
                ("v1alpha2", "standard" | "experimental") | ("v1alpha1", "core" | "extended")
            ),
            "{at}: profile {:?}",
            s.profile
        );
        assert!(!s.steps.is_empty(), "{at}: no steps");
        for (n, step) in s.steps.iter().enumerate() {
            assert!(
                !step.expect.is_empty(),
                "{at} step {}: no expectations",
                n + 1
            );
            assert!(
                !step.manifests.trim().is_empty(),
                "{at} step {}: no manifests",
                n + 1
            );
            let docs: Vec<serde_yaml_ng::Value> =
                serde_yaml_ng::Deserializer::from_str(&data::expand(step, &topology))
                    .map(|d| {
                        serde::Deserialize::deserialize(d)
                            .unwrap_or_else(|e| panic!("{at} step {}: {e}", n + 1))
                    })
                    .collect();
            assert!(
                !docs.is_empty() || data::skip_admin(),
                "{at} step {}: no objects",
                n + 1
            );
            for e in &step.expect {
                assert!(
                    pods.contains(&e.from),
                    "{at} step {}: no pod {}",
                    n + 1,
                    e.from
                );
                let _ = e.proto();
                if e.via == Via::Service {
                    service_is_complete(&topology, &format!("{at} step {}", n + 1), step, e);
                    continue;
                }
                assert!(pods.contains(&e.to), "{at} step {}: no pod {}", n + 1, e.to);
                let served: &[u16] = if data::is_host_network(&e.to) {
                    &data::HOST_NETWORK_PORTS
                } else {
                    &data::SERVED_PORTS
                };
                assert!(
                    served.contains(&e.port),
                    "{at} step {}: port {} is not served",
                    n + 1,
                    e.port
                );
            }
        }
    }
}

/// `e` (`via: service`) names a Service of `step`'s manifests with an
/// IPv4 ClusterIP and the port `e` probes, whose backends (by selector,
/// IPv4) are pods of the topology serving the target port.
fn service_is_complete(topology: &Model, at: &str, step: &Step, e: &Expect) {
    let model = load(&topology_yaml(), Some(&data::expand(step, topology)))
        .unwrap_or_else(|err| panic!("{at}: load failed: {err}"));
    let svc = model
        .service(&e.to)
        .unwrap_or_else(|| panic!("{at}: no Service {} in the step's manifests", e.to));
    let _ = data::service_ipv4(&model, &e.to);
    let port = svc
        .ports
        .iter()
        .find(|p| p.protocol == e.proto() && p.port == e.port)
        .unwrap_or_else(|| {
            panic!(
                "{at}: Service {} has no port {}/{}",
                e.to, e.port, e.protocol
            )
        });
    let backends = model.service_backends(svc, port, true);
    assert!(
        !backends.is_empty(),
        "{at}: Service {} has no backends",
        e.to
    );
    for b in backends {
        let key = model.pods[b.pod].key();
        assert!(
            !data::is_host_network(&key) && data::SERVED_PORTS.contains(&b.port),
            "{at}: backend {key} of {} does not serve {}",
            e.to,
            b.port
        );
    }
}
