//! Chaos experiments: a YAML file with a steady-state hypothesis, a method and the alerts
//! it should raise, run to a verdict (passed, deviated, aborted) with a journal and reports.

pub mod alerts;
pub mod journal;
pub mod probe;
pub mod run;
pub mod spec;
