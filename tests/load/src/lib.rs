//! An open-model HTTP load tester: constant arrival rates and ramps, latency measured from
//! each request's intended send time into HdrHistogram (no coordinated omission), dropped
//! requests counted, k6-style thresholds, and JSON, `.hgrm` and HTML reports.

pub mod engine;
pub mod report;
pub mod scenario;
pub mod schedule;
pub mod search;
pub mod stats;
pub mod thresholds;
