//! The baselines activated in the running agent (`bulkhead baseline
//! activate`, the API's `PUT /v1/baselines`), persisted beside the state
//! file so a restarted agent alerts on them again. Baselines given on the
//! command line (`--baseline FILE`) are not stored here: they are active
//! for as long as the flag is given.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bulkhead_learn::baseline::Baseline;
use serde::{Deserialize, Serialize};

/// The file's content: every activated baseline, as its own JSON form.
#[derive(Default, Serialize, Deserialize)]
struct File {
    baselines: Vec<serde_json::Value>,
}

/// Activated baselines, by name, and where they persist.
#[derive(Debug, Default)]
pub struct ActiveBaselines {
    path: Option<PathBuf>,
    by_name: BTreeMap<String, Baseline>,
}

impl ActiveBaselines {
    /// The store file of the agent pinning under `pin_dir`.
    pub fn path_for(pin_dir: &Path) -> PathBuf {
        crate::state_path(pin_dir).with_extension("baselines.json")
    }

    /// What `path` holds (`None`: in memory). An unreadable file, or an
    /// entry that is no baseline, is logged loudly and skipped: the agent
    /// starts whatever its alerting state.
    pub fn open(path: Option<PathBuf>) -> Self {
        let mut by_name = BTreeMap::new();
        if let Some(p) = &path {
            match crate::persisted::read::<File>(p) {
                Ok(Some(f)) => {
                    for v in f.baselines {
                        match Baseline::from_slice(v.to_string().as_bytes()) {
                            Ok(b) => {
                                by_name.insert(b.name.clone(), b);
                            }
                            Err(e) => tracing::error!(
                                file = %p.display(), error = %e, "ignoring an activated baseline"
                            ),
                        }
                    }
                    tracing::info!(baselines = by_name.len(), file = %p.display(), "adopted activated baselines");
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(file = %p.display(), error = %e, "ignoring the activated baselines file")
                }
            }
        }
        Self { path, by_name }
    }

    /// The activated baselines, by name.
    pub fn list(&self) -> impl Iterator<Item = &Baseline> {
        self.by_name.values()
    }

    /// Activates `baseline` (replacing one of its name) and persists;
    /// on a write error nothing changes.
    pub fn activate(&mut self, baseline: Baseline) -> std::io::Result<()> {
        let name = baseline.name.clone();
        let old = self.by_name.insert(name.clone(), baseline);
        self.persist().inspect_err(|_| {
            match old {
                Some(o) => self.by_name.insert(name, o),
                None => self.by_name.remove(&name),
            };
        })
    }

    /// Deactivates the baseline `name` and persists: whether it was active
    /// (on a write error nothing changes).
    pub fn deactivate(&mut self, name: &str) -> std::io::Result<bool> {
        let Some(old) = self.by_name.remove(name) else {
            return Ok(false);
        };
        self.persist().map(|()| true).inspect_err(|_| {
            self.by_name.insert(name.to_owned(), old);
        })
    }

    fn persist(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let file = File {
            baselines: self
                .by_name
                .values()
                .map(|b| serde_json::to_value(b).expect("a baseline serializes"))
                .collect(),
        };
        crate::persisted::write(path, &file)
    }
}
