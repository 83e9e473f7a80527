//! Service addresses, as the API server gives them out: ClusterIPs from
//! the Service CIDRs, NodePorts from the NodePort range.
//!
//! Families follow `ipFamilyPolicy` and `ipFamilies`: a SingleStack Service
//! gets one address, of its first requested family or the cluster's primary
//! family (the first Service CIDR's); a PreferDualStack Service gets both
//! where the plan has both; a RequireDualStack Service gets both (if the
//! plan lacks one, a warning says so: the API server of such a cluster
//! would refuse it). Headless and ExternalName Services get none.
//!
//! Explicit addresses and NodePorts are kept. Two Services claiming one
//! (the API server never allows it, a stale dump may hold it) is no error:
//! the first in (namespace, name) order keeps it, the other loses it and
//! is not given another of that family (its address is not known, as for
//! a pod that lost its address). Then Services are walked in (namespace,
//! name) order and given the next free address of each family they lack,
//! from the CIDR's second host address on (the network address is never
//! one, and the first host address is left for `kubernetes.default`, as
//! real clusters give it), and the next free NodePort from the bottom of
//! the range; ports of one Service with the same port number share one
//! NodePort, as the API server allocates them. The same manifests always
//! give the same addresses.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use super::{AddressPlan, AddressingError, nth_address, one_of_family};
use crate::model::{IpFamily, IpFamilyPolicy, Service, ServiceType};

/// Something about Service addresses that the API server would not let
/// happen but a source may hold; logged and counted, never fatal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceAddressWarning {
    /// Two Services claim one ClusterIP; the first in order keeps it.
    ClusterIpConflict {
        /// The address.
        addr: IpAddr,
        /// `namespace/name` of the Service that keeps it.
        kept_by: String,
        /// `namespace/name` of the Service that lost it.
        lost_by: String,
    },
    /// Two Services claim one NodePort; the first in order keeps it.
    NodePortConflict {
        /// The port.
        port: u16,
        /// `namespace/name` of the Service that keeps it.
        kept_by: String,
        /// `namespace/name` of the Service that lost it.
        lost_by: String,
    },
    /// A Service asks for a family the plan has no Service CIDR of.
    FamilyUnavailable {
        /// `namespace/name`.
        service: String,
        /// The family.
        family: IpFamily,
        /// Its `ipFamilyPolicy`.
        policy: IpFamilyPolicy,
    },
}

impl fmt::Display for ServiceAddressWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClusterIpConflict {
                addr,
                kept_by,
                lost_by,
            } => write!(
                f,
                "Services {kept_by} and {lost_by} both claim ClusterIP {addr}; {kept_by} keeps it \
                 (first in namespace/name order)"
            ),
            Self::NodePortConflict {
                port,
                kept_by,
                lost_by,
            } => write!(
                f,
                "Services {kept_by} and {lost_by} both claim NodePort {port}; {kept_by} keeps it \
                 (first in namespace/name order)"
            ),
            Self::FamilyUnavailable {
                service,
                family,
                policy,
            } => write!(
                f,
                "Service {service}: spec.ipFamilyPolicy {} asks for an {} ClusterIP, but there is \
                 no {} Service CIDR; it has none of that family",
                policy.as_str(),
                family.as_str(),
                family.as_str()
            ),
        }
    }
}

impl AddressPlan {
    /// Gives Services their ClusterIPs and NodePorts (see the module
    /// doc), after settling what two claim (returned, with the families
    /// the plan lacks). Services must be sorted.
    pub fn assign_services(
        &self,
        services: &mut [Service],
    ) -> Result<Vec<ServiceAddressWarning>, AddressingError> {
        let cidr = |v4| {
            one_of_family(&self.service_cidrs, v4).map_err(|(family, first, second)| {
                AddressingError::TwoServiceCidrsOfOneFamily {
                    family,
                    first,
                    second,
                }
            })
        };
        let cidrs = [cidr(true)?, cidr(false)?];
        let mut warnings = Vec::new();
        let lost = settle_cluster_ips(services, &mut warnings);
        let mut ips = ClusterIps {
            plan: self,
            cidrs,
            owner: services
                .iter()
                .flat_map(|s| s.cluster_ips.iter().copied())
                .collect(),
            next: [2, 2],
        };
        for (svc, lost) in services.iter_mut().zip(&lost) {
            ips.give(svc, lost, &mut warnings)?;
        }
        let lost_ports = settle_node_ports(services, &mut warnings);
        if let Some(range) = &self.node_ports {
            let mut used: HashSet<u16> = services
                .iter()
                .flat_map(|s| s.ports.iter().filter_map(|p| p.node_port))
                .collect();
            let mut next = u32::from(*range.start());
            for (i, svc) in services.iter_mut().enumerate() {
                give_node_ports(svc, i, &lost_ports, range, &mut next, &mut used)?;
            }
        }
        Ok(warnings)
    }
}

/// Gives every explicit ClusterIP to the first Service in order that
/// claims it; returns, per Service, the families it lost.
fn settle_cluster_ips(
    services: &mut [Service],
    warnings: &mut Vec<ServiceAddressWarning>,
) -> Vec<Vec<IpFamily>> {
    let mut owner: HashMap<IpAddr, String> = HashMap::new();
    let mut lost = vec![Vec::new(); services.len()];
    for (svc, lost) in services.iter_mut().zip(&mut lost) {
        let key = svc.key();
        svc.cluster_ips.retain(|ip| match owner.get(ip) {
            Some(first) if *first != key => {
                warnings.push(ServiceAddressWarning::ClusterIpConflict {
                    addr: *ip,
                    kept_by: first.clone(),
                    lost_by: key.clone(),
                });
                lost.push(IpFamily::of(*ip));
                false
            }
            _ => {
                owner.insert(*ip, key.clone());
                true
            }
        });
    }
    lost
}

/// ClusterIP allocation state.
struct ClusterIps<'a> {
    plan: &'a AddressPlan,
    /// The IPv4 and IPv6 Service CIDRs.
    cidrs: [Option<IpNetwork>; 2],
    /// Addresses in use.
    owner: HashSet<IpAddr>,
    /// Next host index to try, per family.
    next: [u128; 2],
}

impl ClusterIps<'_> {
    /// Completes `svc`'s families and gives it an address of each family
    /// it lacks (except those in `lost`).
    fn give(
        &mut self,
        svc: &mut Service,
        lost: &[IpFamily],
        warnings: &mut Vec<ServiceAddressWarning>,
    ) -> Result<(), AddressingError> {
        if svc.kind == ServiceType::ExternalName {
            return Ok(());
        }
        let wanted = self.wanted(svc, warnings);
        if svc.headless {
            if svc.ip_families.is_empty() {
                svc.ip_families = wanted;
            }
            return Ok(());
        }
        for &family in &wanted {
            let has = svc.cluster_ips.iter().any(|ip| IpFamily::of(*ip) == family);
            if has || lost.contains(&family) {
                continue;
            }
            let slot = usize::from(family == IpFamily::V6);
            let Some(cidr) = self.cidrs[slot] else {
                continue;
            };
            let ip = loop {
                let ip = nth_address(cidr, self.next[slot]).ok_or_else(|| {
                    AddressingError::ServiceCidrExhausted {
                        cidr,
                        service: svc.key(),
                    }
                })?;
                self.next[slot] += 1;
                if self.owner.insert(ip) {
                    break ip;
                }
            };
            svc.cluster_ips.push(ip);
        }
        let rank = |ip: &IpAddr| wanted.iter().position(|f| *f == IpFamily::of(*ip));
        svc.cluster_ips.sort_by_key(rank);
        if !svc.cluster_ips.is_empty() {
            svc.ip_families = svc.cluster_ips.iter().map(|ip| IpFamily::of(*ip)).collect();
        }
        Ok(())
    }

    /// The families `svc` has addresses of, in order: those it names,
    /// else its addresses', else the primary family; completed to both by
    /// a dual-stack policy. Of those the plan has no CIDR of (and `svc` no
    /// address of), PreferDualStack does without its second; any other is
    /// what that cluster's API server would refuse: left out, warned.
    fn wanted(&self, svc: &Service, warnings: &mut Vec<ServiceAddressWarning>) -> Vec<IpFamily> {
        let mut order = svc.ip_families.clone();
        for ip in &svc.cluster_ips {
            if !order.contains(&IpFamily::of(*ip)) {
                order.push(IpFamily::of(*ip));
            }
        }
        if order.is_empty() {
            let primary = self.plan.service_cidrs.first();
            order.extend(primary.map(|c| IpFamily::of(c.ip())));
        }
        let dual = svc.ip_family_policy != IpFamilyPolicy::SingleStack;
        if dual && order.len() == 1 {
            order.push(order[0].other());
        }
        order.truncate(if dual { 2 } else { 1 });
        if self.plan.service_cidrs.is_empty() {
            // Nothing is given out: the source's families stand.
            return order;
        }
        let mut out = Vec::new();
        for (i, family) in order.into_iter().enumerate() {
            let slot = usize::from(family == IpFamily::V6);
            let explicit = svc.cluster_ips.iter().any(|ip| IpFamily::of(*ip) == family);
            if explicit || self.cidrs[slot].is_some() {
                out.push(family);
                continue;
            }
            let optional = svc.ip_family_policy == IpFamilyPolicy::PreferDualStack && i > 0;
            if !optional && !svc.headless {
                warnings.push(ServiceAddressWarning::FamilyUnavailable {
                    service: svc.key(),
                    family,
                    policy: svc.ip_family_policy,
                });
            }
        }
        out
    }
}

/// Gives every explicit NodePort to the first Service in order that
/// claims it (one Service may use a number for several ports); returns
/// the (Service, port) indices that lost theirs.
fn settle_node_ports(
    services: &mut [Service],
    warnings: &mut Vec<ServiceAddressWarning>,
) -> HashSet<(usize, usize)> {
    let mut owner: HashMap<u16, String> = HashMap::new();
    let mut lost = HashSet::new();
    for (i, svc) in services.iter_mut().enumerate() {
        let key = svc.key();
        for (j, port) in svc.ports.iter_mut().enumerate() {
            let Some(n) = port.node_port else { continue };
            match owner.get(&n) {
                Some(first) if *first != key => {
                    warnings.push(ServiceAddressWarning::NodePortConflict {
                        port: n,
                        kept_by: first.clone(),
                        lost_by: key.clone(),
                    });
                    port.node_port = None;
                    lost.insert((i, j));
                }
                _ => {
                    owner.insert(n, key.clone());
                }
            }
        }
    }
    lost
}

/// Gives the ports of `svc` (the `index`th Service) that need a NodePort
/// and have none the next free one of `range`.
fn give_node_ports(
    svc: &mut Service,
    index: usize,
    lost: &HashSet<(usize, usize)>,
    range: &std::ops::RangeInclusive<u16>,
    next: &mut u32,
    used: &mut HashSet<u16>,
) -> Result<(), AddressingError> {
    let needs = match svc.kind {
        ServiceType::NodePort => true,
        ServiceType::LoadBalancer => !svc.skip_node_ports,
        ServiceType::ClusterIp | ServiceType::ExternalName => false,
    };
    if !needs {
        return Ok(());
    }
    for j in 0..svc.ports.len() {
        if svc.ports[j].node_port.is_some() || lost.contains(&(index, j)) {
            continue;
        }
        let number = svc.ports[j].port;
        let shared = svc.ports[..j]
            .iter()
            .find(|p| p.port == number && p.node_port.is_some())
            .and_then(|p| p.node_port);
        let port = match shared {
            Some(n) => n,
            None => loop {
                let n = u16::try_from(*next)
                    .ok()
                    .filter(|n| range.contains(n))
                    .ok_or_else(|| AddressingError::NodePortsExhausted {
                        first: *range.start(),
                        last: *range.end(),
                        service: svc.key(),
                    })?;
                *next += 1;
                if used.insert(n) {
                    break n;
                }
            },
        };
        svc.ports[j].node_port = Some(port);
    }
    Ok(())
}
