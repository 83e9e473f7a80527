//! The allow-list every contender enforces: N entries of (source prefix,
//! protocol, destination port) towards the server, default deny, and its
//! rendering for each contender (iptables-restore, ipset restore, an nft
//! script, a NetworkPolicy model for Bulkhead). Pure: no I/O.
//!
//! The entries the measurements use (client → server: the UDP flood, TCP
//! connections, the sockperf ping-pong, iperf3) are always in the list;
//! the rest are filler from 172.16.0.0/12, which never matches the
//! client. Linear chains see the client's entries **last**: the worst case
//! a linear list can be in, and the one the published comparisons show.
//! Sets, maps and Bulkhead's tables do not care about the order.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use bulkhead_policy::model::{IpBlock, Model, Peer, Policy, PortMatch, PortSpec, Protocol, Rule};
use ipnetwork::{IpNetwork, Ipv4Network};

use crate::dataplane::netns::{CLIENT_IP, SERVER_IP};
use crate::synthetic::{self, app_selector, origin};

/// The UDP port of the established-flow flood.
pub const FLOOD_PORT: u16 = 9000;
/// A UDP port no entry allows (deny path).
pub const DENIED_PORT: u16 = 9001;
/// The TCP port of the connection loop.
pub const CONNECT_PORT: u16 = 9100;
/// sockperf's UDP port.
pub const SOCKPERF_PORT: u16 = 11111;
/// iperf3's TCP port.
pub const IPERF_PORT: u16 = 5201;
/// The UDP port the one-entry update adds.
pub const UPDATE_PORT: u16 = 9200;

/// One allow-list entry: traffic from `src` to the server's `port` over
/// `protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    /// Source prefix.
    pub src: Ipv4Network,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// Destination port.
    pub port: u16,
}

impl Entry {
    /// `tcp` / `udp`, as iptables, ipset and nft spell it.
    fn proto(&self) -> &'static str {
        match self.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// The client's own entries: what the measurements send.
pub fn client_entries() -> Vec<Entry> {
    let client = Ipv4Network::new(CLIENT_IP, 32).expect("a /32");
    [
        (Protocol::Udp, FLOOD_PORT),
        (Protocol::Tcp, CONNECT_PORT),
        (Protocol::Udp, SOCKPERF_PORT),
        (Protocol::Tcp, IPERF_PORT),
    ]
    .into_iter()
    .map(|(protocol, port)| Entry {
        src: client,
        protocol,
        port,
    })
    .collect()
}

/// The entry the one-entry update adds (client → UDP [`UPDATE_PORT`]).
pub fn update_entry() -> Entry {
    Entry {
        src: Ipv4Network::new(CLIENT_IP, 32).expect("a /32"),
        protocol: Protocol::Udp,
        port: UPDATE_PORT,
    }
}

/// N entries: `n - 4` distinct filler entries, then the client's four
/// (for `n` below 4, just the client's).
pub fn entries(n: usize) -> Vec<Entry> {
    entries_variant(n, 0)
}

/// Like [`entries`], with every filler entry different for each `variant`
/// (ports shifted by 100 per variant) and the client's the same: what a
/// full reload that changes the whole list but keeps the measured flow
/// allowed loads.
pub fn entries_variant(n: usize, variant: u16) -> Vec<Entry> {
    let client = client_entries();
    let filler = n.saturating_sub(client.len());
    let mut out: Vec<Entry> = (0..filler).map(|i| filler_entry(i, variant)).collect();
    out.extend(client);
    out
}

/// The `i`-th filler entry: a /24 of 172.16.0.0/12 (4,096 of them) and a
/// port of 20000 + 100 × `variant` + i / 4096 (so 100k entries need 25
/// ports per prefix), UDP and TCP alternating per port. Distinct for every
/// `i` below 409,600.
fn filler_entry(i: usize, variant: u16) -> Entry {
    let block = (i % 4096) as u32;
    let addr = Ipv4Addr::from(0xac10_0000u32 | (block << 8));
    Entry {
        src: Ipv4Network::new(addr, 24).expect("a /24"),
        protocol: if (i / 4096).is_multiple_of(2) {
            Protocol::Udp
        } else {
            Protocol::Tcp
        },
        port: 20000 + 100 * variant + (i / 4096) as u16,
    }
}

/// `iptables-restore` input for the filter table: FORWARD drops by
/// default; established and related traffic is accepted first (conntrack),
/// then one ACCEPT rule per entry, in order.
pub fn iptables_linear(entries: &[Entry]) -> String {
    let mut s = filter_head();
    for e in entries {
        let _ = writeln!(
            s,
            "-A FORWARD -s {} -d {SERVER_IP}/32 -p {p} -m {p} --dport {} -j ACCEPT",
            e.src,
            e.port,
            p = e.proto()
        );
    }
    s.push_str("COMMIT\n");
    s
}

fn filter_head() -> String {
    "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
     -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n"
        .to_owned()
}

/// Name of the ipset.
pub const IPSET: &str = "bhcmp-allow";

/// `ipset restore` input: one `hash:net,port` set of every entry, sized
/// for them.
pub fn ipset_restore(set: &str, entries: &[Entry]) -> String {
    let maxelem = (entries.len() + 1).next_power_of_two().max(65_536);
    let mut s = format!("create {set} hash:net,port family inet hashsize 4096 maxelem {maxelem}\n");
    for e in entries {
        let _ = writeln!(s, "add {set} {},{}:{}", e.src, e.proto(), e.port);
    }
    s
}

/// `iptables-restore` input matching against the ipset: established
/// first, then one rule for the whole set, then the default drop.
pub fn iptables_ipset(set: &str) -> String {
    let mut s = filter_head();
    let _ = writeln!(
        s,
        "-A FORWARD -d {SERVER_IP}/32 -m set --match-set {set} src,dst -j ACCEPT"
    );
    s.push_str("COMMIT\n");
    s
}

/// The nftables table name.
pub const NFT_TABLE: &str = "bhcmp";

/// An nft script that (re)creates the table atomically: a forward chain
/// dropping by default, conntrack first, then one lookup of an interval
/// verdict map keyed by (source prefix, protocol, port).
pub fn nft_script(entries: &[Entry]) -> String {
    let mut s = format!(
        "table ip {NFT_TABLE}\ndelete table ip {NFT_TABLE}\ntable ip {NFT_TABLE} {{\n\
         \tmap allow {{\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n\
         \t\tflags interval\n"
    );
    if !entries.is_empty() {
        s.push_str("\t\telements = {\n");
        for (i, e) in entries.iter().enumerate() {
            let sep = if i + 1 == entries.len() { "" } else { "," };
            let _ = writeln!(
                s,
                "\t\t\t{} . {} . {} : accept{sep}",
                e.src,
                e.proto(),
                e.port
            );
        }
        s.push_str("\t\t}\n");
    }
    let _ = write!(
        s,
        "\t}}\n\tchain forward {{\n\t\ttype filter hook forward priority filter; policy drop;\n\
         \t\tct state established,related accept\n\
         \t\tip daddr {SERVER_IP} ip saddr . meta l4proto . th dport vmap @allow\n\t}}\n}}\n"
    );
    s
}

/// The nft command adding one entry to the map.
pub fn nft_add(e: &Entry) -> String {
    format!(
        "add element ip {NFT_TABLE} allow {{ {} . {} . {} : accept }}",
        e.src,
        e.proto(),
        e.port
    )
}

/// The iptables arguments inserting one entry right after the conntrack
/// rule (as a controller adding a rule at the top would).
pub fn iptables_insert(e: &Entry) -> Vec<String> {
    [
        "-I",
        "FORWARD",
        "2",
        "-s",
        &e.src.to_string(),
        "-d",
        &format!("{SERVER_IP}/32"),
        "-p",
        e.proto(),
        "-m",
        e.proto(),
        "--dport",
        &e.port.to_string(),
        "-j",
        "ACCEPT",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The ipset arguments adding one entry.
pub fn ipset_add(set: &str, e: &Entry) -> Vec<String> {
    vec![
        "add".into(),
        set.into(),
        format!("{},{}:{}", e.src, e.proto(), e.port),
    ]
}

/// Namespace of the model's pods.
pub const NAMESPACE: &str = "cmp";

/// The same allow-list as a NetworkPolicy model: pods `client` and
/// `server`, and one policy isolating the server's ingress with one rule
/// per entry (`from: [ipBlock]`, `ports: [port]`). The client's egress is
/// not isolated (the other contenders do not filter it either).
pub fn model(entries: &[Entry]) -> Model {
    let policies = entries
        .chunks(POLICY_RULES_MAX)
        .enumerate()
        .map(|(i, chunk)| policy(i, chunk))
        .collect();
    let pod = |name: &str, ip: Ipv4Addr, doc| {
        synthetic::pod(NAMESPACE, name, name, vec![ip.into()], "compare", doc)
    };
    synthetic::model(
        vec![pod("client", CLIENT_IP, 0), pod("server", SERVER_IP, 1)],
        policies,
    )
}

/// Rules per NetworkPolicy of the allow-list. A Kubernetes object must fit
/// etcd's request limit (1.5 MiB by default, `--max-request-bytes`): about
/// 10,000 rules of one ipBlock and one port at most, so a real cluster
/// spreads a 100k-entry allow-list over many policies. 1,000 per policy
/// keeps each object small, as operators write them.
pub const POLICY_RULES_MAX: usize = 1000;

/// The `i`-th policy of the allow-list, allowing `entries` into the server.
pub fn policy(i: usize, entries: &[Entry]) -> Policy {
    let rules = entries
        .iter()
        .map(|e| Rule {
            peers: Some(vec![Peer::IpBlock(IpBlock {
                cidr: IpNetwork::V4(e.src),
                except: vec![],
            })]),
            ports: Some(vec![PortSpec {
                protocol: e.protocol,
                port: PortMatch::Range(e.port, e.port),
            }]),
        })
        .collect();
    Policy {
        namespace: NAMESPACE.into(),
        name: format!("allow-list-{i:04}"),
        pod_selector: app_selector("server"),
        ingress: Some(rules),
        egress: None,
        origin: origin("compare", 0),
        mode: None,
    }
}

/// The policy of the allow-list `entries` that holds its last entry, with
/// `entry` appended: the one object a one-entry update changes.
pub fn last_policy_with(entries: &[Entry], entry: Entry) -> Policy {
    let last = entries.len().saturating_sub(1) / POLICY_RULES_MAX;
    let start = last * POLICY_RULES_MAX;
    let mut with = entries[start.min(entries.len())..].to_vec();
    with.push(entry);
    policy(last, &with)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn n_distinct_entries_with_the_client_last() {
        for n in [1, 4, 10, 1000, 100_000] {
            let e = entries(n);
            assert_eq!(e.len(), n.max(4));
            assert_eq!(e[e.len() - 4..], client_entries()[..]);
            let distinct: HashSet<_> = e.iter().collect();
            assert_eq!(distinct.len(), e.len(), "n = {n}");
            let client = IpNetwork::V4(Ipv4Network::new(CLIENT_IP, 32).unwrap());
            for f in &e[..e.len() - 4] {
                assert!(!f.src.contains(CLIENT_IP), "{f:?} matches the client");
                assert!(!client.contains(f.src.ip().into()));
            }
        }
    }

    #[test]
    fn renderings() {
        let e = entries(6);
        let ipt = iptables_linear(&e);
        assert!(ipt.starts_with("*filter\n"));
        assert!(ipt.ends_with("COMMIT\n"));
        assert_eq!(ipt.matches("-j ACCEPT").count(), 7, "conntrack + 6:\n{ipt}");
        assert!(ipt.contains(
            "-A FORWARD -s 10.78.0.2/32 -d 10.78.0.3/32 -p udp -m udp --dport 9000 -j ACCEPT"
        ));
        let set = ipset_restore(IPSET, &e);
        assert!(
            set.contains("add bhcmp-allow 10.78.0.2/32,tcp:5201\n"),
            "{set}"
        );
        assert!(
            set.contains("add bhcmp-allow 172.16.1.0/24,udp:20000\n"),
            "{set}"
        );
        let nft = nft_script(&e);
        assert!(nft.contains("10.78.0.2/32 . udp . 9000 : accept"), "{nft}");
        assert_eq!(nft.matches(": accept").count(), 6);
        assert!(nft.contains("policy drop"));
        assert!(nft_add(&update_entry()).contains("10.78.0.2/32 . udp . 9200"));
        assert_eq!(
            iptables_insert(&update_entry())[..3],
            ["-I", "FORWARD", "2"]
        );
    }

    #[test]
    fn variants_change_every_filler_entry_only() {
        let (a, b) = (entries_variant(1000, 0), entries_variant(1000, 1));
        assert_eq!(a[996..], b[996..]);
        let a: HashSet<_> = a[..996].iter().collect();
        assert!(b[..996].iter().all(|e| !a.contains(e)));
    }

    #[test]
    fn the_model_allows_exactly_the_list() {
        let e = entries(50);
        let m = model(&e);
        let c = bulkhead_policy::compile::compile(&m);
        let (client, server) = (CLIENT_IP.into(), SERVER_IP.into());
        for x in client_entries() {
            let proto = match x.protocol {
                Protocol::Tcp => 6,
                _ => 17,
            };
            assert!(c.allowed(client, server, proto, x.port), "{x:?}");
        }
        assert!(!c.allowed(client, server, 17, DENIED_PORT));
        assert!(!c.allowed(client, server, 17, UPDATE_PORT));
        let filler: std::net::IpAddr = "172.16.0.9".parse().unwrap();
        assert!(c.allowed(filler, server, 17, 20000));
        assert!(!c.allowed(filler, server, 17, 20001));
    }

    #[test]
    fn the_list_spreads_over_policies_and_an_update_changes_the_last() {
        let e = entries(2500);
        let m = model(&e);
        assert_eq!(m.policies.len(), 3);
        assert_eq!(m.policies[2].name, "allow-list-0002");
        assert_eq!(m.policies[2].ingress.as_ref().unwrap().len(), 500);
        let updated = last_policy_with(&e, update_entry());
        assert_eq!(updated.name, "allow-list-0002");
        let mut with = e.clone();
        with.push(update_entry());
        assert_eq!(model(&with).policies[2], updated);
        let mut m2 = m.clone();
        m2.policies[2] = updated;
        let c = bulkhead_policy::compile::compile(&m2);
        assert!(c.allowed(CLIENT_IP.into(), SERVER_IP.into(), 17, UPDATE_PORT));
    }
}
