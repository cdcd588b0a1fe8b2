//! Events of the store service, on topic `sloop.store`, each about one order (subject = the
//! order's id, so every event of one order keeps its order on the bus).
//!
//! The order saga is choreographed over them: `OrderPlaced` (stock already reserved) makes
//! payment charge; payment's answer makes the store confirm or cancel.

use serde::{Deserialize, Serialize};
use sloop_kit::EventType;

use crate::Money;

pub const TOPIC: &str = "sloop.store";

/// `OrderPlaced`: an order was accepted and its stock reserved; payment is due.
pub const ORDER_PLACED: EventType = EventType {
    name: "sloop.store.order_placed",
    topic: TOPIC,
    version: 1,
};

/// `OrderConfirmed`: the order was paid; the saga ended well.
pub const ORDER_CONFIRMED: EventType = EventType {
    name: "sloop.store.order_confirmed",
    topic: TOPIC,
    version: 1,
};

/// `OrderCancelled`: payment failed or never came in time; the stock was released. Payment
/// refunds a charge that succeeded after all.
pub const ORDER_CANCELLED: EventType = EventType {
    name: "sloop.store.order_cancelled",
    topic: TOPIC,
    version: 1,
};

pub const ALL: [EventType; 3] = [ORDER_PLACED, ORDER_CONFIRMED, ORDER_CANCELLED];

/// One line of an order, priced when it was placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub product_id: String,
    pub quantity: u32,
    pub unit_price: Money,
}

/// Data of [`ORDER_PLACED`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order_id: String,
    pub user_id: String,
    pub lines: Vec<OrderLine>,
    pub total: Money,
    /// What to charge: `card` for the simulated provider's normal card, `test-decline` for
    /// one it always declines (as payment providers' test cards do).
    pub payment_method: String,
}

/// Data of [`ORDER_CONFIRMED`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderConfirmed {
    pub order_id: String,
    pub user_id: String,
    pub total: Money,
    pub charge_id: String,
}

/// Data of [`ORDER_CANCELLED`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCancelled {
    pub order_id: String,
    pub user_id: String,
    pub total: Money,
    /// Why, in words a customer can read (e.g. "payment declined: insufficient funds").
    pub reason: String,
}
