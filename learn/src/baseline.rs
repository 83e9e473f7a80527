//! Baselines: the learned edges of chosen workloads or namespaces, saved
//! under a name and a version, against which live traffic is checked
//! ([`detect`]).
//!
//! A baseline is taken from the flow history ([`History`]): every edge with
//! an end in its scope (a namespace, or one workload). Accepting edges
//! into it (a reviewed deviation that is legitimate) makes a new version;
//! the file keeps every version's additions, so a reviewer sees what was
//! accepted when. The file is JSON, schema [`SCHEMA`], written atomically.

pub mod detect;

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::edge::{EdgeKey, End, History, WorkloadId};

/// The schema name and version of a baseline file.
pub const SCHEMA: &str = "bulkhead.baseline/v1";

/// What a baseline watches.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every workload of a namespace.
    Namespace(String),
    /// One workload.
    Workload(WorkloadId),
}

impl Scope {
    /// Parses `NAMESPACE` or `NAMESPACE/Kind/name`.
    pub fn parse(s: &str) -> Result<Self, BaselineError> {
        let bad = || BaselineError::Scope(s.to_owned());
        match s.split('/').collect::<Vec<_>>()[..] {
            [ns] if !ns.is_empty() => Ok(Scope::Namespace(ns.to_owned())),
            [ns, kind, name] if !ns.is_empty() && !kind.is_empty() && !name.is_empty() => {
                Ok(Scope::Workload(WorkloadId {
                    namespace: ns.to_owned(),
                    workload: format!("{kind}/{name}"),
                }))
            }
            _ => Err(bad()),
        }
    }

    /// Whether `w` is in the scope.
    pub fn covers(&self, w: &WorkloadId) -> bool {
        match self {
            Scope::Namespace(ns) => &w.namespace == ns,
            Scope::Workload(id) => id == w,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Namespace(ns) => f.write_str(ns),
            Scope::Workload(w) => w.fmt(f),
        }
    }
}

/// The edges one version added.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// 1 for the baseline as taken, then one more per acceptance.
    pub version: u32,
    /// Milliseconds since the epoch when it was made.
    pub created_unix_ms: u64,
    /// Why (`taken from the history`, or the reviewer's note).
    pub note: String,
    /// The edges it added.
    pub added: BTreeSet<EdgeKey>,
}

/// A named, versioned baseline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Its name.
    pub name: String,
    /// What it watches.
    pub scope: Vec<Scope>,
    /// Every version, oldest first.
    pub versions: Vec<Version>,
    /// The edges of every version (derived; not stored).
    #[serde(skip)]
    edges: BTreeSet<EdgeKey>,
    /// Their (source, destination) pairs (derived), for
    /// [`Baseline::knows_pair`] at the cost of one lookup.
    #[serde(skip)]
    pairs: HashSet<(End, End)>,
}

/// Reading, writing or making a baseline failed.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// A scope that is neither `NAMESPACE` nor `NAMESPACE/Kind/name`.
    #[error("scope {0:?}: expected NAMESPACE or NAMESPACE/Kind/name")]
    Scope(String),
    /// No scope given.
    #[error("a baseline needs at least one namespace or workload to watch")]
    NoScope,
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a baseline.
    #[error("{}: not a {SCHEMA} file: {reason}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl Baseline {
    /// A baseline named `name` of every edge in `history` with an end in
    /// `scope`, as version 1.
    pub fn take(
        name: &str,
        scope: Vec<Scope>,
        history: &History,
        now_unix_ms: u64,
    ) -> Result<Self, BaselineError> {
        if scope.is_empty() {
            return Err(BaselineError::NoScope);
        }
        let mut b = Baseline {
            schema: SCHEMA.to_owned(),
            name: name.to_owned(),
            scope,
            versions: Vec::new(),
            edges: BTreeSet::new(),
            pairs: HashSet::new(),
        };
        let added = history
            .edges
            .keys()
            .filter(|k| b.watches_edge(k))
            .cloned()
            .collect();
        b.push(added, "taken from the history".into(), now_unix_ms);
        Ok(b)
    }

    /// The newest version number.
    pub fn version(&self) -> u32 {
        self.versions.last().map_or(0, |v| v.version)
    }

    /// Every edge the baseline holds.
    pub fn edges(&self) -> &BTreeSet<EdgeKey> {
        &self.edges
    }

    /// Whether the workload is in the baseline's scope.
    pub fn watches(&self, w: &WorkloadId) -> bool {
        self.scope.iter().any(|s| s.covers(w))
    }

    /// Whether either end of `key` is a workload in scope.
    pub fn watches_edge(&self, key: &EdgeKey) -> bool {
        [&key.src, &key.dst]
            .into_iter()
            .any(|e| matches!(e, End::Workload(w) if self.watches(w)))
    }

    /// Whether the baseline holds `key`.
    pub fn holds(&self, key: &EdgeKey) -> bool {
        self.edges.contains(key)
    }

    /// Whether the baseline holds any edge between `src` and `dst` (any
    /// protocol or port).
    pub fn knows_pair(&self, src: &End, dst: &End) -> bool {
        self.pairs.contains(&(src.clone(), dst.clone()))
    }

    /// Accepts `edges` (those it does not hold yet) as a new version; the
    /// number of edges added (0: no new version).
    pub fn accept(
        &mut self,
        edges: impl IntoIterator<Item = EdgeKey>,
        note: &str,
        now_unix_ms: u64,
    ) -> usize {
        let added: BTreeSet<EdgeKey> = edges
            .into_iter()
            .filter(|k| !self.edges.contains(k))
            .collect();
        let n = added.len();
        if n > 0 {
            self.push(added, note.to_owned(), now_unix_ms);
        }
        n
    }

    fn push(&mut self, added: BTreeSet<EdgeKey>, note: String, now_unix_ms: u64) {
        self.index(&added);
        self.versions.push(Version {
            version: self.version() + 1,
            created_unix_ms: now_unix_ms,
            note,
            added,
        });
    }

    /// Reads a baseline file.
    pub fn read(path: &Path) -> Result<Self, BaselineError> {
        let bytes = std::fs::read(path).map_err(|source| BaselineError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_slice(&bytes).map_err(|reason| BaselineError::Format {
            path: path.to_owned(),
            reason,
        })
    }

    /// A baseline from its JSON form (a file's content, or an API
    /// request's body); `Err` says what is wrong with it.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, String> {
        let mut b: Baseline = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if b.schema != SCHEMA {
            return Err(format!("schema {:?}, expected {SCHEMA:?}", b.schema));
        }
        if b.scope.is_empty() {
            return Err("no scope".into());
        }
        if b.name.is_empty() {
            return Err("no name".into());
        }
        let versions = std::mem::take(&mut b.versions);
        for v in &versions {
            b.index(&v.added);
        }
        b.versions = versions;
        Ok(b)
    }

    /// Adds `edges` to the derived sets.
    fn index(&mut self, edges: &BTreeSet<EdgeKey>) {
        for k in edges {
            self.pairs.insert((k.src.clone(), k.dst.clone()));
            self.edges.insert(k.clone());
        }
    }

    /// Writes the baseline to `path` atomically.
    pub fn write(&self, path: &Path) -> Result<(), BaselineError> {
        let io = |source| BaselineError::Io {
            path: path.to_owned(),
            source,
        };
        let mut bytes = serde_json::to_vec_pretty(self).expect("a baseline serializes");
        bytes.push(b'\n');
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, &bytes).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

#[cfg(test)]
pub(crate) mod tests;
