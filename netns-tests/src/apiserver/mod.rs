//! A small Kubernetes API server for tests and benchmarks.
//!
//! It speaks the documented list/watch protocol of kube-apiserver faithfully
//! enough for real clients (kube-rs reflectors, `kubectl`): one global
//! resourceVersion counter like etcd's revision; lists with
//! `resourceVersion`/`resourceVersionMatch` semantics, `limit`/`continue`
//! paging pinned to a snapshot, label and field selectors; watches with
//! synthetic initial events, resumption from a resourceVersion, bookmarks,
//! `timeoutSeconds`, selector-aware ADDED/DELETED, and `410 Gone`
//! (`Expired`) once history is compacted; create/replace/patch/delete with
//! `Status` errors. Tests drive it through [`FakeApiServer`]: writes,
//! compaction, dropped watches and outages.
//!
//! What it does not do, on purpose:
//! - plain HTTP only, no authentication or authorization (TLS and authn are
//!   out of scope for a test server);
//! - `application/strategic-merge-patch+json` is applied as a JSON merge
//!   patch (the same for maps such as labels and annotations; lists are
//!   replaced whole rather than merged by key); server-side apply is not
//!   served (415);
//! - no status subresource: a write sets `status` with the rest of the
//!   object; deletion is immediate (no graceful `deletionTimestamp` phase),
//!   and deleting a namespace deletes its contents at once;
//! - no admission: objects may be created in namespaces that do not exist;
//! - no defaulting or allocation: a Service keeps the ClusterIPs and
//!   NodePorts it was written with (none if it had none), where a real
//!   API server gives them out;
//! - JSON only (no protobuf, no `Table` output: clients fall back to JSON);
//! - no OpenAPI documents, so `kubectl create`/`apply` need
//!   `--validate=false`; no `dryRun` (refused with 400), no
//!   `deletecollection`, no subresources.
//!
//! Served resources are rows of [`RESOURCES`].

mod error;
mod list;
mod meta;
mod registry;
mod routes;
mod selector;
mod server;
mod store;
mod watch;

#[cfg(test)]
mod tests;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Deserialize as _;
use serde_json::Value;
use tokio::sync::{oneshot, watch as signal};

pub use error::ApiServerError;
pub use registry::{RESOURCES, ResourceType};

use store::{Key, Preconditions, Store, WriteMode};

/// Settings of a [`FakeApiServer`].
#[derive(Debug, Clone)]
pub struct Options {
    /// How often a watch that allows bookmarks gets a `BOOKMARK` event.
    pub bookmark_interval: Duration,
    /// Events kept for watches to resume from and for paging snapshots;
    /// older ones are compacted away automatically (their revisions → 410).
    pub history_limit: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            bookmark_interval: Duration::from_secs(1),
            history_limit: 10_000,
        }
    }
}

/// Counters of what the server did, since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// List requests (each page counts).
    pub lists: u64,
    /// Watch requests accepted.
    pub watches_opened: u64,
    /// Watch streams open now.
    pub open_watches: u64,
    /// `410 Gone` answers: expired lists and continue tokens, and watch
    /// `ERROR` events.
    pub gone_sent: u64,
    /// `BOOKMARK` events sent.
    pub bookmarks_sent: u64,
    /// Writes that changed the store (HTTP and handle).
    pub writes: u64,
    /// Connections closed unanswered because the server was down.
    pub connections_refused: u64,
}

#[derive(Default)]
struct Counters {
    lists: AtomicU64,
    watches_opened: AtomicU64,
    open_watches: AtomicU64,
    gone_sent: AtomicU64,
    bookmarks_sent: AtomicU64,
    writes: AtomicU64,
    connections_refused: AtomicU64,
}

/// State shared by the handle, the HTTP handlers and the watch tasks.
struct Shared {
    store: Mutex<Store>,
    opts: Options,
    addr: SocketAddr,
    /// The store's revision after each write (wakes the watches).
    rv_tx: signal::Sender<u64>,
    /// Bumped by `drop_watches`.
    drop_tx: signal::Sender<u64>,
    /// Whether the server answers (outages).
    up_tx: signal::Sender<bool>,
    stats: Counters,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a write on the store and wakes the watches if it changed anything.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, ApiServerError>,
    ) -> Result<T, ApiServerError> {
        let mut store = self.store();
        let before = store.rv();
        let out = f(&mut store)?;
        let after = store.rv();
        drop(store);
        if after != before {
            self.stats.writes.fetch_add(1, Ordering::Relaxed);
            self.rv_tx.send_replace(after);
        }
        Ok(out)
    }
}

/// A fake API server serving on a background tokio runtime thread; stops
/// when dropped.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeApiServer {
    /// Serves on a new port of 127.0.0.1.
    pub fn start(opts: Options) -> io::Result<Self> {
        Self::serve(TcpListener::bind("127.0.0.1:0")?, opts)
    }

    /// Serves on a listener the caller bound (e.g. inside a network
    /// namespace: a thread `setns()`s, binds, and hands it over).
    pub fn serve(listener: TcpListener, opts: Options) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let store = Store::new(opts.history_limit);
        let shared = Arc::new(Shared {
            rv_tx: signal::Sender::new(store.rv()),
            store: Mutex::new(store),
            opts,
            addr,
            drop_tx: signal::Sender::new(0),
            up_tx: signal::Sender::new(true),
            stats: Counters::default(),
        });
        let (thread, stop) = server::spawn(listener, shared.clone())?;
        tracing::debug!(%addr, "fake apiserver serving");
        Ok(Self {
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address it serves on.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// Its URL, `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// Writes a kubeconfig whose current context points at this server
    /// (namespace `default`, no credentials).
    pub fn write_kubeconfig(&self, path: &Path) -> io::Result<()> {
        std::fs::write(path, kubeconfig(&self.url()))
    }

    /// Creates or replaces an object (found by its `apiVersion` and `kind`;
    /// namespace `default` if it has none), ignoring any resourceVersion
    /// it carries; returns the stored object. Replacing with an identical
    /// object changes nothing.
    pub fn apply(&self, obj: Value) -> Result<Value, ApiServerError> {
        let res = resource_of(&obj)?;
        self.shared
            .write(|s| s.write(res, obj, WriteMode::Apply))
            .map(|o| (*o).clone())
    }

    /// [`apply`](Self::apply)s every object of a multi-document YAML
    /// string (a `kind: List` document applies its `items`).
    pub fn apply_yaml(&self, yaml: &str) -> Result<Vec<Value>, ApiServerError> {
        let mut applied = Vec::new();
        for (index, doc) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
            let doc =
                Value::deserialize(doc).map_err(|source| ApiServerError::Yaml { index, source })?;
            let objects = match doc {
                Value::Null => continue,
                Value::Object(ref m) if m.get("kind").and_then(Value::as_str) == Some("List") => m
                    .get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                other => vec![other],
            };
            for obj in objects {
                applied.push(self.apply(obj)?);
            }
        }
        Ok(applied)
    }

    /// One object by kind (`Pod`) or plural (`pods`); `None` if absent.
    pub fn get(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, ApiServerError> {
        let (res, key) = key_of(kind, namespace, name)?;
        Ok(self.shared.store().get(res, &key).map(|o| (*o).clone()))
    }

    /// Number of objects of a kind (`Pod`) or plural (`pods`).
    pub fn count(&self, kind: &str) -> Result<usize, ApiServerError> {
        let (res, _) = key_of(kind, None, "")?;
        Ok(self.shared.store().len(res))
    }

    /// Deletes an object by kind (`Pod`) or plural (`pods`), namespace
    /// (`None` for a cluster-scoped kind, or for `default`) and name.
    pub fn delete(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<(), ApiServerError> {
        let (res, key) = key_of(kind, namespace, name)?;
        self.shared
            .write(|s| s.delete(res, &key, &Preconditions::default()))
            .map(drop)
    }

    /// The current resourceVersion (revision) of the store.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().rv()
    }

    /// Forgets the history up to now: watches from and continue tokens of
    /// any earlier resourceVersion get `410 Gone`.
    pub fn compact(&self) {
        self.shared.store().compact();
    }

    /// Abruptly closes every open watch connection (no final chunk).
    pub fn drop_watches(&self) {
        self.shared.drop_tx.send_modify(|n| *n += 1);
    }

    /// Starts (`false`) or ends (`true`) an outage: while down, every
    /// connection, open or new, is closed at once without an answer.
    pub fn set_available(&self, up: bool) {
        self.shared.up_tx.send_replace(up);
    }

    /// What the server did so far.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            lists: get(&c.lists),
            watches_opened: get(&c.watches_opened),
            open_watches: get(&c.open_watches),
            gone_sent: get(&c.gone_sent),
            bookmarks_sent: get(&c.bookmarks_sent),
            writes: get(&c.writes),
            connections_refused: get(&c.connections_refused),
        }
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The resource of an object, by its `apiVersion` and `kind`.
fn resource_of(obj: &Value) -> Result<registry::ResId, ApiServerError> {
    let field = |f: &str| obj.get(f).and_then(Value::as_str).unwrap_or("").to_owned();
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    registry::by_api_version_kind(&api_version, &kind)
        .ok_or(ApiServerError::UnknownKind { api_version, kind })
}

fn key_of(
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<(registry::ResId, Key), ApiServerError> {
    let res = registry::by_name(kind).ok_or_else(|| ApiServerError::UnknownKind {
        api_version: String::new(),
        kind: kind.to_owned(),
    })?;
    let ns = match (RESOURCES[res].namespaced, namespace) {
        (false, _) => String::new(),
        (true, Some(ns)) => ns.to_owned(),
        (true, None) => "default".to_owned(),
    };
    Ok((res, (ns, name.to_owned())))
}

/// A kubeconfig for a server at `url` (no credentials).
fn kubeconfig(url: &str) -> String {
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: fake\n  cluster:\n    server: {url}\n\
         contexts:\n\
         - name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
         current-context: fake\n\
         users:\n\
         - name: fake\n  user: {{}}\n\
         preferences: {{}}\n"
    )
}
