//! The charge worker: takes due pending charges to the provider, several at once, so one
//! slow provider call does not hold up the charges behind it.

use std::sync::Arc;
use std::time::Duration;

use sloop_kit::Context;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::charges::{self, Attempts};
use crate::provider::Provider;

/// How the worker paces itself.
#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    /// Provider calls in flight at most.
    pub concurrency: usize,
    /// How often it looks for due charges when idle.
    pub poll: Duration,
    pub attempts: Attempts,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 32,
            poll: Duration::from_millis(50),
            attempts: Attempts::default(),
        }
    }
}

/// Runs until `stop`; charges in flight are finished first.
pub async fn run(
    ctx: Context,
    provider: Provider,
    settings: WorkerSettings,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let mut in_flight = JoinSet::new();
    while !stop.is_cancelled() {
        let free = slots.available_permits();
        let due = if free == 0 {
            Vec::new()
        } else {
            charges::due(ctx.db(), free as i64)
                .await
                .unwrap_or_else(|err| {
                    tracing::warn!(error = %err, "cannot read due charges");
                    Vec::new()
                })
        };
        for id in due {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            let (ctx, provider) = (ctx.clone(), provider.clone());
            in_flight.spawn(async move {
                let _permit = permit;
                take(&ctx, &provider, settings.attempts, &id).await;
            });
        }
        while in_flight.try_join_next().is_some() {}
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(settings.poll) => {}
        }
    }
    while in_flight.join_next().await.is_some() {}
}

/// Claims one charge and carries it through the provider; another worker that claimed it
/// first keeps it.
pub(crate) async fn take(ctx: &Context, provider: &Provider, attempts: Attempts, id: &str) {
    match charges::claim(ctx.db(), id, attempts.claim_ms).await {
        Ok(true) => {
            if let Err(err) = charges::process(ctx.db(), ctx.outbox(), provider, attempts, id).await
            {
                tracing::warn!(charge_id = %id, error = %err, "charge not processed; it comes due again");
            }
        }
        Ok(false) => {}
        Err(err) => tracing::warn!(charge_id = %id, error = %err, "cannot claim charge"),
    }
}
