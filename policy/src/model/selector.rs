//! Label selectors (`matchLabels` + `matchExpressions`), validated and
//! normalized so equal selectors compare equal.

use std::collections::BTreeMap;
use std::fmt;

/// Labels of a pod or namespace.
pub type Labels = BTreeMap<String, String>;

/// One requirement of a label selector.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Requirement {
    /// The key is present with one of the values (`matchLabels` entries are
    /// `In` with one value).
    In(String, Vec<String>),
    /// The key is absent, or present with none of the values.
    NotIn(String, Vec<String>),
    /// The key is present.
    Exists(String),
    /// The key is absent.
    DoesNotExist(String),
}

impl Requirement {
    /// The label key this requirement tests.
    pub fn key(&self) -> &str {
        match self {
            Requirement::In(k, _)
            | Requirement::NotIn(k, _)
            | Requirement::Exists(k)
            | Requirement::DoesNotExist(k) => k,
        }
    }

    /// Whether `labels` satisfy the requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        match self {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        }
    }
}

/// A label selector: the AND of its requirements. No requirement selects
/// everything (`{}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// A selector from requirements; sorts and deduplicates them (and the
    /// values inside each) so that equal selectors are equal values.
    pub fn new(mut requirements: Vec<Requirement>) -> Self {
        for r in &mut requirements {
            if let Requirement::In(_, vs) | Requirement::NotIn(_, vs) = r {
                vs.sort();
                vs.dedup();
            }
        }
        requirements.sort();
        requirements.dedup();
        Self { requirements }
    }

    /// The selector that selects everything.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Whether this selector selects everything.
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requirement::In(k, vs) if vs.len() == 1 => write!(f, "{k}={}", vs[0]),
            Requirement::In(k, vs) => write!(f, "{k} in ({})", vs.join(",")),
            Requirement::NotIn(k, vs) => write!(f, "{k} notin ({})", vs.join(",")),
            Requirement::Exists(k) => write!(f, "{k}"),
            Requirement::DoesNotExist(k) => write!(f, "!{k}"),
        }
    }
}

impl fmt::Display for Selector {
    /// Kubernetes' selector syntax (`app=web,tier in (a,b),!legacy`); `{}` for
    /// the selector of everything.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.requirements.is_empty() {
            return f.write_str("{}");
        }
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}
