//! The batch service's own metrics, beside the HTTP and messaging metrics the kit records.
//! Like the kit's, each carries the `service` label, so services sharing a process (the
//! platform binary, tests) keep their series apart. Every label value comes from a fixed
//! set (job names, triggers, statuses, fact types), never from a request.
//!
//! The job's label is `job_name`, not `job`: Prometheus gives every scraped series its
//! own `job` (the scrape job) and would rename ours to `exported_job`.
//!
//! With several instances each exports its own series: alert on
//! `max by (job_name) (batch_job_last_success_timestamp_seconds)`. Each instance also reads the
//! last success of every job from the database now and then (see the scheduler), so the
//! gauge is right on an instance that did not run the job itself, and after a restart.

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

use crate::NAME;
use crate::model::{RunStatus, Trigger};

/// Unix time (seconds) a job last finished a run successfully.
pub const LAST_SUCCESS: &str = "batch_job_last_success_timestamp_seconds";
/// How long runs took, by job and outcome.
pub const DURATION: &str = "batch_job_duration_seconds";
/// Runs finished, by job, trigger and outcome.
pub const RUNS: &str = "batch_job_runs_total";
/// Events applied to the read model, by type.
pub const READ_MODEL_EVENTS: &str = "batch_read_model_events_total";

/// Gives the metrics their help text (the kit runs it at start, see `Service::metrics`).
pub fn describe() {
    describe_gauge!(
        LAST_SUCCESS,
        metrics::Unit::Seconds,
        "Unix time a batch job last finished a run successfully, by job."
    );
    describe_histogram!(
        DURATION,
        metrics::Unit::Seconds,
        "How long batch job runs took, by job and status (succeeded or failed)."
    );
    describe_counter!(
        RUNS,
        "Batch job runs finished, by job, trigger (schedule or manual) and status (succeeded or failed)."
    );
    describe_counter!(
        READ_MODEL_EVENTS,
        "Events applied to the batch read model, by type (user_created, order_confirmed, order_cancelled)."
    );
}

/// Records one finished run.
pub fn run_finished(job: &'static str, trigger: Trigger, status: RunStatus, took: Duration) {
    histogram!(DURATION, "service" => NAME, "job_name" => job, "status" => status.as_str())
        .record(took.as_secs_f64());
    counter!(RUNS, "service" => NAME, "job_name" => job, "trigger" => trigger.as_str(), "status" => status.as_str())
        .increment(1);
}

/// Sets when `job` last succeeded, in Unix milliseconds.
pub fn last_success(job: &'static str, at_ms: i64) {
    gauge!(LAST_SUCCESS, "service" => NAME, "job_name" => job).set(at_ms as f64 / 1000.0);
}

/// Counts one event applied to the read model.
pub fn read_model_event(kind: &'static str) {
    counter!(READ_MODEL_EVENTS, "service" => NAME, "type" => kind).increment(1);
}
