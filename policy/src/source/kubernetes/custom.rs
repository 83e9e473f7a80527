//! Kinds served by a CustomResourceDefinition (the cluster-admin policy
//! kinds), which many clusters do not install. Each such kind's CRD is
//! watched (by name); the kind's own watch runs only while the CRD serves
//! its version and is established, and without it the kind counts as
//! listed and empty, so an absent CRD never holds the view back. A CRD
//! installed (or removed) later starts (or ends) the kind's watch: events,
//! no polling.

use std::collections::BTreeMap;

use futures_util::stream::{AbortHandle, Abortable, BoxStream, StreamExt};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::Value;

use super::{Item, Watched, event_json};
use crate::source::kubernetes::Kind;

/// The CRD's name: `plural.group`.
pub(super) fn crd_name(kind: Kind) -> Option<String> {
    let (group, _) = kind.custom()?;
    Some(format!("{}.{group}", kind.plural()))
}

/// The watch of `kind`'s CRD (by name).
pub(super) fn definition_stream(client: &Client, kind: Kind) -> BoxStream<'static, Item> {
    let api: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::erase::<CustomResourceDefinition>(&()),
    );
    let name = crd_name(kind).expect("a custom kind");
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    watcher(api, config)
        .default_backoff()
        .map(move |r| (Watched::Definition(kind), r.map(event_json)))
        .boxed()
}

/// The resource of a custom kind.
pub(super) fn resource(kind: Kind) -> ApiResource {
    let (group, version) = kind.custom().expect("a custom kind");
    ApiResource {
        group: group.to_owned(),
        version: version.to_owned(),
        api_version: format!("{group}/{version}"),
        kind: kind.name().to_owned(),
        plural: kind.plural().to_owned(),
    }
}

/// Whether a CRD (as JSON) serves `kind`'s version and is established.
pub(super) fn serves(crd: &Value, kind: Kind) -> bool {
    let Some((_, version)) = kind.custom() else {
        return false;
    };
    let served = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .is_some_and(|vs| {
            vs.iter()
                .any(|v| v["name"] == version && v["served"].as_bool() == Some(true))
        });
    let established = crd
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Established" && c["status"] == "True")
        });
    served && established
}

/// Whether a watch error is the API's 404: the kind is not served.
pub(super) fn not_found(e: &watcher::Error) -> bool {
    let api = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s,
        watcher::Error::WatchError(s) => s,
        _ => return false,
    };
    api.code == 404
}

#[cfg(test)]
mod tests;

/// What the source knows of the custom kinds.
#[derive(Default)]
pub(super) struct Custom {
    /// The kinds whose own watch runs, with the handle that ends it.
    running: BTreeMap<Kind, AbortHandle>,
    /// During a (re)list of a CRD: whether it serves the kind.
    listing: BTreeMap<Kind, bool>,
}

/// What to do after a CRD event.
pub(super) enum Change {
    /// Nothing yet (a list in progress, or no change).
    None,
    /// Start the kind's watch (this stream).
    Start(BoxStream<'static, Item>),
    /// The kind is not served: its objects are gone.
    Absent,
}

impl Custom {
    /// Applies one event of `kind`'s CRD watch.
    pub(super) fn apply(
        &mut self,
        client: &Client,
        kind: Kind,
        event: watcher::Event<Value>,
    ) -> Change {
        let served = match event {
            watcher::Event::Init => {
                self.listing.insert(kind, false);
                return Change::None;
            }
            watcher::Event::InitApply(crd) => {
                *self.listing.entry(kind).or_default() |= serves(&crd, kind);
                return Change::None;
            }
            watcher::Event::InitDone => self.listing.remove(&kind).unwrap_or(false),
            watcher::Event::Apply(crd) => serves(&crd, kind),
            watcher::Event::Delete(_) => false,
        };
        match (served, self.running.contains_key(&kind)) {
            (true, true) => Change::None,
            (true, false) => {
                tracing::info!(kind = kind.name(), "its CRD is installed: watching");
                let (handle, registration) = AbortHandle::new_pair();
                self.running.insert(kind, handle);
                let stream = super::kind_stream(client, kind, resource(kind));
                Change::Start(Abortable::new(stream, registration).boxed())
            }
            (false, _) => {
                self.stop(kind);
                Change::Absent
            }
        }
    }

    /// Ends `kind`'s watch (its CRD went away, or the API says 404).
    pub(super) fn stop(&mut self, kind: Kind) {
        if let Some(handle) = self.running.remove(&kind) {
            handle.abort();
            tracing::info!(
                kind = kind.name(),
                "not served by this cluster (CRD not installed or not established): none in force"
            );
        }
    }
}
