//! kube-proxy's iptables mode: the `iptables-restore` (or
//! `ip6tables-restore`) input of one family, after `syncProxyRules` in
//! `pkg/proxy/iptables/proxier.go` (see [`super`] for what is left out).
//!
//! kube-proxy restores with `--noflush` and ensures its jumps from the
//! built-in chains one by one, since other software shares the node's
//! tables; the lab's node namespace has no other rules, so the input
//! declares the built-in chains too (with kube-proxy's jumps, in the order
//! its prepends leave them) and is restored without `--noflush`: one
//! atomic replacement of both tables, stale chains included.

use super::{MASQ_MARK, NodeView, PortPlan, hash_prefix, plan};
use bulkhead_policy::model::{Backend, Model};

const SERVICES: &str = "KUBE-SERVICES";
const EXTERNAL_SERVICES: &str = "KUBE-EXTERNAL-SERVICES";
const FORWARD: &str = "KUBE-FORWARD";
const NODEPORTS: &str = "KUBE-NODEPORTS";
const FIREWALL: &str = "KUBE-PROXY-FIREWALL";
const POSTROUTING: &str = "KUBE-POSTROUTING";
const MARK_MASQ: &str = "KUBE-MARK-MASQ";

/// `--ctstate NEW` match.
const NEW: &str = "-m conntrack --ctstate NEW";

/// The `KUBE-SVC-`, `KUBE-SVL-`, `KUBE-EXT-` name of a Service port:
/// `portProtoHash` (SHA-256 of name and protocol, base32, 16 characters).
pub fn port_chain(prefix: &str, port_name: &str, proto: &str) -> String {
    format!(
        "{prefix}{}",
        hash_prefix(&format!("{port_name}{proto}"), 16)
    )
}

/// The `KUBE-SEP-` name of an endpoint of a Service port.
pub fn endpoint_chain(port_name: &str, proto: &str, endpoint: &str) -> String {
    format!(
        "KUBE-SEP-{}",
        hash_prefix(&format!("{port_name}{proto}{endpoint}"), 16)
    )
}

/// The probability of the `i`th of `n` endpoints' rule (`1/(n-i)`), as
/// kube-proxy formats it (`%0.10f`).
pub fn probability(left: usize) -> String {
    format!("{:.10}", 1.0 / left as f64)
}

/// The rules being written: chain declarations and rules of both tables.
#[derive(Default)]
struct Tables {
    filter_chains: Vec<String>,
    filter_rules: Vec<String>,
    nat_chains: Vec<String>,
    nat_rules: Vec<String>,
}

impl Tables {
    fn nat_chain(&mut self, name: &str) {
        self.nat_chains.push(format!(":{name} - [0:0]"));
    }
}

/// The `iptables-restore` input for `model` on `node`, family `v4`
/// (`ip6tables-restore` for IPv6).
pub fn restore_input(model: &Model, node: &NodeView, v4: bool) -> String {
    let mut t = Tables::default();
    for c in [SERVICES, EXTERNAL_SERVICES, FORWARD, NODEPORTS, FIREWALL] {
        t.filter_chains.push(format!(":{c} - [0:0]"));
    }
    for c in [SERVICES, NODEPORTS, POSTROUTING, MARK_MASQ] {
        t.nat_chain(c);
    }
    t.nat_rules.extend([
        format!("-A {POSTROUTING} -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN"),
        format!("-A {POSTROUTING} -j MARK --xor-mark {MASQ_MARK}"),
        format!("-A {POSTROUTING} -j MASQUERADE --random-fully"),
        format!("-A {MARK_MASQ} -j MARK --or-mark {MASQ_MARK}"),
    ]);
    let local = node.pod_cidr(v4).map(|c| c.to_string());
    for p in plan(model, node, v4) {
        service_port(&mut t, &p, local.as_deref());
    }
    // Localhost NodePorts are off: never to loopback.
    let not_loopback = if v4 { "127.0.0.0/8" } else { "::1/128" };
    t.nat_rules.push(format!(
        "-A {SERVICES} -m addrtype --dst-type LOCAL ! -d {not_loopback} -j {NODEPORTS}"
    ));
    if !node.conntrack_tcp_liberal {
        t.filter_rules.push(format!(
            "-A {FORWARD} -m conntrack --ctstate INVALID -j DROP"
        ));
    }
    t.filter_rules.extend([
        format!("-A {FORWARD} -m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT"),
        format!("-A {FORWARD} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
    ]);
    render(&t)
}

/// The whole input: both tables, built-in chains with kube-proxy's jumps.
fn render(t: &Tables) -> String {
    let mut out =
        String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    let lines = |out: &mut String, v: &[String]| {
        for l in v {
            out.push_str(l);
            out.push('\n');
        }
    };
    lines(&mut out, &t.filter_chains);
    // kube-proxy prepends each jump in turn, so each built-in chain
    // ends up with them in reverse order of its list.
    for jump in [
        format!("-A INPUT {NEW} -j {FIREWALL}"),
        format!("-A INPUT -j {NODEPORTS}"),
        format!("-A INPUT {NEW} -j {EXTERNAL_SERVICES}"),
        format!("-A FORWARD {NEW} -j {FIREWALL}"),
        format!("-A FORWARD -j {FORWARD}"),
        format!("-A FORWARD {NEW} -j {SERVICES}"),
        format!("-A FORWARD {NEW} -j {EXTERNAL_SERVICES}"),
        format!("-A OUTPUT {NEW} -j {FIREWALL}"),
        format!("-A OUTPUT {NEW} -j {SERVICES}"),
    ] {
        out.push_str(&jump);
        out.push('\n');
    }
    lines(&mut out, &t.filter_rules);
    out.push_str("COMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n");
    lines(&mut out, &t.nat_chains);
    out.push_str(&format!(
        "-A PREROUTING -j {SERVICES}\n-A OUTPUT -j {SERVICES}\n-A POSTROUTING -j {POSTROUTING}\n"
    ));
    lines(&mut out, &t.nat_rules);
    out.push_str("COMMIT\n");
    out
}

/// The rules of one Service port, in kube-proxy's order.
fn service_port(t: &mut Tables, p: &PortPlan<'_>, local: Option<&str>) {
    let proto = p.proto;
    let m = format!("-m {proto} -p {proto}");
    let svc_chain = port_chain("KUBE-SVC-", &p.name, proto);
    let svl_chain = port_chain("KUBE-SVL-", &p.name, proto);
    let ext_chain = port_chain("KUBE-EXT-", &p.name, proto);
    let internal_chain = if p.internal_local() {
        &svl_chain
    } else {
        &svc_chain
    };
    let external_policy_chain = if p.external_local() {
        &svl_chain
    } else {
        &svc_chain
    };
    let (internal_target, external_target) = if !p.has_endpoints {
        ("REJECT", "REJECT")
    } else {
        ("DROP", "DROP")
    };
    let port = p.port.port;
    let cip = p.cluster_ip;
    if p.has_internal_endpoints() {
        t.nat_rules.push(format!(
            "-A {SERVICES} {m} -d {cip} --dport {port} -j {internal_chain}"
        ));
    } else {
        t.filter_rules.push(format!(
            "-A {SERVICES} {m} -d {cip} --dport {port} -j {internal_target}"
        ));
    }
    for ip in p.external_ips.iter().chain(&p.lb_ips) {
        if p.has_endpoints {
            t.nat_rules.push(format!(
                "-A {SERVICES} {m} -d {ip} --dport {port} -j {ext_chain}"
            ));
        }
        if !p.has_external_endpoints() {
            t.filter_rules.push(format!(
                "-A {EXTERNAL_SERVICES} {m} -d {ip} --dport {port} -j {external_target}"
            ));
        }
    }
    if let Some(np) = p.node_port {
        if p.has_endpoints {
            t.nat_rules
                .push(format!("-A {NODEPORTS} {m} --dport {np} -j {ext_chain}"));
        }
        if !p.has_external_endpoints() {
            t.filter_rules.push(format!(
                "-A {EXTERNAL_SERVICES} -m addrtype --dst-type LOCAL {m} --dport {np} -j {external_target}"
            ));
        }
    }
    if p.has_internal_endpoints()
        && let Some(cidr) = local
    {
        // Off-cluster sources of ClusterIP traffic are masqueraded.
        t.nat_rules.push(format!(
            "-A {internal_chain} {m} -d {cip} --dport {port} ! -s {cidr} -j {MARK_MASQ}"
        ));
    }
    if p.uses_external_chain() {
        t.nat_chain(&ext_chain);
        external_rules(t, p, &ext_chain, &svc_chain, external_policy_chain, local);
    }
    if !p.cluster.is_empty() {
        t.nat_chain(&svc_chain);
        to_endpoints(t, p, &svc_chain, &p.cluster);
    }
    if !p.local.is_empty() {
        t.nat_chain(&svl_chain);
        to_endpoints(t, p, &svl_chain, &p.local);
    }
    for b in &p.reachable {
        let ep = PortPlan::endpoint_string(b);
        let chain = endpoint_chain(&p.name, proto, &ep);
        t.nat_chain(&chain);
        // Hairpin: a pod reaching itself is masqueraded, so the answer
        // comes back through the node.
        t.nat_rules
            .push(format!("-A {chain} -s {} -j {MARK_MASQ}", b.addr));
        t.nat_rules
            .push(format!("-A {chain} {m} -j DNAT --to-destination {ep}"));
    }
}

/// The `KUBE-EXT-` chain's rules: masquerade everything (Cluster policy),
/// or (Local policy) short-circuit pods and the node itself to the
/// cluster chain and send the rest to the local endpoints.
fn external_rules(
    t: &mut Tables,
    p: &PortPlan<'_>,
    ext: &str,
    svc: &str,
    policy: &str,
    local: Option<&str>,
) {
    if !p.external_local() {
        t.nat_rules.push(format!("-A {ext} -j {MARK_MASQ}"));
    } else {
        if let Some(cidr) = local {
            t.nat_rules.push(format!("-A {ext} -s {cidr} -j {svc}"));
        }
        t.nat_rules.push(format!(
            "-A {ext} -m addrtype --src-type LOCAL -j {MARK_MASQ}"
        ));
        t.nat_rules
            .push(format!("-A {ext} -m addrtype --src-type LOCAL -j {svc}"));
    }
    if p.has_external_endpoints() {
        t.nat_rules.push(format!("-A {ext} -j {policy}"));
    }
}

/// The random choice among `endpoints`: rule `i` of `n` matches with
/// probability `1/(n-i)`, the last always.
fn to_endpoints(t: &mut Tables, p: &PortPlan<'_>, chain: &str, endpoints: &[Backend]) {
    let n = endpoints.len();
    for (i, b) in endpoints.iter().enumerate() {
        let ep = endpoint_chain(&p.name, p.proto, &PortPlan::endpoint_string(b));
        if i + 1 < n {
            t.nat_rules.push(format!(
                "-A {chain} -m statistic --mode random --probability {} -j {ep}",
                probability(n - i)
            ));
        } else {
            t.nat_rules.push(format!("-A {chain} -j {ep}"));
        }
    }
}
