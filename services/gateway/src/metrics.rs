//! The gateway's own metrics, beside the HTTP server metrics every service has: per
//! upstream requests, latency and errors, retries, rejections. Breaker state is the kit's
//! `circuit_breaker_state{service="gateway",upstream}`.

pub const UPSTREAM_REQUESTS: &str = "gateway_upstream_requests_total";
pub const UPSTREAM_DURATION: &str = "gateway_upstream_request_duration_seconds";
pub const UPSTREAM_ERRORS: &str = "gateway_upstream_errors_total";
pub const RETRIES: &str = "gateway_retries_total";
pub const RATE_LIMITED: &str = "gateway_rate_limited_total";
pub const AUTH_REJECTED: &str = "gateway_auth_rejected_total";

pub fn describe() {
    metrics::describe_counter!(
        UPSTREAM_REQUESTS,
        "Requests forwarded, by upstream, method and status (the gateway's own answer when none came)."
    );
    metrics::describe_histogram!(
        UPSTREAM_DURATION,
        metrics::Unit::Seconds,
        "Time until an upstream's response headers, retries included."
    );
    metrics::describe_counter!(
        UPSTREAM_ERRORS,
        "Forwards that got no response: unreachable, timeout, or open (breaker)."
    );
    metrics::describe_counter!(RETRIES, "Forwards sent again, within the retry budget.");
    metrics::describe_counter!(
        RATE_LIMITED,
        "Requests refused with 429 by the per-client rate limit."
    );
    metrics::describe_counter!(
        AUTH_REJECTED,
        "Requests refused for their token (401), their roles (403) or unverifiable tokens (503), by reason."
    );
}
