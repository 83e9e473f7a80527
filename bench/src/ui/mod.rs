//! The UI benchmark (`ui_bench`): a synthetic map ([`synthetic`]) served
//! by the agent's API and loaded in headless Chromium; its report
//! ([`report`]).

pub mod report;
pub mod serve;
pub mod synthetic;
