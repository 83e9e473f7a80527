//! A deterministic synthetic cluster: namespaces, workloads, pods and
//! NetworkPolicies of the shapes real clusters use, built directly as a
//! [`Model`] (no YAML round trip).
//!
//! The cluster is drawn in three independent seeded streams so that one
//! knob can change without moving the others:
//! - the *universe* (namespaces, their labels, the workloads of each and
//!   their pod templates) depends on the seed and the namespace and app
//!   counts only;
//! - the *pods* are replicas of those workloads; the pod count only adds
//!   replicas, it never changes which workloads exist;
//! - the *policies* are drawn from the universe, never from the pods, so the
//!   same policy set applies whatever the pod count or label mode.
//!
//! That is what lets the scaling table compare pod counts under one policy
//! set.

mod policies;

use std::collections::BTreeMap;
use std::path::PathBuf;

use bulkhead_policy::model::addressing::AddressPlan;
use bulkhead_policy::model::{
    ContainerPort, Labels, Model, Namespace, Origin, Pod, Protocol, Workload,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// The label Kubernetes puts on each StatefulSet pod with the pod's name.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";

/// How many distinct label sets the pods have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LabelMode {
    /// Pods are pure replicas: every pod of a workload has its template's
    /// labels and nothing else (few distinct label sets).
    Replicas,
    /// As in real clusters: StatefulSet pods carry a unique
    /// [`POD_NAME_LABEL`], and a tenth of the pods are canaries
    /// (`track=canary`, next version).
    Realistic,
    /// Every pod carries a unique [`POD_NAME_LABEL`] (all label sets
    /// distinct), plus the realistic canaries.
    Distinct,
}

impl LabelMode {
    /// Lower-case name as used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            LabelMode::Replicas => "replicas",
            LabelMode::Realistic => "realistic",
            LabelMode::Distinct => "distinct",
        }
    }
}

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClusterSpec {
    /// Seed of every random choice.
    pub seed: u64,
    /// Namespaces, including `kube-system` and `monitoring` (at least 3).
    pub namespaces: usize,
    /// Workloads (apps) in each application namespace.
    pub apps_per_namespace: usize,
    /// Pods in total.
    pub pods: usize,
    /// NetworkPolicies in total.
    pub policies: usize,
    /// Label diversity of the pods.
    pub labels: LabelMode,
}

/// The generated cluster: the model (normalized, addresses assigned) and a
/// few facts about it.
pub struct Cluster {
    /// The model.
    pub model: Model,
    /// Distinct (namespace, pod label set) pairs.
    pub distinct_label_sets: usize,
    /// Workloads the pods are replicas of.
    pub workloads: usize,
}

/// A namespace of the universe.
struct NsInfo {
    name: String,
    labels: Labels,
    /// Team label, for cross-namespace selectors.
    team: &'static str,
    /// Env label.
    env: &'static str,
    /// Application namespace (not kube-system or monitoring).
    app: bool,
}

/// A workload (Deployment or StatefulSet) and its pod template.
struct App {
    namespace: usize,
    name: String,
    stateful: bool,
    version: u32,
    labels: Labels,
    ports: Vec<ContainerPort>,
}

/// Namespaces and workloads: everything the pods and policies are drawn from.
struct Universe {
    namespaces: Vec<NsInfo>,
    apps: Vec<App>,
}

const TEAMS: [&str; 10] = [
    "payments",
    "checkout",
    "catalog",
    "search",
    "identity",
    "billing",
    "shipping",
    "ads",
    "analytics",
    "growth",
];
const ENVS: [&str; 3] = ["prod", "staging", "dev"];
/// App names and their tiers, in the order apps are given out in a namespace.
const APPS: [(&str, &str); 16] = [
    ("web", "frontend"),
    ("api", "backend"),
    ("db", "data"),
    ("worker", "batch"),
    ("cache", "data"),
    ("gateway", "frontend"),
    ("auth", "backend"),
    ("queue", "data"),
    ("frontend", "frontend"),
    ("backend", "backend"),
    ("scheduler", "batch"),
    ("reporting", "batch"),
    ("search", "backend"),
    ("ingest", "backend"),
    ("notifier", "backend"),
    ("cart", "backend"),
];

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn port(name: &str, port: u16, protocol: Protocol) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_string()),
        port,
        protocol,
    }
}

impl Universe {
    fn new(spec: &ClusterSpec) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed ^ 0x756e_6976_6572_7365);
        let mut namespaces = vec![
            NsInfo {
                name: "kube-system".into(),
                labels: Labels::new(),
                team: "platform",
                env: "prod",
                app: false,
            },
            NsInfo {
                name: "monitoring".into(),
                labels: labels(&[
                    ("team", "platform"),
                    ("env", "prod"),
                    ("purpose", "monitoring"),
                ]),
                team: "platform",
                env: "prod",
                app: false,
            },
        ];
        for i in 0..spec.namespaces.saturating_sub(2) {
            let team = TEAMS[i % TEAMS.len()];
            let env = ENVS[(i / TEAMS.len()) % ENVS.len()];
            let mut l = labels(&[("team", team), ("env", env)]);
            if rng.random_bool(0.3) {
                l.insert("istio-injection".into(), "enabled".into());
            }
            if team == "payments" || team == "billing" {
                l.insert("compliance".into(), "pci".into());
            }
            namespaces.push(NsInfo {
                name: format!("{team}-{env}-{i}"),
                labels: l,
                team,
                env,
                app: true,
            });
        }
        let mut apps = Vec::new();
        let platform =
            |ns: usize, name: &str, extra: &[(&str, &str)], ports: Vec<ContainerPort>| {
                let mut l = labels(&[("app", name), ("tier", "system"), ("team", "platform")]);
                l.extend(labels(&[("version", "v1"), ("env", "prod")]));
                l.extend(labels(extra));
                App {
                    namespace: ns,
                    name: name.to_string(),
                    stateful: false,
                    version: 1,
                    labels: l,
                    ports,
                }
            };
        let dns_ports = vec![
            port("dns", 53, Protocol::Udp),
            port("dns-tcp", 53, Protocol::Tcp),
            port("metrics", 9153, Protocol::Tcp),
        ];
        apps.push(platform(
            0,
            "coredns",
            &[("k8s-app", "kube-dns")],
            dns_ports,
        ));
        apps.push(platform(
            0,
            "metrics-server",
            &[],
            vec![port("https", 4443, Protocol::Tcp)],
        ));
        apps.push(platform(
            1,
            "prometheus",
            &[],
            vec![port("http", 9090, Protocol::Tcp)],
        ));
        apps.push(platform(
            1,
            "grafana",
            &[],
            vec![port("http", 3000, Protocol::Tcp)],
        ));
        for (ni, ns) in namespaces.iter().enumerate().filter(|(_, n)| n.app) {
            for j in 0..spec.apps_per_namespace {
                let (base, tier) = APPS[j % APPS.len()];
                let name = match j / APPS.len() {
                    0 => base.to_string(),
                    k => format!("{base}{k}"),
                };
                let version = rng.random_range(1..=3u32);
                let v = format!("v{version}");
                let mut l = labels(&[("app", &name), ("tier", tier), ("team", ns.team)]);
                l.extend(labels(&[("version", &v), ("env", ns.env)]));
                if rng.random_bool(0.05) {
                    l.insert("legacy".into(), "true".into());
                }
                let stateful = matches!(base, "db" | "cache" | "queue");
                let http = if tier == "frontend" { 80 } else { 8080 };
                let mut ports = vec![port("http", http, Protocol::Tcp)];
                if rng.random_bool(0.8) {
                    ports.push(port("metrics", 9090, Protocol::Tcp));
                }
                match base {
                    "api" | "backend" | "auth" | "search" => {
                        ports.push(port("grpc", 50051, Protocol::Tcp))
                    }
                    "db" => ports.push(port("postgres", 5432, Protocol::Tcp)),
                    "cache" => ports.push(port("redis", 6379, Protocol::Tcp)),
                    "queue" => ports.push(port("amqp", 5672, Protocol::Tcp)),
                    "worker" | "ingest" => ports.push(port("statsd", 8125, Protocol::Udp)),
                    "gateway" => ports.push(port("diameter", 3868, Protocol::Sctp)),
                    _ => {}
                }
                apps.push(App {
                    namespace: ni,
                    name,
                    stateful,
                    version,
                    labels: l,
                    ports,
                });
            }
        }
        Self { namespaces, apps }
    }

    /// Pods: each a replica of a workload picked at random (weighted so
    /// platform workloads stay small), in the workload's namespace.
    fn pods(&self, spec: &ClusterSpec) -> Vec<Pod> {
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed ^ 0x706f_6473);
        let mut ordinals = vec![0usize; self.apps.len()];
        let platform = self
            .apps
            .iter()
            .take_while(|a| !self.namespaces[a.namespace].app)
            .count();
        let mut pods = Vec::with_capacity(spec.pods);
        for i in 0..spec.pods {
            // Every platform workload gets its first replica early; after
            // that, 1 pod in 100 is a platform pod.
            let a = if i < platform {
                i
            } else if platform == self.apps.len() || rng.random_bool(0.01) {
                rng.random_range(0..platform)
            } else {
                rng.random_range(platform..self.apps.len())
            };
            let app = &self.apps[a];
            let ordinal = ordinals[a];
            ordinals[a] += 1;
            let name = format!("{}-{ordinal}", app.name);
            let mut labels = app.labels.clone();
            let canary = spec.labels != LabelMode::Replicas
                && self.namespaces[app.namespace].app
                && rng.random_bool(0.1);
            if canary {
                labels.insert("version".into(), format!("v{}", app.version + 1));
                labels.insert("track".into(), "canary".into());
            }
            let unique = match spec.labels {
                LabelMode::Replicas => false,
                LabelMode::Realistic => app.stateful,
                LabelMode::Distinct => true,
            };
            if unique {
                labels.insert(POD_NAME_LABEL.into(), name.clone());
            }
            let (kind, owner) = if app.stateful {
                ("StatefulSet", app.name.clone())
            } else {
                (
                    "ReplicaSet",
                    format!("{}-{:08x}", app.name, rng.random::<u32>()),
                )
            };
            pods.push(Pod {
                namespace: self.namespaces[app.namespace].name.clone(),
                name,
                source: Workload {
                    kind: "Pod".into(),
                    name: String::new(),
                },
                owner: Some(Workload {
                    kind: kind.into(),
                    name: owner,
                }),
                labels,
                ports: app.ports.clone(),
                ips: Vec::new(),
                claim: Default::default(),
                node: None,
                off_network: None,
                origin: Origin::File {
                    file: PathBuf::from("synthetic/pods"),
                    document: i,
                },
            });
        }
        for p in &mut pods {
            p.source.name = p.name.clone();
        }
        pods
    }
}

impl ClusterSpec {
    /// Builds the model: namespaces, pods and policies, normalized, with
    /// addresses assigned from the default pod CIDRs.
    pub fn build(&self) -> Cluster {
        self.build_with(Some(&AddressPlan::default()))
    }

    /// Builds the model with pod addresses from `plan`, or with none (the
    /// caller gives them out, e.g. as `status.podIP`s of API objects for
    /// more pods than the default pod CIDRs hold).
    pub fn build_with(&self, plan: Option<&AddressPlan>) -> Cluster {
        assert!(
            self.namespaces >= 3,
            "need kube-system, monitoring and one app namespace"
        );
        let universe = Universe::new(self);
        let mut model = Model {
            namespaces: universe
                .namespaces
                .iter()
                .map(|n| {
                    let ns = Namespace {
                        name: n.name.clone(),
                        labels: n.labels.clone(),
                        origin: Some(Origin::File {
                            file: PathBuf::from("synthetic/namespaces"),
                            document: 0,
                        }),
                        mode: None,
                    };
                    (n.name.clone(), ns)
                })
                .collect::<BTreeMap<_, _>>(),
            pods: universe.pods(self),
            policies: policies::generate(self, &universe),
            default_mode: Default::default(),
            services: Vec::new(),
            ingresses: Vec::new(),
            admin_policies: Vec::new(),
            nodes: Vec::new(),
            node_ips: Vec::new(),
            warnings: Vec::new(),
        };
        model.normalize();
        if let Some(plan) = plan {
            plan.assign(&mut model.pods)
                .expect("the pod CIDRs hold every synthetic pod");
        }
        let mut sets: Vec<(&str, &Labels)> = model
            .pods
            .iter()
            .map(|p| (p.namespace.as_str(), &p.labels))
            .collect();
        sets.sort();
        sets.dedup();
        Cluster {
            distinct_label_sets: sets.len(),
            workloads: universe.apps.len(),
            model,
        }
    }
}

#[cfg(test)]
mod tests;
