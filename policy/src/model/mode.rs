//! Enforcement modes: how a NetworkPolicy takes effect.
//!
//! A policy's mode comes from its own annotation [`MODE_ANNOTATION`], else
//! its namespace's annotation of the same name, else the agent's default
//! (`bulkhead agent --mode`, `enforce` unless told otherwise): the most
//! specific word wins, so one policy can be staged in audit while the rest
//! of its namespace enforces, or enforced while its namespace learns.

use std::fmt;
use std::str::FromStr;

/// The annotation that sets a mode on a NetworkPolicy or a Namespace.
pub const MODE_ANNOTATION: &str = "bulkhead.io/mode";

/// How a policy takes effect.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Enforced: the kernel drops what it does not allow.
    #[default]
    Enforce,
    /// Staged: the kernel computes its verdict beside the enforced one and
    /// records "would deny", but passes the packet.
    Audit,
    /// Ignored: traffic flows as if the policy did not exist, and is
    /// recorded (flow log, history) for `bulkhead propose` to learn from.
    Learn,
}

impl Mode {
    /// Every mode, in order.
    pub const ALL: [Mode; 3] = [Mode::Enforce, Mode::Audit, Mode::Learn];

    /// The annotation value.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
            Mode::Learn => "learn",
        }
    }

    /// Whether the enforced view holds a policy of this mode.
    pub fn enforced(self) -> bool {
        self == Mode::Enforce
    }

    /// Whether the audit view (what would be enforced if audit-mode
    /// policies were promoted) holds a policy of this mode.
    pub fn audited(self) -> bool {
        matches!(self, Mode::Enforce | Mode::Audit)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mode word that is none of `enforce`, `audit`, `learn`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mode {0:?} (expected enforce, audit or learn)")]
pub struct UnknownMode(pub String);

impl FromStr for Mode {
    type Err = UnknownMode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| UnknownMode(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_mode() {
        for m in Mode::ALL {
            assert_eq!(m.as_str().parse::<Mode>(), Ok(m));
            assert_eq!(m.to_string(), m.as_str());
        }
        assert_eq!(
            "Audit".parse::<Mode>(),
            Err(UnknownMode("Audit".to_string()))
        );
        assert_eq!(Mode::default(), Mode::Enforce);
    }

    #[test]
    fn views() {
        assert!(Mode::Enforce.enforced() && Mode::Enforce.audited());
        assert!(!Mode::Audit.enforced() && Mode::Audit.audited());
        assert!(!Mode::Learn.enforced() && !Mode::Learn.audited());
    }
}
