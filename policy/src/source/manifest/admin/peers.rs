//! Subjects' and rules' peers: namespaces, pods, nodes and networks.

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::wire::{NamespacedPod, Peer};
use super::{Dialect, count};
use crate::model::{AdminPeer, Selector};
use crate::source::manifest::policy::{parse_cidr, selector};
use crate::source::manifest::{Ctx, ObjectError, Problem};

/// Longest CIDR text the schema accepts.
const MAX_CIDR_LEN: usize = 43;
/// Most CIDRs in one `networks` peer.
const MAX_NETWORKS: usize = 25;

/// The peers of one rule, as far as they can be read.
pub(super) struct Read {
    /// The peers read.
    pub peers: Vec<AdminPeer>,
    /// Peers this version cannot read (only when not strict).
    pub unreadable: usize,
    /// A networks, nodes or domainNames peer is among them (they have no
    /// named ports).
    pub address_peer: bool,
}

/// Every address: what a fail-closed "Deny all" rule matches (pods are
/// addresses too, and `networks` covers them, as the API documents; the
/// pods peer says so to a reader as well).
pub(super) fn everything() -> Vec<AdminPeer> {
    vec![
        AdminPeer::Pods {
            namespaces: Selector::everything(),
            pods: Selector::everything(),
        },
        AdminPeer::Networks(vec![
            IpNetwork::V4(Ipv4Network::new([0, 0, 0, 0].into(), 0).expect("/0")),
            IpNetwork::V6(Ipv6Network::new([0u16; 8].into(), 0).expect("/0")),
        ]),
    ]
}

/// `pods`: namespace and pod selectors. v1alpha2 makes
/// `namespaceSelector` optional and requires `podSelector`; v1alpha1's
/// schema requires both, but its Go type's zero value (an empty selector:
/// everything) is what the reference analyzer and the manifests written
/// for it assume, so an absent one is read so, with a warning.
pub(super) fn namespaced_pod(
    ctx: &Ctx<'_>,
    d: &Dialect,
    p: &NamespacedPod,
    at: &str,
) -> Result<(Selector, Selector), ObjectError> {
    let read = |s: Option<&LabelSelector>, field: &str, required: bool| {
        let field = format!("{at}.{field}");
        match s {
            Some(s) => selector(ctx, s, &field),
            None if required => Err(ctx.err(field, Problem::Missing)),
            None => {
                if !d.v1alpha2() {
                    let object = &ctx.object;
                    tracing::warn!(%object, %field, "missing (the API server requires it): read as empty, which selects everything");
                }
                Ok(Selector::everything())
            }
        }
    };
    let namespaces = read(p.namespace_selector.as_ref(), "namespaceSelector", false)?;
    let pods = read(p.pod_selector.as_ref(), "podSelector", d.v1alpha2())?;
    Ok((namespaces, pods))
}

/// The peers of a rule at `at` (`spec.egress[0].to`).
pub(super) fn peers(
    ctx: &Ctx<'_>,
    d: &Dialect,
    at: &str,
    list: &[Peer],
) -> Result<Read, ObjectError> {
    let mut read = Read {
        peers: Vec::new(),
        unreadable: 0,
        address_peer: false,
    };
    for (i, p) in list.iter().enumerate() {
        let at = format!("{at}[{i}]");
        read.address_peer |= p.nodes.is_some() || p.networks.is_some() || p.domain_names.is_some();
        match peer(ctx, d, &at, p)? {
            Some(peer) => read.peers.push(peer),
            None => read.unreadable += 1,
        }
    }
    Ok(read)
}

/// One peer; `None` if it cannot be read and the object is not strict.
fn peer(ctx: &Ctx<'_>, d: &Dialect, at: &str, p: &Peer) -> Result<Option<AdminPeer>, ObjectError> {
    let set = [
        p.namespaces.is_some(),
        p.pods.is_some(),
        p.nodes.is_some(),
        p.networks.is_some(),
        p.domain_names.is_some(),
    ]
    .into_iter()
    .filter(|s| *s)
    .count();
    if set > 1 || (set == 0 && ctx.strict) {
        let fields = if at.contains(".from[") {
            "namespaces, pods"
        } else {
            "namespaces, pods, nodes, networks"
        };
        return Err(ctx.err(at, Problem::OneOf { fields, found: set }));
    }
    if set == 0 {
        // A field of a newer schema this version does not know.
        return Ok(None);
    }
    if p.domain_names.is_some() {
        if ctx.strict {
            return Err(ctx.err(
                format!("{at}.domainNames"),
                Problem::UnsupportedField("domainNames peers (experimental) are not supported"),
            ));
        }
        return Ok(None);
    }
    if let Some(ns) = &p.namespaces {
        let namespaces = selector(ctx, ns, &format!("{at}.namespaces"))?;
        return Ok(Some(AdminPeer::Pods {
            namespaces,
            pods: Selector::everything(),
        }));
    }
    if let Some(pods) = &p.pods {
        let (namespaces, pods) = namespaced_pod(ctx, d, pods, &format!("{at}.pods"))?;
        return Ok(Some(AdminPeer::Pods { namespaces, pods }));
    }
    if let Some(nodes) = &p.nodes {
        return Ok(Some(AdminPeer::Nodes(selector(
            ctx,
            nodes,
            &format!("{at}.nodes"),
        )?)));
    }
    let networks = p.networks.as_deref().unwrap_or_default();
    Ok(Some(AdminPeer::Networks(self::networks(
        ctx,
        &format!("{at}.networks"),
        networks,
    )?)))
}

/// CIDRs (1 to 25, distinct as written: a `set` list), host bits cleared
/// as ipBlock's are.
fn networks(ctx: &Ctx<'_>, at: &str, list: &[String]) -> Result<Vec<IpNetwork>, ObjectError> {
    count(ctx, at, list.len(), 1, MAX_NETWORKS)?;
    let mut out = Vec::with_capacity(list.len());
    for (i, text) in list.iter().enumerate() {
        let field = format!("{at}[{i}]");
        if list[..i].contains(text) {
            return Err(ctx.err(field, Problem::DuplicateValue(text.clone())));
        }
        if text.len() > MAX_CIDR_LEN {
            return Err(ctx.err(
                field,
                Problem::InvalidCidr {
                    value: text.clone(),
                    reason: format!("longer than {MAX_CIDR_LEN} characters"),
                },
            ));
        }
        out.push(parse_cidr(ctx, &field, text)?);
    }
    out.sort();
    out.dedup();
    Ok(out)
}
