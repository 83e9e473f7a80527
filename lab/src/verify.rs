//! `bulkhead lab verify`: live probes against `bulkhead connectivity`.
//! [`disagreements`] is pure: probes and connectivity JSON lines in, every
//! probe whose result the policy does not predict out.
//!
//! A probe agrees with the policy when the policy allows it and it was
//! allowed ([`ProbeResult::allowed`]: connected, or refused by the
//! destination on a port nothing listens on), or when the policy denies it
//! and it timed out: the dataplane drops denied packets, so any answer to a
//! denied probe (a connection, a refusal, an ICMP unreachable) is a
//! disagreement, as is a probe that could not run.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::Deserialize;
use serde_json::Value;

use super::probe::{Outcome, ProbeResult};
use bulkhead_policy::model::Protocol;

/// One line of `bulkhead connectivity --output json`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ConnectivityLine {
    /// `namespace/name` or a CIDR.
    pub src: String,
    /// `namespace/name` or a CIDR.
    pub dst: String,
    /// "IPv4" or "IPv6" when the pair's families differ.
    #[serde(default)]
    pub family: Option<String>,
    /// Allowed port ranges by protocol name.
    pub allowed: BTreeMap<String, Vec<(u16, u16)>>,
}

impl ConnectivityLine {
    /// Parses one JSON object.
    pub fn from_json(v: Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(v)
    }

    fn allows(&self, protocol: Protocol, port: u16) -> bool {
        self.allowed
            .get(protocol.as_str())
            .is_some_and(|r| r.iter().any(|&(lo, hi)| (lo..=hi).contains(&port)))
    }
}

/// A probe whose result the policy does not predict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disagreement {
    /// The probe.
    pub probe: ProbeResult,
    /// Whether the policy allows it.
    pub expected: bool,
}

impl Disagreement {
    /// The JSON object: the probe's, with `expected`.
    pub fn to_json(&self) -> Value {
        let mut v = self.probe.to_json();
        v["expected"] = self.expected.into();
        v
    }

    /// For people.
    pub fn text(&self) -> String {
        let p = &self.probe;
        let got = match (&p.outcome, &p.detail) {
            (Outcome::Connected, _) => "the probe connected".to_owned(),
            (Outcome::Refused, _) if !p.served => {
                "the destination answered (refused: nothing listens there)".to_owned()
            }
            (Outcome::Refused, _) => {
                "the probe was refused though a server listens there".to_owned()
            }
            (o, None) => format!("the probe did not connect ({})", o.as_str()),
            (o, Some(d)) => format!("the probe did not connect ({}: {d})", o.as_str()),
        };
        format!(
            "{} → {} {} {}/{}: policy {}, but {got}",
            p.src,
            p.dst,
            p.family,
            p.protocol,
            p.port,
            if self.expected { "allows" } else { "denies" },
        )
    }
}

/// Whether peer `name` of a probe (a pod key or an external host's
/// address) is what connectivity peer `line_peer` (a pod key or a CIDR)
/// stands for.
fn peer_matches(name: &str, line_peer: &str) -> bool {
    match (name.parse::<IpAddr>(), line_peer.parse::<IpNetwork>()) {
        (Ok(ip), Ok(net)) => net.contains(ip),
        (Err(_), Err(_)) => name == line_peer,
        _ => false,
    }
}

/// Whether the connectivity lines allow `probe`'s connection. A
/// hostNetwork destination is the address probed (its node's): the lines
/// must come from the model the agents enforce, where such pods are no
/// pods ([`bulkhead_policy::model::Model::drop_off_network_pods`]).
pub fn expected(probe: &ProbeResult, lines: &[ConnectivityLine]) -> bool {
    let dst = match probe.target {
        Some(t) if probe.dst_host_network => t.ip().to_string(),
        _ => probe.dst.clone(),
    };
    lines.iter().any(|l| {
        peer_matches(&probe.src, &l.src)
            && peer_matches(&dst, &l.dst)
            && l.family.as_deref().is_none_or(|f| f == probe.family)
            && l.allows(probe.protocol, probe.port)
    })
}

/// A pod's key and addresses.
pub type PodAddresses = (String, Vec<IpAddr>);

/// Where the model's pods (`model`) differ from the lab's (`lab`), for
/// people; `None` when they agree. `exact`: the model must have exactly
/// the lab's pods, in order (the manifests the lab was made from); else
/// (the Kubernetes API) every lab pod must be in the model with the same
/// addresses, and the model's other pods (a cluster's, on other nodes)
/// must hold none of them.
pub fn address_mismatch(
    model: &[PodAddresses],
    lab: &[PodAddresses],
    exact: bool,
) -> Option<String> {
    if exact {
        if model == lab {
            return None;
        }
        return Some(match model.iter().zip(lab).find(|(a, b)| a != b) {
            Some((a, b)) => format!("{} {:?} was {} {:?}", a.0, a.1, b.0, b.1),
            None => format!("{} pods, was {}", model.len(), lab.len()),
        });
    }
    let sorted = |ips: &[IpAddr]| {
        let mut v = ips.to_vec();
        v.sort();
        v
    };
    for (key, ips) in lab {
        match model.iter().find(|(k, _)| k == key) {
            None => return Some(format!("no pod {key}")),
            Some((_, theirs)) if sorted(theirs) != sorted(ips) => {
                return Some(format!("{key} has {theirs:?}, the lab's {ips:?}"));
            }
            Some(_) => {}
        }
    }
    for (key, ips) in model
        .iter()
        .filter(|(k, _)| !lab.iter().any(|(l, _)| l == k))
    {
        if let Some((owner, ip)) = ips
            .iter()
            .find_map(|ip| lab.iter().find(|(_, l)| l.contains(ip)).map(|o| (&o.0, ip)))
        {
            return Some(format!("{key} has {ip}, the address of lab pod {owner}"));
        }
    }
    None
}

/// Whether a probe's outcome is what the policy predicts (see the module docs).
pub fn agrees(probe: &ProbeResult, allowed_by_policy: bool) -> bool {
    if allowed_by_policy {
        probe.allowed()
    } else {
        probe.outcome == Outcome::Timeout
    }
}

/// Every probe whose outcome disagrees with the lines: an answer where the
/// policy denies, no connection where it allows, and probes that could not
/// run at all (`error`), which verify nothing.
pub fn disagreements(probes: &[ProbeResult], lines: &[ConnectivityLine]) -> Vec<Disagreement> {
    probes
        .iter()
        .filter_map(|p| {
            let expected = expected(p, lines);
            (!agrees(p, expected)).then(|| Disagreement {
                probe: p.clone(),
                expected,
            })
        })
        .collect()
}
