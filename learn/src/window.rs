//! Time windows: which part of the history a proposal or a baseline is
//! learnt from (`--since`/`--until`).
//!
//! A window is `[since, until)` in the records' own time (milliseconds
//! since the epoch), either end open. A flow record belongs to it if it
//! overlaps it: its last packet at or after `since`, its first before
//! `until`. Flow logs are filtered record by record, exactly; the durable
//! store keeps per-bucket stats ([`crate::store`]) and a window load rounds
//! outward to whole buckets, which [`WindowFacts`] says (and whether the
//! store still held everything the window asks for). Nothing here reads a
//! clock: "two hours ago" is resolved by the caller.

use serde::{Deserialize, Serialize};

use bulkhead_flows::record::Timestamp;

/// `[since, until)`, either end open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Window {
    /// Start (inclusive); `None`: from the beginning.
    pub since: Option<Timestamp>,
    /// End (exclusive); `None`: to the end.
    pub until: Option<Timestamp>,
}

impl Window {
    /// The whole history.
    pub const ALL: Window = Window {
        since: None,
        until: None,
    };

    /// Whether the window leaves nothing out.
    pub fn is_all(&self) -> bool {
        self.since.is_none() && self.until.is_none()
    }

    /// Whether a record covering `[start, end]` overlaps the window.
    pub fn overlaps(&self, start: Timestamp, end: Timestamp) -> bool {
        self.since.is_none_or(|s| end >= s) && self.until.is_none_or(|u| start < u)
    }

    /// The window rounded outward to whole buckets of `width_ms`: `since`
    /// down to a bucket's start, `until` up to one.
    pub fn rounded(&self, width_ms: u64) -> Window {
        let w = width_ms.max(1);
        Window {
            since: self.since.map(|s| Timestamp(s.0 - s.0 % w)),
            until: self
                .until
                .map(|u| Timestamp(u.0.div_ceil(w).saturating_mul(w))),
        }
    }
}

/// The window a history was read for, as the proof states it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowFacts {
    /// The effective start: the requested one, or earlier where a source
    /// rounded it to a bucket.
    pub since: Option<Timestamp>,
    /// The effective end: the requested one, or later where a source
    /// rounded it to a bucket.
    pub until: Option<Timestamp>,
    /// What was asked.
    pub requested: Window,
    /// A source rounded the window outward to whole buckets.
    #[serde(default)]
    pub rounded: bool,
    /// A source no longer holds all of the window (its oldest buckets were
    /// evicted, or it kept no buckets then): the history is partial.
    #[serde(default)]
    pub partial: bool,
    /// One line per source that rounded or is partial, in plain words.
    #[serde(default)]
    pub notes: Vec<String>,
}

impl WindowFacts {
    /// Facts of reading exactly `requested` (flow logs).
    pub fn exact(requested: Window) -> Self {
        WindowFacts {
            since: requested.since,
            until: requested.until,
            requested,
            ..WindowFacts::default()
        }
    }

    /// Widens these facts by a source's effective window.
    pub fn widen(&mut self, effective: Window) {
        self.since = match (self.since, effective.since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            _ => None,
        };
        self.until = match (self.until, effective.until) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
        self.rounded |= effective != self.requested;
    }
}
