//! The reference-evaluator harness of the upstream e2e scenarios: the
//! model of [`crate::common`] and a scenario's policies written into a
//! temporary directory, loaded and compiled; truth tables checked against
//! `Compiled::allowed`, `Compiled::evaluate` and `connectivity()` (which
//! must agree with one another).

use std::net::IpAddr;

use bulkhead_policy::compile::{Compiled, compile};
use bulkhead_policy::eval::connectivity::{Peer, connectivity};
use bulkhead_policy::model::Model;
use bulkhead_policy::model::addressing::AddressPlan;
use bulkhead_policy::source::manifest::load_dir;
use tempfile::TempDir;

pub use crate::common::*;

impl Setup {
    /// Loads the model plus `policies` (YAML documents).
    pub fn load(&self, policies: &str) -> Cluster {
        self.load_with(|_| policies.to_string())
    }

    /// Loads the model alone first, then the model plus the policies that
    /// `policies` writes knowing the pods' addresses (for ipBlocks).
    pub fn load_with(&self, policies: impl FnOnce(&Model) -> String) -> Cluster {
        let base = self.load_files(None);
        let text = policies(&base.model);
        let cluster = self.load_files(Some(&text));
        for (a, b) in base.model.pods.iter().zip(&cluster.model.pods) {
            assert_eq!(a.ips, b.ips, "{}: addresses changed with policies", a.key());
        }
        cluster
    }

    fn load_files(&self, policies: Option<&str>) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("cluster.yaml"), self.manifests()).expect("write cluster");
        if let Some(p) = policies {
            std::fs::write(dir.path().join("policies.yaml"), p).expect("write policies");
        }
        let model = match load_dir(dir.path(), &AddressPlan::default()) {
            Ok(m) => m,
            Err(e) => panic!("load failed:\n{e}\npolicies:\n{}", policies.unwrap_or("")),
        };
        assert_eq!(model.pods.len(), 9);
        for pod in &model.pods {
            assert_eq!(pod.ips.len(), 2, "{} has one address per family", pod.key());
        }
        let compiled = compile(&model);
        Cluster {
            _dir: dir,
            model,
            compiled,
        }
    }
}

/// Loads the upstream model plus `policies`.
pub fn load(policies: &str) -> Cluster {
    Setup::default().load(policies)
}

/// Loads the upstream model plus policies written knowing the addresses.
pub fn load_with(policies: impl FnOnce(&Model) -> String) -> Cluster {
    Setup::default().load_with(policies)
}

/// A loaded and compiled cluster.
pub struct Cluster {
    _dir: TempDir,
    /// The model.
    pub model: Model,
    /// Its compiled policy.
    pub compiled: Compiled,
}

impl Cluster {
    /// The address of `pod` of `family`.
    pub fn ip(&self, pod: &str, family: Family) -> IpAddr {
        pod_ip(&self.model, pod, family)
    }

    /// Checks the IPv4 matrix of every probe against `expected`.
    pub fn check(&self, probes: &[Probe], expected: &Reachability) {
        self.check_families(&[Family::V4], probes, expected);
    }

    /// Checks the IPv4 and the IPv6 matrix of every probe.
    pub fn check_dual(&self, probes: &[Probe], expected: &Reachability) {
        self.check_families(&[Family::V4, Family::V6], probes, expected);
    }

    /// Checks every (family, probe) matrix; on failure, prints every wrong
    /// matrix (`.` allowed, `X` denied, lower-case = wrong, `-` self).
    pub fn check_families(&self, families: &[Family], probes: &[Probe], expected: &Reachability) {
        let connections = connectivity(&self.model, &self.compiled);
        let mut report = String::new();
        for &family in families {
            for &probe in probes {
                report.push_str(&self.check_one(&connections, family, probe, expected));
            }
        }
        assert!(
            report.is_empty(),
            "reachability differs from Kubernetes semantics:\n{report}"
        );
    }

    fn check_one(
        &self,
        connections: &[bulkhead_policy::eval::connectivity::Connection],
        family: Family,
        probe: Probe,
        expected: &Reachability,
    ) -> String {
        let proto = probe.protocol.number();
        let mut inconsistent = Vec::new();
        let heading = format!("{} {}/{}", family.label(), probe.protocol, probe.port);
        let report = expected.diff(&heading, |src, dst| {
            let (sa, da) = (self.ip(src, family), self.ip(dst, family));
            let got = self.compiled.allowed(sa, da, proto, probe.port);
            let verdict = self.compiled.evaluate(sa, da, proto, probe.port);
            if verdict.allowed() != got {
                inconsistent.push(format!(
                    "  {heading} {src} -> {dst}: evaluate() says {verdict:?}, allowed() says {got}"
                ));
            }
            let listed = connections
                .iter()
                .filter(|c| {
                    c.src == Peer::Pod(src.to_owned()) && c.dst == Peer::Pod(dst.to_owned())
                })
                .filter(|c| c.family.is_none_or(|f| f == family.label()))
                .any(|c| c.allowed.get(probe.protocol).contains(probe.port));
            if listed != got {
                inconsistent.push(format!(
                    "  {heading} {src} -> {dst}: connectivity() says {listed}, allowed() says {got}"
                ));
            }
            Cell {
                allowed: got,
                note: format!("{verdict:?}"),
            }
        });
        if inconsistent.is_empty() {
            report
        } else {
            format!(
                "{report}the evaluator's answers disagree with one another:\n{}\n\n",
                inconsistent.join("\n")
            )
        }
    }

    /// Asserts the verdict for traffic between arbitrary addresses (pods or
    /// not).
    pub fn assert_flow(&self, src: IpAddr, dst: IpAddr, probe: Probe, allowed: bool) {
        let got = self
            .compiled
            .allowed(src, dst, probe.protocol.number(), probe.port);
        assert_eq!(
            got,
            allowed,
            "{src} -> {dst} {probe:?}: {:?}",
            self.compiled
                .evaluate(src, dst, probe.protocol.number(), probe.port)
        );
    }
}
