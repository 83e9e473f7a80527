//! Baseline-deviation alerts (issue 17): the detectors of the baselines
//! given to the agent (`--baseline`) read the flow pipeline's live records
//! and raise alerts, which go out as JSON Lines, Prometheus counters and
//! to Alertmanager ([`alertmanager`], labelled by [`labels`]).

pub mod alertmanager;
pub mod labels;
