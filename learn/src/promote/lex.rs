//! One line of block YAML, read just far enough to edit it: a mapping
//! key ([`key`]) and what follows its colon ([`scalar`]). Hand-written for
//! the same reason as [`super::edit`]; anything unusual reads as
//! "don't know", and the editor refuses.

/// A mapping key at the start of `s`: the key as YAML reads it and the
/// byte offset just past its colon.
pub(super) fn key(s: &str) -> Option<(String, usize)> {
    let b = s.as_bytes();
    let first = *b.first()?;
    let indicator = b"?:,[]{}#&*!|>%@`".contains(&first)
        || (first == b'-' && matches!(b.get(1), None | Some(b' ' | b'\t')));
    let (k, end) = match first {
        b'"' | b'\'' => match quoted(s)? {
            Quoted::Text(k, n) => (k, n),
            Quoted::Escaped => return None,
        },
        _ if indicator => return None,
        _ => {
            let colon = plain_colon(s)?;
            (s[..colon].trim_end().to_string(), colon)
        }
    };
    let rest = &s[end..];
    let colon = end + (rest.len() - rest.trim_start_matches(' ').len());
    let after = s.get(colon..)?.strip_prefix(':')?;
    (after.is_empty() || after.starts_with([' ', '\t'])).then_some((k, colon + 1))
}

/// The first `:` of a plain key that ends it (followed by a blank or the
/// end), if no comment comes first.
fn plain_colon(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    for i in 0..b.len() {
        match b[i] {
            b'#' if i > 0 && b[i - 1] == b' ' => return None,
            b':' if i > 0 && matches!(b.get(i + 1), None | Some(b' ' | b'\t')) => return Some(i),
            _ => {}
        }
    }
    None
}

/// A quoted scalar that closes on its line.
enum Quoted {
    /// Its text, and its length with the quotes.
    Text(String, usize),
    /// It uses escapes (`"\x61"` is `a`: the text is not what is written).
    Escaped,
}

/// The quoted scalar at the start of `s`; `None` if it does not close on
/// this line.
fn quoted(s: &str) -> Option<Quoted> {
    let q = s.chars().next()?;
    let b = s.as_bytes();
    let mut i = 1;
    let mut out = String::new();
    let mut escaped = false;
    while i < b.len() {
        let c = b[i];
        if q == '"' && c == b'\\' {
            escaped = true;
            i += 2;
            continue;
        }
        if c == q as u8 {
            if q == '\'' && b.get(i + 1) == Some(&b'\'') {
                out.push('\'');
                i += 2;
                continue;
            }
            return Some(if escaped {
                Quoted::Escaped
            } else {
                Quoted::Text(out, i + 1)
            });
        }
        let ch = s[i..].chars().next()?;
        out.push(ch);
        i += ch.len_utf8();
    }
    None
}

/// What follows a key's colon on its line.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Scalar<'a> {
    /// Nothing (a block value follows, or null), maybe a comment.
    Absent { comment: Option<&'a str> },
    /// `null` or `~`.
    Null { comment: Option<&'a str> },
    /// A flow collection: `{}`/`[]` alone, or with entries.
    Flow {
        empty: bool,
        comment: Option<&'a str>,
    },
    /// `&anchor`, `*alias`, `!tag`.
    Indirect,
    /// A plain scalar at `range`.
    Plain { range: std::ops::Range<usize> },
    /// A quoted scalar's contents at `range`.
    Quoted { range: std::ops::Range<usize> },
    /// A quoted scalar that does not close on its line.
    Unclosed,
    /// A block scalar (`|`, `>`): its lines are indented deeper.
    Block,
    /// Anything else.
    Other,
}

pub(super) fn scalar(s: &str) -> Scalar<'_> {
    let lead = s.len() - s.trim_start_matches([' ', '\t']).len();
    let v = &s[lead..];
    if v.is_empty() || v.starts_with('#') {
        return Scalar::Absent {
            comment: (!v.is_empty()).then_some(v),
        };
    }
    match v.as_bytes()[0] {
        b'&' | b'*' | b'!' => Scalar::Indirect,
        b'|' | b'>' => Scalar::Block,
        b'{' | b'[' => match v.strip_prefix("{}").and_then(tail) {
            Some(comment) => Scalar::Flow {
                empty: true,
                comment,
            },
            None => Scalar::Flow {
                empty: false,
                comment: None,
            },
        },
        b'"' | b'\'' => match quoted(v) {
            Some(Quoted::Text(_, n)) if tail(&v[n..]).is_some() => Scalar::Quoted {
                range: lead + 1..lead + n - 1,
            },
            Some(_) => Scalar::Other,
            None => Scalar::Unclosed,
        },
        _ => {
            let end = v.find(" #").or_else(|| v.find("\t#")).unwrap_or(v.len());
            let word = v[..end].trim_end();
            if matches!(word, "null" | "Null" | "NULL" | "~") {
                return Scalar::Null {
                    comment: tail(&v[word.len()..]).flatten(),
                };
            }
            Scalar::Plain {
                range: lead..lead + word.len(),
            }
        }
    }
}

/// The rest of a line after a value: `Some(comment)` if it is blank or a
/// comment, `None` if more content follows.
fn tail(rest: &str) -> Option<Option<&str>> {
    let t = rest.trim_start_matches([' ', '\t']);
    if t.is_empty() {
        Some(None)
    } else if t.starts_with('#') && t.len() < rest.len() {
        Some(Some(t))
    } else {
        None
    }
}
