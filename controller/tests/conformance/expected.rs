//! The analyzer's expected output: `SRC => DST : CONNS` lines.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use super::conns::Conns;

/// One side of an expected line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// `NS/NAME[KIND]`.
    Workload {
        /// `NS/NAME`.
        key: String,
        /// `KIND`.
        kind: String,
    },
    /// `A.B.C.D-E.F.G.H[External]`, inclusive.
    External(u32, u32),
}

/// One workload's external IPv4 ranges (inclusive) with what each allows.
pub type ExternalRanges = Vec<((u32, u32), Conns)>;

/// An expected file, indexed.
#[derive(Debug, Default)]
pub struct Expected {
    /// Workload `NS/NAME` → kind, for every workload the file names.
    pub workloads: BTreeMap<String, String>,
    /// (src, dst) workload keys → allowed.
    pub pairs: HashMap<(String, String), Conns>,
    /// Workload → (external range, allowed) for traffic leaving it.
    pub egress: HashMap<String, ExternalRanges>,
    /// Workload → (external range, allowed) for traffic entering it.
    pub ingress: HashMap<String, ExternalRanges>,
    /// Lines read (ingress-controller lines excluded).
    pub lines: usize,
}

impl Expected {
    /// Parses a whole file.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut e = Expected::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.contains("{ingress-controller}") {
                continue;
            }
            let at = |msg: String| format!("line {}: {msg}: {line:?}", n + 1);
            let (src, rest) = line
                .split_once(" => ")
                .ok_or_else(|| at("no ` => `".into()))?;
            let (dst, conns) = rest
                .split_once(" : ")
                .ok_or_else(|| at("no ` : `".into()))?;
            let src = parse_peer(src).map_err(at)?;
            let dst = parse_peer(dst).map_err(at)?;
            let conns = Conns::parse_analyzer(conns).map_err(at)?;
            e.lines += 1;
            for p in [&src, &dst] {
                if let Peer::Workload { key, kind } = p {
                    e.workloads.insert(key.clone(), kind.clone());
                }
            }
            let duplicate = match (src, dst) {
                (Peer::Workload { key: s, .. }, Peer::Workload { key: d, .. }) => {
                    e.pairs.insert((s, d), conns).is_some()
                }
                (Peer::Workload { key, .. }, Peer::External(lo, hi)) => {
                    e.egress.entry(key).or_default().push(((lo, hi), conns));
                    false
                }
                (Peer::External(lo, hi), Peer::Workload { key, .. }) => {
                    e.ingress.entry(key).or_default().push(((lo, hi), conns));
                    false
                }
                (Peer::External(..), Peer::External(..)) => {
                    return Err(at("external to external".into()));
                }
            };
            if duplicate {
                return Err(at("pair listed twice".into()));
            }
        }
        Ok(e)
    }

    /// Expected allowed between two workloads (nothing if no line).
    pub fn pair(&self, src: &str, dst: &str) -> Conns {
        self.pairs
            .get(&(src.to_string(), dst.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// Expected allowed between a workload and an external IPv4 address:
    /// the union of that workload's ranges containing it, in `egress`
    /// (workload → address) or ingress direction.
    pub fn external(&self, workload: &str, addr: u32, egress: bool) -> Conns {
        let table = if egress { &self.egress } else { &self.ingress };
        let mut out = Conns::default();
        for ((lo, hi), conns) in table.get(workload).into_iter().flatten() {
            if *lo <= addr && addr <= *hi {
                out.union(conns);
            }
        }
        out
    }

    /// Every external range end named anywhere.
    pub fn external_ends(&self) -> impl Iterator<Item = u32> + '_ {
        self.egress
            .values()
            .chain(self.ingress.values())
            .flatten()
            .flat_map(|((lo, hi), _)| [*lo, *hi])
    }

    /// Every port range end named anywhere.
    pub fn port_ends(&self) -> impl Iterator<Item = u32> + '_ {
        let ext = self.egress.values().chain(self.ingress.values()).flatten();
        self.pairs
            .values()
            .chain(ext.map(|(_, c)| c))
            .flat_map(Conns::ends)
    }
}

fn parse_peer(s: &str) -> Result<Peer, String> {
    let s = s.trim();
    let (name, kind) = s
        .strip_suffix(']')
        .and_then(|s| s.rsplit_once('['))
        .ok_or_else(|| format!("peer {s:?} has no [KIND]"))?;
    if kind == "External" {
        let (lo, hi) = name
            .split_once('-')
            .ok_or_else(|| format!("external {name:?} is not A-B"))?;
        let parse = |a: &str| {
            a.parse::<Ipv4Addr>()
                .map(u32::from)
                .map_err(|e| format!("external {name:?}: {e}"))
        };
        let (lo, hi) = (parse(lo)?, parse(hi)?);
        if lo > hi {
            return Err(format!("external {name:?} is inverted"));
        }
        return Ok(Peer::External(lo, hi));
    }
    match name.split_once('/') {
        Some((ns, n)) if !ns.is_empty() && !n.is_empty() && !n.contains('/') => {
            Ok(Peer::Workload {
                key: name.to_string(),
                kind: kind.to_string(),
            })
        }
        _ => Err(format!("peer {s:?} is not NS/NAME[KIND]")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines() {
        let text = "0.0.0.0-255.255.255.255[External] => ns/a[Deployment] : All Connections\n\
                    ns/a[Deployment] => ns/b[Pod] : TCP 80,UDP 53\n\
                    {ingress-controller} => ns/b[Pod] : TCP 80\n";
        let e = Expected::parse(text).unwrap();
        assert_eq!(e.lines, 2);
        assert!(e.pair("ns/a", "ns/b").allows(0, 80));
        assert!(!e.pair("ns/b", "ns/a").allows(0, 80));
        assert!(e.external("ns/a", 0x08080808, false).allows(2, 7));
        assert!(!e.external("ns/a", 0x08080808, true).allows(2, 7));
        assert_eq!(e.workloads.len(), 2);
    }
}
