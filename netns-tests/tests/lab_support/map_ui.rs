//! The network map UI of a lab, seen two ways: the page's own data in a
//! real headless Chromium (`window.bulkhead.view()`, read through
//! [`bulkhead_testkit::browser::Browser`]) and the map JSON the agent
//! serves (`/v1/map*`, read over the lab agent's Unix socket). Every wait
//! is bounded and ends at the event it waits for.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bulkhead_testkit::browser::Browser;
use serde::Deserialize;
use serde_json::Value;

use crate::lab_support::Lab;

/// Edge colour of an allowed edge (the UI's stylesheet).
pub const ALLOWED: &str = "#2e7d32";
/// Edge colour of a denied edge.
pub const DENIED: &str = "#c62828";

/// What the page draws now (`window.bulkhead.view()`).
#[derive(Debug, Clone, Deserialize)]
pub struct View {
    /// Workloads, namespaces and external groups.
    pub nodes: Vec<ViewNode>,
    /// Edges as drawn (one per source/target pair, its ports listed).
    pub edges: Vec<ViewEdge>,
}

/// A drawn node.
#[derive(Debug, Clone, Deserialize)]
pub struct ViewNode {
    /// Workload `ns/Kind/name`, namespace `ns:NAME` or external `cidr:…`.
    pub id: String,
    /// `workload`, `namespace` or `external`.
    pub kind: String,
    /// Its label.
    #[serde(default)]
    pub label: Option<String>,
    /// The namespace compound node it sits in, if any.
    #[serde(default)]
    pub parent: Option<String>,
    /// Whether it is a collapsed namespace.
    #[serde(default)]
    pub collapsed: Option<bool>,
    /// Whether the user hid it.
    #[serde(default)]
    pub hidden: Option<bool>,
}

/// A drawn edge.
#[derive(Debug, Clone, Deserialize)]
pub struct ViewEdge {
    /// Its id in the page.
    pub id: String,
    /// Source node id.
    pub source: String,
    /// Target node id.
    pub target: String,
    /// The worst verdict class of its members.
    pub verdict: String,
    /// Whether it is outside an active baseline.
    #[serde(default)]
    pub outside_baseline: bool,
    /// Its `line-color` as Cytoscape styles it.
    pub color: String,
    /// Its label.
    #[serde(default)]
    pub label: Option<String>,
    /// The deciding policies it names.
    #[serde(default)]
    pub policies: Vec<String>,
    /// `PROTO/port` of its members.
    #[serde(default)]
    pub ports: Vec<String>,
    /// The map's edge ids it draws.
    #[serde(default)]
    pub members: Vec<String>,
}

impl View {
    /// Ids of the drawn workload nodes.
    pub fn workloads(&self) -> BTreeSet<String> {
        self.nodes
            .iter()
            .filter(|n| n.kind == "workload" && n.hidden != Some(true))
            .map(|n| n.id.clone())
            .collect()
    }

    /// Nodes of one kind.
    pub fn of_kind(&self, kind: &str) -> Vec<&ViewNode> {
        self.nodes.iter().filter(|n| n.kind == kind).collect()
    }

    /// `(source, target, PROTO/port)` of every drawn edge, one per port.
    pub fn edge_set(&self) -> BTreeSet<(String, String, String)> {
        self.edges
            .iter()
            .flat_map(|e| {
                e.ports
                    .iter()
                    .map(|p| (e.source.clone(), e.target.clone(), p.clone()))
            })
            .collect()
    }

    /// The drawn edge from `src` to `dst`.
    pub fn edge(&self, src: &str, dst: &str) -> &ViewEdge {
        self.edges
            .iter()
            .find(|e| e.source == src && e.target == dst)
            .unwrap_or_else(|| panic!("no drawn edge {src} -> {dst} in {self:#?}"))
    }
}

/// `(src, dst, PROTO/port)` of the edges of a `/v1/map` answer.
pub fn map_edge_set(map: &Value) -> BTreeSet<(String, String, String)> {
    map["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| {
            (
                e["src"].as_str().expect("src").to_owned(),
                e["dst"].as_str().expect("dst").to_owned(),
                format!(
                    "{}/{}",
                    e["protocol"].as_str().expect("protocol"),
                    e["port"]
                ),
            )
        })
        .collect()
}

/// Workload ids of a `/v1/map` answer.
pub fn map_workloads(map: &Value) -> BTreeSet<String> {
    map["workloads"]
        .as_array()
        .expect("workloads")
        .iter()
        .map(|w| w["id"].as_str().expect("id").to_owned())
        .collect()
}

/// The edge `src -> dst` of a `/v1/map` answer.
pub fn map_edge<'a>(map: &'a Value, src: &str, dst: &str) -> &'a Value {
    map["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .find(|e| e["src"] == src && e["dst"] == dst)
        .unwrap_or_else(|| panic!("no edge {src} -> {dst} in {map:#}"))
}

/// `GET target` on the lab's (first) agent API socket, as JSON.
pub fn api_json(lab: &Lab, target: &str) -> Value {
    let state = lab.state();
    let socket = state["nodes"][0]["agent"]["api_socket"]
        .as_str()
        .expect("api socket");
    let stream = std::os::unix::net::UnixStream::connect(socket).expect("agent socket");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut resp = bulkhead_agent::api::client::get(stream, target)
        .unwrap_or_else(|e| panic!("GET {target}: {e}"));
    let mut text = String::new();
    std::io::Read::read_to_string(&mut resp, &mut text).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {target}: {e}: {text}"))
}

/// Polls `/v1/map` until `ok` holds (at most `timeout`); returns it.
pub fn wait_map(lab: &Lab, what: &str, timeout: Duration, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let map = api_json(lab, "/v1/map");
        if ok(&map) {
            return map;
        }
        assert!(
            Instant::now() < deadline,
            "/v1/map: not {what} after {timeout:?}: {map:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The first `http://` URL of `bulkhead lab ui --name NAME --output json`
/// (the first node's agent).
pub fn ui_url(lab: &Lab) -> String {
    let out = lab.ok("ui", &["--output", "json"]);
    let v: Value = serde_json::from_str(out.trim())
        .or_else(|_| serde_json::from_str(out.lines().next().unwrap_or_default()))
        .unwrap_or_else(|e| panic!("lab ui --output json: {e}: {out}"));
    first_url(&v).unwrap_or_else(|| panic!("no URL in lab ui's answer: {v}"))
}

fn first_url(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if s.starts_with("http://") || s.starts_with("https://") => {
            Some(s.clone())
        }
        Value::Array(a) => a.iter().find_map(first_url),
        Value::Object(o) => o.values().find_map(first_url),
        _ => None,
    }
}

/// The page's view now.
pub fn view(browser: &mut Browser) -> View {
    browser
        .eval::<View>("window.bulkhead.view()")
        .expect("window.bulkhead.view()")
}

/// Polls the page's view until `ok` holds (at most `timeout`); returns it.
pub fn wait_view(
    browser: &mut Browser,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&View) -> bool,
) -> View {
    let deadline = Instant::now() + timeout;
    loop {
        let v = view(browser);
        if ok(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "the page's view: not {what} after {timeout:?}: {v:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The details panel as the page shows it (`#details`).
#[derive(Debug, Deserialize)]
pub struct Details {
    /// `data-kind`: `edge` or `workload`.
    pub kind: Option<String>,
    /// `data-verdict` of each row of `[data-testid=flows]` that has one.
    pub flows: Vec<String>,
    /// Text of `[data-testid=policies]`.
    pub policies: String,
    /// Text of `[data-testid=explain-egress]`.
    pub egress: String,
    /// Text of `[data-testid=explain-ingress]`.
    pub ingress: String,
    /// Text of `[data-testid=mode]`.
    pub mode: String,
    /// Text of `[data-testid=quarantined]`.
    pub quarantined: String,
}

/// Reads the details panel once it is filled for `id`
/// (`data-id`, `data-kind` set and no longer loading).
const READ_DETAILS: &str = "new Promise((resolve, reject) => {
       const until = Date.now() + 20000;
       const poll = () => {
         const d = document.querySelector('#details');
         const done = d && !d.hidden && d.dataset.id === ID && d.dataset.kind && !d.textContent.includes('loading…');
         if (done) return resolve();
         if (Date.now() > until) return reject(new Error('the details of ' + ID + ' never filled'));
         requestAnimationFrame(poll);
       };
       poll();
     })";

/// Clicks the drawn edge `id` with a real mouse click, a third of the way
/// along its line (its label sits at the middle), as a user would, and
/// reads the details panel it opens.
pub fn click_edge(browser: &mut Browser, id: &str) -> Details {
    let at: [f64; 2] = browser
        .eval(&format!(
            "(() => {{
               const cy = window.bulkhead.cy;
               const e = cy.getElementById({id});
               if (e.empty()) throw new Error('no drawn edge ' + {id});
               const a = e.renderedSourceEndpoint(), b = e.renderedTargetEndpoint();
               const r = cy.container().getBoundingClientRect();
               return [r.left + a.x + (b.x - a.x) / 3, r.top + a.y + (b.y - a.y) / 3];
             }})()",
            id = serde_json::to_string(id).unwrap()
        ))
        .unwrap_or_else(|e| panic!("position of {id}: {e}"));
    browser
        .mouse_click(at[0], at[1])
        .unwrap_or_else(|e| panic!("clicking {id} at {at:?}: {e}"));
    read_details(
        browser,
        &READ_DETAILS.replace("ID", &serde_json::to_string(id).unwrap()),
    )
}

/// Selects `id` (`window.bulkhead.select`, which resolves once the
/// details panel is filled) and reads the panel.
pub fn select(browser: &mut Browser, id: &str) -> Details {
    let js = format!(
        "window.bulkhead.select({})",
        serde_json::to_string(id).unwrap()
    );
    read_details(browser, &js)
}

/// Awaits `wait` (a promise expression), then reads the details panel.
fn read_details(browser: &mut Browser, wait: &str) -> Details {
    let js = format!(
        "({wait}).then(() => {{
           const d = document.querySelector('#details');
           const text = (t) => d?.querySelector(`[data-testid=${{t}}]`)?.textContent ?? '';
           return {{
             kind: d?.dataset.kind ?? null,
             flows: [...(d?.querySelectorAll('[data-testid=flows] tr') ?? [])]
               .map((r) => r.dataset.verdict).filter((v) => v),
             policies: text('policies'),
             egress: text('explain-egress'),
             ingress: text('explain-ingress'),
             mode: text('mode'),
             quarantined: text('quarantined'),
           }};
         }})"
    );
    browser
        .eval::<Details>(&js)
        .unwrap_or_else(|e| panic!("reading the details ({wait}): {e}"))
}

/// `#rrggbb` of a CSS colour as Cytoscape reports it (`#rrggbb`, `#rgb`
/// or `rgb(r, g, b)`), lowercase.
pub fn hex(color: &str) -> String {
    let c = color.trim().to_ascii_lowercase();
    if let Some(h) = c.strip_prefix('#') {
        if h.len() == 3 {
            return h.chars().fold("#".to_owned(), |mut s, ch| {
                s.push(ch);
                s.push(ch);
                s
            });
        }
        return c;
    }
    let inner = c
        .strip_prefix("rgb(")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not a colour: {color}"));
    inner
        .split(',')
        .take(3)
        .map(|n| {
            n.trim()
                .parse::<u8>()
                .unwrap_or_else(|_| panic!("not a colour: {color}"))
        })
        .fold("#".to_owned(), |s, n| format!("{s}{n:02x}"))
}

/// Where artifacts of the tests go: `<workspace>/target/artifacts/`
/// (created).
pub fn artifacts_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/artifacts");
    std::fs::create_dir_all(&dir).expect("create target/artifacts");
    dir.canonicalize().expect("target/artifacts")
}
