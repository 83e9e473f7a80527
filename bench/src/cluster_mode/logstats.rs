//! Where the agent's time goes, from its own log (`BULKHEAD_LOG` with the
//! reconciler at debug): each model it compiles (`compiled took=… pods=…`)
//! and each dataplane sync that switched the policy (`policy switched …
//! took=…`). The benchmark reads the part of the log a phase wrote.

use std::path::Path;

use serde::Serialize;

/// Times of one kind of step, milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Steps {
    /// How many.
    pub count: usize,
    /// Median.
    pub median_ms: f64,
    /// 99th percentile (nearest rank).
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

/// The agent's steps during one phase.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AgentSteps {
    /// Compiles of a new model.
    pub compile: Steps,
    /// Dataplane syncs that switched the policy (image written, revision
    /// bumped).
    pub switch: Steps,
}

/// The log's length now (where a phase starts reading).
pub fn mark(log: &Path) -> u64 {
    std::fs::metadata(log).map_or(0, |m| m.len())
}

/// The steps logged since `from` (a [`mark`]).
pub fn since(log: &Path, from: u64) -> AgentSteps {
    let text = std::fs::read(log).unwrap_or_default();
    let start = (from as usize).min(text.len());
    let text = String::from_utf8_lossy(&text[start..]);
    AgentSteps {
        compile: steps(&text, " compiled "),
        switch: steps(&text, "policy switched"),
    }
}

fn steps(text: &str, marker: &str) -> Steps {
    let mut ms: Vec<f64> = text
        .lines()
        .filter(|l| l.contains(marker))
        .filter_map(took_ms)
        .collect();
    ms.sort_by(f64::total_cmp);
    let rank = |q: f64| ms[((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
    if ms.is_empty() {
        return Steps::default();
    }
    Steps {
        count: ms.len(),
        median_ms: rank(0.5),
        p99_ms: rank(0.99),
        max_ms: ms[ms.len() - 1],
    }
}

/// The `took=` field of a log line (a `Duration`'s Debug form: `85.3ms`,
/// `1.2s`, `850µs`, `12ns`), in milliseconds.
fn took_ms(line: &str) -> Option<f64> {
    let rest = &line[line.find("took=")? + 5..];
    let field = rest.split_whitespace().next()?;
    let digits = field
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(field.len());
    let (num, unit) = field.split_at(digits);
    let n: f64 = num.parse().ok()?;
    let scale = match unit {
        "s" => 1e3,
        "ms" => 1.0,
        "µs" | "us" => 1e-3,
        "ns" => 1e-6,
        _ => return None,
    };
    Some(n * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_took_fields_of_the_marked_lines() {
        let log = "\
2026-12-06T10:00:00.1Z DEBUG bulkhead_agent::reconcile: compiled took=85.5ms pods=10002
2026-12-06T10:00:00.2Z  INFO bulkhead_agent::reconcile: policy switched from=1 to=2 writes=9 endpoints=2 took=12.25ms
2026-12-06T10:00:00.3Z DEBUG bulkhead_agent::reconcile: compiled took=1.5s pods=10003
2026-12-06T10:00:00.4Z DEBUG bulkhead_agent::reconcile: compiled took=500µs pods=3
2026-12-06T10:00:00.5Z  INFO bulkhead_agent: something else took=7ms
";
        let c = steps(log, " compiled ");
        assert_eq!(c.count, 3);
        assert_eq!(c.median_ms, 85.5);
        assert_eq!(c.max_ms, 1500.0);
        assert_eq!(c.p99_ms, 1500.0);
        let s = steps(log, "policy switched");
        assert_eq!((s.count, s.median_ms), (1, 12.25));
        assert_eq!(took_ms("took=12ns"), Some(12e-6));
        assert_eq!(took_ms("took=3m"), None);
        assert_eq!(steps("", " compiled ").count, 0);
    }
}
