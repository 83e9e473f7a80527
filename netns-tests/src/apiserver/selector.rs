//! Label and field selectors as the API server parses them
//! (`k8s.io/apimachinery/pkg/labels` and `.../fields`).
//!
//! Hand-written: no maintained Rust crate parses the selector query strings
//! (kube-rs only builds them).
//!
//! Labels: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`,
//! `!k`, comma-separated (AND). Fields: `f=v`, `f==v`, `f!=v` on the labels
//! the resource supports (`metadata.name`, `metadata.namespace`, and the
//! resource's own, e.g. `spec.nodeName`); values may escape `\,` `\=` `\\`.

use serde_json::Value;

use super::error::ApiServerError;
use super::registry::ResourceType;

/// A parsed label selector: every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
    values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// A lexical token of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Not,
    Eq,
    NotEq,
    Open,
    Close,
    Comma,
}

fn lex(s: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | ',' => {
                chars.next();
                tokens.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    _ => Token::Comma,
                });
            }
            '!' | '=' => {
                chars.next();
                let eq_follows = chars.next_if_eq(&'=').is_some();
                tokens.push(match (c, eq_follows) {
                    ('!', true) => Token::NotEq,
                    ('!', false) => Token::Not,
                    _ => Token::Eq, // `=` or `==`
                });
            }
            c if is_word_char(c) => {
                let mut word = String::new();
                while let Some(c) = chars.next_if(|&c| is_word_char(c)) {
                    word.push(c);
                }
                tokens.push(Token::Word(word));
            }
            other => return Err(format!("unexpected character {other:?}")),
        }
    }
    Ok(tokens)
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')
}

/// Whether `key` is a valid label key: an optional DNS-subdomain prefix and
/// `/`, then a name of at most 63 characters of `[A-Za-z0-9-_.]` that starts
/// and ends alphanumeric.
fn valid_key(key: &str) -> bool {
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            if prefix.is_empty() || prefix.len() > 253 || name.contains('/') {
                return false;
            }
            name
        }
        None => key,
    };
    !name.is_empty() && valid_value(name)
}

/// Whether `v` is a valid label value (empty, or like a key's name part).
fn valid_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric())
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
}

impl LabelSelector {
    /// Parses a `labelSelector` query value; empty selects everything.
    pub fn parse(s: &str) -> Result<Self, ApiServerError> {
        let bad = |why: String| {
            ApiServerError::bad_request(format!("unable to parse requirement: {why} in {s:?}"))
        };
        let tokens = lex(s).map_err(bad)?;
        let mut requirements = Vec::new();
        let mut it = tokens.into_iter().peekable();
        while it.peek().is_some() {
            requirements.push(parse_requirement(&mut it).map_err(bad)?);
            match it.next() {
                None => break,
                Some(Token::Comma) if it.peek().is_some() => {}
                Some(t) => return Err(bad(format!("unexpected {t:?}"))),
            }
        }
        Ok(Self { requirements })
    }

    /// Whether this selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether an object with these labels (`metadata.labels`, absent or
    /// `null` meaning none) is selected.
    pub fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        self.requirements.iter().all(|r| {
            let value = labels.and_then(|l| l.get(&r.key)).and_then(Value::as_str);
            match r.op {
                Op::Exists => value.is_some(),
                Op::DoesNotExist => value.is_none(),
                Op::Equals | Op::In => value.is_some_and(|v| r.values.iter().any(|x| x == v)),
                Op::NotEquals | Op::NotIn => {
                    !value.is_some_and(|v| r.values.iter().any(|x| x == v))
                }
            }
        })
    }
}

fn parse_requirement(
    it: &mut std::iter::Peekable<std::vec::IntoIter<Token>>,
) -> Result<Requirement, String> {
    let negated = it.next_if_eq(&Token::Not).is_some();
    let key = match it.next() {
        Some(Token::Word(k)) if valid_key(&k) => k,
        Some(Token::Word(k)) => return Err(format!("invalid label key {k:?}")),
        other => return Err(format!("expected a label key, found {other:?}")),
    };
    let requirement = |op, values| Requirement {
        key: key.clone(),
        op,
        values,
    };
    if negated {
        return Ok(requirement(Op::DoesNotExist, vec![]));
    }
    let op = match it.peek() {
        None | Some(Token::Comma) => return Ok(requirement(Op::Exists, vec![])),
        Some(Token::Eq) => Op::Equals,
        Some(Token::NotEq) => Op::NotEquals,
        Some(Token::Word(w)) if w == "in" => Op::In,
        Some(Token::Word(w)) if w == "notin" => Op::NotIn,
        Some(t) => return Err(format!("expected an operator after {key:?}, found {t:?}")),
    };
    it.next();
    let values = if matches!(op, Op::In | Op::NotIn) {
        parse_set(it)?
    } else {
        // `k=` selects the empty value.
        match it.next_if(|t| matches!(t, Token::Word(_))) {
            Some(Token::Word(v)) => vec![v],
            _ => vec![String::new()],
        }
    };
    if let Some(v) = values.iter().find(|v| !valid_value(v)) {
        return Err(format!("invalid label value {v:?}"));
    }
    Ok(requirement(op, values))
}

/// `( v1, v2, ... )` after `in` / `notin`.
fn parse_set(
    it: &mut std::iter::Peekable<std::vec::IntoIter<Token>>,
) -> Result<Vec<String>, String> {
    if it.next() != Some(Token::Open) {
        return Err("expected '(' after in/notin".into());
    }
    let mut values = Vec::new();
    loop {
        match it.next() {
            Some(Token::Word(v)) => values.push(v),
            Some(Token::Close) if values.is_empty() => {
                return Err("for 'in', 'notin' operators, values set can't be empty".into());
            }
            t => return Err(format!("expected a value, found {t:?}")),
        }
        match it.next() {
            Some(Token::Comma) => {}
            Some(Token::Close) => return Ok(values),
            t => return Err(format!("expected ',' or ')', found {t:?}")),
        }
    }
}

/// A parsed field selector: every term must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldTerm {
    path: Vec<&'static str>,
    equal: bool,
    value: String,
}

impl FieldSelector {
    /// Parses a `fieldSelector` query value for `resource`; a field label
    /// it does not support is an error, as on the real server.
    pub fn parse(s: &str, resource: &ResourceType) -> Result<Self, ApiServerError> {
        let mut terms = Vec::new();
        for term in split_unescaped(s, ',')
            .into_iter()
            .filter(|t| !t.trim().is_empty())
        {
            let (label, equal, value) = split_term(&term).ok_or_else(|| {
                ApiServerError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                ))
            })?;
            let path = field_path(label.trim(), resource).ok_or_else(|| {
                ApiServerError::bad_request(format!("field label not supported: {}", label.trim()))
            })?;
            terms.push(FieldTerm {
                path,
                equal,
                value: unescape(value.trim()),
            });
        }
        Ok(Self { terms })
    }

    /// Whether this selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether `obj` is selected; a missing field reads as `""`.
    pub fn matches(&self, obj: &Value) -> bool {
        self.terms.iter().all(|t| {
            let field = t
                .path
                .iter()
                .try_fold(obj, |v, k| v.get(k))
                .and_then(Value::as_str)
                .unwrap_or("");
            (field == t.value) == t.equal
        })
    }
}

fn field_path(label: &str, resource: &ResourceType) -> Option<Vec<&'static str>> {
    match label {
        "metadata.name" => Some(vec!["metadata", "name"]),
        "metadata.namespace" => Some(vec!["metadata", "namespace"]),
        _ => resource
            .fields
            .iter()
            .find(|(l, _)| *l == label)
            .map(|(_, path)| path.to_vec()),
    }
}

/// Splits at `sep` where it is not escaped by `\`.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut escaped = false;
    for c in s.chars() {
        if !escaped && c == sep {
            parts.push(String::new());
            continue;
        }
        escaped = !escaped && c == '\\';
        parts.last_mut().expect("never empty").push(c);
    }
    parts
}

/// `label!=value`, `label==value` or `label=value`, at the first unescaped operator.
fn split_term(term: &str) -> Option<(&str, bool, &str)> {
    let mut escaped = false;
    for (i, c) in term.char_indices() {
        if !escaped {
            let rest = &term[i..];
            if let Some(v) = rest.strip_prefix("!=") {
                return Some((&term[..i], false, v));
            }
            if let Some(v) = rest.strip_prefix("==").or_else(|| rest.strip_prefix('=')) {
                return Some((&term[..i], true, v));
            }
        }
        escaped = !escaped && c == '\\';
    }
    None
}

fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' {
            chars.next().unwrap_or('\\')
        } else {
            c
        });
    }
    out
}

/// A request's label and field selectors together.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    /// The `labelSelector`.
    pub labels: LabelSelector,
    /// The `fieldSelector`.
    pub fields: FieldSelector,
}

impl Selector {
    /// Parses both query values (absent meaning everything).
    pub fn parse(
        labels: Option<&str>,
        fields: Option<&str>,
        resource: &ResourceType,
    ) -> Result<Self, ApiServerError> {
        Ok(Self {
            labels: LabelSelector::parse(labels.unwrap_or(""))?,
            fields: FieldSelector::parse(fields.unwrap_or(""), resource)?,
        })
    }

    /// Whether this selects everything.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    /// Whether `obj` is selected.
    pub fn matches(&self, obj: &Value) -> bool {
        self.fields.matches(obj)
            && self
                .labels
                .matches(obj.pointer("/metadata/labels").and_then(Value::as_object))
    }
}
