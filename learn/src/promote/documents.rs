//! A YAML stream as lines and documents, so that one document can be
//! edited as text without touching the others.
//!
//! The split is checked against the parser the manifest loader uses
//! ([`parse`]): if the document count or the target document's contents
//! differ, the caller refuses to edit rather than guess.

use std::ops::Range;

use serde::Deserialize;
use serde_json::Value;

/// One line of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line<'a> {
    /// The text, without its line break.
    pub text: &'a str,
    /// The line break: `"\n"`, `"\r\n"`, or `""` on a last line without one.
    pub eol: &'a str,
}

/// The lines of `text`; joined with their breaks they are `text` again.
pub fn lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (line, tail) = match rest.find('\n') {
            Some(i) => (&rest[..=i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let body = line.strip_suffix('\n').unwrap_or(line);
        let text = body.strip_suffix('\r').unwrap_or(body);
        out.push(Line {
            text,
            eol: &line[text.len()..],
        });
        rest = tail;
    }
    out
}

/// One document of a YAML stream, by line index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    /// The `---` line that starts it, if any.
    pub marker: Option<usize>,
    /// Its lines after the marker, up to the next marker or `...`.
    pub body: Range<usize>,
}

/// `---` alone or followed by a blank: a document start.
fn is_start(text: &str) -> bool {
    marker(text, "---")
}

/// `...` alone or followed by a blank: a document end.
fn is_end(text: &str) -> bool {
    marker(text, "...")
}

fn marker(text: &str, m: &str) -> bool {
    text.strip_prefix(m)
        .is_some_and(|r| r.is_empty() || r.starts_with([' ', '\t']))
}

/// A line that carries YAML content (not blank, not only a comment, not a
/// `%` directive).
pub fn is_content(text: &str) -> bool {
    let t = text.trim_start_matches([' ', '\t']);
    !t.is_empty() && !t.starts_with('#') && !text.starts_with('%')
}

/// The documents of a stream as the YAML parser counts them: every `---`
/// starts one; text before the first `---` is one only if it has content;
/// a stream without any is one (empty) document.
pub fn documents(lines: &[Line<'_>]) -> Vec<Document> {
    let mut docs = Vec::new();
    // The open document: (start, marker), or none after a `...`.
    let mut open: Option<(usize, Option<usize>)> = Some((0, None));
    let close = |docs: &mut Vec<Document>, open: Option<(usize, Option<usize>)>, end: usize| {
        let Some((start, marker)) = open else { return };
        let implicit_empty =
            marker.is_none() && !lines[start..end].iter().any(|l| is_content(l.text));
        if !implicit_empty {
            docs.push(Document {
                marker,
                body: start..end,
            });
        }
    };
    for (i, line) in lines.iter().enumerate() {
        if is_start(line.text) {
            close(&mut docs, open.take(), i);
            open = Some((i + 1, Some(i)));
        } else if is_end(line.text) {
            close(&mut docs, open.take(), i);
        }
    }
    close(&mut docs, open, lines.len());
    if docs.is_empty() {
        docs.push(Document {
            marker: None,
            body: 0..lines.len(),
        });
    }
    docs
}

/// The text of some lines, with their breaks.
pub fn join(lines: &[Line<'_>]) -> String {
    lines.iter().flat_map(|l| [l.text, l.eol]).collect()
}

/// The documents of `text` as the manifest loader parses them (empty ones
/// included, as `null`, so indices match `Origin::document`).
pub fn parse(text: &str) -> Result<Vec<Value>, serde_yaml_ng::Error> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(Value::deserialize)
        .collect()
}
