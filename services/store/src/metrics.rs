//! The store's own metrics, beside the HTTP and messaging metrics the kit gives every
//! service. Prometheus names; every series has the kit's `service` label.

/// Orders by `outcome`: `placed`, `rejected` (out of stock), `confirmed`, `cancelled`.
pub const ORDERS: &str = "store_orders_total";
/// Time from an order's placement to its confirmation or cancellation, by `outcome`: the
/// saga's end-to-end latency.
pub const SAGA_DURATION: &str = "store_order_saga_duration_seconds";

/// Gives the metrics their help text (the kit runs it at start).
pub fn describe() {
    metrics::describe_counter!(
        ORDERS,
        "Orders by outcome: placed, rejected (out of stock), confirmed or cancelled."
    );
    metrics::describe_histogram!(
        SAGA_DURATION,
        metrics::Unit::Seconds,
        "Time from an order's placement to its confirmation or cancellation, by outcome."
    );
}
