//! Runs `bulkhead connectivity --output json` and indexes its JSON Lines.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;

use ipnetwork::IpNetwork;

use super::conns::Conns;

/// Our answer for one case, indexed.
#[derive(Debug, Default)]
pub struct Ours {
    /// (src pod key, dst pod key) → allowed.
    pub pairs: HashMap<(String, String), Conns>,
    /// Pod key → (external CIDR, allowed) for traffic leaving the pod.
    pub egress: HashMap<String, Vec<(IpNetwork, Conns)>>,
    /// Pod key → (external CIDR, allowed) for traffic entering the pod.
    pub ingress: HashMap<String, Vec<(IpNetwork, Conns)>>,
    /// Lines printed.
    pub lines: usize,
    /// Problems with the output itself (format, unknown peers, overlapping
    /// external CIDRs, `family` where none is expected).
    pub problems: Vec<String>,
}

impl Ours {
    /// Runs the binary on `manifests` with `pod_cidr`; `pods` are the pod
    /// keys the model has.
    pub fn run(manifests: &Path, pod_cidr: &str, pods: &HashSet<String>) -> Result<Self, String> {
        let out = Command::new(env!("CARGO_BIN_EXE_bulkhead"))
            .arg("connectivity")
            .arg("--manifests")
            .arg(manifests)
            .args([
                "--pod-cidr",
                pod_cidr,
                "--assign-pod-ips",
                "--output",
                "json",
            ])
            .output()
            .map_err(|e| format!("cannot run bulkhead: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "bulkhead connectivity exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let stdout =
            String::from_utf8(out.stdout).map_err(|e| format!("stdout is not UTF-8: {e}"))?;
        Ok(Self::parse(&stdout, pods))
    }

    /// Parses JSON Lines output.
    pub fn parse(stdout: &str, pods: &HashSet<String>) -> Self {
        let mut ours = Ours::default();
        for line in stdout.lines() {
            ours.lines += 1;
            if let Err(e) = ours.add_line(line, pods) {
                ours.problems
                    .push(format!("output line {}: {e}: {line}", ours.lines));
            }
        }
        ours.check_disjoint();
        ours
    }

    fn add_line(&mut self, line: &str, pods: &HashSet<String>) -> Result<(), String> {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        let field = |k: &str| {
            v.get(k)
                .and_then(|s| s.as_str())
                .map(str::to_string)
                .ok_or_else(|| format!("no string {k:?}"))
        };
        let (src, dst) = (field("src")?, field("dst")?);
        if let Some(family) = v.get("family") {
            return Err(format!(
                "unexpected family {family} with a single IPv4 pod CIDR"
            ));
        }
        let conns = Conns::parse_json(v.get("allowed").ok_or("no \"allowed\"")?)?;
        if conns == Conns::default() {
            return Err("a line with nothing allowed".into());
        }
        let peer = |s: &str| -> Result<Option<IpNetwork>, String> {
            if pods.contains(s) {
                Ok(None)
            } else {
                s.parse::<IpNetwork>()
                    .map(Some)
                    .map_err(|_| format!("{s:?} is neither a pod nor a CIDR"))
            }
        };
        match (peer(&src)?, peer(&dst)?) {
            (None, None) => {
                if src == dst {
                    return Err("a pod to itself".into());
                }
                if self.pairs.insert((src, dst), conns).is_some() {
                    return Err("pair listed twice".into());
                }
            }
            (None, Some(cidr)) => self.egress.entry(src).or_default().push((cidr, conns)),
            (Some(cidr), None) => self.ingress.entry(dst).or_default().push((cidr, conns)),
            (Some(_), Some(_)) => return Err("external to external".into()),
        }
        Ok(())
    }

    /// Listed external CIDRs of one pod and direction must be disjoint.
    fn check_disjoint(&mut self) {
        for (dir, table) in [("egress", &self.egress), ("ingress", &self.ingress)] {
            for (pod, list) in table {
                for (i, (a, _)) in list.iter().enumerate() {
                    for (b, _) in &list[i + 1..] {
                        if a.contains(b.network()) || b.contains(a.network()) {
                            self.problems
                                .push(format!("{pod} {dir}: external CIDRs {a} and {b} overlap"));
                        }
                    }
                }
            }
        }
    }

    /// Our allowed between two pods (nothing if no line).
    pub fn pair(&self, src: &str, dst: &str) -> Conns {
        self.pairs
            .get(&(src.to_string(), dst.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// Our allowed between a pod and an external address: the listed CIDR
    /// containing it for that pod and direction, and that CIDR.
    pub fn external(
        &self,
        pod: &str,
        addr: std::net::IpAddr,
        egress: bool,
    ) -> (Option<IpNetwork>, Conns) {
        let table = if egress { &self.egress } else { &self.ingress };
        table
            .get(pod)
            .into_iter()
            .flatten()
            .find(|(cidr, _)| cidr.contains(addr))
            .map(|(cidr, conns)| (Some(*cidr), conns.clone()))
            .unwrap_or_default()
    }

    /// Every listed IPv4 CIDR's first and last address.
    pub fn external_ends(&self) -> impl Iterator<Item = u32> + '_ {
        self.egress
            .values()
            .chain(self.ingress.values())
            .flatten()
            .filter_map(|(cidr, _)| match cidr {
                IpNetwork::V4(n) => Some([u32::from(n.network()), u32::from(n.broadcast())]),
                IpNetwork::V6(_) => None,
            })
            .flatten()
    }

    /// Every port range end anywhere in the output.
    pub fn port_ends(&self) -> impl Iterator<Item = u32> + '_ {
        let ext = self.egress.values().chain(self.ingress.values()).flatten();
        self.pairs
            .values()
            .chain(ext.map(|(_, c)| c))
            .flat_map(Conns::ends)
    }
}
