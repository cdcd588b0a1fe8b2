//! The batch read model: what the service keeps of the platform's events, as daily counters
//! written in the consumer's transaction. The kit records each event's id in that same
//! transaction and skips ids it has seen, so every increment is applied once.
//!
//! An event counts on the UTC day of its own `time` (when the change happened), not the
//! day it arrived, so a late or replayed event lands on the right day.

use futures::future::BoxFuture;
use sloop_events::chat as chat_events;
use sloop_events::store as store_events;
use sloop_events::user as user_events;
use sloop_kit::clock::parse_rfc3339;
use sloop_kit::{Consumer, Event, Handler, HandlerError, Tx};

use crate::metrics;
use crate::schedule::format_day;
use crate::store::{self, ChatMessage, Sales};

/// The consumer group; keep it stable, the kit keeps offsets and processed ids under it.
pub const GROUP: &str = "batch";

/// The topics the read model is built from.
pub const TOPICS: [&str; 3] = [user_events::TOPIC, store_events::TOPIC, chat_events::TOPIC];

/// The `batch` consumer of `sloop.user`, `sloop.store` and `sloop.chat`.
pub fn consumer() -> Consumer {
    Consumer::new(GROUP, &TOPICS, ReadModel)
}

/// Applies events to the daily counters.
pub struct ReadModel;

impl Handler for ReadModel {
    fn handle<'a>(
        &'a self,
        event: &'a Event,
        tx: &'a mut Tx,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let Some(fact) = fact(event)? else {
                return Ok(());
            };
            match &fact {
                Fact::Signup { day } => store::add_signup(tx, day).await?,
                Fact::Sales(sales) => store::add_sales(tx, sales).await?,
                Fact::Chat(message) => store::add_chat_message(tx, message).await?,
            }
            metrics::read_model_event(fact.label());
            Ok(())
        })
    }
}

/// What one event adds to the read model.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fact {
    Signup { day: String },
    Sales(Sales),
    Chat(ChatMessage),
}

impl Fact {
    /// The `type` label of `batch_read_model_events_total`.
    fn label(&self) -> &'static str {
        match self {
            Self::Signup { .. } => "user_created",
            Self::Sales(sales) if sales.orders_confirmed > 0 => "order_confirmed",
            Self::Sales(_) => "order_cancelled",
            Self::Chat(_) => "chat_message_sent",
        }
    }
}

/// The fact `event` contributes; `None` for events the read model does not use.
fn fact(event: &Event) -> Result<Option<Fact>, HandlerError> {
    let fact = if event.kind == user_events::CREATED.name {
        let _: user_events::UserCreated = event.decode(user_events::CREATED)?;
        Fact::Signup { day: day(event)? }
    } else if event.kind == store_events::ORDER_CONFIRMED.name {
        let data: store_events::OrderConfirmed = event.decode(store_events::ORDER_CONFIRMED)?;
        let total = checked(event, data.total)?;
        Fact::Sales(Sales {
            day: day(event)?,
            currency: total.currency,
            orders_confirmed: 1,
            orders_cancelled: 0,
            revenue: total.amount,
        })
    } else if event.kind == store_events::ORDER_CANCELLED.name {
        let data: store_events::OrderCancelled = event.decode(store_events::ORDER_CANCELLED)?;
        let total = checked(event, data.total)?;
        Fact::Sales(Sales {
            day: day(event)?,
            currency: total.currency,
            orders_confirmed: 0,
            orders_cancelled: 1,
            revenue: 0,
        })
    } else if event.kind == chat_events::MESSAGE_SENT.name {
        let data: chat_events::ChatMessageSent = event.decode(chat_events::MESSAGE_SENT)?;
        Fact::Chat(ChatMessage {
            day: day(event)?,
            room_id: data.room_id,
            sender_id: data.sender_id,
            mentions: i64::try_from(data.mentions.len()).unwrap_or(i64::MAX),
        })
    } else {
        return Ok(None);
    };
    Ok(Some(fact))
}

/// The UTC day of the event's time.
fn day(event: &Event) -> Result<String, HandlerError> {
    parse_rfc3339(&event.time)
        .and_then(|at| at.checked_to_offset(time::UtcOffset::UTC))
        .map(|utc| format_day(utc.date()))
        .ok_or_else(|| {
            HandlerError::Reject(format!(
                "{} has time `{}`, which is not RFC 3339",
                event.kind, event.time
            ))
        })
}

/// An order total the report can sum: positive, in an ISO 4217 currency (which keeps the
/// currency column of the CSV plain letters).
fn checked(event: &Event, total: sloop_events::Money) -> Result<sloop_events::Money, HandlerError> {
    total.check_positive().map_err(|reason| {
        HandlerError::Reject(format!(
            "{} of {}: total {reason}",
            event.kind, event.subject
        ))
    })?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(kind: sloop_kit::EventType, data: serde_json::Value, time: &str) -> Event {
        let mut event = Event::new("test", kind, "s-1", &data).unwrap();
        event.time = time.to_owned();
        event
    }

    #[test]
    fn events_count_on_the_utc_day_of_their_time() {
        let confirmed = event(
            store_events::ORDER_CONFIRMED,
            json!({ "order_id": "o-1", "user_id": "u-1", "total": { "amount": 1999, "currency": "EUR" }, "charge_id": "c-1" }),
            "2026-12-01T23:30:00-02:00",
        );
        assert_eq!(
            fact(&confirmed).unwrap(),
            Some(Fact::Sales(Sales {
                day: "2026-12-02".to_owned(),
                currency: "EUR".to_owned(),
                orders_confirmed: 1,
                orders_cancelled: 0,
                revenue: 1999,
            }))
        );
        let placed = event(
            store_events::ORDER_PLACED,
            json!({}),
            "2026-12-01T10:00:00Z",
        );
        assert_eq!(fact(&placed).unwrap(), None);
    }

    #[test]
    fn unusable_events_are_rejected() {
        let created = json!({ "id": "u-1", "email": "a@example.com", "name": "A", "status": "active", "version": 1 });
        let bad_time = event(user_events::CREATED, created.clone(), "yesterday");
        assert!(matches!(fact(&bad_time), Err(HandlerError::Reject(_))));
        let mut newer = event(user_events::CREATED, created, "2026-12-01T10:00:00Z");
        newer.schema_version = 2;
        assert!(matches!(fact(&newer), Err(HandlerError::Reject(_))));
        let odd_currency = event(
            store_events::ORDER_CANCELLED,
            json!({ "order_id": "o-1", "user_id": "u-1", "total": { "amount": 5, "currency": "=1+1" }, "reason": "r" }),
            "2026-12-01T10:00:00Z",
        );
        assert!(matches!(fact(&odd_currency), Err(HandlerError::Reject(_))));
    }
}
