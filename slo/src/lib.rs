//! The SLO engine: specs (native, OpenSLO, Sloth), error-budget and burn-rate math,
//! Prometheus rule, promtool test and Grafana dashboard generation, evaluation from
//! Prometheus or from raw `/metrics` scrapes, and reports. The `slo` binary drives it.

pub mod breakdown;
pub mod calendar;
pub mod dashboard;
pub mod evaluate;
pub mod explain;
pub mod exposition;
pub mod formats;
pub mod matchers;
pub mod math;
pub mod promql;
pub mod promtest;
pub mod report;
pub mod rules;
pub mod spec;
