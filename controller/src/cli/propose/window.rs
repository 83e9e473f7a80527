//! `--since`/`--until` of `propose` and `baseline take`: a time window
//! of the history, each end RFC 3339 (UTC, e.g. `2026-12-07T14:00:00Z`) or
//! a duration before now (`2h`, `30m`, `90s`). "Now" is read here, at the
//! CLI's edge, once; the learner never reads a clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;

use bulkhead_flows::record::Timestamp;
use bulkhead_learn::Window;

/// One end of a window as given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeArg {
    /// An instant.
    At(Timestamp),
    /// This long before now.
    Ago(Duration),
}

impl TimeArg {
    /// The instant, `now` being `now`.
    pub fn resolve(self, now: Timestamp) -> Timestamp {
        match self {
            TimeArg::At(t) => t,
            TimeArg::Ago(d) => Timestamp(
                now.0
                    .saturating_sub(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            ),
        }
    }
}

/// Parses RFC 3339 (UTC) or a duration before now.
pub fn parse_time(s: &str) -> Result<TimeArg, String> {
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(TimeArg::Ago(d));
    }
    let t = humantime::parse_rfc3339_weak(s).map_err(|e| {
        format!("{s:?} is neither RFC 3339 (UTC, e.g. 2026-12-07T14:00:00Z) nor a duration (2h, 30m): {e}")
    })?;
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| format!("{s:?} is before 1970"))?
        .as_millis();
    Ok(TimeArg::At(Timestamp(
        u64::try_from(ms).unwrap_or(u64::MAX),
    )))
}

/// The window arguments.
#[derive(Clone, Debug, Default, Args)]
pub struct WindowArgs {
    /// Learn only from records overlapping the window from T (RFC 3339
    /// UTC, or a duration before now: 2h, 30m, 90s). Flow logs are
    /// filtered exactly; a history database or agent rounds outward to its
    /// time buckets (the proof says so).
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub since: Option<TimeArg>,
    /// ...to T (exclusive; same forms as --since).
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub until: Option<TimeArg>,
}

impl WindowArgs {
    /// The window, durations taken before `now`.
    pub fn window_at(&self, now: Timestamp) -> Window {
        Window {
            since: self.since.map(|t| t.resolve(now)),
            until: self.until.map(|t| t.resolve(now)),
        }
    }

    /// The window, durations taken before the clock's now.
    pub fn window(&self) -> Window {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.window_at(Timestamp(now))
    }
}

#[cfg(test)]
mod tests;
