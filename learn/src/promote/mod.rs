//! `bulkhead promote`: change the mode of NetworkPolicies and cluster-admin
//! policies in their manifests (typically audit → enforce) by setting each
//! one's own `bulkhead.io/mode` annotation, with the smallest text edit that
//! keeps the file as its author wrote it.
//!
//! Nothing is written unless every edit is safe: each policy's document is
//! found by the loader's `Origin` and checked against the parser
//! ([`documents`]), edited by [`edit`] (which refuses layouts it cannot
//! handle robustly), and the result is verified twice ([`verify`]): the
//! edited files parse to the old documents plus the annotation, and the
//! edited directory loads into the old model with only the promoted
//! policies' modes changed. Only then is each file replaced atomically
//! ([`write`]).

pub mod diff;
pub mod documents;
pub mod edit;
mod lex;
pub mod target;
pub mod verify;
pub mod write;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use self::edit::{Change, Refusal};
use self::target::Target;
use self::verify::VerifyError;
use self::write::WriteError;
use bulkhead_policy::model::addressing::AddressPlan;
use bulkhead_policy::model::{MODE_ANNOTATION, Mode, Model, Origin};
use bulkhead_policy::source::manifest::{self, ManifestErrors};

/// Which policies to promote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// These, as `namespace/name` (NetworkPolicy) or `Kind/name`
    /// (cluster-admin policy).
    Policies(Vec<String>),
    /// Every policy (of either kind) whose effective mode is audit.
    Audit,
}

/// What happens to one policy.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Promotion {
    /// `namespace/name`, or `Kind/name` for a cluster-admin policy.
    pub policy: String,
    /// Its mode before (own, its namespace's or the default).
    pub from: Mode,
    /// Its mode after.
    pub to: Mode,
    /// The file that defines it.
    pub file: PathBuf,
    /// The line of its mode annotation once edited (1-based); for a policy
    /// already in `to`, its annotation's or its document's first line.
    pub line: usize,
    /// False when it already was in `to` (nothing to change).
    pub changed: bool,
}

impl fmt::Display for Promotion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = format!("{}:{}", self.file.display(), self.line);
        if self.changed {
            write!(f, "{}: {} → {} ({at})", self.policy, self.from, self.to)
        } else {
            write!(f, "{}: already {} ({at})", self.policy, self.to)
        }
    }
}

/// One file's edit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEdit {
    /// The file, as the loader names it.
    pub path: PathBuf,
    /// Its text as read.
    pub before: String,
    /// Its text edited.
    pub after: String,
    /// The line changes from `before` to `after`, sorted.
    pub changes: Vec<Change>,
}

/// Verified edits, not yet written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Every selected policy, in the model's order.
    pub promotions: Vec<Promotion>,
    /// The files to rewrite, sorted by path.
    pub files: Vec<FileEdit>,
}

/// A policy whose document cannot be edited safely.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsafeEdit {
    /// `namespace/name`, or `Kind/name` for a cluster-admin policy.
    pub policy: String,
    /// How messages name it (`NetworkPolicy ns/name`, `Kind/name`).
    pub label: String,
    /// Its file and document.
    pub origin: Origin,
    /// The mode asked for.
    pub to: Mode,
    /// Why.
    pub reason: Refusal,
}

impl fmt::Display for UnsafeEdit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: cannot edit safely: {}; set metadata.annotations[\"{MODE_ANNOTATION}\"] to \"{}\" there by hand",
            self.origin, self.label, self.reason, self.to
        )
    }
}

/// Why `promote` changed nothing (or, for [`PromoteError::Write`], not
/// everything).
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    /// The manifests do not load.
    #[error(transparent)]
    Manifests(#[from] ManifestErrors),
    /// A policy argument that is neither `namespace/name` nor `Kind/name`.
    #[error("{0:?} is not namespace/name (or Kind/name for a cluster-admin policy)")]
    BadName(String),
    /// Policies not in the manifests.
    #[error("no policy {} in the manifests", .0.join(", "))]
    Unknown(Vec<String>),
    /// Policies whose documents cannot be edited safely (nothing is
    /// written, so that a run is all or nothing).
    #[error("{}\nnothing written: edit these by hand, or promote the others by name", Lines(.0))]
    Unsafe(Vec<UnsafeEdit>),
    /// A file could not be read.
    #[error("{}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The edits failed verification (a bug, or a layout the editor
    /// misread): nothing is written.
    #[error("{}: not edited", path.as_deref().map_or("manifests".into(), |p| p.display().to_string()))]
    Verify {
        /// The file, if one file's check failed.
        path: Option<PathBuf>,
        /// What failed.
        #[source]
        source: VerifyError,
    },
    /// Writing failed; files in `written` were replaced, the failed one and
    /// those after it were not.
    #[error("writing the edited manifests{}", if written.is_empty() { String::new() } else { format!(" (already written: {})", Lines(written)) })]
    Write {
        /// Files already replaced.
        written: Vec<PathBuf>,
        /// The failure.
        #[source]
        source: WriteError,
    },
}

/// Displays items one per line (or, for paths, comma-separated).
struct Lines<'a, T>(&'a [T]);

impl fmt::Display for Lines<'_, UnsafeEdit> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Lines<'_, PathBuf> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let paths: Vec<String> = self.0.iter().map(|p| p.display().to_string()).collect();
        f.write_str(&paths.join(", "))
    }
}

/// Loads `manifests`, selects policies and computes their verified edits
/// to mode `to`. Writes nothing.
pub fn plan(manifests: &Path, selection: &Selection, to: Mode) -> Result<Plan, PromoteError> {
    let addresses = AddressPlan::default();
    let before = manifest::load_dir(manifests, &addresses)?;
    let selected = select(&before, selection)?;
    let mut texts: BTreeMap<PathBuf, String> = BTreeMap::new();
    let mut edits: BTreeMap<PathBuf, Vec<(usize, Target, edit::Edit)>> = BTreeMap::new();
    let mut already = Vec::new();
    let mut refused = Vec::new();
    for &p in &selected {
        let file = &p.file();
        if !texts.contains_key(file) {
            let text = std::fs::read_to_string(file).map_err(|source| PromoteError::Read {
                path: file.clone(),
                source,
            })?;
            texts.insert(file.clone(), text);
        }
        let text = &texts[file];
        if p.mode(&before) == to {
            already.push((p, locate_line(text, p)));
            continue;
        }
        match edit_policy(text, p, to) {
            Ok(e) => edits
                .entry(file.clone())
                .or_default()
                .push((p.document(), p, e)),
            Err(reason) => refused.push(UnsafeEdit {
                policy: p.key(),
                label: p.label(),
                origin: p.origin().clone(),
                to,
                reason,
            }),
        }
    }
    if !refused.is_empty() {
        return Err(PromoteError::Unsafe(refused));
    }
    let mut promotions = Vec::new();
    let mut files = Vec::new();
    for (path, mut list) in edits {
        list.sort_by_key(|(_, _, e)| e.change.first);
        let before_text = &texts[&path];
        let lines = documents::lines(before_text);
        let changes: Vec<Change> = list.iter().map(|(_, _, e)| e.change.clone()).collect();
        let after = apply(&lines, &changes);
        let modes = list.iter().map(|(doc, _, _)| (*doc, to)).collect();
        verify::check_text(before_text, &after, &modes).map_err(|source| PromoteError::Verify {
            path: Some(path.clone()),
            source,
        })?;
        let mut shift = 0isize;
        for (_, p, e) in &list {
            let line = e.change.first as isize + shift + e.offset as isize + 1;
            shift += e.change.insert.len() as isize - e.change.removed as isize;
            promotions.push(Promotion {
                policy: p.key(),
                from: p.mode(&before),
                to,
                file: path.clone(),
                line: line as usize,
                changed: true,
            });
        }
        files.push(FileEdit {
            path,
            before: before_text.clone(),
            after,
            changes,
        });
    }
    if !files.is_empty() {
        let edited = files
            .iter()
            .map(|f| (f.path.clone(), f.after.clone()))
            .collect();
        let verify = |source| PromoteError::Verify { path: None, source };
        let after = verify::reload(manifests, &addresses, &edited).map_err(verify)?;
        let promoted: BTreeSet<String> = promotions.iter().map(|p| p.policy.clone()).collect();
        verify::check_model(&before, &after, &promoted, to)
            .map_err(|d| verify(VerifyError::Model(d)))?;
    }
    promotions.extend(already.into_iter().map(|(p, line)| Promotion {
        policy: p.key(),
        from: to,
        to,
        file: p.file(),
        line,
        changed: false,
    }));
    // The model's order: by namespace, then name.
    let order: BTreeMap<String, usize> = selected
        .iter()
        .enumerate()
        .map(|(i, p)| (p.key(), i))
        .collect();
    promotions.sort_by_key(|p| order[&p.policy]);
    Ok(Plan { promotions, files })
}

impl Plan {
    /// The edits as a unified diff, file by file.
    pub fn diff(&self) -> String {
        self.files
            .iter()
            .map(|f| diff::unified(&f.path, &documents::lines(&f.before), &f.changes))
            .collect()
    }

    /// Writes every edited file, each atomically, each only if it still
    /// holds what was read.
    pub fn write(&self) -> Result<(), PromoteError> {
        let mut written = Vec::new();
        for f in &self.files {
            write::replace(&f.path, &f.before, &f.after).map_err(|source| PromoteError::Write {
                written: written.clone(),
                source,
            })?;
            written.push(f.path.clone());
        }
        Ok(())
    }
}

/// The selected policies, in the model's order (NetworkPolicies, then
/// cluster-admin policies), each once.
fn select<'m>(model: &'m Model, selection: &Selection) -> Result<Vec<Target<'m>>, PromoteError> {
    match selection {
        Selection::Audit => Ok(Target::all(model)
            .filter(|p| p.mode(model) == Mode::Audit)
            .collect()),
        Selection::Policies(names) => {
            let mut wanted = BTreeSet::new();
            let mut unknown = Vec::new();
            for n in names {
                match n.split_once('/') {
                    Some((ns, name))
                        if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {}
                    _ => return Err(PromoteError::BadName(n.clone())),
                }
                if Target::all(model).any(|p| p.key() == *n) {
                    wanted.insert(n.as_str());
                } else if !unknown.contains(n) {
                    unknown.push(n.clone());
                }
            }
            if !unknown.is_empty() {
                return Err(PromoteError::Unknown(unknown));
            }
            Ok(Target::all(model)
                .filter(|p| wanted.contains(p.key().as_str()))
                .collect())
        }
    }
}

/// The edit that sets policy `p`'s own mode in `text`, its file.
fn edit_policy(text: &str, p: Target, to: Mode) -> Result<edit::Edit, Refusal> {
    let (lines, docs) = document_of(text, p)?;
    let doc = &docs[p.document()];
    if let Some(m) = doc.marker
        && documents::is_content(lines[m].text[3..].trim_start())
    {
        return Err(Refusal::MarkerContent { line: m + 1 });
    }
    edit::set_mode(&lines, doc.body.clone(), to)
}

/// `text`'s lines and documents, once checked that document
/// `p.origin.document` is the policy `p` as the parser reads it.
fn document_of<'t>(
    text: &'t str,
    p: Target,
) -> Result<(Vec<documents::Line<'t>>, Vec<documents::Document>), Refusal> {
    let is_json = p.file().extension().and_then(|e| e.to_str()) == Some("json");
    if is_json {
        return Err(Refusal::Json);
    }
    let parsed = documents::parse(text).map_err(|_| Refusal::Unlocated)?;
    let value = parsed.get(p.document()).ok_or(Refusal::Unlocated)?;
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind.ends_with("List") {
        return Err(Refusal::InList);
    }
    let meta = value.get("metadata");
    let field = |f: &str| meta.and_then(|m| m.get(f)).and_then(Value::as_str);
    if !p.is_document(kind, field("name"), field("namespace")) {
        return Err(Refusal::Unlocated);
    }
    let lines = documents::lines(text);
    let docs = documents::documents(&lines);
    if docs.len() != parsed.len() {
        return Err(Refusal::Unlocated);
    }
    // The text found for the document must read as the parser's document.
    let body = documents::join(&lines[docs[p.document()].body.clone()]);
    let alone = documents::parse(&body).map_err(|_| Refusal::Unlocated)?;
    if alone.as_slice() != std::slice::from_ref(value) {
        return Err(Refusal::Unlocated);
    }
    Ok((lines, docs))
}

/// Where to point at a policy that needs no edit: its mode annotation, else
/// its document's first line.
fn locate_line(text: &str, p: Target) -> usize {
    let Ok((lines, docs)) = document_of(text, p) else {
        return 1;
    };
    let body = docs[p.document()].body.clone();
    edit::mode_line(&lines, body.clone())
        .or_else(|| body.clone().find(|&i| documents::is_content(lines[i].text)))
        .map_or(1, |i| i + 1)
}

/// `lines` with `changes` (sorted, not overlapping) made.
pub fn apply(lines: &[documents::Line<'_>], changes: &[Change]) -> String {
    let mut out = String::new();
    let mut i = 0;
    for c in changes {
        out.push_str(&documents::join(&lines[i..c.first]));
        for l in &c.insert {
            out.push_str(l);
        }
        i = c.first + c.removed;
    }
    out.push_str(&documents::join(&lines[i..]));
    out
}
