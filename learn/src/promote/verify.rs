//! Proof, before anything is written, that the edits change exactly the
//! promoted policies' modes: each edited file parses to its old documents
//! with only the mode annotation set ([`check_text`]), and the whole
//! directory, edited, loads through the real manifest loader into the old
//! model with only those policies' modes changed ([`reload`],
//! [`check_model`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::documents;
use bulkhead_policy::model::addressing::AddressPlan;
use bulkhead_policy::model::{MODE_ANNOTATION, Mode, Model, Origin};
use bulkhead_policy::source::manifest::{self, ManifestErrors};

/// Why the edits are not trusted.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The edited file does not parse.
    #[error("the edited text does not parse")]
    Parse(#[source] serde_yaml_ng::Error),
    /// The edited file has another number of documents.
    #[error("the edited text has {after} documents instead of {before}")]
    DocumentCount {
        /// Before the edit.
        before: usize,
        /// After.
        after: usize,
    },
    /// A document reads differently than expected.
    #[error("document {document} would read differently than with only its mode annotation set")]
    Document {
        /// 1-based.
        document: usize,
    },
    /// The edited directory could not be set up for loading.
    #[error("staging the edited manifests in {}", path.display())]
    Stage {
        /// The staging path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The edited manifests do not load.
    #[error("the edited manifests do not load")]
    Load(#[source] ManifestErrors),
    /// The edited manifests load into another model.
    #[error("the edited manifests would change more than the modes asked for: {0}")]
    Model(ModelDiff),
}

/// The first way a reloaded model differs from the expected one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelDiff {
    /// Policies appeared, vanished or were renamed.
    PolicySet,
    /// A policy takes effect in another mode than expected.
    Mode {
        /// `namespace/name`.
        policy: String,
        /// Expected.
        expected: Mode,
        /// Found.
        found: Mode,
    },
    /// A policy changed in something other than its mode.
    Policy {
        /// `namespace/name`.
        policy: String,
    },
    /// Namespaces, pods or the default mode changed.
    Other(&'static str),
}

impl fmt::Display for ModelDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelDiff::PolicySet => f.write_str("the set of policies changed"),
            ModelDiff::Mode {
                policy,
                expected,
                found,
            } => write!(f, "{policy} would be in {found}, not {expected}"),
            ModelDiff::Policy { policy } => write!(f, "{policy} changed beyond its mode"),
            ModelDiff::Other(what) => write!(f, "{what} changed"),
        }
    }
}

/// A parsed NetworkPolicy with its own mode annotation set to `mode`.
pub fn with_mode(doc: &Value, mode: Mode) -> Value {
    let mut doc = doc.clone();
    if let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut) {
        let ann = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Default::default()));
        if ann.is_null() {
            *ann = Value::Object(Default::default());
        }
        if let Some(ann) = ann.as_object_mut() {
            ann.insert(MODE_ANNOTATION.into(), mode.as_str().into());
        }
    }
    doc
}

/// Checks that `new` parses to `old`'s documents, those in `modes`
/// (document index → mode) with their mode annotation set and every other
/// one unchanged.
pub fn check_text(old: &str, new: &str, modes: &BTreeMap<usize, Mode>) -> Result<(), VerifyError> {
    let before = documents::parse(old).map_err(VerifyError::Parse)?;
    let after = documents::parse(new).map_err(VerifyError::Parse)?;
    if before.len() != after.len() {
        return Err(VerifyError::DocumentCount {
            before: before.len(),
            after: after.len(),
        });
    }
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        let expected = match modes.get(&i) {
            Some(&m) => with_mode(b, m),
            None => b.clone(),
        };
        // Objects compare as maps: where the new key sits does not matter.
        if *a != expected {
            return Err(VerifyError::Document { document: i + 1 });
        }
    }
    Ok(())
}

/// Checks that `after` is `before` with the policies in `promoted`
/// (NetworkPolicies and cluster-admin policies, by key) in mode `to` by
/// their own annotation, every other policy in its old mode, and nothing
/// else changed.
pub fn check_model(
    before: &Model,
    after: &Model,
    promoted: &BTreeSet<String>,
    to: Mode,
) -> Result<(), ModelDiff> {
    check_policies(
        &before.policies,
        &after.policies,
        |p| (p.key(), before.mode_of(p)),
        |p| after.mode_of(p),
        |p| &mut p.mode,
        promoted,
        to,
    )?;
    check_policies(
        &before.admin_policies,
        &after.admin_policies,
        |p| (p.key(), before.admin_mode_of(p)),
        |p| after.admin_mode_of(p),
        |p| &mut p.mode,
        promoted,
        to,
    )?;
    if before.namespaces != after.namespaces {
        return Err(ModelDiff::Other("namespaces"));
    }
    if before.pods != after.pods {
        return Err(ModelDiff::Other("pods"));
    }
    if before.nodes != after.nodes {
        return Err(ModelDiff::Other("nodes"));
    }
    if before.default_mode != after.default_mode {
        return Err(ModelDiff::Other("the default mode"));
    }
    Ok(())
}

/// [`check_model`] for one kind of policy: the same policies in the same
/// order, each equal to its old self but for the mode of the promoted.
fn check_policies<P: Clone + PartialEq>(
    before: &[P],
    after: &[P],
    key_and_mode: impl Fn(&P) -> (String, Mode),
    mode_after: impl Fn(&P) -> Mode,
    own_mode: impl Fn(&mut P) -> &mut Option<Mode>,
    promoted: &BTreeSet<String>,
    to: Mode,
) -> Result<(), ModelDiff> {
    let keys = |list: &[P]| list.iter().map(|p| key_and_mode(p).0).collect::<Vec<_>>();
    if keys(before) != keys(after) {
        return Err(ModelDiff::PolicySet);
    }
    for (b, a) in before.iter().zip(after) {
        let (key, old) = key_and_mode(b);
        let is_promoted = promoted.contains(&key);
        let expected = if is_promoted { to } else { old };
        let found = mode_after(a);
        if found != expected {
            return Err(ModelDiff::Mode {
                policy: key,
                expected,
                found,
            });
        }
        let mut want = b.clone();
        if is_promoted {
            *own_mode(&mut want) = Some(to);
        }
        if *a != want {
            return Err(ModelDiff::Policy { policy: key });
        }
    }
    Ok(())
}

/// Loads `dir` as it would be with `edited` (file → new text) written,
/// without writing it: a private staging directory holds the edited files
/// and links to everything else, and origins are mapped back to `dir`.
pub fn reload(
    dir: &Path,
    plan: &AddressPlan,
    edited: &BTreeMap<PathBuf, String>,
) -> Result<Model, VerifyError> {
    let stage = Stage::new()?;
    let root = stage.0.clone();
    let staged = if std::fs::metadata(dir).is_ok_and(|m| m.is_file()) {
        let name = dir.file_name().unwrap_or_else(|| "manifest".as_ref());
        let path = root.join(name);
        let text = match edited.get(dir) {
            Some(t) => t.clone(),
            None => std::fs::read_to_string(dir).map_err(|e| stage.err(e))?,
        };
        std::fs::write(&path, text).map_err(|e| stage.err(e))?;
        path
    } else {
        mirror(dir, &root, edited).map_err(|e| stage.err(e))?;
        root.clone()
    };
    let mut model = manifest::load_dir(&staged, plan).map_err(VerifyError::Load)?;
    let back = |o: &mut Origin| {
        let Origin::File { file, .. } = o else {
            return;
        };
        if let Ok(rel) = file.strip_prefix(&staged) {
            *file = if rel.as_os_str().is_empty() {
                dir.to_path_buf()
            } else {
                dir.join(rel)
            };
        }
    };
    model.policies.iter_mut().for_each(|p| back(&mut p.origin));
    model
        .admin_policies
        .iter_mut()
        .for_each(|p| back(&mut p.origin));
    model.pods.iter_mut().for_each(|p| back(&mut p.origin));
    model
        .namespaces
        .values_mut()
        .filter_map(|n| n.origin.as_mut())
        .for_each(back);
    Ok(model)
}

/// `src`'s entries in `dst` as the loader walks them (hidden ones skipped):
/// edited files written, directories holding one recreated, the rest
/// linked, so nothing but the edited text is copied.
fn mirror(src: &Path, dst: &Path, edited: &BTreeMap<PathBuf, String>) -> io::Result<()> {
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let target = dst.join(&name);
        if let Some(text) = edited.get(&path) {
            std::fs::write(&target, text)?;
        } else if path.is_dir() && edited.keys().any(|k| k.starts_with(&path)) {
            std::fs::create_dir(&target)?;
            mirror(&path, &target, edited)?;
        } else {
            std::os::unix::fs::symlink(std::path::absolute(&path)?, &target)?;
        }
    }
    Ok(())
}

/// A private temporary directory, removed on drop. (`tempfile` is only a
/// dev-dependency.)
struct Stage(PathBuf);

impl Stage {
    fn new() -> Result<Self, VerifyError> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::temp_dir();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let mut last = None;
        for attempt in 0..100u32 {
            let path = base.join(format!(
                "bulkhead-promote-{}-{nanos}-{attempt}",
                std::process::id()
            ));
            // 0700: the staged files are the user's manifests.
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(Stage(path)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some((path, e)),
                Err(source) => return Err(VerifyError::Stage { path, source }),
            }
        }
        let (path, source) = last.expect("attempted at least once");
        Err(VerifyError::Stage { path, source })
    }

    fn err(&self, source: io::Error) -> VerifyError {
        VerifyError::Stage {
            path: self.0.clone(),
            source,
        }
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        // Links are removed, not followed.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
