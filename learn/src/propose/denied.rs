//! Denied attempts: edges with records the policies in force dropped
//! (verdict `denied` or `quarantined`), reported apart from what was
//! observed ([`crate::edge::History::observed`]) with their deciding
//! policies, and proposed only with [`super::Options::include_denied`].

use serde::Serialize;

use super::edge_text;
use crate::edge::{EdgeKey, History};
use bulkhead_flows::record::Timestamp;

/// An edge with denied attempts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeniedAttempt {
    /// The edge (`src → dst PROTO/port`).
    pub edge: String,
    /// Denied connections (each counted once).
    pub flows: u64,
    /// Start of the first denied record.
    pub first: Timestamp,
    /// End of the last denied record.
    pub last: Timestamp,
    /// The deciding policies (`namespace/name`, `Kind/name` for a
    /// cluster-admin policy), sorted; at most
    /// [`crate::edge::MAX_DENIED_POLICIES`].
    pub policies: Vec<String>,
    /// More deciding policies were seen than are listed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub policies_truncated: bool,
    /// Connections of the edge that were allowed (0: only denied; such an
    /// edge is in no rule unless denied attempts are included).
    pub allowed_flows: u64,
    /// The edge.
    #[serde(skip)]
    pub key: EdgeKey,
}

/// The edges of `history` with denied attempts, sorted by edge.
pub fn denied_attempts(history: &History) -> Vec<DeniedAttempt> {
    let mut out: Vec<DeniedAttempt> = history
        .edges
        .iter()
        .filter_map(|(key, s)| {
            let d = s.denied.as_ref()?;
            Some(DeniedAttempt {
                edge: edge_text(key),
                flows: d.flows(),
                first: d.first_seen,
                last: d.last_seen,
                policies: d.policies.iter().cloned().collect(),
                policies_truncated: d.policies_truncated,
                allowed_flows: s.allowed_flows(),
                key: key.clone(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}
