//! The fake API server against real clients: kube-rs (`Api`, `watcher`,
//! `reflector`) over plain HTTP, and `kubectl` when installed. No root or
//! network namespace needed: the server listens on 127.0.0.1.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bulkhead_netns_tests::apiserver::{FakeApiServer, Options};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, Config};
use serde_json::{Value, json};
use tokio_stream::StreamExt as _;

/// How long a condition may take to hold (generous: a loaded 2-core machine).
const PATIENCE: Duration = Duration::from_secs(30);

fn server() -> FakeApiServer {
    FakeApiServer::start(Options {
        bookmark_interval: Duration::from_millis(200),
        ..Options::default()
    })
    .expect("fake apiserver starts")
}

fn client(server: &FakeApiServer) -> Client {
    let config = Config::new(server.url().parse().expect("a URI"));
    Client::try_from(config).expect("client")
}

fn pod(name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "nginx"}], "nodeName": "node-a"},
    })
}

/// Waits until `cond` holds, checking every 20 ms, for at most [`PATIENCE`].
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Awaits `f` for at most [`PATIENCE`].
async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A reflector of pods (with `cfg`) run by a background task; counts the
/// errors its watcher reports.
struct Reflected {
    reader: reflector::Store<Pod>,
    errors: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Reflected {
    fn start(client: Client, cfg: watcher::Config) -> Self {
        let (reader, writer) = reflector::store::<Pod>();
        let stream =
            reflector::reflector(writer, watcher(Api::<Pod>::all(client), cfg)).default_backoff();
        let errors = Arc::new(AtomicU64::new(0));
        let counted = errors.clone();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                if event.is_err() {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Self {
            reader,
            errors,
            task,
        }
    }

    fn has(&self, name: &str) -> bool {
        self.reader
            .get(&ObjectRef::new(name).within("shop"))
            .is_some()
    }

    fn label(&self, name: &str, key: &str) -> Option<String> {
        let pod = self.reader.get(&ObjectRef::new(name).within("shop"))?;
        pod.metadata.labels.as_ref()?.get(key).cloned()
    }
}

impl Drop for Reflected {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn list_pages_through_continue_tokens() {
    let server = server();
    for i in 0..25 {
        let parity = if i % 2 == 0 { "even" } else { "odd" };
        server
            .apply(pod(&format!("p{i:02}"), json!({"parity": parity})))
            .expect("applied");
    }
    let api: Api<Pod> = Api::namespaced(client(&server), "shop");
    let mut names = Vec::new();
    let mut lp = ListParams::default().limit(10);
    let mut pages = 0;
    loop {
        let page = api.list(&lp).await.expect("listed");
        pages += 1;
        names.extend(page.items.iter().filter_map(|p| p.metadata.name.clone()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        names,
        (0..25).map(|i| format!("p{i:02}")).collect::<Vec<_>>()
    );
    let odd = api
        .list(&ListParams::default().labels("parity=odd"))
        .await
        .expect("listed");
    assert_eq!(odd.items.len(), 12);
    let one = api
        .list(&ListParams::default().fields("metadata.name=p07"))
        .await
        .expect("listed");
    assert_eq!(one.items.len(), 1);
    let all: Api<Pod> = Api::all(client(&server));
    assert_eq!(
        all.list(&ListParams::default())
            .await
            .expect("listed")
            .items
            .len(),
        25
    );
    assert!(server.stats().lists >= 6);
}

#[tokio::test]
async fn writes_and_their_errors_over_http() {
    let server = server();
    let api: Api<Pod> = Api::namespaced(client(&server), "shop");
    let p: Pod = serde_json::from_value(pod("web", json!({"app": "web"}))).expect("a pod");
    let created = api
        .create(&PostParams::default(), &p)
        .expect_api("create")
        .await;
    let uid = created.metadata.uid.clone().expect("uid");
    let api_err = |e: kube::Error| match e {
        kube::Error::Api(s) => (s.code, s.reason),
        other => panic!("not an API error: {other}"),
    };
    let dup = api
        .create(&PostParams::default(), &p)
        .await
        .expect_err("duplicate");
    assert_eq!(api_err(dup), (409, "AlreadyExists".to_owned()));
    let mut stale = created.clone();
    stale.metadata.resource_version = Some("1".into());
    let conflict = api
        .replace("web", &PostParams::default(), &stale)
        .await
        .expect_err("stale");
    assert_eq!(api_err(conflict), (409, "Conflict".to_owned()));
    let missing = api.get("nope").await.expect_err("missing");
    assert_eq!(api_err(missing), (404, "NotFound".to_owned()));
    let merge = Patch::Merge(json!({"metadata": {"labels": {"tier": "front"}}}));
    let patched = api
        .patch("web", &PatchParams::default(), &merge)
        .expect_api("merge patch")
        .await;
    assert_eq!(
        patched.metadata.labels.as_ref().expect("labels")["tier"],
        "front"
    );
    let strategic = Patch::Strategic(json!({"metadata": {"labels": {"tier": null}}}));
    let patched = api
        .patch("web", &PatchParams::default(), &strategic)
        .expect_api("strategic")
        .await;
    assert!(
        !patched
            .metadata
            .labels
            .as_ref()
            .expect("labels")
            .contains_key("tier")
    );
    assert_eq!(patched.metadata.uid.as_deref(), Some(uid.as_str()));
    api.delete("web", &DeleteParams::default())
        .expect_api("delete")
        .await;
    assert!(
        server
            .get("Pod", Some("shop"), "web")
            .expect("served")
            .is_none()
    );
    let namespaces: Api<Namespace> = Api::all(client(&server));
    server
        .apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}))
        .expect("ok");
    let ns = namespaces.get("shop").expect_api("get namespace").await;
    assert_eq!(
        ns.metadata.labels.expect("labels")["kubernetes.io/metadata.name"],
        "shop"
    );
}

/// `.expect_api(what).await`: the value of a kube call, or a panic naming it.
trait ExpectApi<T> {
    fn expect_api(self, what: &'static str) -> impl Future<Output = T>;
}

impl<T, F: Future<Output = kube::Result<T>>> ExpectApi<T> for F {
    async fn expect_api(self, what: &'static str) -> T {
        self.await.unwrap_or_else(|e| panic!("{what}: {e}"))
    }
}

#[tokio::test]
async fn reflector_sees_creates_updates_and_deletes() {
    let server = server();
    server.apply(pod("before", json!({}))).expect("applied");
    let r = Reflected::start(client(&server), watcher::Config::default());
    within("the initial list", r.reader.wait_until_ready())
        .await
        .expect("ready");
    assert!(r.has("before"));
    server
        .apply(pod("web", json!({"app": "web"})))
        .expect("applied");
    wait_until("the new pod is seen", || r.has("web")).await;
    server
        .apply(pod("web", json!({"app": "db"})))
        .expect("applied");
    wait_until("the relabel is seen", || {
        r.label("web", "app").as_deref() == Some("db")
    })
    .await;
    server.delete("Pod", Some("shop"), "web").expect("deleted");
    wait_until("the deletion is seen", || !r.has("web")).await;
    assert!(r.has("before"));
    assert_eq!(r.errors.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn streaming_list_reflector_gets_initial_events_then_changes() {
    let server = server();
    server.apply(pod("before", json!({}))).expect("applied");
    let cfg = watcher::Config::default().streaming_lists();
    let r = Reflected::start(client(&server), cfg);
    // Ready only after the bookmark that ends the initial events.
    within("the initial events", r.reader.wait_until_ready())
        .await
        .expect("ready");
    assert!(r.has("before"));
    assert_eq!(
        server.stats().lists,
        0,
        "no list call: the watch sent the state"
    );
    server.apply(pod("web", json!({}))).expect("applied");
    wait_until("the new pod is seen", || r.has("web")).await;
}

#[tokio::test]
async fn selector_watch_sees_objects_move_in_and_out() {
    let server = server();
    let r = Reflected::start(
        client(&server),
        watcher::Config::default().labels("app=web"),
    );
    within("the initial list", r.reader.wait_until_ready())
        .await
        .expect("ready");
    server
        .apply(pod("a", json!({"app": "web"})))
        .expect("applied");
    server
        .apply(pod("b", json!({"app": "db"})))
        .expect("applied");
    wait_until("the selected pod is seen", || r.has("a")).await;
    server
        .apply(pod("a", json!({"app": "db"})))
        .expect("applied");
    wait_until("the pod leaving the selector is gone", || !r.has("a")).await;
    server
        .apply(pod("b", json!({"app": "web"})))
        .expect("applied");
    wait_until("the pod entering the selector is seen", || r.has("b")).await;
    assert!(!r.has("a"));
}

#[tokio::test]
async fn reflector_recovers_after_dropped_watches() {
    let server = server();
    let r = Reflected::start(client(&server), watcher::Config::default());
    within("the initial list", r.reader.wait_until_ready())
        .await
        .expect("ready");
    wait_until("the watch is open", || server.stats().open_watches == 1).await;
    let opened = server.stats().watches_opened;
    server.drop_watches();
    server.apply(pod("after-drop", json!({}))).expect("applied");
    wait_until("the pod is seen after the drop", || r.has("after-drop")).await;
    wait_until("a new watch is open", || {
        server.stats().watches_opened > opened
    })
    .await;
}

#[tokio::test]
async fn reflector_relists_after_compaction_and_converges() {
    let server = server();
    server.apply(pod("old", json!({}))).expect("applied");
    let r = Reflected::start(client(&server), watcher::Config::default());
    within("the initial list", r.reader.wait_until_ready())
        .await
        .expect("ready");
    wait_until("the watch is open", || server.stats().open_watches == 1).await;
    let before = server.stats();
    // Cut the watch, change things while it is gone, forget the history.
    server.set_available(false);
    wait_until("the watcher tries again", || {
        server.stats().connections_refused > 0
    })
    .await;
    server.delete("Pod", Some("shop"), "old").expect("deleted");
    server.apply(pod("new", json!({}))).expect("applied");
    server.compact();
    server.set_available(true);
    wait_until("the relist converges", || r.has("new") && !r.has("old")).await;
    let after = server.stats();
    assert!(
        after.gone_sent > before.gone_sent,
        "the resumed watch got 410: {after:?}"
    );
    assert!(
        after.lists > before.lists,
        "the watcher listed again: {after:?}"
    );
}

#[tokio::test]
async fn reflector_backs_off_and_recovers_across_an_outage() {
    let server = server();
    let r = Reflected::start(client(&server), watcher::Config::default());
    within("the initial list", r.reader.wait_until_ready())
        .await
        .expect("ready");
    server.set_available(false);
    wait_until("the watch is cut", || server.stats().open_watches == 0).await;
    wait_until("the watcher reports errors", || {
        r.errors.load(Ordering::Relaxed) > 0
    })
    .await;
    server.apply(pod("during", json!({}))).expect("applied");
    server.set_available(true);
    wait_until("the pod is seen after the outage", || r.has("during")).await;
}

#[tokio::test]
async fn watch_sends_bookmarks() {
    let server = server();
    server.apply(pod("a", json!({}))).expect("applied");
    let api: Api<Pod> = Api::all(client(&server));
    let rv = server.resource_version().to_string();
    let stream = api
        .watch(&WatchParams::default(), &rv)
        .expect_api("watch")
        .await;
    let mut stream = std::pin::pin!(stream);
    // Nothing changes after `rv`: the first event is a bookmark.
    let bookmark = match within("a bookmark", stream.next()).await {
        Some(Ok(WatchEvent::Bookmark(b))) => b,
        other => panic!("expected a bookmark, got {other:?}"),
    };
    assert_eq!(bookmark.metadata.resource_version, rv);
    assert!(server.stats().bookmarks_sent > 0);
    server.apply(pod("b", json!({}))).expect("applied");
    let added = within("the change", async {
        loop {
            match stream.next().await.expect("open").expect("event") {
                WatchEvent::Added(p) => break p,
                WatchEvent::Bookmark(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(added.metadata.name.as_deref(), Some("b"));
}

#[tokio::test]
async fn watch_from_a_compacted_version_is_gone() {
    let server = server();
    server.apply(pod("a", json!({}))).expect("applied");
    let old = server.resource_version().to_string();
    server.apply(pod("b", json!({}))).expect("applied");
    server.compact();
    let api: Api<Pod> = Api::all(client(&server));
    let stream = api
        .watch(&WatchParams::default(), &old)
        .expect_api("watch")
        .await;
    let mut stream = std::pin::pin!(stream);
    match within("the error event", stream.next())
        .await
        .expect("an event")
        .expect("parsed")
    {
        WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    assert!(
        within("the end of the stream", stream.next())
            .await
            .is_none()
    );
    assert_eq!(server.stats().gone_sent, 1);
}

#[tokio::test]
async fn watch_ends_after_its_timeout() {
    let server = server();
    let api: Api<Pod> = Api::all(client(&server));
    let rv = server.resource_version().to_string();
    let stream = api
        .watch(&WatchParams::default().timeout(1), &rv)
        .expect_api("watch")
        .await;
    let mut stream = std::pin::pin!(stream);
    within("the end of the stream", async {
        while let Some(event) = stream.next().await {
            assert!(
                matches!(event, Ok(WatchEvent::Bookmark(_))),
                "unexpected {event:?}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn kubeconfig_points_clients_at_the_server() {
    let server = server();
    server
        .apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}))
        .expect("ok");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kubeconfig");
    server.write_kubeconfig(&path).expect("written");
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("parses");
    let config = Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("a config");
    assert_eq!(config.default_namespace, "default");
    let client = Client::try_from(config).expect("client");
    let names: Vec<String> = Api::<Namespace>::all(client)
        .list(&ListParams::default())
        .expect_api("list")
        .await
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert_eq!(names, ["shop"]);
}

fn service(name: &str, kind: &str, port: u16) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"type": kind, "selector": {"app": name}, "ports": [{"port": port}]},
    })
}

#[tokio::test]
async fn services_are_listed_and_watched_like_pods() {
    let server = server();
    server
        .apply(service("web", "ClusterIP", 80))
        .expect("applied");
    server
        .apply(service("edge", "NodePort", 443))
        .expect("applied");
    let in_shop: Api<Service> = Api::namespaced(client(&server), "shop");
    let list = in_shop
        .list(&ListParams::default())
        .expect_api("list in a namespace")
        .await;
    let names: Vec<_> = list
        .iter()
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    assert_eq!(names, ["edge", "web"]);
    let node_ports = in_shop
        .list(&ListParams::default().fields("spec.type=NodePort"))
        .expect_api("list by spec.type")
        .await;
    assert_eq!(node_ports.items.len(), 1);
    let rv = list
        .metadata
        .resource_version
        .clone()
        .expect("a list resourceVersion");
    let all: Api<Service> = Api::all(client(&server));
    let stream = all
        .watch(&WatchParams::default(), &rv)
        .expect_api("watch")
        .await;
    let mut stream = std::pin::pin!(stream);
    server
        .apply(service("web", "ClusterIP", 8080))
        .expect("applied");
    server
        .delete("Service", Some("shop"), "edge")
        .expect("deleted");
    match within("the change", stream.next())
        .await
        .expect("an event")
        .expect("parsed")
    {
        WatchEvent::Modified(s) => {
            let port = s.spec.and_then(|s| s.ports).map(|p| p[0].port);
            assert_eq!(port, Some(8080));
        }
        other => panic!("expected MODIFIED, got {other:?}"),
    }
    match within("the deletion", stream.next())
        .await
        .expect("an event")
        .expect("parsed")
    {
        WatchEvent::Deleted(s) => assert_eq!(s.metadata.name.as_deref(), Some("edge")),
        other => panic!("expected DELETED, got {other:?}"),
    }
    // After compaction, a watch from the list's version is gone (410).
    server.compact();
    let stream = all
        .watch(&WatchParams::default(), &rv)
        .expect_api("watch after compaction")
        .await;
    let mut stream = std::pin::pin!(stream);
    match within("the error event", stream.next())
        .await
        .expect("an event")
        .expect("parsed")
    {
        WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
}
