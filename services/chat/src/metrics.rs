//! The chat service's own metrics, beside the HTTP and messaging metrics the kit records.
//! Like the kit's, each carries the `service` label, so services sharing a process (the
//! platform binary, tests) keep their series apart. Label values come from a fixed set.
//!
//! Each instance counts only its own sockets: sum over instances for the platform's view.

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

use crate::NAME;

/// WebSockets open on this instance now.
pub const CONNECTED: &str = "chat_connected_sockets";
/// Message frames written to a socket.
pub const DELIVERED: &str = "chat_messages_delivered_total";
/// From a message's `sent_at` to its frame written to a socket: bus, fan-out and queue.
pub const DELIVERY_DURATION: &str = "chat_delivery_duration_seconds";
/// Sockets the server closed, by reason.
pub const DROPPED: &str = "chat_sockets_dropped_total";

/// Why the server closed a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Its outgoing queue was full: the client reads slower than its rooms talk.
    Slow,
    /// No pong or other frame for two heartbeats.
    Heartbeat,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Slow => "slow",
            Self::Heartbeat => "heartbeat",
        }
    }
}

/// Gives the metrics their help text (the kit runs it at start, see `Service::metrics`).
pub fn describe() {
    describe_gauge!(CONNECTED, "WebSockets open on this chat instance.");
    describe_counter!(
        DELIVERED,
        "Chat message frames written to a WebSocket (one per receiving socket)."
    );
    describe_histogram!(
        DELIVERY_DURATION,
        metrics::Unit::Seconds,
        "Time from a chat message being stored to its frame written to a WebSocket."
    );
    describe_counter!(
        DROPPED,
        "WebSockets the chat service closed, by reason: slow (outgoing queue full) or heartbeat (no pong in two heartbeats)."
    );
}

/// A socket opened (+1) or closed (-1).
pub fn connected(change: f64) {
    gauge!(CONNECTED, "service" => NAME).increment(change);
}

/// Counts one message frame written, `age` after the message was stored.
pub fn delivered(age: Duration) {
    counter!(DELIVERED, "service" => NAME).increment(1);
    histogram!(DELIVERY_DURATION, "service" => NAME).record(age.as_secs_f64());
}

pub fn dropped(reason: DropReason) {
    counter!(DROPPED, "service" => NAME, "reason" => reason.as_str()).increment(1);
}
