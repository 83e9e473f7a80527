//! The map's routes on the UI listener (over a backend with a map).

use super::ui::{ask, assert_ui_headers, dist, get, ui_config};
use super::*;

/// A backend with a map (the rest as [`fake`]'s): `/v1/map` names its
/// window, a follow stream yields one edge line then ends.
struct MapFake(Arc<fake::Fake>);

struct OneLine(Option<String>);

impl FlowStream for OneLine {
    fn next(&mut self, _: Duration) -> Next {
        match self.0.take() {
            Some(l) => Next::Record(l),
            None => Next::Closed,
        }
    }
}

impl ApiBackend for MapFake {
    fn metrics(&self) -> String {
        self.0.metrics()
    }
    fn health(&self) -> Health {
        self.0.health()
    }
    fn recent_flows(&self, query: &str, limit: usize) -> Result<Vec<String>, String> {
        self.0.recent_flows(query, limit)
    }
    fn follow(&self, query: &str, last: usize) -> Result<Box<dyn FlowStream>, String> {
        self.0.follow(query, last)
    }
    fn accounting(&self) -> serde_json::Value {
        self.0.accounting()
    }
    fn history(&self, window: bulkhead_learn::Window) -> Result<String, HistoryError> {
        self.0.history(window)
    }
    fn map(&self, window: bulkhead_learn::Window) -> Result<String, MapError> {
        let since = window.since.map(|t| t.0);
        Ok(serde_json::json!({ "schema": "bulkhead.map/v1", "since": since }).to_string())
    }
    fn map_follow(
        &self,
        _: Option<bulkhead_learn::Window>,
    ) -> Result<Box<dyn FlowStream>, MapError> {
        Ok(Box::new(OneLine(Some(
            r#"{"type":"edge","id":"e"}"#.to_owned(),
        ))))
    }
    fn map_workload(&self, q: &WorkloadQuery) -> Result<String, MapError> {
        Err(MapError::NotFound(format!("no workload {}", q.id)))
    }
}

#[test]
fn the_ui_listener_serves_the_map() {
    let (_dir, bundle) = dist();
    let api = start(ui_config(None, Some(bundle)), Arc::new(MapFake(fake(0))));
    let addr = api.ui_addr().unwrap();
    let a = get(addr, "/v1/map?since=5&until=9");
    assert_eq!(
        (a.status, a.header("content-type")),
        (200, "application/json")
    );
    assert_eq!(a.body, "{\"schema\":\"bulkhead.map/v1\",\"since\":5}\n");
    assert_eq!(a.header("cache-control"), "no-store");
    assert_ui_headers(&a);
    let a = get(addr, "/v1/map?since=x");
    assert_eq!(a.status, 400);
    assert!(a.error().contains("since"), "{}", a.body);
    let a = get(addr, "/v1/map/follow");
    assert_eq!((a.status, a.header("content-type")), (200, JSON_LINES));
    assert!(
        a.body.contains("{\"type\":\"edge\",\"id\":\"e\"}\n"),
        "{}",
        a.body
    );
    let a = get(addr, "/v1/map/workload?id=shop/Deployment/api");
    assert_eq!(a.status, 404);
    assert_eq!(a.error(), "no workload shop/Deployment/api");
    let a = get(addr, "/v1/map/edge?src=a");
    assert_eq!(a.status, 400, "{}", a.body);
    let a = ask(addr, "POST", "/v1/map", "localhost", &[]);
    assert_eq!(a.status, 405);
    let a = ask(addr, "GET", "/v1/map", "evil.example", &[]);
    assert_eq!(a.status, 403);
    let a = get(addr, "/v1/nope");
    assert!(a.error().contains("/v1/map/follow"), "{}", a.body);
    stop(api);
}
