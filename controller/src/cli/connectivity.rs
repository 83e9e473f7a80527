//! `bulkhead connectivity`: every allowed connection, as text or JSON Lines.

use std::io::Write;

use clap::Args;
use serde_json::{Value, json};

use super::{CliError, ManifestArgs, Output};
use bulkhead_policy::compile::compile;
use bulkhead_policy::eval::connectivity::{Connection, PortSets, connectivity};
use bulkhead_policy::model::Protocol;

/// Arguments of `bulkhead connectivity`.
#[derive(Debug, Args)]
pub struct ConnectivityArgs {
    /// Manifests.
    #[command(flatten)]
    pub manifests: ManifestArgs,
    /// Output format: `text` (aligned, grouped by source) or `json` (JSON
    /// Lines, one object per ordered pair with anything allowed).
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
    /// Mode of policies that neither they nor their namespace annotate
    /// (`bulkhead.io/mode`), as the agent's `--mode`: only enforce-mode
    /// policies decide what is allowed.
    #[arg(long, value_name = "MODE", default_value = "enforce")]
    pub mode: bulkhead_policy::model::Mode,
}

/// Runs the command.
pub fn run(args: &ConnectivityArgs) -> Result<(), CliError> {
    let mut model = args.manifests.load()?;
    model.default_mode = args.mode;
    let compiled = compile(&model);
    let connections = connectivity(&model, &compiled);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.output {
        Output::Json => {
            for c in &connections {
                serde_json::to_writer(&mut out, &json_line(c)).map_err(std::io::Error::from)?;
                writeln!(out)?;
            }
        }
        Output::Text => write_text(&mut out, &connections)?,
    }
    out.flush()?;
    Ok(())
}

/// The JSON object of one connection.
pub fn json_line(c: &Connection) -> Value {
    let mut v = json!({
        "src": c.src.to_string(),
        "dst": c.dst.to_string(),
        "allowed": port_sets_json(&c.allowed),
    });
    if let Some(f) = c.family {
        v["family"] = f.into();
    }
    v
}

/// `{"TCP":[[lo,hi],...],"UDP":[...],"SCTP":[...]}`.
pub fn port_sets_json(s: &PortSets) -> Value {
    let mut m = serde_json::Map::new();
    for p in Protocol::ALL {
        let ranges: Vec<Value> = s.get(p).0.iter().map(|(lo, hi)| json!([lo, hi])).collect();
        m.insert(p.as_str().into(), Value::Array(ranges));
    }
    Value::Object(m)
}

/// `all`, or `TCP 80,8080-8090 · UDP 53`.
pub fn port_sets_text(s: &PortSets) -> String {
    if s.is_all() {
        return "all protocols and ports".into();
    }
    let mut parts = Vec::new();
    for p in Protocol::ALL {
        let r = s.get(p);
        if r.is_empty() {
            continue;
        }
        if r.0 == [(1, u16::MAX)] {
            parts.push(format!("{p} all ports"));
            continue;
        }
        let list: Vec<String> =
            r.0.iter()
                .map(|(lo, hi)| {
                    if lo == hi {
                        lo.to_string()
                    } else {
                        format!("{lo}-{hi}")
                    }
                })
                .collect();
        parts.push(format!("{p} {}", list.join(",")));
    }
    parts.join(" · ")
}

fn write_text(out: &mut impl Write, connections: &[Connection]) -> std::io::Result<()> {
    if connections.is_empty() {
        return writeln!(out, "No connection is allowed.");
    }
    let width = connections
        .iter()
        .map(|c| c.dst.to_string().len() + c.family.map_or(0, |f| f.len() + 3))
        .max()
        .unwrap_or(0);
    let mut current = None;
    for c in connections {
        let src = c.src.to_string();
        if current.as_ref() != Some(&src) {
            if current.is_some() {
                writeln!(out)?;
            }
            writeln!(out, "{src}")?;
            current = Some(src);
        }
        let dst = match c.family {
            Some(f) => format!("{} ({f})", c.dst),
            None => c.dst.to_string(),
        };
        writeln!(out, "  → {dst:<width$}  {}", port_sets_text(&c.allowed))?;
    }
    let pairs = connections.len();
    writeln!(
        out,
        "\n{pairs} allowed connection{}.",
        if pairs == 1 { "" } else { "s" }
    )
}
