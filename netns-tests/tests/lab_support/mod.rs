//! Shared by the `lab_*` tests: the `bulkhead` binary, manifests, a guard
//! that takes the lab down however the test ends, and a snapshot of what a
//! lab could leave behind.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

pub use bulkhead_netns_tests::{bulkhead_bin, privileged};

fn pod(ns: &str, name: &str) -> String {
    let ports: String = ["TCP", "UDP", "SCTP"]
        .iter()
        .flat_map(|p| [80, 81].map(|n| format!("      - {{containerPort: {n}, protocol: {p}}}\n")))
        .collect();
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata: {{namespace: {ns}, name: {name}, labels: {{pod: {name}}}}}\n\
         spec:\n  containers:\n  - name: c\n    ports:\n{ports}"
    )
}

/// Pods x/a, y/a and y/b without container ports (the lab's own servers
/// hold none, so a test's servers can answer), y isolated for ingress,
/// and y/b open to x/a on TCP 80 and UDP 81 (policies `y/default-deny`,
/// `y/allow-xa`).
pub fn xa_into_yb() -> String {
    bare_pods(&[("x", "a"), ("y", "a"), ("y", "b")])
        + "\
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: y, name: default-deny}
spec: {podSelector: {}, policyTypes: [Ingress]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: y, name: allow-xa}
spec:
  podSelector: {matchLabels: {pod: b}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: x}}
      podSelector: {matchLabels: {pod: a}}
    ports: [{protocol: TCP, port: 80}, {protocol: UDP, port: 81}]
"
}

/// Pods `(namespace, name)` labelled `pod: NAME`, without container ports.
pub fn bare_pods(pods: &[(&str, &str)]) -> String {
    pods.iter()
        .map(|(ns, n)| {
            format!(
                "---\napiVersion: v1\nkind: Pod\n\
                 metadata: {{namespace: {ns}, name: {n}, labels: {{pod: {n}}}}}\n\
                 spec: {{containers: [{{name: c}}]}}\n"
            )
        })
        .collect()
}

/// Manifests of the three pods.
pub fn pods_yaml() -> String {
    [("x", "a"), ("x", "b"), ("y", "a")]
        .iter()
        .map(|(ns, n)| pod(ns, n))
        .collect()
}

/// Lab tests in one binary run one at a time: each compares the whole
/// machine before and after.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `bulkhead args...`.
pub fn bulkhead(args: &[&str]) -> Output {
    let out = Command::new(bulkhead_bin())
        .args(args)
        // `lab up` registers its pods with this chained plugin.
        .env("BULKHEAD_CNI", bulkhead_netns_tests::cni_bin())
        .output()
        .expect("run bulkhead");
    eprintln!(
        "$ bulkhead {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim_end()
    );
    out
}

/// Runs `bulkhead args...` and insists on success; returns stdout.
pub fn bulkhead_ok(args: &[&str]) -> String {
    let out = bulkhead(args);
    assert!(
        out.status.success(),
        "bulkhead {args:?} failed: {:?}",
        out.status
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// JSON Lines.
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// What a lab could leave behind: named namespaces, links of this
/// namespace, mount points, the lab and agent state directory tree, and
/// `bulkhead` processes (not zombies).
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    netns: Vec<String>,
    links: Vec<String>,
    mounts: Vec<String>,
    run: Vec<PathBuf>,
    processes: Vec<String>,
}

/// Command lines of live processes that mention `needle`.
pub fn processes_with(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmd.contains(needle) {
            out.push(cmd);
        }
    }
    out.sort();
    out
}

/// Mount points of this mount namespace.
pub fn mount_points() -> Vec<String> {
    let mut m: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .collect();
    m.sort();
    m
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        out.push(e.path());
        walk(&e.path(), out);
    }
}

/// Takes a [`Snapshot`].
pub fn snapshot() -> Snapshot {
    let text = |args: &[&str]| {
        let out = Command::new("ip").args(args).output().expect("run ip");
        assert!(out.status.success(), "ip {args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut netns: Vec<String> = text(&["netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    netns.sort();
    let mut links: Vec<String> = text(&["-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(|s| s.trim().to_owned()))
        .collect();
    links.sort();
    let mut run = Vec::new();
    let root = Path::new("/run/bulkhead");
    if root.exists() {
        run.push(root.to_owned());
    }
    walk(root, &mut run);
    run.sort();
    Snapshot {
        netns,
        links,
        mounts: mount_points(),
        run,
        processes: processes_with("/run/bulkhead/lab/"),
    }
}

/// A lab that is taken down when dropped, also when the test panics.
pub struct Lab {
    /// Its name.
    pub name: String,
    /// Its manifests.
    pub manifests: tempdir::Dir,
}

impl Lab {
    /// A lab named `name` over manifests `yaml` (not yet up).
    pub fn new(name: &str, yaml: &str) -> Lab {
        let manifests = tempdir::Dir::new(name);
        std::fs::write(manifests.path().join("manifests.yaml"), yaml).expect("write manifests");
        Lab {
            name: name.to_owned(),
            manifests,
        }
    }

    /// `bulkhead lab up` with `extra` arguments.
    pub fn up(&self, extra: &[&str]) -> Output {
        let dir = self.manifests.path().display().to_string();
        let mut args = vec!["lab", "up", "--name", &self.name, "--manifests", &dir];
        args.extend_from_slice(extra);
        bulkhead(&args)
    }

    /// `bulkhead lab <cmd> --name <name> extra...`, insisting on success.
    pub fn ok(&self, cmd: &str, extra: &[&str]) -> String {
        let mut args = vec!["lab", cmd, "--name", &self.name];
        args.extend_from_slice(extra);
        bulkhead_ok(&args)
    }

    /// The lab's directory.
    pub fn dir(&self) -> PathBuf {
        PathBuf::from("/run/bulkhead/lab").join(&self.name)
    }

    /// The state file.
    pub fn state_path(&self) -> PathBuf {
        self.dir().join("state.json")
    }

    /// The state file's content.
    pub fn state(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.state_path()).expect("state file"))
            .expect("state JSON")
    }

    /// Host `name` (`namespace/name` of a pod) in the state file.
    pub fn host(&self, name: &str) -> serde_json::Value {
        let state = self.state();
        state["hosts"]
            .as_array()
            .expect("hosts")
            .iter()
            .find(|h| h["name"] == name)
            .unwrap_or_else(|| panic!("{name} in the state"))
            .clone()
    }

    /// The directory the agent watches.
    pub fn watched(&self) -> PathBuf {
        PathBuf::from(self.state()["watch"].as_str().expect("watch"))
    }

    /// Writes a file into the watched directory atomically (temporary
    /// name outside it, then rename), as an editor would.
    pub fn write_policy(&self, name: &str, content: &str) {
        let tmp = self.dir().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, content).expect("write");
        std::fs::rename(&tmp, self.watched().join(name)).expect("rename");
    }

    /// Removes a file from the watched directory.
    pub fn remove_policy(&self, name: &str) {
        std::fs::remove_file(self.watched().join(name)).expect("remove");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = bulkhead(&["lab", "down", "--name", &self.name]);
        if !out.status.success() && !std::thread::panicking() {
            panic!("lab down --name {} failed", self.name);
        }
    }
}

/// A temporary directory removed on drop (no extra crate for one use).
pub mod tempdir {
    use std::path::{Path, PathBuf};

    /// The directory.
    pub struct Dir(PathBuf);

    impl Dir {
        /// Creates `$TMPDIR/bulkhead-lab-test-<tag>-<pid>`.
        pub fn new(tag: &str) -> Dir {
            let p = std::env::temp_dir()
                .join(format!("bulkhead-lab-test-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).expect("create temp dir");
            Dir(p)
        }

        /// Its path.
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The lab agent's `/metrics` over its API socket (the first node's).
pub fn lab_metrics(lab: &Lab) -> String {
    let state = lab.state();
    let socket = state["nodes"][0]["agent"]["api_socket"]
        .as_str()
        .expect("api socket");
    let stream = std::os::unix::net::UnixStream::connect(socket).expect("agent socket");
    let mut resp = bulkhead_agent::api::client::get(stream, "/metrics").expect("GET /metrics");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut resp, &mut text).unwrap();
    text
}
