//! Quarantine: a pod an operator cut off from the network.
//!
//! NetworkPolicy cannot do it (it only adds allows), and neither can a
//! cluster-admin Deny written by hand (a higher-priority Accept still
//! wins). A quarantine is a cluster-admin policy of its own tier,
//! [`Tier::Quarantine`], evaluated before the Admin tier: it overrides
//! every allow of every tier and mode. Being an ordinary [`AdminPolicy`] in
//! the model, it is compiled into the same tables as every policy, so the
//! kernel, the reference evaluator, `explain`, `connectivity` and the
//! learner all see it the same way, and a change swaps in atomically and
//! re-judges established connections on their next packet.
//!
//! Its ingress rule denies every address, its egress rule too, after (with
//! `allow_dns`) an Accept of DNS (UDP and TCP 53) to the cluster's DNS pods
//! (namespace `kube-system`, label `k8s-app: kube-dns`, which CoreDNS and
//! kube-dns both carry). The pod's own node is still let in, as Kubernetes
//! always lets it in: kubelet's probes keep the pod alive for the
//! investigation instead of having it restarted.
//!
//! Quarantines come from the agent's own store (`bulkhead quarantine`) and,
//! in any source, from the pod's label [`QUARANTINE_LABEL`] (so `kubectl
//! label` and other tools can trigger one; its reason names the label).

use ipnetwork::IpNetwork;

use super::admin::{Action, AdminKind, AdminPeer, AdminPolicy, AdminRule, Subject, Tier};
use super::policy::{PortMatch, PortSpec};
use super::selector::{Requirement, Selector};
use super::{Mode, Model, NAMESPACE_NAME_LABEL, Origin, Protocol};

/// The pod label that quarantines a pod when its value is `true`.
pub const QUARANTINE_LABEL: &str = "bulkhead.io/quarantine";

/// The pod label value (besides `true`) that quarantines a pod and lets
/// it reach the cluster's DNS.
pub const QUARANTINE_LABEL_ALLOW_DNS: &str = "allow-dns";

/// The reason given when none was.
const NO_REASON: &str = "no reason given";

/// One quarantined pod.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Quarantine {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// Why (shown in `status`, flow records and `explain`).
    pub reason: String,
    /// The pod may still resolve names through the cluster's DNS.
    #[serde(default)]
    pub allow_dns: bool,
}

impl Quarantine {
    /// `namespace/pod`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.pod)
    }

    /// The quarantine as a policy of [`Tier::Quarantine`] (named after the
    /// pod), always enforced.
    pub fn to_policy(&self) -> AdminPolicy {
        let name = format!("quarantined: {}", self.reason);
        let deny_all = AdminRule {
            name: Some(name.clone()),
            action: Action::Deny,
            peers: vec![AdminPeer::Networks(every_address())],
            ports: None,
        };
        let mut egress = Vec::new();
        if self.allow_dns {
            egress.push(dns_rule());
        }
        egress.push(deny_all.clone());
        AdminPolicy {
            kind: AdminKind::Quarantine,
            name: self.key(),
            tier: Tier::Quarantine,
            priority: 0,
            subject: Subject {
                namespaces: label_is(NAMESPACE_NAME_LABEL, &self.namespace),
                pods: Selector::everything(),
                name: Some(self.pod.clone()),
            },
            ingress: vec![deny_all],
            egress,
            origin: Origin::default(),
            mode: Some(Mode::Enforce),
        }
    }
}

impl Quarantine {
    /// The quarantine a policy of [`Tier::Quarantine`] enforces (the
    /// inverse of [`Quarantine::to_policy`]); `None` for any other policy.
    pub fn of_policy(policy: &AdminPolicy) -> Option<Quarantine> {
        if policy.tier != Tier::Quarantine {
            return None;
        }
        let (namespace, pod) = policy.name.split_once('/')?;
        let reason = policy
            .ingress
            .first()
            .and_then(|r| r.name.as_deref())
            .and_then(|n| n.strip_prefix("quarantined: "))
            .unwrap_or(NO_REASON);
        Some(Quarantine {
            namespace: namespace.to_owned(),
            pod: pod.to_owned(),
            reason: reason.to_owned(),
            allow_dns: policy.egress.iter().any(|r| r.action == Action::Accept),
        })
    }
}

/// `0.0.0.0/0` and `::/0`: every address, pods' and nodes' included.
fn every_address() -> Vec<IpNetwork> {
    ["0.0.0.0/0", "::/0"]
        .iter()
        .map(|c| c.parse().expect("a valid CIDR"))
        .collect()
}

/// A selector of objects whose label `key` is `value`.
fn label_is(key: &str, value: &str) -> Selector {
    Selector::new(vec![Requirement::In(key.into(), vec![value.into()])])
}

/// Accept DNS (UDP and TCP 53) to the cluster's DNS pods.
fn dns_rule() -> AdminRule {
    AdminRule {
        name: Some("quarantine: cluster DNS".into()),
        action: Action::Accept,
        peers: vec![AdminPeer::Pods {
            namespaces: label_is(NAMESPACE_NAME_LABEL, "kube-system"),
            pods: label_is("k8s-app", "kube-dns"),
        }],
        ports: Some(
            [Protocol::Udp, Protocol::Tcp]
                .into_iter()
                .map(|protocol| PortSpec {
                    protocol,
                    port: PortMatch::Range(53, 53),
                })
                .collect(),
        ),
    }
}

impl Model {
    /// The quarantines the pods' own labels ask for ([`QUARANTINE_LABEL`]
    /// `true` or `allow-dns`), sorted.
    pub fn labelled_quarantines(&self) -> Vec<Quarantine> {
        let mut out: Vec<Quarantine> = self
            .pods
            .iter()
            .filter_map(|p| {
                let value = p.labels.get(QUARANTINE_LABEL)?;
                let allow_dns = match value.as_str() {
                    "true" => false,
                    QUARANTINE_LABEL_ALLOW_DNS => true,
                    _ => return None,
                };
                Some(Quarantine {
                    namespace: p.namespace.clone(),
                    pod: p.name.clone(),
                    reason: format!("label {QUARANTINE_LABEL}={value}"),
                    allow_dns,
                })
            })
            .collect();
        out.sort();
        out
    }

    /// Sets the model's policies of [`Tier::Quarantine`] to `quarantines`
    /// and those the pods' labels ask for: one per pod (a stored
    /// quarantine's reason wins over its pod's label, with `allow_dns` if
    /// either allows it). Idempotent: earlier quarantine policies are
    /// replaced. A quarantine of a pod the model does not hold takes effect
    /// when the pod appears (its policy selects nothing until then).
    pub fn apply_quarantines(&mut self, quarantines: &[Quarantine]) {
        self.admin_policies.retain(|p| p.tier != Tier::Quarantine);
        let mut all: Vec<Quarantine> = quarantines.to_vec();
        for labelled in self.labelled_quarantines() {
            match all.iter_mut().find(|q| q.key() == labelled.key()) {
                Some(q) => q.allow_dns |= labelled.allow_dns,
                None => all.push(labelled),
            }
        }
        for q in &mut all {
            if q.reason.trim().is_empty() {
                q.reason = NO_REASON.into();
            }
        }
        self.admin_policies
            .extend(all.iter().map(Quarantine::to_policy));
        self.admin_policies
            .sort_by(|a, b| a.order().cmp(&b.order()));
    }
}

#[cfg(test)]
mod tests;
