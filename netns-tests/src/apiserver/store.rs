//! The object store: objects per resource, one global resourceVersion
//! counter (like etcd's revision), and a bounded event history from which
//! watches resume and older snapshots (continue tokens, `Exact` lists) are
//! rebuilt. Forgetting history (automatically past `history_limit`, or by
//! [`Store::compact`]) moves the compaction point: an RV below it is gone.
//!
//! Invariant: `history` holds exactly the events of revisions
//! `compacted + 1 ..= rv`, one event per revision.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Value, json};

use super::error::ApiServerError;
use super::meta::{self, UidGen};
use super::registry::{RESOURCES, ResId};

/// Where an object lives: (namespace, or `""` if cluster-scoped; name).
pub(crate) type Key = (String, String);

/// What a change did, as watch event types name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One change, at one revision.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub rv: u64,
    pub res: ResId,
    pub key: Key,
    pub kind: EventType,
    /// The object after the change; for a deletion its last state, carrying
    /// the deletion's resourceVersion (as the real server sends it).
    pub object: Arc<Value>,
    /// The object before the change (`None` for a creation).
    pub prev: Option<Arc<Value>>,
}

/// One page of a list, as of revision `rv`.
#[derive(Debug)]
pub(crate) struct Page {
    pub items: Vec<Arc<Value>>,
    pub rv: u64,
    /// The last key scanned when more keys follow (where the next page starts).
    pub next: Option<Key>,
}

/// How a write treats an object that exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteMode {
    /// Create only (POST): an existing object is `AlreadyExists`.
    Create,
    /// Replace only (PUT): a missing object is `NotFound`; a
    /// `metadata.resourceVersion` in the body must be the current one.
    Replace,
    /// Create or replace, ignoring any resourceVersion in the body (the
    /// handle's `apply`).
    Apply,
}

/// Preconditions of a delete (`DeleteOptions.preconditions`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

/// Objects, revision counter and history.
pub(crate) struct Store {
    rv: u64,
    objects: Vec<BTreeMap<Key, Arc<Value>>>,
    history: VecDeque<Event>,
    compacted: u64,
    history_limit: usize,
    uids: UidGen,
}

impl Store {
    /// An empty store at revision 1 keeping at most `history_limit` events.
    pub fn new(history_limit: usize) -> Self {
        Self {
            rv: 1,
            objects: RESOURCES.iter().map(|_| BTreeMap::new()).collect(),
            history: VecDeque::new(),
            compacted: 1,
            history_limit,
            uids: UidGen::new(),
        }
    }

    /// The current revision.
    pub fn rv(&self) -> u64 {
        self.rv
    }

    /// The compaction point: revisions below it cannot be watched from or listed at.
    pub fn compacted(&self) -> u64 {
        self.compacted
    }

    /// Number of objects of a resource.
    pub fn len(&self, res: ResId) -> usize {
        self.objects[res].len()
    }

    /// Forgets all history: every revision before now is gone.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    /// One object.
    pub fn get(&self, res: ResId, key: &Key) -> Option<Arc<Value>> {
        self.objects[res].get(key).cloned()
    }

    /// Every object of a resource (in one namespace if given), now.
    pub fn current(&self, res: ResId, ns: Option<&str>) -> Vec<Arc<Value>> {
        self.objects[res]
            .range(ns_range(ns))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Up to `max` events after revision `pos`; `None` if `pos` is before
    /// the compaction point (those events are forgotten).
    pub fn events_after(&self, pos: u64, max: usize) -> Option<Vec<Event>> {
        if pos < self.compacted {
            return None;
        }
        let start = usize::try_from(pos - self.compacted)
            .unwrap_or(usize::MAX)
            .min(self.history.len());
        Some(self.history.range(start..).take(max).cloned().collect())
    }

    /// A page of objects of `res` (in namespace `ns` if given) as they were
    /// at revision `at`, starting after key `after`, of at most `limit`
    /// objects that `filter` selects. The objects changed since `at` are
    /// rolled back from the history, so the cost is the page plus the
    /// changes since `at`, not the whole resource.
    pub fn page(
        &self,
        res: ResId,
        ns: Option<&str>,
        at: u64,
        after: Option<&Key>,
        limit: Option<usize>,
        filter: &dyn Fn(&Value) -> bool,
    ) -> Result<Page, ApiServerError> {
        if at < self.compacted {
            return Err(ApiServerError::Expired {
                message: format!("too old resource version: {at} ({})", self.compacted),
                continue_token: None,
            });
        }
        let (lower, upper) = ns_range(ns);
        let lower = after.map_or(lower, |k| Bound::Excluded(k.clone()));
        let in_range = |k: &Key| ns.is_none_or(|ns| k.0 == ns) && after.is_none_or(|a| k > a);
        // The state at `at` of every key changed since: the `prev` of its first later event.
        let mut overlay: BTreeMap<&Key, Option<&Arc<Value>>> = BTreeMap::new();
        let start = usize::try_from(at - self.compacted)
            .unwrap_or(usize::MAX)
            .min(self.history.len());
        for e in self
            .history
            .range(start..)
            .filter(|e| e.res == res && in_range(&e.key))
        {
            overlay.entry(&e.key).or_insert(e.prev.as_ref());
        }
        let mut now = self.objects[res]
            .range((lower, upper))
            .filter(|(k, _)| !overlay.contains_key(k))
            .peekable();
        let mut then = overlay
            .iter()
            .filter_map(|(k, v)| v.map(|v| (*k, v)))
            .peekable();
        let limit = limit.unwrap_or(usize::MAX);
        let mut page = Page {
            items: Vec::new(),
            rv: at,
            next: None,
        };
        let mut last: Option<&Key> = None;
        loop {
            let next = match (now.peek(), then.peek()) {
                (None, None) => break,
                (Some(a), Some(b)) if a.0 > b.0 => then.next(),
                (Some(_), _) => now.next(),
                (None, Some(_)) => then.next(),
            };
            let (key, obj) = next.expect("peeked");
            if page.items.len() >= limit {
                page.next = last.cloned();
                break;
            }
            last = Some(key);
            if filter(obj) {
                page.items.push(obj.clone());
            }
        }
        Ok(page)
    }

    /// Creates, replaces or applies `obj` (see [`WriteMode`]); returns the
    /// stored object. A replace that changes nothing keeps the revision and
    /// makes no event, as on the real server.
    pub fn write(
        &mut self,
        res: ResId,
        obj: Value,
        mode: WriteMode,
    ) -> Result<Arc<Value>, ApiServerError> {
        let (key, mut obj) = meta::normalize(res, obj, mode == WriteMode::Create, &mut self.uids)?;
        let rt = &RESOURCES[res];
        let Some(old) = self.objects[res].get(&key).cloned() else {
            if mode == WriteMode::Replace {
                return Err(not_found(res, &key));
            }
            let m = &mut obj["metadata"];
            m["uid"] = json!(self.uids.uid());
            m["creationTimestamp"] = json!(now_rfc3339());
            m["generation"] = json!(1);
            return Ok(self.commit(res, key, EventType::Added, obj, None));
        };
        if mode == WriteMode::Create {
            return Err(ApiServerError::AlreadyExists {
                resource: rt.plural.to_owned(),
                name: key.1,
            });
        }
        let old_rv = old["metadata"]["resourceVersion"].clone();
        if mode == WriteMode::Replace
            && let Some(rv) = obj["metadata"]
                .get("resourceVersion")
                .filter(|v| !v.is_null())
            && *rv != old_rv
        {
            return Err(conflict(res, &key));
        }
        let m = &mut obj["metadata"];
        for field in ["uid", "creationTimestamp"] {
            m[field] = old["metadata"][field].clone();
        }
        let generation = old["metadata"]["generation"].as_u64().unwrap_or(1);
        obj["metadata"]["generation"] = json!(generation + u64::from(!meta::same_spec(&obj, &old)));
        obj["metadata"]["resourceVersion"] = old_rv;
        if obj == *old {
            return Ok(old);
        }
        Ok(self.commit(res, key, EventType::Modified, obj, Some(old)))
    }

    /// Replaces the object at `key` with `change(current)` (a PATCH); a
    /// resourceVersion the change leaves in the object must still be current.
    pub fn modify(
        &mut self,
        res: ResId,
        key: &Key,
        change: impl FnOnce(&Value) -> Result<Value, ApiServerError>,
    ) -> Result<Arc<Value>, ApiServerError> {
        let old = self.get(res, key).ok_or_else(|| not_found(res, key))?;
        let new = change(&old)?;
        if new["metadata"]["name"] != old["metadata"]["name"]
            || new["metadata"]["namespace"] != old["metadata"]["namespace"]
        {
            return Err(ApiServerError::bad_request(
                "a patch may not change metadata.name or metadata.namespace",
            ));
        }
        self.write(res, new, WriteMode::Replace)
    }

    /// Deletes the object at `key`; returns its last state. Deleting a
    /// namespace first deletes everything in it (what the namespace
    /// controller does, at once instead of after a `Terminating` phase).
    pub fn delete(
        &mut self,
        res: ResId,
        key: &Key,
        pre: &Preconditions,
    ) -> Result<Arc<Value>, ApiServerError> {
        let old = self.get(res, key).ok_or_else(|| not_found(res, key))?;
        let m = &old["metadata"];
        let uid_ok = pre.uid.as_ref().is_none_or(|u| m["uid"] == **u);
        let rv_ok = pre
            .resource_version
            .as_ref()
            .is_none_or(|r| m["resourceVersion"] == **r);
        if !uid_ok || !rv_ok {
            return Err(conflict(res, key));
        }
        if RESOURCES[res].plural == "namespaces" && RESOURCES[res].group.is_empty() {
            for inner in (0..RESOURCES.len()).filter(|&r| RESOURCES[r].namespaced) {
                let keys: Vec<Key> = self.objects[inner]
                    .range(ns_range(Some(&key.1)))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in keys {
                    let obj = self.objects[inner][&k].clone();
                    self.commit(inner, k, EventType::Deleted, (*obj).clone(), Some(obj));
                }
            }
        }
        Ok(self.commit(
            res,
            key.clone(),
            EventType::Deleted,
            (*old).clone(),
            Some(old),
        ))
    }

    /// Applies one change at the next revision and records it.
    fn commit(
        &mut self,
        res: ResId,
        key: Key,
        kind: EventType,
        mut obj: Value,
        prev: Option<Arc<Value>>,
    ) -> Arc<Value> {
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let obj = Arc::new(obj);
        if kind == EventType::Deleted {
            self.objects[res].remove(&key);
        } else {
            self.objects[res].insert(key.clone(), obj.clone());
        }
        self.history.push_back(Event {
            rv: self.rv,
            res,
            key,
            kind,
            object: obj.clone(),
            prev,
        });
        while self.history.len() > self.history_limit {
            let forgotten = self.history.pop_front().expect("non-empty");
            self.compacted = forgotten.rv;
        }
        obj
    }
}

/// The key range of one namespace, or of everything.
fn ns_range(ns: Option<&str>) -> (Bound<Key>, Bound<Key>) {
    match ns {
        // (ns, "") is the least key of `ns`; (ns + "\0", "") the least one after it.
        Some(ns) => (
            Bound::Included((ns.to_owned(), String::new())),
            Bound::Excluded((format!("{ns}\0"), String::new())),
        ),
        None => (Bound::Unbounded, Bound::Unbounded),
    }
}

fn not_found(res: ResId, key: &Key) -> ApiServerError {
    ApiServerError::NotFound {
        resource: RESOURCES[res].plural.to_owned(),
        name: key.1.clone(),
    }
}

fn conflict(res: ResId, key: &Key) -> ApiServerError {
    ApiServerError::Conflict {
        resource: RESOURCES[res].plural.to_owned(),
        name: key.1.clone(),
        why: "the object has been modified; please apply your changes to the latest version and try again".into(),
    }
}

/// Now as RFC 3339 in whole seconds, as `metav1.Time` serializes.
fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}
