//! [`MapBackend`]: an API backend that serves only a flow map, for the
//! map UI's benchmark and tests (a synthetic map behind the real API).

use std::sync::Arc;

use super::MapSource;
use crate::api::{
    ApiBackend, EdgeQuery, FlowStream, Health, HealthStatus, HistoryError, MapError, WorkloadQuery,
};

/// Serves `/v1/map*` from a [`MapSource`]; healthy, ready, no flows, no
/// history, empty metrics.
pub struct MapBackend(pub Arc<MapSource>);

impl ApiBackend for MapBackend {
    fn metrics(&self) -> String {
        String::new()
    }

    fn health(&self) -> Health {
        Health {
            status: HealthStatus::Ok,
            detail: serde_json::json!({}),
        }
    }

    fn recent_flows(&self, _: &str, _: usize) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }

    fn follow(&self, _: &str, _: usize) -> Result<Box<dyn FlowStream>, String> {
        Err("this backend serves only a flow map".to_owned())
    }

    fn accounting(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    fn history(&self, _: bulkhead_learn::Window) -> Result<String, HistoryError> {
        Err(HistoryError::NotKept)
    }

    fn map(&self, window: bulkhead_learn::Window) -> Result<String, MapError> {
        Ok(self.0.view(window, 0))
    }

    fn map_follow(
        &self,
        since: Option<bulkhead_learn::Window>,
    ) -> Result<Box<dyn FlowStream>, MapError> {
        Ok(self.0.follow(since))
    }

    fn map_edge(&self, query: &EdgeQuery) -> Result<String, MapError> {
        self.0.edge(query)
    }

    fn map_workload(&self, query: &WorkloadQuery) -> Result<String, MapError> {
        self.0.workload(query)
    }
}
