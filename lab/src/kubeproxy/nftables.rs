//! kube-proxy's nftables mode: the `nft -f` script of one family, after
//! `setupNFTables` and `syncProxyRules` in
//! `pkg/proxy/nftables/proxier.go` (see [`super`] for what is left out).
//!
//! kube-proxy owns its table, so the script replaces it whole in one
//! transaction (`nft -f` is atomic): the table is added (so that deleting
//! it cannot fail), deleted and written again, which is kube-proxy's full
//! sync with its stale chains already gone. Priorities are written as
//! numbers (`dstnat` is -100, `srcnat` 100).

use std::fmt::Write;

use super::{MASQ_MARK, NodeView, PortPlan, hash_prefix, plan};
use bulkhead_policy::model::{Backend, Model};

/// The table's name.
pub const TABLE: &str = "kube-proxy";

/// Longest chain name base (nftables' 256 less kube-proxy's 16 for the
/// prefix).
const BASE_MAX: usize = 240;

/// `hashAndTruncate`: 8 characters of the name's hash, `-`, the name.
fn hash_and_truncate(name: &str) -> String {
    let mut s = format!("{}-{name}", hash_prefix(name, 8));
    if s.len() > BASE_MAX {
        s.truncate(BASE_MAX - 3);
        s.push_str("...");
    }
    s
}

/// `servicePortChainNameBase`: `HASH-namespace/name/protocol/portname`.
pub(crate) fn port_chain_base(p: &PortPlan<'_>) -> String {
    let port = p.port.name.as_deref().unwrap_or("");
    hash_and_truncate(&format!(
        "{}/{}/{}/{port}",
        p.svc.namespace, p.svc.name, p.proto
    ))
}

/// `servicePortEndpointChainNameBase`: the port's name, `__`, the
/// endpoint's address (colons as dots) `/` port.
pub(crate) fn endpoint_chain_base(p: &PortPlan<'_>, b: &Backend) -> String {
    let port = p.port.name.as_deref().unwrap_or("");
    let ip = b.addr.to_string().replace(':', ".");
    hash_and_truncate(&format!(
        "{}/{}/{}/{port}__{ip}/{}",
        p.svc.namespace, p.svc.name, p.proto, b.port
    ))
}

/// A script being written for one family.
struct Script {
    out: String,
    /// `ip` or `ip6`.
    ipx: &'static str,
}

impl Script {
    fn line(&mut self, l: &str) {
        self.out.push_str(l);
        self.out.push('\n');
    }
    fn chain(&mut self, name: &str) {
        let ipx = self.ipx;
        self.line(&format!("add chain {ipx} {TABLE} {name}"));
    }
    fn rule(&mut self, chain: &str, rule: &str) {
        let ipx = self.ipx;
        self.line(&format!("add rule {ipx} {TABLE} {chain} {rule}"));
    }
    fn element(&mut self, set: &str, elem: &str) {
        let ipx = self.ipx;
        self.line(&format!("add element {ipx} {TABLE} {set} {{ {elem} }}"));
    }
}

/// The `nft -f` script for `model` on `node`, family `v4`.
pub fn script(model: &Model, node: &NodeView, v4: bool) -> String {
    let (ipx, addr) = if v4 {
        ("ip", "ipv4_addr")
    } else {
        ("ip6", "ipv6_addr")
    };
    let mut s = Script {
        out: String::new(),
        ipx,
    };
    setup(&mut s, addr, node, v4);
    let local = node.pod_cidr(v4).map(|c| c.to_string());
    for p in plan(model, node, v4) {
        service_port(&mut s, &p, local.as_deref());
    }
    s.out
}

/// `setupNFTables`: the table, base chains, jumps, masquerading, the
/// sets and maps and the dispatch and no-endpoint rules.
fn setup(s: &mut Script, addr: &str, node: &NodeView, v4: bool) {
    let ipx = s.ipx;
    for verb in ["add", "delete", "add"] {
        s.line(&format!("{verb} table {ipx} {TABLE}"));
    }
    for (name, kind, hook, prio) in [
        ("filter-prerouting", "filter", "prerouting", -110),
        ("filter-input", "filter", "input", -110),
        ("filter-forward", "filter", "forward", -110),
        ("filter-output", "filter", "output", -110),
        ("filter-output-post-dnat", "filter", "output", -90),
        ("nat-prerouting", "nat", "prerouting", -100),
        ("nat-output", "nat", "output", -100),
        ("nat-postrouting", "nat", "postrouting", 100),
    ] {
        s.line(&format!(
            "add chain {ipx} {TABLE} {name} {{ type {kind} hook {hook} priority {prio} ; }}"
        ));
    }
    let mut made: Vec<&str> = Vec::new();
    for (dst, src, extra) in [
        ("nodeport-endpoints-check", "filter-input", "ct state new "),
        ("service-endpoints-check", "filter-input", "ct state new "),
        ("service-endpoints-check", "filter-forward", "ct state new "),
        ("service-endpoints-check", "filter-output", "ct state new "),
        ("firewall-check", "filter-prerouting", "ct state new "),
        ("firewall-check", "filter-output", "ct state new "),
        ("services", "nat-output", ""),
        ("services", "nat-prerouting", ""),
        ("masquerading", "nat-postrouting", ""),
        ("cluster-ips-check", "filter-forward", "ct state new "),
        (
            "cluster-ips-check",
            "filter-output-post-dnat",
            "ct state new ",
        ),
    ] {
        if !made.contains(&dst) {
            s.chain(dst);
            made.push(dst);
        }
        s.rule(src, &format!("{extra}jump {dst}"));
    }
    s.chain("mark-for-masquerade");
    s.rule(
        "mark-for-masquerade",
        &format!("mark set mark or {MASQ_MARK}"),
    );
    s.rule("masquerading", &format!("mark and {MASQ_MARK} == 0 return"));
    s.rule("masquerading", &format!("mark set mark xor {MASQ_MARK}"));
    s.rule("masquerading", "masquerade fully-random");
    s.line(&format!(
        "add set {ipx} {TABLE} cluster-ips {{ type {addr} ; }}"
    ));
    s.rule(
        "cluster-ips-check",
        &format!("{ipx} daddr @cluster-ips reject"),
    );
    s.line(&format!(
        "add set {ipx} {TABLE} nodeport-ips {{ type {addr} ; }}"
    ));
    for a in node.addresses.iter().filter(|a| a.is_ipv4() == v4) {
        s.element("nodeport-ips", &a.to_string());
    }
    let vmap = format!("{addr} . inet_proto . inet_service : verdict");
    s.line(&format!(
        "add map {ipx} {TABLE} no-endpoint-services {{ type {vmap} ; }}"
    ));
    s.line(&format!(
        "add map {ipx} {TABLE} no-endpoint-nodeports {{ type inet_proto . inet_service : verdict ; }}"
    ));
    s.chain("reject-chain");
    s.rule("reject-chain", "reject");
    s.rule(
        "service-endpoints-check",
        &format!("{ipx} daddr . meta l4proto . th dport vmap @no-endpoint-services"),
    );
    s.rule(
        "nodeport-endpoints-check",
        &format!("{ipx} daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports"),
    );
    s.line(&format!(
        "add map {ipx} {TABLE} firewall-ips {{ type {vmap} ; }}"
    ));
    s.rule(
        "firewall-check",
        &format!("{ipx} daddr . meta l4proto . th dport vmap @firewall-ips"),
    );
    s.line(&format!(
        "add map {ipx} {TABLE} service-ips {{ type {vmap} ; }}"
    ));
    s.line(&format!(
        "add map {ipx} {TABLE} service-nodeports {{ type inet_proto . inet_service : verdict ; }}"
    ));
    s.rule(
        "services",
        &format!("{ipx} daddr . meta l4proto . th dport vmap @service-ips"),
    );
    s.rule(
        "services",
        &format!("{ipx} daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports"),
    );
}

/// The chains, elements and rules of one Service port, in kube-proxy's
/// order.
fn service_port(s: &mut Script, p: &PortPlan<'_>, local: Option<&str>) {
    let ipx = s.ipx;
    let base = port_chain_base(p);
    let cluster_chain = format!("service-{base}");
    let local_chain = format!("local-{base}");
    let ext_chain = format!("external-{base}");
    let endpoints: Vec<(String, &Backend)> = p
        .reachable
        .iter()
        .map(|b| (format!("endpoint-{}", endpoint_chain_base(p, b)), b))
        .collect();
    for (c, _) in &endpoints {
        s.chain(c);
    }
    if !p.cluster.is_empty() {
        s.chain(&cluster_chain);
    }
    if !p.local.is_empty() {
        s.chain(&local_chain);
    }
    if p.uses_external_chain() {
        s.chain(&ext_chain);
    }
    let internal_chain = if p.internal_local() {
        &local_chain
    } else {
        &cluster_chain
    };
    let external_policy = if p.external_local() {
        &local_chain
    } else {
        &cluster_chain
    };
    let no_endpoints = if p.has_endpoints {
        "drop"
    } else {
        "goto reject-chain"
    };
    let (proto, port, cip) = (p.proto, p.port.port, p.cluster_ip);
    s.element("cluster-ips", &cip.to_string());
    if p.has_internal_endpoints() {
        s.element(
            "service-ips",
            &format!("{cip} . {proto} . {port} : goto {internal_chain}"),
        );
    } else {
        s.element(
            "no-endpoint-services",
            &format!("{cip} . {proto} . {port} : {no_endpoints}"),
        );
    }
    for ip in p.external_ips.iter().chain(&p.lb_ips) {
        if p.has_endpoints {
            s.element(
                "service-ips",
                &format!("{ip} . {proto} . {port} : goto {ext_chain}"),
            );
        }
        if !p.has_external_endpoints() {
            s.element(
                "no-endpoint-services",
                &format!("{ip} . {proto} . {port} : {no_endpoints}"),
            );
        }
    }
    if let Some(np) = p.node_port {
        if p.has_endpoints {
            s.element(
                "service-nodeports",
                &format!("{proto} . {np} : goto {ext_chain}"),
            );
        }
        if !p.has_external_endpoints() {
            s.element(
                "no-endpoint-nodeports",
                &format!("{proto} . {np} : {no_endpoints}"),
            );
        }
    }
    if p.has_internal_endpoints()
        && let Some(cidr) = local
    {
        s.rule(
            internal_chain,
            &format!("{ipx} daddr {cip} {proto} dport {port} {ipx} saddr != {cidr} jump mark-for-masquerade"),
        );
    }
    if p.uses_external_chain() {
        if !p.external_local() {
            s.rule(&ext_chain, "jump mark-for-masquerade");
        } else {
            if let Some(cidr) = local {
                s.rule(
                    &ext_chain,
                    &format!("{ipx} saddr {cidr} goto {cluster_chain}"),
                );
            }
            s.rule(&ext_chain, "fib saddr type local jump mark-for-masquerade");
            s.rule(
                &ext_chain,
                &format!("fib saddr type local goto {cluster_chain}"),
            );
        }
        if p.has_external_endpoints() {
            s.rule(&ext_chain, &format!("goto {external_policy}"));
        }
    }
    if !p.cluster.is_empty() {
        to_endpoints(s, p, &cluster_chain, &p.cluster);
    }
    if !p.local.is_empty() {
        to_endpoints(s, p, &local_chain, &p.local);
    }
    for (chain, b) in &endpoints {
        s.rule(
            chain,
            &format!("{ipx} saddr {} jump mark-for-masquerade", b.addr),
        );
        s.rule(
            chain,
            &format!(
                "meta l4proto {proto} dnat to {}",
                PortPlan::endpoint_string(b)
            ),
        );
    }
}

/// `numgen random mod N vmap { 0 : goto endpoint-..., ... }`.
fn to_endpoints(s: &mut Script, p: &PortPlan<'_>, chain: &str, endpoints: &[Backend]) {
    let mut elems = String::new();
    for (i, b) in endpoints.iter().enumerate() {
        if i > 0 {
            elems.push_str(", ");
        }
        let _ = write!(elems, "{i} : goto endpoint-{}", endpoint_chain_base(p, b));
    }
    s.rule(
        chain,
        &format!("numgen random mod {} vmap {{ {elems} }}", endpoints.len()),
    );
}
