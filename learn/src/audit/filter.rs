//! Which records and policies a report covers: `--policy` and `--since`.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bulkhead_flows::record::{FlowRecord, Timestamp};

/// Why a `--policy` or `--since` value does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// Not `namespace/name` (or `Kind/name`).
    #[error("policy {value:?} is not namespace/name (or Kind/name for a cluster-admin policy)")]
    Policy {
        /// The value as given.
        value: String,
    },
    /// Neither an RFC 3339 time nor a duration.
    #[error(
        "since {value:?} is neither an RFC 3339 time (2025-01-02T03:04:05Z) nor a duration (90m, 2h, 7d)"
    )]
    Since {
        /// The value as given.
        value: String,
    },
}

/// `--since`: a point in time, or a duration before now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// This time.
    At(Timestamp),
    /// This long before now.
    Ago(Duration),
}

impl Since {
    /// Parses `2025-01-02T03:04:05Z` (any RFC 3339 UTC time) or a duration
    /// (`90s`, `15m`, `2h`, `7d`, `1h 30m`).
    pub fn parse(value: &str) -> Result<Self, FilterError> {
        let bad = || FilterError::Since {
            value: value.to_owned(),
        };
        if let Ok(t) = humantime::parse_rfc3339(value.trim()) {
            let ms = t.duration_since(UNIX_EPOCH).map_err(|_| bad())?.as_millis();
            return Ok(Since::At(Timestamp(ms as u64)));
        }
        humantime::parse_duration(value.trim())
            .map(Since::Ago)
            .map_err(|_| bad())
    }

    /// The time, with `now` for a duration.
    pub fn resolve(self, now: SystemTime) -> Timestamp {
        match self {
            Since::At(t) => t,
            Since::Ago(d) => {
                let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
                Timestamp(now.saturating_sub(d).as_millis() as u64)
            }
        }
    }
}

/// Parses a `--policy` value: `namespace/name`, or `Kind/name` for a
/// cluster-admin policy (ClusterNetworkPolicy, AdminNetworkPolicy,
/// BaselineAdminNetworkPolicy), as flow records name them.
pub fn parse_policy(value: &str) -> Result<String, FilterError> {
    match value.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(value.to_owned())
        }
        _ => Err(FilterError::Policy {
            value: value.to_owned(),
        }),
    }
}

/// What a report covers; the default covers everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only these policies (`namespace/name`, `Kind/name` for a
    /// cluster-admin policy); all when empty. Each is
    /// reported even when no record names it, so a typo or a policy that
    /// selects nothing shows as "no audited flows" rather than silence.
    pub policies: BTreeSet<String>,
    /// Drop records that ended before this.
    pub since: Option<Timestamp>,
}

impl Filter {
    /// Whether policy `name` is reported.
    pub fn wants_policy(&self, name: &str) -> bool {
        self.policies.is_empty() || self.policies.contains(name)
    }

    /// Whether the record is recent enough.
    pub fn wants_record(&self, r: &FlowRecord) -> bool {
        self.since.is_none_or(|since| r.end >= since)
    }
}
