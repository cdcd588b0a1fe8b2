//! The delivery worker: takes due pending deliveries and sends each through its channel's
//! simulated sender, several at once so a slow channel does not hold up the others. A
//! failed send is due again after an exponential backoff, and given up after the channel's
//! last attempt. Each attempt is claimed in the database first, so two instances never send
//! the same delivery at once.

use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge};
use sloop_kit::Context;
use sloop_kit::clock::{now_millis, now_rfc3339};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::metrics::{DELIVERIES, IN_FLIGHT};
use crate::model::Channel;
use crate::senders::{ChannelSettings, Sender};
use crate::store::{self, Claimed, StoreError};

/// How the worker paces itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkerSettings {
    /// Sends in flight at most, over all channels.
    pub concurrency: usize,
    /// How often it looks for due deliveries while it has free slots.
    pub poll: Duration,
    /// How long a claimed attempt is held before another worker may take the delivery
    /// (longer than any send takes).
    pub claim_hold: Duration,
    /// Wait before the second attempt; doubled for each further one, up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 32,
            poll: Duration::from_millis(50),
            claim_hold: Duration::from_secs(30),
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
        }
    }
}

impl WorkerSettings {
    /// The wait after failed attempt `attempt` (from 1): exponential, capped, with jitter so
    /// deliveries that failed together do not all come back together.
    pub fn backoff(&self, attempt: i64) -> Duration {
        let exponent = u32::try_from(attempt.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        let exp = self
            .first_backoff
            .saturating_mul(2u32.saturating_pow(exponent))
            .min(self.max_backoff);
        exp.mul_f64(rand::random_range(0.5..=1.0))
    }
}

/// The three channels' senders.
#[derive(Debug, Clone)]
pub struct Senders {
    email: Sender,
    push: Sender,
    sms: Sender,
}

impl Senders {
    pub fn new(
        service: &'static str,
        email: ChannelSettings,
        push: ChannelSettings,
        sms: ChannelSettings,
    ) -> Self {
        Self {
            email: Sender::new(service, Channel::Email, email),
            push: Sender::new(service, Channel::Push, push),
            sms: Sender::new(service, Channel::Sms, sms),
        }
    }

    pub fn get(&self, channel: Channel) -> &Sender {
        match channel {
            Channel::Email => &self.email,
            Channel::Push => &self.push,
            Channel::Sms => &self.sms,
        }
    }
}

/// Runs until the service stops (`ctx.stopping()`, the token the kit hands its workers);
/// sends in flight are finished first.
pub async fn run(ctx: Context, senders: Arc<Senders>, settings: WorkerSettings) {
    let service = ctx.service();
    let concurrency = settings.concurrency.max(1);
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut in_flight = JoinSet::new();
    while !ctx.stopping().is_cancelled() {
        for id in due(&ctx, slots.available_permits()).await {
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                break;
            };
            let (ctx, senders) = (ctx.clone(), senders.clone());
            in_flight.spawn(async move {
                let _permit = permit;
                if let Err(err) = attempt(&ctx, &senders, &settings, &id).await {
                    tracing::warn!(delivery_id = %id, error = %err, "delivery attempt not recorded; it comes due again");
                }
            });
        }
        while in_flight.try_join_next().is_some() {}
        gauge!(IN_FLIGHT, "service" => service).set(in_flight.len() as f64);
        // With every slot taken, look again as soon as one frees up; otherwise poll.
        let full = in_flight.len() >= concurrency;
        tokio::select! {
            _ = ctx.stopping().cancelled() => {}
            _ = in_flight.join_next(), if full => {}
            _ = tokio::time::sleep(settings.poll), if !full => {}
        }
    }
    while in_flight.join_next().await.is_some() {}
    gauge!(IN_FLIGHT, "service" => service).set(0.0);
}

/// Up to `free` due deliveries; none when the database cannot say (it is tried again at the
/// next poll).
async fn due(ctx: &Context, free: usize) -> Vec<String> {
    if free == 0 {
        return Vec::new();
    }
    store::due(ctx.db(), now_millis(), free as i64)
        .await
        .unwrap_or_else(|err| {
            tracing::warn!(error = %err, "cannot read due deliveries");
            Vec::new()
        })
}

/// Claims delivery `id` and makes one attempt at it; nothing when someone else has it.
async fn attempt(
    ctx: &Context,
    senders: &Senders,
    settings: &WorkerSettings,
    id: &str,
) -> Result<(), StoreError> {
    let hold = i64::try_from(settings.claim_hold.as_millis()).unwrap_or(i64::MAX / 2);
    let Some(claimed) = store::claim(ctx.db(), id, &now_rfc3339(), now_millis(), hold).await?
    else {
        return Ok(());
    };
    let channel = claimed.channel.as_str();
    let span = tracing::info_span!(
        "deliver",
        otel.name = format!("deliver {channel}"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        notification.channel = channel,
        notification.delivery_id = %claimed.id,
        notification.attempt = claimed.attempt,
    );
    send(ctx, senders.get(claimed.channel), settings, &claimed)
        .instrument(span)
        .await
}

/// Sends a claimed delivery and records what became of it.
async fn send(
    ctx: &Context,
    sender: &Sender,
    settings: &WorkerSettings,
    claimed: &Claimed,
) -> Result<(), StoreError> {
    let db = ctx.db();
    let channel = claimed.channel.as_str();
    let outcome = match sender.send().await {
        Ok(()) => {
            store::mark_sent(db, &claimed.id, &now_rfc3339()).await?;
            tracing::debug!("delivery sent");
            "sent"
        }
        Err(err) if claimed.attempt >= i64::from(sender.settings().max_attempts) => {
            store::mark_failed(db, claimed, &err.to_string(), &now_rfc3339()).await?;
            tracing::Span::current().record("otel.status_code", "ERROR");
            tracing::warn!(error = %err, attempts = claimed.attempt, "delivery failed its last attempt; giving it up");
            "failed"
        }
        Err(err) => {
            let backoff = settings.backoff(claimed.attempt);
            let next = now_millis() + i64::try_from(backoff.as_millis()).unwrap_or(i64::MAX / 2);
            store::retry_at(db, claimed, &err.to_string(), &now_rfc3339(), next).await?;
            tracing::info!(error = %err, retry_in = ?backoff, "delivery failed; retrying later");
            "retried"
        }
    };
    counter!(DELIVERIES, "service" => ctx.service(), "channel" => channel, "outcome" => outcome)
        .increment(1);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_cap_with_jitter() {
        let settings = WorkerSettings {
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            ..WorkerSettings::default()
        };
        for _ in 0..50 {
            let first = settings.backoff(1).as_millis();
            assert!((50..=100).contains(&first), "{first}");
            let third = settings.backoff(3).as_millis();
            assert!((200..=400).contains(&third), "{third}");
            let late = settings.backoff(1_000).as_millis();
            assert!((500..=1000).contains(&late), "{late}");
        }
    }
}
