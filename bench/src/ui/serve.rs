//! The synthetic map served as the agent serves it: the real flow map
//! (`bulkhead_learn::map::SharedMap`, merged from flow records as its
//! exporter merges them), the agent's [`MapSource`] over it with the
//! model's policy in force and the recent-flows ring, behind the agent's
//! real [`Api`] with its UI listener on 127.0.0.1 (an ephemeral port) and
//! the embedded bundle, over the agent's map-only backend
//! ([`MapBackend`]).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result, bail};
use bulkhead_agent::api::ui::{UiConfig, UiListener};
use bulkhead_agent::api::{Api, ApiBackend, ApiConfig, ApiHandle};
use bulkhead_agent::map::{MapBackend, MapSource};
use bulkhead_flows::FlowRecord;
use bulkhead_learn::map::{MapBatch, MapConfig, SharedMap};
use bulkhead_policy::model::Model;

/// The served map: the API (stopped when dropped) and the runtime it runs
/// on.
pub struct Served {
    api: Option<ApiHandle>,
    runtime: tokio::runtime::Runtime,
    /// The UI listener's address.
    pub addr: SocketAddr,
}

impl Served {
    /// The page's URL.
    pub fn url(&self) -> String {
        format!("http://{}/ui/", self.addr)
    }

    /// `GET path` on the UI listener (as the page asks: a loopback `Host`),
    /// the body of a 200 answer.
    pub fn get(&self, path: &str) -> Result<String> {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(self.addr)?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        let text = String::from_utf8(raw).context("UTF-8 answer")?;
        let (head, body) = text.split_once("\r\n\r\n").context("an HTTP answer")?;
        if !head.starts_with("HTTP/1.1 200") {
            bail!("GET {path}: {}", head.lines().next().unwrap_or_default());
        }
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            return Ok(dechunk(body));
        }
        Ok(body.to_owned())
    }
}

/// The body of a chunked answer.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(api) = self.api.take() {
            self.runtime.block_on(api.stop());
        }
    }
}

/// Serves `records` (merged into a flow map with the agent's default
/// bounds, one batch, at `now_ms`) with `model`'s policy in force, every
/// pod local.
pub fn serve(model: Model, records: &[FlowRecord], now_ms: u64) -> Result<Served> {
    let map = SharedMap::new(MapConfig::default()).context("the map's config")?;
    let mut batch = MapBatch::default();
    records.iter().for_each(|r| batch.add_record(r));
    map.merge(batch, now_ms);
    let ring = Arc::new(bulkhead_flows::History::new(records.len().max(1)));
    let arcs: Vec<Arc<FlowRecord>> = records.iter().cloned().map(Arc::new).collect();
    ring.push_all(&arcs);
    let source = MapSource::new(map, "node-a", Some(ring), None, Arc::new(Mutex::new(None)));
    let compiled = bulkhead_policy::compile::compile(&model);
    let local: Vec<usize> = (0..model.pods.len()).collect();
    source.update_policy(&Arc::new(model), &Arc::new(compiled), &local);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("a tokio runtime")?;
    let listener = UiListener::bind("127.0.0.1:0".parse()?).context("the UI listener")?;
    let addr = listener.local_addr();
    let config = ApiConfig {
        socket: None,
        ui: Some(UiConfig {
            listener,
            token: None,
        }),
        ..ApiConfig::default()
    };
    if config.ui_bundle.is_none() {
        bail!("this build has no web UI bundle: run `cargo xtask build-ui`, then build again");
    }
    let backend: Arc<dyn ApiBackend> = Arc::new(MapBackend(Arc::new(source)));
    let api = Api::start(config, backend, runtime.handle()).context("start the API")?;
    Ok(Served {
        api: Some(api),
        runtime,
        addr,
    })
}
