//! Which flow records a query or a `--follow` subscription wants, and its
//! URL query string form (`pod=prod%2Fweb&verdict=denied`), shared by the
//! HTTP API and the CLI.

use std::net::IpAddr;

use super::record::{FlowRecord, FlowVerdict, IpProtocol};

/// Why a query string is not a filter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// A parameter this version does not know.
    #[error(
        "unknown flow filter {key:?} (expected pod, namespace, ip, port, protocol, verdict or policy)"
    )]
    UnknownKey {
        /// The parameter.
        key: String,
    },
    /// A parameter's value does not parse.
    #[error("bad value {value:?} for flow filter {key}: expected {expected}")]
    BadValue {
        /// The parameter.
        key: &'static str,
        /// The value as given.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A parameter given twice.
    #[error("flow filter {key} given twice")]
    Repeated {
        /// The parameter.
        key: &'static str,
    },
}

/// A conjunction of conditions; an empty filter matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// `namespace/name`: the pod is the endpoint, the source, the
    /// destination or the backend of a Service connection.
    pub pod: Option<String>,
    /// The endpoint, the source, the destination or the backend is in
    /// this namespace.
    pub namespace: Option<String>,
    /// The source, destination or backend address.
    pub ip: Option<IpAddr>,
    /// The source, destination or backend port.
    pub port: Option<u16>,
    /// The protocol.
    pub protocol: Option<IpProtocol>,
    /// The verdict.
    pub verdict: Option<FlowVerdict>,
    /// `namespace/name` of one of the deciding policies.
    pub policy: Option<String>,
}

fn bad(key: &'static str, value: &str, expected: &'static str) -> FilterError {
    FilterError::BadValue {
        key,
        value: value.to_string(),
        expected,
    }
}

fn ns_name(key: &'static str, value: &str) -> Result<String, FilterError> {
    match value.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(value.to_string())
        }
        _ => Err(bad(key, value, "namespace/name")),
    }
}

fn set<T>(slot: &mut Option<T>, key: &'static str, v: T) -> Result<(), FilterError> {
    if slot.replace(v).is_some() {
        return Err(FilterError::Repeated { key });
    }
    Ok(())
}

impl Filter {
    /// Whether no condition is set.
    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    /// Parses a URL query string (without `?`); empty values are ignored.
    pub fn from_query(query: &str) -> Result<Self, FilterError> {
        let mut f = Filter::default();
        for (k, v) in form_urlencoded::parse(query.trim_start_matches('?').as_bytes()) {
            let v = v.trim();
            if v.is_empty() {
                continue;
            }
            match &*k {
                "pod" => set(&mut f.pod, "pod", ns_name("pod", v)?)?,
                "namespace" => set(&mut f.namespace, "namespace", v.to_string())?,
                "ip" => set(
                    &mut f.ip,
                    "ip",
                    v.parse()
                        .map_err(|_| bad("ip", v, "an IPv4 or IPv6 address"))?,
                )?,
                "port" => set(
                    &mut f.port,
                    "port",
                    v.parse().map_err(|_| bad("port", v, "a port number"))?,
                )?,
                "protocol" => set(
                    &mut f.protocol,
                    "protocol",
                    IpProtocol::parse(v).ok_or_else(|| {
                        bad("protocol", v, "TCP, UDP, SCTP, ICMP, ICMPv6 or a number")
                    })?,
                )?,
                "verdict" => set(
                    &mut f.verdict,
                    "verdict",
                    v.parse()
                        .map_err(|_| bad("verdict", v, "allowed, denied or revoked"))?,
                )?,
                "policy" => set(&mut f.policy, "policy", ns_name("policy", v)?)?,
                other => {
                    return Err(FilterError::UnknownKey {
                        key: other.to_string(),
                    });
                }
            }
        }
        Ok(f)
    }

    /// The URL query string (without `?`), percent-encoded; `from_query`
    /// reads it back to an equal filter.
    pub fn to_query(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        if let Some(v) = &self.pod {
            s.append_pair("pod", v);
        }
        if let Some(v) = &self.namespace {
            s.append_pair("namespace", v);
        }
        if let Some(v) = &self.ip {
            s.append_pair("ip", &v.to_string());
        }
        if let Some(v) = &self.port {
            s.append_pair("port", &v.to_string());
        }
        if let Some(v) = &self.protocol {
            s.append_pair("protocol", &v.to_string());
        }
        if let Some(v) = &self.verdict {
            s.append_pair("verdict", v.as_str());
        }
        if let Some(v) = &self.policy {
            s.append_pair("policy", v);
        }
        s.finish()
    }

    /// Whether a record satisfies every condition.
    pub fn matches(&self, r: &FlowRecord) -> bool {
        if let Some(pod) = &self.pod {
            let (ns, name) = pod.split_once('/').unwrap_or(("", pod));
            if !r.involves_pod(ns, name) {
                return false;
            }
        }
        if let Some(ns) = &self.namespace {
            let is = |p: Option<&std::sync::Arc<super::record::PodInfo>>| {
                p.is_some_and(|p| *p.namespace == **ns)
            };
            let backend = r.backend().map(|b| &b.address);
            if !(is(r.endpoint.as_ref())
                || is(r.src.pod.as_ref())
                || is(r.dst.pod.as_ref())
                || is(backend.and_then(|b| b.pod.as_ref())))
            {
                return false;
            }
        }
        let backend = r.backend().map(|b| &b.address);
        if self.ip.is_some_and(|ip| {
            r.src.ip != ip && r.dst.ip != ip && backend.is_none_or(|b| b.ip != ip)
        }) {
            return false;
        }
        if self.port.is_some_and(|p| {
            r.src.port != p && r.dst.port != p && backend.is_none_or(|b| b.port != p)
        }) {
            return false;
        }
        if self.protocol.is_some_and(|p| r.protocol != p) {
            return false;
        }
        if self.verdict.is_some_and(|v| r.verdict != v) {
            return false;
        }
        if let Some(policy) = &self.policy
            && !r.policies.iter().any(|p| *p.name == **policy)
        {
            return false;
        }
        true
    }
}

impl std::str::FromStr for Filter {
    type Err = FilterError;
    fn from_str(s: &str) -> Result<Self, FilterError> {
        Filter::from_query(s)
    }
}

impl std::fmt::Display for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_query())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests_support::sample;

    #[test]
    fn parses_and_prints_query_strings() {
        let f = Filter::from_query(
            "pod=prod%2Fweb-1&ip=2001%3Adb8%3A%3A1&port=443&protocol=tcp&verdict=allowed&policy=prod/allow-web&namespace=",
        )
        .unwrap();
        assert_eq!(f.pod.as_deref(), Some("prod/web-1"));
        assert_eq!(f.ip, Some("2001:db8::1".parse().unwrap()));
        assert_eq!(f.protocol, Some(IpProtocol(6)));
        assert_eq!(f.namespace, None);
        let q = f.to_query();
        assert_eq!(
            q,
            "pod=prod%2Fweb-1&ip=2001%3Adb8%3A%3A1&port=443&protocol=TCP&verdict=allowed&policy=prod%2Fallow-web"
        );
        assert_eq!(Filter::from_query(&q).unwrap(), f);
        // Spaces and reserved characters survive a round trip.
        let odd = Filter {
            namespace: Some("a b&c=d+e%".into()),
            ..Default::default()
        };
        assert_eq!(Filter::from_query(&odd.to_query()).unwrap(), odd);
        assert_eq!(Filter::from_query("").unwrap(), Filter::default());
        assert_eq!(
            Filter::from_query("?verdict=denied").unwrap().verdict,
            Some(FlowVerdict::Denied)
        );
    }

    #[test]
    fn rejects_bad_queries() {
        assert!(matches!(
            Filter::from_query("color=red"),
            Err(FilterError::UnknownKey { .. })
        ));
        assert!(matches!(
            Filter::from_query("port=99999"),
            Err(FilterError::BadValue { key: "port", .. })
        ));
        assert!(matches!(
            Filter::from_query("pod=web"),
            Err(FilterError::BadValue { key: "pod", .. })
        ));
        assert!(matches!(
            Filter::from_query("verdict=maybe"),
            Err(FilterError::BadValue { .. })
        ));
        assert!(matches!(
            Filter::from_query("port=1&port=2"),
            Err(FilterError::Repeated { key: "port" })
        ));
    }

    #[test]
    fn matches_records() {
        let r = sample();
        let q = |s: &str| Filter::from_query(s).unwrap().matches(&r);
        assert!(q(""));
        assert!(q("pod=prod/web-1"));
        assert!(!q("pod=prod/db"));
        assert!(q("namespace=prod"));
        assert!(!q("namespace=dev"));
        assert!(q("ip=2001:db8::1"));
        assert!(q("ip=10.0.0.1"));
        assert!(!q("ip=10.0.0.9"));
        assert!(q("port=443") && q("port=40000") && !q("port=80"));
        assert!(q("protocol=TCP") && !q("protocol=udp"));
        assert!(q("verdict=allowed") && !q("verdict=denied"));
        assert!(q("policy=prod/allow-web") && !q("policy=prod/other"));
        assert!(q("pod=prod/web-1&verdict=allowed&port=443"));
        assert!(!q("pod=prod/web-1&verdict=denied"));
    }

    /// The backend of a Service connection matches as a pod, namespace,
    /// address and port of the record.
    #[test]
    fn matches_the_backend_of_a_service_record() {
        use crate::record::{Address, Backend, PodInfo, ServiceInfo};
        let mut r = sample();
        r.service = Some(ServiceInfo {
            namespace: Some("data".into()),
            name: Some("db".into()),
            ip: r.dst.ip,
            port: 443,
            backend: Some(Backend {
                address: Address {
                    ip: "10.0.0.2".parse().unwrap(),
                    port: 5432,
                    pod: Some(std::sync::Arc::new(PodInfo {
                        namespace: "data".into(),
                        pod: "db-0".into(),
                        workload: None,
                        labels: Default::default(),
                    })),
                    external: false,
                },
                allowed: true,
            }),
        });
        let q = |s: &str| Filter::from_query(s).unwrap().matches(&r);
        assert!(q("pod=data/db-0") && !q("pod=data/db-1"));
        assert!(q("namespace=data") && !q("namespace=dev"));
        assert!(q("ip=10.0.0.2") && q("port=5432") && !q("port=5433"));
    }
}
