//! The notification service's own metrics, beside the HTTP and messaging metrics the kit
//! gives every service. Prometheus names; every series has the kit's `service` label.

/// Delivery attempts by `channel` and `outcome`: `sent`, `retried` (failed, due again
/// later) or `failed` (failed its last attempt and was given up).
pub const DELIVERIES: &str = "notification_deliveries_total";
/// Time one simulated send took, by `channel`, failures included.
pub use crate::senders::DELIVERY_DURATION;
/// Deliveries being sent right now by this instance.
pub const IN_FLIGHT: &str = "notification_deliveries_in_flight";

/// Gives the metrics their help text (the kit runs it at start, see `Service::metrics`).
pub fn describe() {
    metrics::describe_counter!(
        DELIVERIES,
        "Delivery attempts by channel and outcome: sent, retried (due again later) or failed (given up)."
    );
    metrics::describe_histogram!(
        DELIVERY_DURATION,
        metrics::Unit::Seconds,
        "Time one simulated send took, by channel, failed sends included."
    );
    metrics::describe_gauge!(IN_FLIGHT, "Deliveries this instance is sending right now.");
}
