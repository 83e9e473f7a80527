//! The agent in cluster mode, through the real binary and real packets:
//! `bulkhead agent --kubernetes --kubeconfig` against a local API server
//! that speaks the Kubernetes list/watch protocol (the test kit's
//! [`FakeApiServer`]: no real kube-apiserver can be had here), listening
//! inside the node's namespace. Pods and policies are created, relabeled
//! and deleted in the server, and every change is verified with probes;
//! an outage, a dropped watch and a compacted history (410 Gone) keep the
//! policy in force and converge; a restarted agent adopts.
//!
//! Root only (skipped otherwise); one test at a time.

mod agent_support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use agent_support::{Node, allow, deny_ingress, in_netns, privileged, serial, until_tcp};
use bulkhead_netns_tests::apiserver::{FakeApiServer, Options};

/// Generous bound for a change to show (not a speed target).
const PATIENCE: Duration = Duration::from_secs(30);

/// A node with pods and an API server in its namespace, holding namespace
/// `x` and the pods (with their addresses in status).
fn cluster(names: &[&str]) -> (Node, FakeApiServer, std::path::PathBuf) {
    let node = Node::new(names);
    let listener = in_netns(&node.node, || TcpListener::bind("127.0.0.1:0").unwrap());
    let server = FakeApiServer::serve(listener, Options::default()).unwrap();
    let kubeconfig = node.dir.join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    server
        .apply_yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n")
        .unwrap();
    server.apply_yaml(&node.pods_yaml()).unwrap();
    (node, server, kubeconfig)
}

fn connects(node: &Node, from: &str, to: &str, want: bool) -> bool {
    until_tcp(node.pod(from), node.pod(to).ip, want, PATIENCE).is_some()
}

/// Applies `yaml` and waits until the agent enforces it.
fn change(node: &mut Node, server: &FakeApiServer, yaml: &str) {
    server.apply_yaml(yaml).unwrap();
    node.wait_revision(server.resource_version(), PATIENCE);
}

fn pod_yaml(name: &str, app: &str, ip: &str, extra_spec: &str, status: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: x, labels: {{app: {app}}}}}\n\
         spec: {{containers: [{{name: c, image: i}}]{extra_spec}}}\n\
         status: {{podIP: {ip}{status}}}\n"
    )
}

#[test]
fn pods_and_policies_from_the_api_are_enforced_and_follow_every_change() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let (mut node, server, kubeconfig) = cluster(&["a", "b", "c"]);
    node.start_kubernetes_agent(&kubeconfig, server.resource_version(), &[]);
    assert!(connects(&node, "a", "c", true), "no policy: open");
    change(
        &mut node,
        &server,
        &(deny_ingress("c") + &allow("a-to-c", "a", "c", &[80])),
    );
    assert!(connects(&node, "a", "c", true));
    assert!(connects(&node, "b", "c", false), "b is not allowed into c");
    // Relabeling moves identities: b becomes an `a`, a stops being one.
    let b_ip = node.pod("b").ip.to_string();
    let a_ip = node.pod("a").ip.to_string();
    change(&mut node, &server, &pod_yaml("b", "a", &b_ip, "", ""));
    assert!(connects(&node, "b", "c", true), "relabeled b is let in");
    let established = agent_support::Conn::open(node.pod("a"), node.pod("c").ip);
    assert!(established.ping());
    change(&mut node, &server, &pod_yaml("a", "z", &a_ip, "", ""));
    assert!(
        !established.ping(),
        "the established connection is re-judged at once"
    );
    assert!(connects(&node, "a", "c", false));
    // Deleting the allow closes c to everyone.
    server.delete("NetworkPolicy", Some("x"), "a-to-c").unwrap();
    node.wait_revision(server.resource_version(), PATIENCE);
    assert!(connects(&node, "b", "c", false));
    let status = node.status();
    assert_eq!(status["agent_source"]["kind"], "kubernetes", "{status}");
}

#[test]
fn an_outage_keeps_the_policy_and_the_agent_catches_up_after_410_and_dropped_watches() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let (mut node, server, kubeconfig) = cluster(&["a", "b", "c"]);
    server
        .apply_yaml(&(deny_ingress("c") + &allow("a-to-c", "a", "c", &[80])))
        .unwrap();
    node.start_kubernetes_agent(&kubeconfig, server.resource_version(), &[]);
    assert!(connects(&node, "b", "c", false));
    server.set_available(false);
    wait(PATIENCE, "the agent to see the outage", || {
        node.state()
            .is_some_and(|s| !s.source.connected && s.source.stale_since_unix_ms.is_some())
    });
    assert!(
        connects(&node, "a", "c", true),
        "fail-static: the allow stays"
    );
    assert!(
        connects(&node, "b", "c", false),
        "fail-static: the deny stays"
    );
    // A change made while the agent cannot see it, then the API is back.
    server
        .apply_yaml(&allow("b-to-c", "b", "c", &[80]))
        .unwrap();
    server.set_available(true);
    node.wait_revision(server.resource_version(), PATIENCE);
    assert!(connects(&node, "b", "c", true));
    assert!(node.state().unwrap().source.connected);
    // History compacted and watches dropped: the agent relists (410 Gone).
    server.compact();
    server.drop_watches();
    server.delete("NetworkPolicy", Some("x"), "b-to-c").unwrap();
    node.wait_revision(server.resource_version(), PATIENCE);
    assert!(connects(&node, "b", "c", false));
    // The policies' watch may resume at the latest revision and carry the
    // deletion; the watches of kinds with no change since their list
    // resume, after their backoff, from a forgotten revision: 410, relist.
    wait(PATIENCE, "a 410 Gone and a relist", || {
        let stats = server.stats();
        stats.gone_sent > 0 || stats.lists > 3
    });
}

#[test]
fn a_restarted_agent_adopts_the_pinned_policy_and_resumes_from_the_api() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let (mut node, server, kubeconfig) = cluster(&["a", "b", "c"]);
    server.apply_yaml(&deny_ingress("c")).unwrap();
    node.start_kubernetes_agent(&kubeconfig, server.resource_version(), &[]);
    let revision = node.state().unwrap().revision;
    node.stop_agent(nix::sys::signal::Signal::SIGKILL);
    assert!(
        connects(&node, "a", "c", false),
        "enforced while no agent runs"
    );
    node.start_kubernetes_agent(&kubeconfig, server.resource_version(), &[]);
    assert_eq!(
        node.state().unwrap().revision,
        revision,
        "adopted, not rewritten"
    );
    change(&mut node, &server, &allow("a-to-c", "a", "c", &[80]));
    assert!(connects(&node, "a", "c", true));
}

#[test]
fn pods_of_other_nodes_are_identities_not_endpoints() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let (mut node, server, kubeconfig) = cluster(&["a", "b", "c"]);
    let ip = |n: &str| node.pod(n).ip.to_string();
    let (a, b, c) = (ip("a"), ip("b"), ip("c"));
    server
        .apply_yaml(
            &(pod_yaml("a", "a", &a, ", nodeName: here", "")
                + &pod_yaml("b", "b", &b, ", nodeName: here", "")
                + &pod_yaml("c", "c", &c, ", nodeName: elsewhere", "")
                + &deny_ingress("c")
                + &deny_ingress("b")
                + &allow("c-to-b", "c", "b", &[80])),
        )
        .unwrap();
    node.start_kubernetes_agent(
        &kubeconfig,
        server.resource_version(),
        &["--node-name", "here"],
    );
    let endpoints: Vec<String> = node
        .state()
        .unwrap()
        .endpoints
        .into_iter()
        .map(|e| e.pod)
        .collect();
    assert_eq!(
        endpoints,
        ["x/a", "x/b"],
        "c runs elsewhere: its node enforces it"
    );
    assert!(
        connects(&node, "a", "c", true),
        "c's deny is its own node's to enforce"
    );
    assert!(
        connects(&node, "c", "b", true),
        "c is an identity here: the allow from c holds"
    );
    assert!(connects(&node, "a", "b", false));
}

/// How a scenario changes the cluster: through the API server, or by
/// writing manifest files (named by `file`) for the manifest source.
trait Cluster {
    /// Creates or replaces the objects of `yaml`, then waits until the
    /// agent enforces them.
    fn apply(&mut self, node: &mut Node, file: &str, yaml: &str);
    /// Removes pod `name` of the node's pods.
    fn remove_pod(&mut self, node: &mut Node, name: &str);
}

struct Api(FakeApiServer);

impl Cluster for Api {
    fn apply(&mut self, node: &mut Node, _file: &str, yaml: &str) {
        change(node, &self.0, yaml);
    }
    fn remove_pod(&mut self, node: &mut Node, name: &str) {
        self.0.delete("Pod", Some("x"), name).unwrap();
        node.wait_revision(self.0.resource_version(), PATIENCE);
    }
}

struct Manifests;

impl Cluster for Manifests {
    fn apply(&mut self, node: &mut Node, file: &str, yaml: &str) {
        node.write(&format!("{file}.yaml"), yaml);
        node.wait_synced(PATIENCE);
    }
    fn remove_pod(&mut self, node: &mut Node, name: &str) {
        let keep: String = node
            .pods_yaml()
            .split("---\n")
            .filter(|doc| !doc.is_empty() && !doc.contains(&format!("name: {name},")))
            .map(|doc| format!("---\n{doc}"))
            .collect();
        node.write("pods.yaml", &keep);
        node.wait_synced(PATIENCE);
    }
}

/// The states of a real cluster the API accepts: none stops the agent or
/// is rejected, each is enforced as Kubernetes means it.
fn real_cluster_states(node: &mut Node, cluster: &mut impl Cluster) {
    let b_ip = node.pod("b").ip.to_string();
    cluster.remove_pod(node, "b");
    cluster.apply(
        node,
        "policy",
        &(deny_ingress("c") + &allow("a-to-c", "a", "c", &[80])),
    );
    // b's address belongs to no pod: external, denied.
    assert!(connects(node, "b", "c", false));
    // An ended pod and a hostNetwork pod, both labeled app=a, claim b's
    // address: neither is a pod of the model, so b stays denied.
    cluster.apply(
        node,
        "ended",
        &pod_yaml("ended", "a", &b_ip, "", ", phase: Succeeded"),
    );
    cluster.apply(
        node,
        "host",
        &pod_yaml(
            "host",
            "a",
            &b_ip,
            ", hostNetwork: true",
            ", phase: Running",
        ),
    );
    assert!(
        connects(node, "b", "c", false),
        "ended and hostNetwork pods are no endpoints or peers"
    );
    // Two running pods claim one address: the later started keeps it.
    claims(node, cluster, &b_ip, "a");
    assert!(
        connects(node, "b", "c", true),
        "dup (app=a, started later) holds the address"
    );
    let warnings = node.state().unwrap().warnings;
    assert!(
        warnings.iter().any(|w| w.contains("both claim")),
        "{warnings:?}"
    );
    // Relabeling moves the identity at once.
    claims(node, cluster, &b_ip, "z");
    assert!(
        connects(node, "b", "c", false),
        "relabeled: no longer an `a`"
    );
    // A pod without an address yet, and a named port no pod declares.
    cluster.apply(
        node,
        "new",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: new, namespace: x, labels: {app: a}}\n\
         spec: {containers: [{name: c, image: i}]}\nstatus: {phase: Pending}\n",
    );
    cluster.apply(
        node,
        "named",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: named, namespace: x}\n\
         spec: {podSelector: {matchLabels: {app: c}}, ingress: [{ports: [{port: nope}]}]}\n",
    );
    let state = node.state().unwrap();
    assert!(
        state.warnings.iter().any(|w| w.contains("nope")),
        "{:?}",
        state.warnings
    );
    assert!(state.error.is_none());
    assert!(connects(node, "a", "c", true), "still enforcing the rest");
    assert!(connects(node, "b", "c", false));
}

/// Pods `b` (app=b, started first) and `dup` (app=`dup_app`, started
/// later) both claim address `ip`.
fn claims(node: &mut Node, cluster: &mut impl Cluster, ip: &str, dup_app: &str) {
    let started = |at: &str| format!(", phase: Running, startTime: '{at}'");
    let b = pod_yaml("b", "b", ip, "", &started("2026-01-01T00:00:00Z"));
    let dup = pod_yaml("dup", dup_app, ip, "", &started("2026-02-01T00:00:00Z"));
    cluster.apply(node, "claims", &(b + &dup));
}

#[test]
fn real_cluster_states_through_the_api() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let (mut node, server, kubeconfig) = cluster(&["a", "b", "c"]);
    node.start_kubernetes_agent(&kubeconfig, server.resource_version(), &[]);
    real_cluster_states(&mut node, &mut Api(server));
}

#[test]
fn real_cluster_states_through_the_manifest_source() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let mut node = Node::new(&["a", "b", "c"]);
    node.start_agent(&[]);
    real_cluster_states(&mut node, &mut Manifests);
}

fn wait(timeout: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
