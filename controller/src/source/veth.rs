//! Local endpoints: which pods of the model have a veth in this network
//! namespace. For each pod address, the route to it (longest prefix, main
//! table) names a device; if that device is a veth, the pod is local and
//! the veth is its host-side end. Pods whose addresses route elsewhere (or
//! nowhere) are not local.
//!
//! Links and routes are read with `ip -j` (iproute2's JSON output), one
//! process per family and one for links per scan. This module is the one
//! seam to replace with a netlink dump (rtnetlink) later.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::Command;

use ipnetwork::IpNetwork;
use serde::Deserialize;

/// A local pod and its host-side veth.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalEndpoint {
    /// Pod index in the model.
    pub pod: usize,
    /// ifindex of the host-side veth (in this namespace).
    pub ifindex: u32,
    /// Its name.
    pub ifname: String,
}

/// Reading links or routes failed.
#[derive(Debug, thiserror::Error)]
pub enum VethError {
    /// `ip` could not be run.
    #[error("running `{command}`: {source}")]
    Spawn {
        /// The command.
        command: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// `ip` failed.
    #[error("`{command}` failed: {stderr}")]
    Failed {
        /// The command.
        command: String,
        /// Its stderr.
        stderr: String,
    },
    /// `ip` printed something unexpected.
    #[error("parsing the output of `{command}`: {source}")]
    Parse {
        /// The command.
        command: String,
        /// The error.
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Debug, Deserialize)]
struct Link {
    ifindex: u32,
    ifname: String,
    #[serde(default)]
    linkinfo: Option<LinkInfo>,
}

#[derive(Debug, Deserialize)]
struct LinkInfo {
    #[serde(default)]
    info_kind: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Route {
    dst: String,
    #[serde(default)]
    dev: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

fn ip_json<T: for<'de> Deserialize<'de>>(args: &[&str]) -> Result<Vec<T>, VethError> {
    let command = format!("ip {}", args.join(" "));
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|source| VethError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(VethError::Failed {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(&text).map_err(|source| VethError::Parse { command, source })
}

/// A snapshot of the namespace's veths and unicast device routes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// veth name → ifindex.
    pub veths: BTreeMap<String, u32>,
    /// Routes: prefix → device.
    pub routes: Vec<(IpNetwork, String)>,
}

impl Snapshot {
    /// Reads links and main-table routes of the current network namespace.
    pub fn read() -> Result<Self, VethError> {
        let links: Vec<Link> = ip_json(&["-j", "-d", "link", "show"])?;
        let veths = links
            .into_iter()
            .filter(|l| {
                l.linkinfo
                    .as_ref()
                    .and_then(|i| i.info_kind.as_deref())
                    .is_some_and(|k| k == "veth")
            })
            .map(|l| (l.ifname, l.ifindex))
            .collect();
        let mut routes = Vec::new();
        for family in ["-4", "-6"] {
            let list: Vec<Route> = ip_json(&["-j", family, "route", "show", "table", "main"])?;
            for r in list {
                if r.kind.as_deref().is_some_and(|k| k != "unicast") {
                    continue;
                }
                let Some(dev) = r.dev else { continue };
                let net = if r.dst == "default" {
                    if family == "-4" {
                        "0.0.0.0/0".parse()
                    } else {
                        "::/0".parse()
                    }
                } else {
                    r.dst.parse()
                };
                if let Ok(net) = net {
                    routes.push((net, dev));
                }
            }
        }
        Ok(Self { veths, routes })
    }

    /// The device the longest matching route sends `addr` to.
    pub fn route_dev(&self, addr: IpAddr) -> Option<&str> {
        self.routes
            .iter()
            .filter(|(net, _)| net.contains(addr))
            .max_by_key(|(net, _)| net.prefix())
            .map(|(_, dev)| dev.as_str())
    }

    /// The local endpoints among `pods` (index, addresses): a pod is local
    /// when every address of it routes to the same veth. A veth claimed by
    /// two pods goes to the first; the other is logged and skipped.
    pub fn local_endpoints(&self, pods: &[(usize, Vec<IpAddr>)]) -> Vec<LocalEndpoint> {
        let mut out: Vec<LocalEndpoint> = Vec::new();
        for (pod, addrs) in pods {
            let mut devs = addrs.iter().map(|&a| self.route_dev(a));
            let Some(Some(dev)) = devs.next() else {
                continue;
            };
            if devs.any(|d| d != Some(dev)) {
                tracing::warn!(pod, "pod addresses route to different devices; not local");
                continue;
            }
            let Some(&ifindex) = self.veths.get(dev) else {
                continue;
            };
            if out.iter().any(|e| e.ifindex == ifindex) {
                tracing::warn!(pod, dev, "veth already belongs to another pod; skipped");
                continue;
            }
            out.push(LocalEndpoint {
                pod: *pod,
                ifindex,
                ifname: dev.to_owned(),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_to_a_veth_makes_a_local_endpoint() {
        let snap = Snapshot {
            veths: [("vp1".to_owned(), 7), ("vp2".to_owned(), 8)].into(),
            routes: vec![
                ("0.0.0.0/0".parse().unwrap(), "eth0".to_owned()),
                ("10.0.0.0/24".parse().unwrap(), "eth0".to_owned()),
                ("10.0.0.2/32".parse().unwrap(), "vp1".to_owned()),
                ("fd00::2/128".parse().unwrap(), "vp1".to_owned()),
                ("10.0.0.3/32".parse().unwrap(), "vp2".to_owned()),
            ],
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let pods = vec![
            (0, vec![ip("10.0.0.2"), ip("fd00::2")]),
            (1, vec![ip("10.0.0.9")]), // routes to eth0: remote
            (2, vec![ip("10.0.0.3")]),
            (3, vec![ip("10.0.0.3")]),                // same veth as pod 2
            (4, vec![ip("10.0.0.2"), ip("fd00::9")]), // split across devices
        ];
        let eps = snap.local_endpoints(&pods);
        assert_eq!(
            eps,
            vec![
                LocalEndpoint {
                    pod: 0,
                    ifindex: 7,
                    ifname: "vp1".into()
                },
                LocalEndpoint {
                    pod: 2,
                    ifindex: 8,
                    ifname: "vp2".into()
                },
            ]
        );
    }
}
