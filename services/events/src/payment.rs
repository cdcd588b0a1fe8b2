//! Events of the payment service, on topic `sloop.payment`. Their subject is the order's
//! id, like the store's, so a consumer of both sees one order's story in order per topic.

use serde::{Deserialize, Serialize};
use sloop_kit::EventType;

use crate::Money;

pub const TOPIC: &str = "sloop.payment";

/// `PaymentSucceeded`: the order's charge went through.
pub const SUCCEEDED: EventType = EventType {
    name: "sloop.payment.succeeded",
    topic: TOPIC,
    version: 1,
};

/// `PaymentFailed`: the provider declined the charge, or it kept erroring.
pub const FAILED: EventType = EventType {
    name: "sloop.payment.failed",
    topic: TOPIC,
    version: 1,
};

/// `PaymentRefunded`: a charge was paid back (its order was cancelled after it succeeded).
pub const REFUNDED: EventType = EventType {
    name: "sloop.payment.refunded",
    topic: TOPIC,
    version: 1,
};

pub const ALL: [EventType; 3] = [SUCCEEDED, FAILED, REFUNDED];

/// Data of [`SUCCEEDED`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentSucceeded {
    pub order_id: String,
    pub charge_id: String,
    pub amount: Money,
}

/// Data of [`FAILED`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentFailed {
    pub order_id: String,
    pub charge_id: String,
    pub reason: String,
}

/// Data of [`REFUNDED`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRefunded {
    pub order_id: String,
    pub charge_id: String,
    pub amount: Money,
    pub reason: String,
}
