//! The agent's registry of CNI attachments: what `bulkhead-cni` ADD told
//! it (container id, pod namespace/name, addresses, MAC, host veth), the
//! one place the local API's CNI routes and the reconciler meet.
//!
//! - A registration (or a removal) is written to the state directory
//!   atomically and wakes the reconciler ([`Registry::changed`]), which
//!   binds the registered pods to their veths, gives a pod the source
//!   knows without addresses (Kubernetes: CNI runs before
//!   `status.podIP` exists) the registered ones, and checks MACs.
//! - After each reconcile the reconciler publishes, per registration,
//!   whether it is enforced on its veth or what it waits for
//!   ([`Registry::publish`]); an ADD waits on that publication, not on a
//!   timer ([`Registry::wait`]).
//! - A restarted agent reads the file back ([`Registry::open`]) and adopts
//!   the attachments: the runtime does not repeat ADD for running pods.
//!
//! The wire types are `bulkhead_cni::wire`'s, shared with the plugin.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bulkhead_cni::wire::{EndpointStatus, Registration};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// Registering, reading or persisting failed.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// A field of a registration is unusable (answered 400).
    #[error("registration of container {container_id:?}: {reason}")]
    Invalid {
        /// The container.
        container_id: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The registry file could not be written.
    #[error("writing the CNI registrations {}: {source}", path.display())]
    Persist {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Where one registration stands after a reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Binding {
    /// In the kernel maps, hooks attached on this veth.
    Enforced {
        /// The veth's name.
        ifname: String,
        /// Its ifindex.
        ifindex: u32,
    },
    /// Not (yet): why.
    Waiting(String),
}

/// One registration as stored: the wire's, and its generation (bumped by
/// every ADD, so a wait never takes an older publication for its answer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// What ADD said.
    pub registration: Registration,
    /// Its generation.
    pub generation: u64,
}

/// The file's content.
#[derive(Default, Serialize, Deserialize)]
struct File {
    registrations: Vec<Stored>,
    /// The next generation (persisted so generations never repeat).
    #[serde(default)]
    next_generation: u64,
}

#[derive(Default)]
struct Inner {
    /// By container id.
    registrations: BTreeMap<String, Stored>,
    next_generation: u64,
}

/// What the reconciler last published: per container id, the generation
/// it saw and where it stands.
pub type Published = BTreeMap<String, (u64, Binding)>;

/// The registry; shared (`Arc`) by the API and the reconciler.
pub struct Registry {
    path: Option<PathBuf>,
    inner: Mutex<Inner>,
    wake: Notify,
    published: watch::Sender<Arc<Published>>,
}

impl Registry {
    /// A registry persisted at `path` (`None`: in memory, for tests),
    /// with what the file holds (an unreadable file is logged and
    /// ignored: the runtime's next CHECK or ADD registers again).
    pub fn open(path: Option<PathBuf>) -> Self {
        let mut inner = Inner::default();
        if let Some(p) = &path {
            match crate::persisted::read::<File>(p) {
                Ok(Some(f)) => {
                    inner.next_generation = f.next_generation;
                    for s in f.registrations {
                        inner.next_generation = inner.next_generation.max(s.generation + 1);
                        inner
                            .registrations
                            .insert(s.registration.container_id.clone(), s);
                    }
                    tracing::info!(
                        registrations = inner.registrations.len(),
                        file = %p.display(),
                        "adopted CNI registrations"
                    );
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(file = %p.display(), error = %e, "ignoring the CNI registrations file")
                }
            }
        }
        Self {
            path,
            inner: Mutex::new(inner),
            wake: Notify::new(),
            published: watch::Sender::new(Arc::new(Published::new())),
        }
    }

    /// The registry file of the agent pinning under `pin_dir` (beside its
    /// state file).
    pub fn path_for(pin_dir: &Path) -> PathBuf {
        crate::state_path(pin_dir).with_extension("cni.json")
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `reg` (replacing one of the same container), persists and
    /// wakes the reconciler; its generation, for [`Self::wait`].
    pub fn register(&self, reg: Registration) -> Result<u64, CniError> {
        validate(&reg)?;
        let mut inner = self.lock();
        let generation = inner.next_generation;
        inner.next_generation += 1;
        let id = reg.container_id.clone();
        let old = inner.registrations.insert(
            id.clone(),
            Stored {
                registration: reg,
                generation,
            },
        );
        if let Err(e) = self.persist(&inner) {
            match old {
                Some(o) => inner.registrations.insert(id, o),
                None => inner.registrations.remove(&id),
            };
            return Err(e);
        }
        drop(inner);
        self.wake.notify_one();
        Ok(generation)
    }

    /// Forgets a container; whether it was registered.
    pub fn forget(&self, container_id: &str) -> Result<bool, CniError> {
        let mut inner = self.lock();
        let Some(old) = inner.registrations.remove(container_id) else {
            return Ok(false);
        };
        if let Err(e) = self.persist(&inner) {
            inner.registrations.insert(container_id.to_owned(), old);
            return Err(e);
        }
        drop(inner);
        self.wake.notify_one();
        Ok(true)
    }

    /// Forgets every container but `valid`; the ones forgotten.
    pub fn retain(&self, valid: &[String]) -> Result<Vec<String>, CniError> {
        let mut inner = self.lock();
        let gone: Vec<String> = inner
            .registrations
            .keys()
            .filter(|id| !valid.contains(id))
            .cloned()
            .collect();
        if gone.is_empty() {
            return Ok(gone);
        }
        let before = inner.registrations.clone();
        inner.registrations.retain(|id, _| valid.contains(id));
        if let Err(e) = self.persist(&inner) {
            inner.registrations = before;
            return Err(e);
        }
        drop(inner);
        self.wake.notify_one();
        Ok(gone)
    }

    /// Every registration, by container id.
    pub fn snapshot(&self) -> Vec<Stored> {
        self.lock().registrations.values().cloned().collect()
    }

    /// Resolves when registrations changed since the last call (a change
    /// made before the first call counts: nothing is missed).
    pub async fn changed(&self) {
        self.wake.notified().await;
    }

    /// The reconciler's answer for every registration it saw.
    pub fn publish(&self, published: Published) {
        self.published.send_replace(Arc::new(published));
    }

    /// Where container `id` stands; `None` if it is not registered.
    pub fn status(&self, id: &str) -> Option<EndpointStatus> {
        let stored = self.lock().registrations.get(id).cloned()?;
        let published = self.published.borrow().get(id).cloned();
        Some(status_of(&stored, published.as_ref()))
    }

    /// Waits until registration `generation` of container `id` is
    /// enforced, or `deadline`; where it stands then (`None`: it was
    /// removed meanwhile).
    pub async fn wait(
        &self,
        id: &str,
        generation: u64,
        deadline: Instant,
    ) -> Option<EndpointStatus> {
        let mut rx = self.published.subscribe();
        loop {
            let stored = self.lock().registrations.get(id).cloned()?;
            let published = rx.borrow_and_update().get(id).cloned();
            let fresh = published.as_ref().filter(|(g, _)| *g >= generation);
            let status = status_of(&stored, fresh);
            if status.enforced {
                return Some(status);
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return Some(status) },
                () = tokio::time::sleep_until(deadline) => return Some(status),
            }
        }
    }

    fn persist(&self, inner: &Inner) -> Result<(), CniError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let file = File {
            registrations: inner.registrations.values().cloned().collect(),
            next_generation: inner.next_generation,
        };
        crate::persisted::write(path, &file).map_err(|source| CniError::Persist {
            path: path.clone(),
            source,
        })
    }
}

fn validate(reg: &Registration) -> Result<(), CniError> {
    let invalid = |reason| CniError::Invalid {
        container_id: reg.container_id.clone(),
        reason,
    };
    let id_ok = |s: &str| {
        !s.is_empty() && s.len() <= 253 && s.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
    };
    if !id_ok(&reg.container_id) {
        return Err(invalid(
            "containerId must be non-empty printable ASCII without '/'",
        ));
    }
    if reg.pod_namespace.is_empty() || reg.pod_name.is_empty() {
        return Err(invalid("podNamespace and podName must be set"));
    }
    if reg.ips.is_empty() {
        return Err(invalid("ips must list the pod's addresses"));
    }
    if reg.host_interfaces.is_empty() {
        return Err(invalid("hostInterfaces must name the pod's host-side veth"));
    }
    if reg.mac.is_some() && reg.mac_bytes().is_none() {
        return Err(invalid("mac must be aa:bb:cc:dd:ee:ff"));
    }
    Ok(())
}

fn status_of(stored: &Stored, published: Option<&(u64, Binding)>) -> EndpointStatus {
    let reg = &stored.registration;
    let mut status = EndpointStatus {
        container_id: reg.container_id.clone(),
        pod: reg.pod_key(),
        enforced: false,
        host_interface: None,
        ifindex: None,
        waiting_for: None,
    };
    match published.map(|(_, b)| b) {
        Some(Binding::Enforced { ifname, ifindex }) => {
            status.enforced = true;
            status.host_interface = Some(ifname.clone());
            status.ifindex = Some(*ifindex);
        }
        Some(Binding::Waiting(why)) => status.waiting_for = Some(why.clone()),
        None => status.waiting_for = Some("the agent has not reconciled it yet".into()),
    }
    status
}

#[cfg(test)]
mod tests;
