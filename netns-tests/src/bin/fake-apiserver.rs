//! `fake-apiserver`: runs the test kit's fake Kubernetes API server in the
//! foreground (plain HTTP, no auth) until interrupted, for demos and humans.
//!
//! ```text
//! fake-apiserver --listen 127.0.0.1:8080 --kubeconfig /tmp/fake.kubeconfig --load policies/
//! kubectl --kubeconfig /tmp/fake.kubeconfig get pods -A
//! ```

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use bulkhead_netns_tests::apiserver::{ApiServerError, FakeApiServer, Options};
use clap::Parser;
use serde::Deserialize as _;
use serde_json::Value;

/// Serve a fake Kubernetes API server (plain HTTP, no authentication).
#[derive(Debug, Parser)]
#[command(name = "fake-apiserver", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Write a kubeconfig for the server to this path.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// YAML file, or directory of `.yaml`/`.yml`/`.json` files, to preload
    /// (repeatable).
    #[arg(long)]
    load: Vec<PathBuf>,
    /// Seconds between watch bookmarks.
    #[arg(long, default_value_t = 1.0)]
    bookmark_interval: f64,
    /// Events kept before automatic compaction.
    #[arg(long, default_value_t = Options::default().history_limit)]
    history_limit: usize,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let opts = Options {
        bookmark_interval: Duration::try_from_secs_f64(args.bookmark_interval)
            .context("--bookmark-interval")?,
        history_limit: args.history_limit,
    };
    let listener =
        TcpListener::bind(args.listen).with_context(|| format!("binding {}", args.listen))?;
    let server = FakeApiServer::serve(listener, opts).context("starting the server")?;
    for path in &args.load {
        let n = load(&server, path)?;
        eprintln!("loaded {n} objects from {}", path.display());
    }
    if let Some(path) = &args.kubeconfig {
        server
            .write_kubeconfig(path)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("kubeconfig: {}", path.display());
    }
    eprintln!(
        "fake apiserver serving on {} (Ctrl-C to stop)",
        server.url()
    );
    loop {
        std::thread::park();
    }
}

/// Applies a YAML file, or every YAML/JSON file of a directory (sorted).
fn load(server: &FakeApiServer, path: &Path) -> Result<usize> {
    let files = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        files.retain(|f| {
            f.extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        });
        files.sort();
        files
    } else {
        vec![path.to_owned()]
    };
    let mut n = 0;
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let obj =
                Value::deserialize(doc).with_context(|| format!("parsing {}", file.display()))?;
            if obj.is_null() {
                continue;
            }
            match server.apply(obj) {
                Ok(_) => n += 1,
                // A manifest directory often holds kinds the server does not serve.
                Err(e @ ApiServerError::UnknownKind { .. }) => {
                    eprintln!("skipping an object of {}: {e}", file.display());
                }
                Err(e) => return Err(e).with_context(|| format!("applying {}", file.display())),
            }
        }
    }
    Ok(n)
}
