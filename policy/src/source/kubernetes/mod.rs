//! The Kubernetes API as a source (kube-rs): Namespaces, Pods,
//! NetworkPolicies, Services, Nodes and the cluster-admin policies
//! (ClusterNetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy:
//! CRDs, watched while installed, see [`custom`]) through kube's `watcher` (list, then watch from the
//! list's resourceVersion; relist on 410 Gone; bookmarks; backoff on
//! errors), fed into a [`View`] that keeps each object converted and
//! trimmed (the model's pod, not the API object: a reflector's store of
//! full Pods would cost kilobytes per remote pod).
//!
//! Nothing is published before every kind has listed once, so the agent
//! never enforces a partial view of a cluster. When the API cannot be
//! reached, the last complete view stays published (fail-static) and the
//! feed's status says since when it may be stale; a probe of the API's
//! `/version` (only while disconnected, with backoff) says when it is back,
//! since a watch that resumes quietly yields no event.
//!
//! The revision ("done" token) is the highest resourceVersion among the
//! events the view includes: a change made at resourceVersion N is in the
//! view once the revision is at least N (for changes of one kind; the
//! kinds' watches are independent streams).

mod custom;
mod view;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::stream::{BoxStream, SelectAll, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

pub use view::{Kind, View};

use super::{Feed, SourceStatus, now_unix_ms};
use crate::model::Mode;

/// How to reach the API.
#[derive(Clone, Debug, Default)]
pub struct KubeConfig {
    /// A kubeconfig file; else kube's inference (in-cluster service
    /// account, then `$KUBECONFIG` / `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// Mode of policies that set none.
    pub default_mode: Mode,
}

/// The client could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The kubeconfig could not be read.
    #[error("reading kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// No configuration could be inferred.
    #[error("finding the Kubernetes API (in-cluster or kubeconfig): {0}")]
    Infer(#[source] kube::config::InferConfigError),
    /// The client could not be built.
    #[error("building the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

/// What a watch stream watches.
#[derive(Clone, Copy, Debug)]
enum Watched {
    /// A kind's objects.
    Objects(Kind),
    /// The CRD of a custom kind.
    Definition(Kind),
}

/// One item of a watch, objects as JSON.
type Item = (Watched, Result<watcher::Event<Value>, watcher::Error>);

/// Connects and starts watching on the current tokio runtime.
pub async fn spawn(cfg: KubeConfig) -> Result<watch::Receiver<Feed>, KubeError> {
    let config = match &cfg.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|source| {
                KubeError::Kubeconfig {
                    path: path.clone(),
                    source,
                }
            })?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|source| KubeError::Kubeconfig {
                    path: path.clone(),
                    source,
                })?
        }
        None => kube::Config::infer().await.map_err(KubeError::Infer)?,
    };
    let location = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(KubeError::Client)?;
    let mut streams = SelectAll::new();
    streams.push(kind_stream(
        &client,
        Kind::Namespace,
        ApiResource::erase::<Namespace>(&()),
    ));
    streams.push(kind_stream(
        &client,
        Kind::Pod,
        ApiResource::erase::<Pod>(&()),
    ));
    streams.push(kind_stream(
        &client,
        Kind::NetworkPolicy,
        ApiResource::erase::<NetworkPolicy>(&()),
    ));
    // Services: their frontends (ClusterIPs, NodePorts, external and
    // load-balancer addresses) are where the node translates traffic to
    // backends, which the dataplane judges on the backend it reaches.
    streams.push(kind_stream(
        &client,
        Kind::Service,
        ApiResource::erase::<Service>(&()),
    ));
    // Nodes: the addresses the `nodes` peer of cluster-admin rules means.
    streams.push(kind_stream(
        &client,
        Kind::Node,
        ApiResource::erase::<Node>(&()),
    ));
    // Cluster-admin policies: watched while their CRDs are installed.
    for kind in Kind::ALL.into_iter().filter(|k| k.custom().is_some()) {
        streams.push(custom::definition_stream(&client, kind));
    }
    let feed = Feed {
        status: SourceStatus {
            kind: "kubernetes".to_owned(),
            location,
            ..SourceStatus::default()
        },
        ..Feed::default()
    };
    let (tx, rx) = watch::channel(feed.clone());
    let source = KubeSource {
        client,
        view: View::default(),
        default_mode: cfg.default_mode,
        feed,
        custom: custom::Custom::default(),
    };
    tokio::spawn(source.run(streams, tx));
    Ok(rx)
}

/// The watch of one kind, with kube's default backoff. Objects are read
/// as `DynamicObject`s (JSON as the API sent it): the conversion the
/// manifest source uses reads JSON, and decoding every object into its
/// typed form only to encode it again would be work done twice.
fn kind_stream(client: &Client, kind: Kind, resource: ApiResource) -> BoxStream<'static, Item> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    watcher(api, watcher::Config::default())
        .default_backoff()
        .map(move |r| (Watched::Objects(kind), r.map(event_json)))
        .boxed()
}

fn event_json(event: watcher::Event<DynamicObject>) -> watcher::Event<Value> {
    let json = |object: DynamicObject| serde_json::to_value(object).unwrap_or(Value::Null);
    match event {
        watcher::Event::Apply(o) => watcher::Event::Apply(json(o)),
        watcher::Event::Delete(o) => watcher::Event::Delete(json(o)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(o) => watcher::Event::InitApply(json(o)),
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

struct KubeSource {
    client: Client,
    view: View,
    default_mode: Mode,
    feed: Feed,
    custom: custom::Custom,
}

impl KubeSource {
    async fn run(
        mut self,
        mut streams: SelectAll<BoxStream<'static, Item>>,
        tx: watch::Sender<Feed>,
    ) {
        let (up_tx, mut up) = mpsc::channel::<()>(1);
        let mut probing = false;
        loop {
            let mut changed = false;
            tokio::select! {
                item = streams.next() => {
                    let Some(item) = item else { return };
                    changed |= self.handle(item, &mut streams, &mut probing, &up_tx);
                    // Everything already queued, in one publish.
                    while let Some(Some(item)) = streams.next().now_or_never() {
                        changed |= self.handle(item, &mut streams, &mut probing, &up_tx);
                    }
                }
                Some(()) = up.recv() => {
                    probing = false;
                    self.connected();
                }
            }
            if changed && self.view.complete() {
                self.publish_view();
            }
            if tx.is_closed() {
                return;
            }
            tx.send_if_modified(|sent| {
                let same = sent.revision == self.feed.revision
                    && sent.status == self.feed.status
                    && same_model(&sent.model, &self.feed.model);
                if !same {
                    sent.clone_from(&self.feed);
                }
                !same
            });
        }
    }

    /// Applies one watch item; whether the view changed.
    fn handle(
        &mut self,
        (watched, item): Item,
        streams: &mut SelectAll<BoxStream<'static, Item>>,
        probing: &mut bool,
        up: &mpsc::Sender<()>,
    ) -> bool {
        match (watched, item) {
            (Watched::Objects(kind), Ok(event)) => {
                self.connected();
                self.view.apply(kind, event)
            }
            (Watched::Definition(kind), Ok(event)) => {
                self.connected();
                match self.custom.apply(&self.client, kind, event) {
                    custom::Change::None => false,
                    custom::Change::Start(stream) => {
                        streams.push(stream);
                        false
                    }
                    custom::Change::Absent => self.view.absent(kind),
                }
            }
            // A custom kind no longer served (its CRD went away before
            // its event came): none of its objects; a CRD event restarts it.
            (Watched::Objects(kind), Err(e))
                if kind.custom().is_some() && custom::not_found(&e) =>
            {
                self.custom.stop(kind);
                self.view.absent(kind)
            }
            (watched, Err(e)) => {
                let plural = match watched {
                    Watched::Objects(kind) => kind.plural().to_owned(),
                    Watched::Definition(kind) => format!(
                        "customresourcedefinitions/{}",
                        custom::crd_name(kind).unwrap_or_default()
                    ),
                };
                let text = format!("watching {plural}: {}", super::error_chain(&e));
                tracing::warn!(error = %text, "the Kubernetes API did not answer; the policy in force stays");
                let status = &mut self.feed.status;
                status.connected = false;
                status.stale_since_unix_ms.get_or_insert_with(now_unix_ms);
                status.last_error = Some(text);
                if !*probing {
                    *probing = true;
                    tokio::spawn(probe(self.client.clone(), up.clone()));
                }
                false
            }
        }
    }

    fn connected(&mut self) {
        let status = &mut self.feed.status;
        if !status.connected && status.last_error.is_some() {
            tracing::info!("the Kubernetes API answers again");
        }
        status.connected = true;
        status.stale_since_unix_ms = None;
        status.last_error = None;
    }

    fn publish_view(&mut self) {
        let model = self.view.model(self.default_mode);
        self.feed.status.warnings = model.warnings.len() as u64;
        self.feed.revision = self.view.revision().to_string();
        self.feed.model = Some(Arc::new(model));
    }
}

fn same_model(a: &Option<Arc<crate::model::Model>>, b: &Option<Arc<crate::model::Model>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// Asks the API for its version until it answers (with backoff), then
/// says so once.
async fn probe(client: Client, up: mpsc::Sender<()>) {
    let mut wait = Duration::from_millis(200);
    loop {
        tokio::time::sleep(wait).await;
        if client.apiserver_version().await.is_ok() {
            let _ = up.send(()).await;
            return;
        }
        wait = (wait * 2).min(Duration::from_secs(10));
    }
}
