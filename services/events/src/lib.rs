//! The events sloop services exchange, declared once for producer and consumers alike: each
//! event's CloudEvents `type`, the topic it travels on, its data schema version and its
//! payload. A change a consumer must notice bumps the version; consumers check it with
//! [`sloop_kit::Event::is`].
//!
//! Every event travels in the kit's envelope ([`sloop_kit::event`]): CloudEvents 1.0
//! attributes as `ce_*` headers, the payload as JSON, keyed by subject.

pub mod chat;
pub mod payment;
pub mod store;
pub mod user;

use serde::{Deserialize, Serialize};

/// An amount of money: integer minor units (cents for EUR and USD) and an ISO 4217 code.
/// Never a float, so sums are exact.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Money {
    /// Minor units: 1999 is 19.99 in EUR.
    #[schema(minimum = 1)]
    #[serde(deserialize_with = "sloop_kit::validate::whole_i64")]
    pub amount: i64,
    /// ISO 4217, upper case, e.g. `EUR`.
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: String,
}

impl Money {
    /// Whether this is an amount a price or charge may have: positive, with a three-letter
    /// upper-case currency code. The message says what is wrong.
    pub fn check_positive(&self) -> Result<(), String> {
        if self.amount <= 0 {
            return Err(format!(
                "amount must be a positive number of minor units (cents), got {}",
                self.amount
            ));
        }
        let code = self.currency.as_bytes();
        if code.len() != 3 || !code.iter().all(u8::is_ascii_uppercase) {
            return Err(format!(
                "currency must be an ISO 4217 code like EUR, got {:?}",
                self.currency
            ));
        }
        Ok(())
    }
}

/// Every event type the platform's services publish, for consumers of all of them (audit).
pub fn all() -> Vec<sloop_kit::EventType> {
    [
        &user::ALL[..],
        &store::ALL[..],
        &payment::ALL[..],
        &chat::ALL[..],
    ]
    .concat()
}

/// The topics of the platform's records (accounts, orders, payments), which the audit log
/// keeps. Chat traffic ([`chat::TOPIC`]) is left out on purpose: it is conversation, at a
/// far higher rate, not a change of record; its consumers name it themselves.
pub const TOPICS: [&str; 3] = [user::TOPIC, store::TOPIC, payment::TOPIC];
