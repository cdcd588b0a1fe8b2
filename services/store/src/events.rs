//! The store's side of the order saga, driven by payment's events: `PaymentSucceeded`
//! confirms the order, `PaymentFailed` cancels it and returns its stock.

use futures::future::BoxFuture;
use sloop_events::payment as events;
use sloop_kit::{Event, Handler, HandlerError, Outbox, Tx};

use crate::orders::{self, OrderError};

/// The `store` consumer of topic `sloop.payment`.
pub struct PaymentEvents {
    pub outbox: Outbox,
}

impl Handler for PaymentEvents {
    fn handle<'a>(
        &'a self,
        event: &'a Event,
        tx: &'a mut Tx,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            if event.kind == events::SUCCEEDED.name {
                let paid: events::PaymentSucceeded = event.decode(events::SUCCEEDED)?;
                let confirmed = orders::confirm(tx, &self.outbox, &paid.order_id, &paid.charge_id)
                    .await
                    .map_err(handler_error)?;
                if !confirmed {
                    tracing::info!(order_id = %paid.order_id, "payment came after the order ended; payment refunds it");
                }
            } else if event.kind == events::FAILED.name {
                let failed: events::PaymentFailed = event.decode(events::FAILED)?;
                let reason = format!("payment failed: {}", failed.reason);
                orders::cancel(tx, &self.outbox, &failed.order_id, &reason)
                    .await
                    .map_err(handler_error)?;
            }
            Ok(())
        })
    }
}

/// An order this store never had cannot be confirmed by retrying; anything else may pass.
fn handler_error(err: OrderError) -> HandlerError {
    match err {
        OrderError::NotFound(_) => HandlerError::Reject(err.to_string()),
        other => HandlerError::Retry(other.to_string()),
    }
}
