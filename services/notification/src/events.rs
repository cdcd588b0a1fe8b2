//! What the notification service does with the platform's events: a welcome for every new
//! account, and a notice when an order is confirmed or cancelled (with the reason). Each
//! becomes one notification and its pending deliveries, written in the transaction that
//! records the event as applied.

use futures::future::BoxFuture;
use sloop_events::Money;
use sloop_events::store as store_events;
use sloop_events::user as user_events;
use sloop_kit::clock::{now_millis, now_rfc3339};
use sloop_kit::{Event, Handler, HandlerError, Tx};

use crate::model::Kind;
use crate::store::{self, Draft};

/// The topics the service consumes.
pub const TOPICS: [&str; 2] = [user_events::TOPIC, store_events::TOPIC];

/// The `notification` consumer of `sloop.user` and `sloop.store`.
pub struct Notify;

impl Handler for Notify {
    fn handle<'a>(
        &'a self,
        event: &'a Event,
        tx: &'a mut Tx,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let Some(draft) = draft(event)? else {
                return Ok(());
            };
            let made = store::insert(tx, &draft, &now_rfc3339(), now_millis())
                .await
                .map_err(|e| HandlerError::Retry(e.to_string()))?;
            if made {
                tracing::info!(user_id = %draft.user_id, kind = draft.kind.as_str(), "notification made");
            } else {
                tracing::debug!(event_id = %event.id, "a notification for this event exists already");
            }
            Ok(())
        })
    }
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
