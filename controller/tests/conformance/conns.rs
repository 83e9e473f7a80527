//! Allowed port sets per protocol, as both sides report them.

/// Protocols in probe and output order.
pub const PROTOCOLS: [&str; 3] = ["TCP", "UDP", "SCTP"];

/// Allowed inclusive port ranges per protocol ([`PROTOCOLS`] order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conns(pub [Vec<(u32, u32)>; 3]);

impl Conns {
    /// Every port of every protocol.
    pub fn all() -> Self {
        Conns(std::array::from_fn(|_| vec![(1, 65535)]))
    }

    /// Whether `port` of protocol number `proto` (index in [`PROTOCOLS`]) is allowed.
    pub fn allows(&self, proto: usize, port: u32) -> bool {
        self.0[proto]
            .iter()
            .any(|&(lo, hi)| lo <= port && port <= hi)
    }

    /// Adds every range of `other`.
    pub fn union(&mut self, other: &Conns) {
        for (mine, theirs) in self.0.iter_mut().zip(&other.0) {
            mine.extend_from_slice(theirs);
        }
    }

    /// Every range end of every protocol.
    pub fn ends(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().flatten().flat_map(|&(lo, hi)| [lo, hi])
    }

    /// The analyzer's CONNS column: `All Connections`, or
    /// `SCTP 1-65535,TCP 80,8080-8090,UDP 53`.
    pub fn parse_analyzer(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "All Connections" {
            return Ok(Conns::all());
        }
        let mut conns = Conns::default();
        let mut current: Option<usize> = None;
        for token in text.split(',').map(str::trim) {
            let range = match token.split_once(' ') {
                Some((proto, range)) => {
                    let i = PROTOCOLS
                        .iter()
                        .position(|p| *p == proto)
                        .ok_or_else(|| format!("unknown protocol {proto:?} in {text:?}"))?;
                    current = Some(i);
                    range.trim()
                }
                None => token,
            };
            let proto =
                current.ok_or_else(|| format!("port {token:?} before any protocol in {text:?}"))?;
            let (lo, hi) = match range.split_once('-') {
                Some((lo, hi)) => (parse_port(lo, text)?, parse_port(hi, text)?),
                None => {
                    let p = parse_port(range, text)?;
                    (p, p)
                }
            };
            if lo > hi {
                return Err(format!("empty range {range:?} in {text:?}"));
            }
            conns.0[proto].push((lo, hi));
        }
        Ok(conns)
    }

    /// Our JSON `allowed` object: `{"TCP":[[lo,hi],...],"UDP":[...],"SCTP":[...]}`.
    pub fn parse_json(value: &serde_json::Value) -> Result<Self, String> {
        let obj = value
            .as_object()
            .ok_or_else(|| format!("`allowed` is not an object: {value}"))?;
        if let Some(extra) = obj.keys().find(|k| !PROTOCOLS.contains(&k.as_str())) {
            return Err(format!("unknown protocol key {extra:?} in {value}"));
        }
        let mut conns = Conns::default();
        for (i, proto) in PROTOCOLS.iter().enumerate() {
            let ranges = obj
                .get(*proto)
                .and_then(|r| r.as_array())
                .ok_or_else(|| format!("missing {proto} array in {value}"))?;
            for r in ranges {
                let pair = r
                    .as_array()
                    .filter(|a| a.len() == 2)
                    .and_then(|a| Some((a[0].as_u64()?, a[1].as_u64()?)))
                    .ok_or_else(|| format!("bad range {r} in {value}"))?;
                let (lo, hi) = (pair.0 as u32, pair.1 as u32);
                if !(1 <= lo && lo <= hi && hi <= 65535) {
                    return Err(format!("range {r} outside 1-65535 or inverted in {value}"));
                }
                conns.0[i].push((lo, hi));
            }
        }
        Ok(conns)
    }
}

fn parse_port(s: &str, context: &str) -> Result<u32, String> {
    s.trim()
        .parse::<u32>()
        .ok()
        .filter(|p| (1..=65535).contains(p))
        .ok_or_else(|| format!("bad port {s:?} in {context:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_analyzer_conns() {
        let c = Conns::parse_analyzer("SCTP 1-65535,TCP 1-65535,UDP 1-5352,5354-65535").unwrap();
        assert!(c.allows(2, 9) && c.allows(0, 65535));
        assert!(c.allows(1, 5352) && !c.allows(1, 5353) && c.allows(1, 5354));
        let c = Conns::parse_analyzer("TCP 80").unwrap();
        assert!(c.allows(0, 80) && !c.allows(0, 81) && !c.allows(1, 80));
        assert_eq!(
            Conns::parse_analyzer("All Connections").unwrap(),
            Conns::all()
        );
        assert!(Conns::parse_analyzer("80").is_err());
        assert!(Conns::parse_analyzer("ICMP 1").is_err());
    }
}
