//! `bulkhead timeline --pod NS/NAME`: the pod's forensic timeline (every
//! flow, allowed and denied; alert; quarantine; policy and mode change
//! that affected it), in time order, from the durable timeline the agent
//! keeps (`agent --timeline-db`), read through its API while it runs.
//!
//! The database has one writer (redb locks the file): the running agent.
//! Offline reading of the file would need the agent stopped, so the API
//! is the way in. A lab's agents are asked one after the other and their
//! events merged in time order (a flow between two nodes is in both).

use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use clap::Args;

use super::flows::{agent_sockets, connect, render_body, short_time};
use super::quarantine::{AgentSocketArgs, parse_pod};
use super::{CliError, Output};
use bulkhead_agent::api::TimelineQuery;
use bulkhead_agent::api::client::{self, ClientError};
use bulkhead_flows::record::Timestamp;
use bulkhead_learn::audit::filter::Since;
use bulkhead_learn::timeline::{Event, EventKind, Page};

/// Arguments of `bulkhead timeline`.
#[derive(Debug, Args)]
pub struct TimelineArgs {
    /// The pod whose events to show.
    #[arg(long, value_name = "NS/NAME")]
    pub pod: String,
    /// Only events at or after this time (RFC 3339 UTC,
    /// `2025-01-02T03:04:05Z`) or this long ago (`90m`, `2h`, `7d`).
    #[arg(long, value_name = "TIME|DURATION", value_parser = Since::parse)]
    pub since: Option<Since>,
    /// Only events at or before this time (same forms as --since).
    #[arg(long, value_name = "TIME|DURATION", value_parser = Since::parse)]
    pub until: Option<Since>,
    /// At most this many events (per agent; the agent clamps it).
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    pub limit: usize,
    /// Which agent.
    #[command(flatten)]
    pub agent: AgentSocketArgs,
    /// Output format (text: one line per event, times UTC; JSON: the
    /// `bulkhead.timeline/v1` page, one object).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Errors of `bulkhead timeline` (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum TimelineCliError {
    /// `--since` is after `--until`.
    #[error("--since is after --until")]
    Range,
    /// The agent refused or failed the request.
    #[error("agent {}: {source}", socket.display())]
    Api {
        /// Its socket.
        socket: PathBuf,
        /// What it answered.
        #[source]
        source: ClientError,
    },
}

/// Runs `bulkhead timeline`.
pub fn run(args: &TimelineArgs) -> Result<(), CliError> {
    parse_pod(&args.pod)?;
    let now = SystemTime::now();
    let query = TimelineQuery {
        pod: args.pod.clone(),
        since_unix_ms: args.since.map_or(0, |s| s.resolve(now).0),
        until_unix_ms: args.until.map_or(u64::MAX, |s| s.resolve(now).0),
        limit: args.limit,
    };
    if query.since_unix_ms > query.until_unix_ms {
        return Err(TimelineCliError::Range.into());
    }
    let a = &args.agent;
    let (sockets, hint) = agent_sockets(&a.socket, a.lab.as_deref(), a.node.as_deref())?;
    let mut pages = Vec::new();
    for socket in &sockets {
        let stream = connect(socket, hint.clone())?;
        let page = client::timeline(stream, &query).map_err(|source| TimelineCliError::Api {
            socket: socket.clone(),
            source,
        })?;
        pages.push(page);
    }
    let page = merge(&query, pages);
    let mut out = std::io::stdout().lock();
    match args.output {
        Output::Json => {
            serde_json::to_writer(&mut out, &page).map_err(std::io::Error::other)?;
            writeln!(out)?;
        }
        Output::Text => {
            for e in &page.events {
                writeln!(out, "{}", render(e))?;
            }
        }
    }
    out.flush()?;
    if page.truncated {
        eprintln!(
            "warning: more events are stored than --limit {} shows; narrow --since/--until or raise --limit",
            page.limit
        );
    }
    Ok(())
}

/// The agents' pages as one, in time order (stable: each agent's own
/// order kept for equal times).
fn merge(query: &TimelineQuery, pages: Vec<Page>) -> Page {
    let mut truncated = false;
    let mut limit = query.limit;
    let mut events = Vec::new();
    for p in pages {
        truncated |= p.truncated;
        limit = limit.min(p.limit);
        events.extend(p.events);
    }
    events.sort_by_key(|e| e.at_unix_ms);
    Page {
        schema: bulkhead_learn::timeline::SCHEMA.to_owned(),
        pod: query.pod.clone(),
        since_unix_ms: query.since_unix_ms,
        until_unix_ms: query.until_unix_ms,
        limit,
        truncated,
        events,
    }
}

/// One line for a person: time, kind, a summary.
pub fn render(e: &Event) -> String {
    let time = short_time(&Timestamp(e.at_unix_ms).to_string());
    let (kind, what) = match &e.kind {
        EventKind::Flow { record } => ("flow", render_body(record, false)),
        EventKind::Alert { alert } => (
            "alert",
            format!(
                "{}: {}",
                alert.kind.as_str(),
                bulkhead_agent::alerts::labels::summary(alert)
            ),
        ),
        EventKind::Quarantined { reason, allow_dns } => (
            "quarantined",
            format!(
                "{reason}{}",
                if *allow_dns {
                    " (DNS still allowed)"
                } else {
                    ""
                }
            ),
        ),
        EventKind::Unquarantined => ("unquarantined", "quarantine lifted".to_owned()),
        EventKind::PolicyChange {
            revision,
            added,
            removed,
            changed,
        } => {
            let parts: Vec<String> = [("added", added), ("removed", removed), ("changed", changed)]
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(what, v)| format!("{what} {}", v.join(", ")))
                .collect();
            (
                "policy",
                format!("revision {revision}: {}", parts.join("; ")),
            )
        }
        EventKind::ModeChange {
            revision,
            policy,
            from,
            to,
        } => (
            "mode",
            format!("revision {revision}: {policy} {from} -> {to}"),
        ),
    };
    format!("{time}  {kind:<13} {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64, kind: EventKind) -> Event {
        Event {
            at_unix_ms: ms,
            pods: vec!["shop/web".into()],
            kind,
        }
    }

    #[test]
    fn renders_one_line_per_event_kind() {
        let t = 1_733_560_200_123; // 2024-12-07T08:30:00.123Z
        let lines: Vec<String> = [
            EventKind::Quarantined {
                reason: "scan".into(),
                allow_dns: true,
            },
            EventKind::Unquarantined,
            EventKind::PolicyChange {
                revision: 4,
                added: vec!["shop/a".into(), "shop/b".into()],
                removed: vec![],
                changed: vec!["shop/c".into()],
            },
            EventKind::ModeChange {
                revision: 5,
                policy: "shop/a".into(),
                from: "enforce".into(),
                to: "audit".into(),
            },
        ]
        .into_iter()
        .map(|k| render(&at(t, k)))
        .collect();
        assert_eq!(
            lines,
            [
                "Dec 07 08:30:00.123  quarantined   scan (DNS still allowed)",
                "Dec 07 08:30:00.123  unquarantined quarantine lifted",
                "Dec 07 08:30:00.123  policy        revision 4: added shop/a, shop/b; changed shop/c",
                "Dec 07 08:30:00.123  mode          revision 5: shop/a enforce -> audit",
            ]
        );
    }

    #[test]
    fn agents_pages_merge_in_time_order() {
        let q = TimelineQuery {
            pod: "shop/web".into(),
            since_unix_ms: 0,
            until_unix_ms: u64::MAX,
            limit: 10,
        };
        let page = |times: &[u64], truncated: bool| Page {
            schema: bulkhead_learn::timeline::SCHEMA.into(),
            pod: q.pod.clone(),
            since_unix_ms: 0,
            until_unix_ms: u64::MAX,
            limit: 5,
            truncated,
            events: times
                .iter()
                .map(|&t| at(t, EventKind::Unquarantined))
                .collect(),
        };
        let merged = merge(&q, vec![page(&[1, 5], false), page(&[2, 3, 9], true)]);
        let times: Vec<u64> = merged.events.iter().map(|e| e.at_unix_ms).collect();
        assert_eq!(times, [1, 2, 3, 5, 9]);
        assert_eq!((merged.truncated, merged.limit), (true, 5));
    }
}
