//! The text edit that sets a NetworkPolicy's `bulkhead.io/mode` annotation
//! in a block-style YAML document, touching as few lines as possible and
//! keeping everything else (comments, quoting, indentation, line breaks).
//!
//! Written by hand: no maintained YAML crate edits text while preserving
//! its formatting. The editor understands only the plain block layout
//! people and `kubectl` write (`metadata:` / `annotations:` mappings, one
//! `key: value` per line) and refuses anything else ([`Refusal`]); whatever
//! it produces is checked afterwards by parsing (see `super::verify`).

use super::documents::{Line, is_content};
use super::lex::{Scalar, key, scalar};
use bulkhead_policy::model::{MODE_ANNOTATION, Mode};

/// Why a document is not edited. Line numbers are 1-based, in the file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A JSON manifest (its layout is the writer's; not edited).
    #[error("the file is JSON")]
    Json,
    /// The policy is an item of a `*List` object.
    #[error("the policy is an item of a List")]
    InList,
    /// Content on the `---` line itself (a tag, a flow mapping).
    #[error("line {line}: the document starts with content on its `---` line")]
    MarkerContent {
        /// The line.
        line: usize,
    },
    /// The whole document is a flow mapping (`{...}`).
    #[error("line {line}: the document is in flow style ({{...}})")]
    FlowDocument {
        /// The line.
        line: usize,
    },
    /// `metadata: {...}`.
    #[error("line {line}: metadata is in flow style ({{...}})")]
    FlowMetadata {
        /// The line.
        line: usize,
    },
    /// `annotations: {...}` with entries.
    #[error("line {line}: metadata.annotations is in flow style ({{...}})")]
    FlowAnnotations {
        /// The line.
        line: usize,
    },
    /// An anchor, alias, tag or merge key where the edit goes: changing
    /// the text could change other places too.
    #[error("line {line}: {what} uses an anchor, alias, tag or merge key")]
    Indirect {
        /// The field.
        what: &'static str,
        /// The line.
        line: usize,
    },
    /// A key given twice (the parser keeps the last; which one to edit is
    /// a guess).
    #[error("lines {first} and {second}: {key} is given twice")]
    Duplicate {
        /// The key.
        key: &'static str,
        /// First occurrence.
        first: usize,
        /// Second occurrence.
        second: usize,
    },
    /// A value that is not a one-line scalar (block scalar, multi-line or
    /// escaped string).
    #[error("line {line}: the value of {what} is not a simple one-line scalar")]
    NotOneLine {
        /// The field.
        what: &'static str,
        /// The line.
        line: usize,
    },
    /// A tab where indentation is read.
    #[error("line {line}: indented with a tab")]
    Tab {
        /// The line.
        line: usize,
    },
    /// A line this editor does not read as `key: value` where it needs to.
    #[error("line {line}: not a `key: value` line this editor understands")]
    Unrecognized {
        /// The line.
        line: usize,
    },
    /// No top-level block `metadata:` key.
    #[error("no top-level `metadata:` mapping found")]
    NoMetadata,
    /// The document's text and the parser disagree about where it is or
    /// what it holds.
    #[error("the document's text could not be matched to what the YAML parser reads")]
    Unlocated,
}

/// Lines `first..first + removed` of a file replaced by `insert` (each with
/// its line break).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// First line (0-based).
    pub first: usize,
    /// How many lines go.
    pub removed: usize,
    /// The lines that come instead.
    pub insert: Vec<String>,
}

/// The edit of one document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edit {
    /// What changes in the file.
    pub change: Change,
    /// The annotation ends up on line `change.first + offset` (0-based,
    /// counting lines as they are once the change is made).
    pub offset: usize,
}

/// Where a policy's mode annotation is, or would go.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Site {
    /// `bulkhead.io/mode: <value>` on `line`, the value's text (inside
    /// its quotes, if any) at `value`.
    Value {
        line: usize,
        value: std::ops::Range<usize>,
    },
    /// A new annotation line after `after`, at `indent`; `header` rewrites
    /// line `after` first (`annotations: {}` → `annotations:`).
    Insert {
        after: usize,
        indent: usize,
        header: Option<String>,
    },
    /// A new `annotations:` mapping after the `metadata:` line.
    NewAnnotations {
        after: usize,
        indent: usize,
        child: usize,
    },
}

/// The edit that sets `mode` on the document whose lines (after its `---`)
/// are `body` of `lines`.
pub fn set_mode(
    lines: &[Line<'_>],
    body: std::ops::Range<usize>,
    mode: Mode,
) -> Result<Edit, Refusal> {
    let eol = |i: usize| match lines[i].eol {
        "" => lines
            .iter()
            .map(|l| l.eol)
            .find(|e| !e.is_empty())
            .unwrap_or("\n"),
        e => e,
    };
    let entry =
        |indent: usize, i: usize| format!("{:indent$}{MODE_ANNOTATION}: {mode}{}", "", eol(i));
    // Inserting after a last line without a break gives it one.
    let after = |i: usize, header: Option<String>, new: Vec<String>| {
        let own = header.or_else(|| lines[i].eol.is_empty().then(|| lines[i].text.to_string()));
        match own {
            Some(text) => Edit {
                change: Change {
                    first: i,
                    removed: 1,
                    insert: [vec![format!("{text}{}", eol(i))], new].concat(),
                },
                offset: 1,
            },
            None => Edit {
                change: Change {
                    first: i + 1,
                    removed: 0,
                    insert: new,
                },
                offset: 0,
            },
        }
    };
    Ok(match locate(lines, body)? {
        Site::Value { line, value } => {
            let text = lines[line].text;
            // Quotes, if any, are kept: a mode word reads the same in all.
            let new = format!(
                "{}{mode}{}{}",
                &text[..value.start],
                &text[value.end..],
                lines[line].eol
            );
            Edit {
                change: Change {
                    first: line,
                    removed: 1,
                    insert: vec![new],
                },
                offset: 0,
            }
        }
        Site::Insert {
            after: i,
            indent,
            header,
        } => after(i, header, vec![entry(indent, i)]),
        Site::NewAnnotations {
            after: i,
            indent,
            child,
        } => {
            let mut e = after(
                i,
                None,
                vec![
                    format!("{:indent$}annotations:{}", "", eol(i)),
                    entry(child, i),
                ],
            );
            e.offset += 1;
            e
        }
    })
}

/// The line (0-based) of the document's own mode annotation, if it has
/// one this editor can read.
pub fn mode_line(lines: &[Line<'_>], body: std::ops::Range<usize>) -> Option<usize> {
    match locate(lines, body).ok()? {
        Site::Value { line, .. } => Some(line),
        _ => None,
    }
}

fn indent(text: &str) -> usize {
    text.len() - text.trim_start_matches(' ').len()
}

/// The lines of the block under the key on `header` (indented `parent`):
/// up to the next content line indented `parent` or less.
fn block(lines: &[Line<'_>], header: usize, end: usize, parent: usize) -> std::ops::Range<usize> {
    let stop = (header + 1..end)
        .find(|&i| is_content(lines[i].text) && indent(lines[i].text) <= parent)
        .unwrap_or(end);
    header + 1..stop
}

/// The keys of a block mapping whose entries are at `at`, in `range`:
/// (line, key, byte offset past the colon). Lines indented deeper belong
/// to values; `- ` items at `at` to a compact sequence value.
fn keys(
    lines: &[Line<'_>],
    range: std::ops::Range<usize>,
    at: usize,
    sequences: bool,
) -> Result<Vec<(usize, String, usize)>, Refusal> {
    let mut out = Vec::new();
    for i in range {
        let text = lines[i].text;
        if !is_content(text) {
            continue;
        }
        let n = indent(text);
        if n > at {
            continue;
        }
        let rest = &text[n..];
        // Deeper lines may hold tabs (block scalar text); here a tab would
        // be read as indentation by people and not by YAML.
        if rest.starts_with('\t') {
            return Err(Refusal::Tab { line: i + 1 });
        }
        if n < at {
            return Err(Refusal::Unrecognized { line: i + 1 });
        }
        if sequences && (rest == "-" || rest.starts_with("- ")) {
            continue;
        }
        let Some((k, colon)) = key(rest) else {
            return Err(Refusal::Unrecognized { line: i + 1 });
        };
        // A quoted string may go on at the same indentation: its next
        // line would be misread as a key.
        if matches!(scalar(&rest[colon..]), Scalar::Unclosed) {
            return Err(Refusal::NotOneLine {
                what: "a key in metadata",
                line: i + 1,
            });
        }
        out.push((i, k, n + colon));
    }
    Ok(out)
}

/// The one entry for `name` among `keys`, refusing merge keys and
/// duplicates.
fn one(
    keys: &[(usize, String, usize)],
    name: &'static str,
) -> Result<Option<(usize, usize)>, Refusal> {
    if let Some((line, _, _)) = keys.iter().find(|(_, k, _)| k == "<<") {
        return Err(Refusal::Indirect {
            what: "a merge key",
            line: line + 1,
        });
    }
    let mut found = keys.iter().filter(|(_, k, _)| k == name);
    let first = found.next().map(|&(l, _, c)| (l, c));
    if let (Some((a, _)), Some((b, _, _))) = (first, found.next()) {
        return Err(Refusal::Duplicate {
            key: name,
            first: a + 1,
            second: b + 1,
        });
    }
    Ok(first)
}

/// Finds where the mode annotation is or goes.
fn locate(lines: &[Line<'_>], body: std::ops::Range<usize>) -> Result<Site, Refusal> {
    let end = body.end;
    let Some(first) = body.clone().find(|&i| is_content(lines[i].text)) else {
        return Err(Refusal::NoMetadata);
    };
    let top = indent(lines[first].text);
    if lines[first].text[top..].starts_with(['{', '[']) {
        return Err(Refusal::FlowDocument { line: first + 1 });
    }
    let top_keys = keys(lines, first..end, top, true)?;
    let Some((meta, colon)) = one(&top_keys, "metadata")? else {
        return Err(Refusal::NoMetadata);
    };
    match scalar(&lines[meta].text[colon..]) {
        Scalar::Absent { .. } => {}
        Scalar::Flow { .. } => return Err(Refusal::FlowMetadata { line: meta + 1 }),
        Scalar::Indirect => {
            return Err(Refusal::Indirect {
                what: "metadata",
                line: meta + 1,
            });
        }
        _ => return Err(Refusal::Unrecognized { line: meta + 1 }),
    }
    let meta_block = block(lines, meta, end, top);
    let Some(child) = meta_block
        .clone()
        .find(|&i| is_content(lines[i].text))
        .map(|i| indent(lines[i].text))
    else {
        return Err(Refusal::NoMetadata);
    };
    // The document's indentation step, for lines that have no sibling to
    // copy it from.
    let step = child - top;
    let meta_keys = keys(lines, meta_block.clone(), child, true)?;
    let Some((ann, colon)) = one(&meta_keys, "annotations")? else {
        return Ok(Site::NewAnnotations {
            after: meta,
            indent: child,
            child: child + step,
        });
    };
    let text = lines[ann].text;
    match scalar(&text[colon..]) {
        Scalar::Absent { .. } => {
            let entries = block(lines, ann, meta_block.end, child);
            let Some(at) = entries
                .clone()
                .find(|&i| is_content(lines[i].text))
                .map(|i| indent(lines[i].text))
            else {
                // `annotations:` with nothing under it is null.
                return Ok(Site::Insert {
                    after: ann,
                    indent: child + step,
                    header: None,
                });
            };
            let ann_keys = keys(lines, entries.clone(), at, false)?;
            let Some((line, colon)) = one(&ann_keys, MODE_ANNOTATION)? else {
                return Ok(Site::Insert {
                    after: ann,
                    indent: at,
                    header: None,
                });
            };
            mode_value(lines, line, colon, entries.end)
        }
        Scalar::Flow {
            empty: true,
            comment,
        }
        | Scalar::Null { comment } => {
            // `annotations: {}` or null: becomes a block mapping.
            let mut header = text[..colon].to_string();
            if let Some(c) = comment {
                header.push(' ');
                header.push_str(c);
            }
            Ok(Site::Insert {
                after: ann,
                indent: child + step,
                header: Some(header),
            })
        }
        Scalar::Flow { .. } => Err(Refusal::FlowAnnotations { line: ann + 1 }),
        Scalar::Indirect => Err(Refusal::Indirect {
            what: "metadata.annotations",
            line: ann + 1,
        }),
        _ => Err(Refusal::Unrecognized { line: ann + 1 }),
    }
}

/// The site of an existing `bulkhead.io/mode: value` on `line`.
fn mode_value(lines: &[Line<'_>], line: usize, colon: usize, end: usize) -> Result<Site, Refusal> {
    let text = lines[line].text;
    let not_one_line = Refusal::NotOneLine {
        what: "the mode annotation",
        line: line + 1,
    };
    let range = match scalar(&text[colon..]) {
        Scalar::Plain { range } | Scalar::Quoted { range } => range,
        Scalar::Indirect => {
            return Err(Refusal::Indirect {
                what: "the mode annotation",
                line: line + 1,
            });
        }
        _ => return Err(not_one_line),
    };
    // A plain scalar may continue on deeper lines.
    if block(lines, line, end, indent(text)).any(|i| is_content(lines[i].text)) {
        return Err(not_one_line);
    }
    Ok(Site::Value {
        line,
        value: colon + range.start..colon + range.end,
    })
}
