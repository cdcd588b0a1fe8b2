//! The payment service's own metrics, beside the HTTP and messaging metrics the kit gives
//! every service. Prometheus names; every series has the kit's `service` label.

/// Calls to the simulated provider by `operation` and `outcome`: `approved`, `declined`,
/// `error` (transient, retried).
pub const PROVIDER_REQUESTS: &str = "payment_provider_requests_total";
/// Time a provider call took, by `operation`.
pub const PROVIDER_DURATION: &str = "payment_provider_duration_seconds";

/// Gives the metrics their help text (the kit runs it at start).
pub fn describe() {
    metrics::describe_counter!(
        PROVIDER_REQUESTS,
        "Calls to the simulated payment provider by operation and outcome: approved, declined or error."
    );
    metrics::describe_histogram!(
        PROVIDER_DURATION,
        metrics::Unit::Seconds,
        "Time a call to the simulated payment provider took, by operation."
    );
}
