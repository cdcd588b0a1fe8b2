//! What the notification service does with the platform's events: a welcome for every new
//! account, a notice when an order is confirmed or cancelled (with the reason), and one per
//! member a chat message mentions. Each becomes a notification and its pending deliveries,
//! written in the transaction that records the event as applied.

use futures::future::BoxFuture;
use sloop_events::Money;
use sloop_events::chat as chat_events;
use sloop_events::store as store_events;
use sloop_events::user as user_events;
use sloop_kit::clock::{now_millis, now_rfc3339};
use sloop_kit::{Event, Handler, HandlerError, Tx};

use crate::model::Kind;
use crate::store::{self, Draft};

/// The topics the service consumes.
pub const TOPICS: [&str; 3] = [user_events::TOPIC, store_events::TOPIC, chat_events::TOPIC];

/// Longest excerpt of a chat message quoted in a mention, in characters.
const EXCERPT: usize = 140;

/// The `notification` consumer of `sloop.user`, `sloop.store` and `sloop.chat`.
pub struct Notify;

impl Handler for Notify {
    fn handle<'a>(
        &'a self,
        event: &'a Event,
        tx: &'a mut Tx,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            for draft in drafts(event)? {
                let made = store::insert(tx, &draft, &now_rfc3339(), now_millis())
                    .await
                    .map_err(|e| HandlerError::Retry(e.to_string()))?;
                if made {
                    tracing::info!(user_id = %draft.user_id, kind = draft.kind.as_str(), "notification made");
                } else {
                    tracing::debug!(event_id = %event.id, "a notification for this event exists already");
                }
            }
            Ok(())
        })
    }
}

/// The notifications `event` calls for: one per mentioned member for a chat message, at most
/// one for the other events.
fn drafts(event: &Event) -> Result<Vec<Draft>, HandlerError> {
    if event.kind == chat_events::MESSAGE_SENT.name {
        let data: chat_events::ChatMessageSent = event.decode(chat_events::MESSAGE_SENT)?;
        return Ok(mentions(event, &data));
    }
    Ok(draft(event)?.into_iter().collect())
}

/// A notification for each member `data` mentions. Each is its own row, so its source is
/// the event's id with the user's: the event is applied once, and so is each mention.
fn mentions(event: &Event, data: &chat_events::ChatMessageSent) -> Vec<Draft> {
    let excerpt: String = data.text.chars().take(EXCERPT).collect();
    let ellipsis = if data.text.chars().count() > EXCERPT {
        "…"
    } else {
        ""
    };
    let mut seen: Vec<&str> = Vec::new();
    data.mentions
        .iter()
        .filter(|user| **user != data.sender_id)
        .filter(|user| {
            let fresh = !seen.contains(&user.as_str());
            seen.push(user.as_str());
            fresh
        })
        .map(|user| Draft {
            user_id: user.clone(),
            kind: Kind::Mention,
            title: format!("{} mentioned you", data.sender_id),
            body: format!("In chat room {}: \"{excerpt}{ellipsis}\"", data.room_id),
            order_id: None,
            source_event_id: format!("{}:{user}", event.id),
        })
        .collect()
}

/// The notification `event` calls for; `None` for events that call for none.
fn draft(event: &Event) -> Result<Option<Draft>, HandlerError> {
    let draft = if event.kind == user_events::CREATED.name {
        let data: user_events::UserCreated = event.decode(user_events::CREATED)?;
        Draft {
            user_id: data.id,
            kind: Kind::Welcome,
            title: "Welcome to sloop".to_owned(),
            body: format!(
                "Hi {}, your account is ready. You will find news about your orders here.",
                data.name
            ),
            order_id: None,
            source_event_id: event.id.clone(),
        }
    } else if event.kind == store_events::ORDER_CONFIRMED.name {
        let data: store_events::OrderConfirmed = event.decode(store_events::ORDER_CONFIRMED)?;
        Draft {
            user_id: data.user_id,
            kind: Kind::OrderConfirmed,
            title: "Order confirmed".to_owned(),
            body: format!(
                "Your order {} is paid ({}) and confirmed.",
                data.order_id,
                money(&data.total)
            ),
            order_id: Some(data.order_id),
            source_event_id: event.id.clone(),
        }
    } else if event.kind == store_events::ORDER_CANCELLED.name {
        let data: store_events::OrderCancelled = event.decode(store_events::ORDER_CANCELLED)?;
        Draft {
            user_id: data.user_id,
            kind: Kind::OrderCancelled,
            title: "Order cancelled".to_owned(),
            body: format!(
                "Your order {} ({}) was cancelled: {}.",
                data.order_id,
                money(&data.total),
                data.reason.trim_end_matches('.')
            ),
            order_id: Some(data.order_id),
            source_event_id: event.id.clone(),
        }
    } else {
        return Ok(None);
    };
    Ok(Some(draft))
}

/// Currencies whose minor unit is the major one (ISO 4217 exponent 0).
const NO_DECIMALS: [&str; 4] = ["JPY", "KRW", "CLP", "ISK"];

/// `1999 EUR` as `19.99 EUR`: minor units with the currency's decimals.
fn money(money: &Money) -> String {
    if NO_DECIMALS.contains(&money.currency.as_str()) {
        return format!("{} {}", money.amount, money.currency);
    }
    let sign = if money.amount < 0 { "-" } else { "" };
    let minor = money.amount.unsigned_abs();
    format!(
        "{sign}{}.{:02} {}",
        minor / 100,
        minor % 100,
        money.currency
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur(amount: i64) -> Money {
        Money {
            amount,
            currency: "EUR".to_owned(),
        }
    }

    #[test]
    fn money_reads_as_customers_write_it() {
        assert_eq!(money(&eur(1999)), "19.99 EUR");
        assert_eq!(money(&eur(5)), "0.05 EUR");
        assert_eq!(money(&eur(-250)), "-2.50 EUR");
        let yen = Money {
            amount: 500,
            currency: "JPY".to_owned(),
        };
        assert_eq!(money(&yen), "500 JPY");
    }

    fn chat_message(mentions: &[&str], text: &str) -> Event {
        let data = chat_events::ChatMessageSent {
            message_id: "m-1".to_owned(),
            room_id: "r-1".to_owned(),
            sender_id: "ann".to_owned(),
            text: text.to_owned(),
            mentions: mentions.iter().map(|m| (*m).to_owned()).collect(),
            sent_at: "2026-12-05T10:00:00.000000Z".to_owned(),
        };
        Event::new("chat", chat_events::MESSAGE_SENT, "r-1", &data).unwrap()
    }

    #[test]
    fn each_mentioned_member_gets_a_notification() {
        let event = chat_message(&["bob", "cat", "bob", "ann"], "@bob @cat lunch?");
        let made = drafts(&event).unwrap();
        let users: Vec<&str> = made.iter().map(|d| d.user_id.as_str()).collect();
        assert_eq!(users, ["bob", "cat"], "once each, never the sender");
        assert!(made.iter().all(|d| d.kind == Kind::Mention));
        assert_eq!(made[0].title, "ann mentioned you");
        assert!(
            made[0].body.contains("@bob @cat lunch?"),
            "{}",
            made[0].body
        );
        assert!(made[0].body.contains("r-1"), "{}", made[0].body);
        assert_eq!(made[0].source_event_id, format!("{}:bob", event.id));
        assert_ne!(made[0].source_event_id, made[1].source_event_id);

        let long = chat_message(&["bob"], &"é".repeat(500));
        let body = &drafts(&long).unwrap()[0].body;
        assert!(body.chars().count() < 200 && body.contains('…'), "{body}");

        assert!(drafts(&chat_message(&[], "no one")).unwrap().is_empty());
        let mut newer = chat_message(&["bob"], "@bob");
        newer.schema_version = 2;
        assert!(matches!(drafts(&newer), Err(HandlerError::Reject(_))));
    }

    #[test]
    fn cancellations_carry_the_reason_and_unknown_versions_are_rejected() {
        let cancelled = store_events::OrderCancelled {
            order_id: "o-1".to_owned(),
            user_id: "u-1".to_owned(),
            total: eur(1999),
            reason: "payment declined: insufficient funds".to_owned(),
        };
        let event = Event::new("store", store_events::ORDER_CANCELLED, "o-1", &cancelled).unwrap();
        let made = draft(&event).unwrap().unwrap();
        assert_eq!(made.user_id, "u-1");
        assert_eq!(made.kind, Kind::OrderCancelled);
        assert!(made.body.contains("insufficient funds"), "{}", made.body);
        assert!(made.body.contains("19.99 EUR"), "{}", made.body);

        let mut newer = event.clone();
        newer.schema_version = 2;
        assert!(matches!(draft(&newer), Err(HandlerError::Reject(_))));

        let placed = Event::new("store", store_events::ORDER_PLACED, "o-1", &cancelled).unwrap();
        assert!(
            draft(&placed).unwrap().is_none(),
            "not every event notifies"
        );
    }
}
