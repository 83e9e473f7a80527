//! The reference evaluator: answers "is (src, dst, protocol, port) allowed,
//! and by which rules" from the compiled tables alone, exactly as the
//! kernel's two map lookups do.

pub mod connectivity;
pub mod explain;

#[cfg(test)]
mod tests;

use std::net::IpAddr;

use crate::compile::{Compiled, IdentityId, RuleId, TableId};
use crate::model::Direction;

/// The verdict of one side (source egress or destination ingress).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Side {
    /// The address is not a pod: nothing is enforced on this side.
    NotAPod,
    /// No rule decides (no policy selects the pod in this direction, or
    /// only cluster-admin policies do and none of their rules matched, or
    /// an Admin `Pass` left it to a tier with nothing to say): allowed.
    NotIsolated,
    /// Ingress from the pod's own node: always allowed (Kubernetes), in
    /// every view.
    FromNode,
    /// Allowed by these rules (ascending; at least one).
    Allowed(Vec<RuleId>),
    /// Isolated by NetworkPolicy and no rule allows it.
    Denied,
    /// Denied by this cluster-admin rule (an Admin or Baseline `Deny`).
    DeniedBy(RuleId),
}

impl Side {
    /// Whether this side lets the traffic through.
    pub fn allows(&self) -> bool {
        !matches!(self, Side::Denied | Side::DeniedBy(_))
    }
}

/// The verdict for one connection attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Egress policy of the source.
    pub egress: Side,
    /// Ingress policy of the destination.
    pub ingress: Side,
}

impl Verdict {
    /// Allowed when both sides allow.
    pub fn allowed(&self) -> bool {
        self.egress.allows() && self.ingress.allows()
    }
}

/// The audit view's verdicts for one connection attempt: per side, `None`
/// when no audit-mode policy selects that side's pod (the enforced verdict
/// is the whole story), else whether the audit view (enforced and
/// audit-mode policies together) allows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditVerdict {
    /// Egress of the source.
    pub egress: Option<bool>,
    /// Ingress of the destination.
    pub ingress: Option<bool>,
}

impl AuditVerdict {
    /// Whether the audit view would deny a side (what the kernel records
    /// as "would deny" for a connection the enforced view allows).
    pub fn would_deny(&self) -> bool {
        self.egress == Some(false) || self.ingress == Some(false)
    }
}

impl Compiled {
    /// The identity of an address (pods and the node by exact address,
    /// everything else by region).
    pub fn identity_of(&self, addr: IpAddr) -> IdentityId {
        if let Some((id, _)) = self.identities.by_pod_addr.get(&addr) {
            return *id;
        }
        match self.identities.by_node_addr.get(&addr) {
            Some(id) => *id,
            None => self.identities.external_of_region[self.regions.lookup(addr) as usize],
        }
    }

    /// Whether the side of `direction` of a pod is open to `peer` whatever
    /// its policies say: ingress from the pod's own node.
    pub fn always_allowed(&self, direction: Direction, peer: IdentityId) -> bool {
        direction == Direction::Ingress && self.identities.is_node(peer)
    }

    /// The pod (index into the model) owning an address.
    pub fn pod_of(&self, addr: IpAddr) -> Option<usize> {
        self.identities.by_pod_addr.get(&addr).map(|(_, p)| *p)
    }

    /// Whether `table` lets `peer` use (proto, port); the fast path, no
    /// allocation.
    pub fn table_allows(&self, table: TableId, peer: IdentityId, proto: u8, port: u16) -> bool {
        let table = &self.tables[table as usize];
        match table.lookup(peer, proto, port) {
            Some(segment) => !segment.deny,
            None => !table.isolated(),
        }
    }

    fn side(
        &self,
        pod: Option<usize>,
        direction: Direction,
        peer: IdentityId,
        proto: u8,
        port: u16,
    ) -> Side {
        let Some(pod) = pod else { return Side::NotAPod };
        let Some(table) = self.endpoints[pod].table(direction) else {
            return Side::NotIsolated;
        };
        if self.always_allowed(direction, peer) {
            return Side::FromNode;
        }
        let table = &self.tables[table as usize];
        if !table.tiered() {
            let rules = table.allowing_rules(peer, proto, port);
            return if rules.is_empty() {
                Side::Denied
            } else {
                Side::Allowed(rules)
            };
        }
        match table.lookup(peer, proto, port) {
            Some(s) if s.deny => s.rules.first().map_or(Side::Denied, |&r| Side::DeniedBy(r)),
            Some(s) if !s.rules.is_empty() => Side::Allowed(s.rules.clone()),
            Some(_) => Side::NotIsolated,
            None if table.isolated() => Side::Denied,
            None => Side::NotIsolated,
        }
    }

    /// The full verdict with the allowing rules of each side.
    pub fn evaluate(&self, src: IpAddr, dst: IpAddr, proto: u8, port: u16) -> Verdict {
        Verdict {
            egress: self.side(
                self.pod_of(src),
                Direction::Egress,
                self.identity_of(dst),
                proto,
                port,
            ),
            ingress: self.side(
                self.pod_of(dst),
                Direction::Ingress,
                self.identity_of(src),
                proto,
                port,
            ),
        }
    }

    /// The audit view's verdicts, as the kernel computes them beside the
    /// enforced ones.
    pub fn audit(&self, src: IpAddr, dst: IpAddr, proto: u8, port: u16) -> AuditVerdict {
        let side = |pod: Option<usize>, d: Direction, peer: IpAddr| {
            let table = self.audit_endpoints[pod?].table(d)?;
            Some(self.view_allows(table, d, self.identity_of(peer), proto, port))
        };
        AuditVerdict {
            egress: side(self.pod_of(src), Direction::Egress, dst),
            ingress: side(self.pod_of(dst), Direction::Ingress, src),
        }
    }

    /// Whether the connection would be allowed if every audit-mode policy
    /// were enforced (each side: its audit view where it has one, else its
    /// enforced table).
    pub fn allowed_if_promoted(&self, src: IpAddr, dst: IpAddr, proto: u8, port: u16) -> bool {
        let side = |pod: Option<usize>, d: Direction, peer: IpAddr| {
            pod.and_then(|p| {
                self.audit_endpoints[p]
                    .table(d)
                    .or(self.endpoints[p].table(d))
            })
            .is_none_or(|t| self.view_allows(t, d, self.identity_of(peer), proto, port))
        };
        side(self.pod_of(src), Direction::Egress, dst)
            && side(self.pod_of(dst), Direction::Ingress, src)
    }

    /// Whether a side bound to `table` in `direction` lets `peer` use
    /// (proto, port): the node's ingress, else the table.
    fn view_allows(
        &self,
        table: TableId,
        direction: Direction,
        peer: IdentityId,
        proto: u8,
        port: u16,
    ) -> bool {
        self.always_allowed(direction, peer) || self.table_allows(table, peer, proto, port)
    }

    /// Whether the connection is allowed; the fast path of [`Self::evaluate`].
    pub fn allowed(&self, src: IpAddr, dst: IpAddr, proto: u8, port: u16) -> bool {
        let side = |pod: Option<usize>, d: Direction, peer: IpAddr| {
            pod.and_then(|p| self.endpoints[p].table(d))
                .is_none_or(|t| self.view_allows(t, d, self.identity_of(peer), proto, port))
        };
        side(self.pod_of(src), Direction::Egress, dst)
            && side(self.pod_of(dst), Direction::Ingress, src)
    }
}
