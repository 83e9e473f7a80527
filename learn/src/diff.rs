//! A line diff of block-style YAML (as [`super::yaml`] writes it) in
//! unified style without hunk headers: ` ` kept, `-` removed, `+` added;
//! runs of kept lines beyond two of context are folded into `…`.
//!
//! A plain line diff matches identical lines wherever they are
//! (`- podSelector:`, `matchLabels:` recur in every peer), so a new peer's
//! lines could be spliced into an unrelated peer's. This diff works on
//! blocks instead: a line and the lines nested under it (deeper indent; a
//! key's `- ` items at its own indent too) are one unit.
//!
//! - At each level, units are matched whole by a longest common
//!   subsequence: a unit is kept only if all its lines are unchanged.
//! - Between two kept units, a removed and an added unit are diffed inside
//!   (their first lines kept) only when their first line is the same
//!   *key* (`ingress:`, `spec:`) or they are list items with the same first
//!   line that hold lists themselves (a rule: its `from:`/`ports:` lists).
//!   A list item whose fields are scalars or maps (a peer, a port) is a
//!   value: when it changes it is removed and added whole, so a reviewer
//!   reads every peer as one block.
//!
//! Written by hand: the standard diff crates (`similar`) diff flat
//! sequences, not nested blocks; the per-level LCS here is that flat part,
//! and it runs on units (a few per level), not lines.

/// One line of a diff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edit<'a> {
    /// In both.
    Keep(&'a str),
    /// Only in the old text.
    Remove(&'a str),
    /// Only in the new text.
    Add(&'a str),
}

impl<'a> Edit<'a> {
    fn mark(&self) -> (char, &'a str) {
        match *self {
            Edit::Keep(l) => (' ', l),
            Edit::Remove(l) => ('-', l),
            Edit::Add(l) => ('+', l),
        }
    }
}

/// The diff of `old` and `new`, folded (see the module doc).
pub fn lines(old: &str, new: &str) -> String {
    render(&edits(old, new), true)
}

/// The diff of `old` and `new` as edits, every line of both present: the
/// kept and removed lines, in order, are `old`; the kept and added ones
/// are `new`.
pub fn edits<'a>(old: &'a str, new: &'a str) -> Vec<Edit<'a>> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let (ta, tb) = (parse(&a, 0, a.len()), parse(&b, 0, b.len()));
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    diff_units(&a, &ta, &b, &tb, &mut out);
    out
}

/// Edits as text, one line each (`X line`), with kept lines more than two
/// away from a change folded into `…` when `fold`.
pub fn render(edits: &[Edit<'_>], fold: bool) -> String {
    const CONTEXT: usize = 2;
    let ops: Vec<(char, &str)> = edits.iter().map(Edit::mark).collect();
    let near = |k: usize| {
        ops[k.saturating_sub(CONTEXT)..(k + CONTEXT + 1).min(ops.len())]
            .iter()
            .any(|(c, _)| *c != ' ')
    };
    let mut out = String::new();
    let mut folded = false;
    for (k, (c, line)) in ops.iter().enumerate() {
        if fold && *c == ' ' && !near(k) {
            if !folded {
                out.push_str("  …\n");
                folded = true;
            }
            continue;
        }
        folded = false;
        out.push(*c);
        out.push(' ');
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A line and the lines nested under it: `lines[start..end]`.
#[derive(Debug)]
struct Unit {
    start: usize,
    end: usize,
    children: Vec<Unit>,
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_item(line: &str) -> bool {
    let t = line.trim_start_matches(' ');
    t == "-" || t.starts_with("- ")
}

/// A key whose value is nested below it (`spec:`, `- from:`).
fn opens_block(line: &str) -> bool {
    line.trim_end().ends_with(':')
}

/// The units of `lines[start..end]`, in order.
fn parse(lines: &[&str], start: usize, end: usize) -> Vec<Unit> {
    let mut units = Vec::new();
    let mut k = start;
    while k < end {
        let (head, col) = (lines[k], indent(lines[k]));
        let mut e = k + 1;
        if opens_block(head) || is_item(head) {
            // A key also owns a sequence at its own indent (compact style).
            let compact = opens_block(head) && !is_item(head);
            while e < end {
                let l = lines[e];
                let nested = l.trim().is_empty()
                    || indent(l) > col
                    || (compact && indent(l) == col && is_item(l));
                if !nested {
                    break;
                }
                e += 1;
            }
        }
        units.push(Unit {
            start: k,
            end: e,
            children: parse(lines, k + 1, e),
        });
        k = e;
    }
    units
}

/// Whether a list item holds a list in one of its fields (a rule), as
/// opposed to a value of scalars and maps (a peer, a port).
fn holds_list(lines: &[&str], u: &Unit) -> bool {
    let key_col = indent(lines[u.start]) + 2;
    u.children.iter().any(|c| {
        is_item(lines[c.start])
            || (indent(lines[c.start]) == key_col
                && c.children.first().is_some_and(|g| is_item(lines[g.start])))
    })
}

/// Whether two unequal units are diffed inside (see the module doc).
fn related(a: &[&str], ua: &Unit, b: &[&str], ub: &Unit) -> bool {
    let (ha, hb) = (a[ua.start], b[ub.start]);
    if ha != hb || !opens_block(ha) {
        return false;
    }
    !is_item(ha) || (holds_list(a, ua) && holds_list(b, ub))
}

/// Longest common subsequence of `x` and `y` under `eq`, as index pairs.
fn lcs<X, Y>(x: &[X], y: &[Y], eq: impl Fn(&X, &Y) -> bool) -> Vec<(usize, usize)> {
    let (n, m) = (x.len(), y.len());
    // len[i][j]: LCS length of x[i..], y[j..].
    let mut len = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            len[i][j] = if eq(&x[i], &y[j]) {
                len[i + 1][j + 1] + 1
            } else {
                len[i + 1][j].max(len[i][j + 1])
            };
        }
    }
    let mut pairs = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if eq(&x[i], &y[j]) && len[i][j] == len[i + 1][j + 1] + 1 {
            pairs.push((i, j));
            i += 1;
            j += 1;
        } else if len[i + 1][j] >= len[i][j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    pairs
}

fn diff_units<'a>(a: &[&'a str], ua: &[Unit], b: &[&'a str], ub: &[Unit], out: &mut Vec<Edit<'a>>) {
    let same = |x: &Unit, y: &Unit| a[x.start..x.end] == b[y.start..y.end];
    let kept = lcs(ua, ub, |x, y| same(x, y));
    let (mut i, mut j) = (0, 0);
    for (ki, kj) in kept.into_iter().chain([(ua.len(), ub.len())]) {
        changed(a, &ua[i..ki], b, &ub[j..kj], out);
        if ki < ua.len() {
            out.extend(a[ua[ki].start..ua[ki].end].iter().map(|l| Edit::Keep(l)));
        }
        (i, j) = (ki + 1, kj + 1);
    }
}

/// A run of removed units `ua` and added units `ub` between kept ones:
/// related pairs are diffed inside, the rest removed or added whole
/// (removals first).
fn changed<'a>(a: &[&'a str], ua: &[Unit], b: &[&'a str], ub: &[Unit], out: &mut Vec<Edit<'a>>) {
    let whole = |lines: &[&'a str], u: &Unit, e: fn(&'a str) -> Edit<'a>, out: &mut Vec<_>| {
        out.extend(lines[u.start..u.end].iter().map(|l| e(l)));
    };
    let pairs = lcs(ua, ub, |x, y| related(a, x, b, y));
    let (mut i, mut j) = (0, 0);
    for (pi, pj) in pairs.into_iter().chain([(ua.len(), ub.len())]) {
        for u in &ua[i..pi] {
            whole(a, u, Edit::Remove, out);
        }
        for u in &ub[j..pj] {
            whole(b, u, Edit::Add, out);
        }
        if pi < ua.len() {
            out.push(Edit::Keep(a[ua[pi].start]));
            diff_units(a, &ua[pi].children, b, &ub[pj].children, out);
        }
        (i, j) = (pi + 1, pj + 1);
    }
}

#[cfg(test)]
mod tests;
