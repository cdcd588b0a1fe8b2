//! What payment does with the store's events: `OrderPlaced` records a pending charge (the
//! charge worker takes it to the provider), `OrderCancelled` voids or refunds it.

use futures::future::BoxFuture;
use sloop_events::store as events;
use sloop_kit::{Event, Handler, HandlerError, Outbox, Tx};

use crate::charges::{self, ChargeError};

/// The `payment` consumer of topic `sloop.store`.
pub struct OrderEvents {
    pub outbox: Outbox,
}

impl Handler for OrderEvents {
    fn handle<'a>(
        &'a self,
        event: &'a Event,
        tx: &'a mut Tx,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            if event.kind == events::ORDER_PLACED.name {
                let order: events::OrderPlaced = event.decode(events::ORDER_PLACED)?;
                order.total.check_positive().map_err(HandlerError::Reject)?;
                let created = charges::insert_pending(
                    tx,
                    &order.order_id,
                    &order.total,
                    &order.payment_method,
                    charges::Taker::Worker,
                )
                .await
                .map_err(retry)?;
                tracing::debug!(order_id = %order.order_id, created, "charge recorded");
            } else if event.kind == events::ORDER_CANCELLED.name {
                let order: events::OrderCancelled = event.decode(events::ORDER_CANCELLED)?;
                let done = charges::cancel_order(
                    tx,
                    &self.outbox,
                    &order.order_id,
                    &order.total,
                    &order.reason,
                )
                .await
                .map_err(retry)?;
                tracing::info!(order_id = %order.order_id, outcome = ?done, "order cancelled");
            }
            Ok(())
        })
    }
}

fn retry(err: ChargeError) -> HandlerError {
    HandlerError::Retry(err.to_string())
}
