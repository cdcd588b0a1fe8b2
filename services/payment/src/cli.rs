//! The `sloop-payment` command line: the service's flags, and running it from them.

use clap::Parser;
use sloop_kit::{ServiceArgs, StartError};

use crate::PaymentSettings;
use crate::provider::ProviderSettings;
use crate::worker::WorkerSettings;

/// The sloop payment service: one charge per order against a simulated provider, and
/// refunds. Consumes the store's OrderPlaced and OrderCancelled; publishes
/// PaymentSucceeded, PaymentFailed and PaymentRefunded.
///
/// Starts on 127.0.0.1:8088 with a SQLite file in the working directory unless told
/// otherwise. The provider's behaviour can also be changed while it runs: PUT /provider.
#[derive(Debug, Parser)]
#[command(name = "sloop-payment", version)]
pub struct Cli {
    #[command(flatten)]
    service: ServiceArgs,
    #[command(flatten)]
    payment: PaymentArgs,
}

#[derive(Debug, clap::Args)]
struct PaymentArgs {
    /// Median latency of a provider call, milliseconds.
    #[arg(long, env = "PAYMENT_PROVIDER_LATENCY_P50_MS", default_value_t = ProviderSettings::default().latency_p50_ms)]
    provider_latency_p50_ms: f64,

    /// 99th-percentile latency of a provider call, milliseconds.
    #[arg(long, env = "PAYMENT_PROVIDER_LATENCY_P99_MS", default_value_t = ProviderSettings::default().latency_p99_ms)]
    provider_latency_p99_ms: f64,

    /// Share of charges the provider declines (0 to 1). The payment method `test-decline`
    /// is always declined.
    #[arg(long, env = "PAYMENT_PROVIDER_DECLINE_RATE", default_value_t = 0.0)]
    provider_decline_rate: f64,

    /// Share of provider calls that fail transiently (0 to 1); they are retried with
    /// backoff, up to --max-attempts.
    #[arg(long, env = "PAYMENT_PROVIDER_ERROR_RATE", default_value_t = 0.0)]
    provider_error_rate: f64,

    /// Provider calls per charge before it fails for good.
    #[arg(long, env = "PAYMENT_MAX_ATTEMPTS", default_value_t = 5)]
    max_attempts: u32,

    /// Provider calls in flight at once.
    #[arg(long, env = "PAYMENT_CONCURRENCY", default_value_t = 32)]
    concurrency: usize,
}

impl PaymentArgs {
    fn settings(self) -> Result<PaymentSettings, StartError> {
        let provider = ProviderSettings {
            latency_p50_ms: self.provider_latency_p50_ms,
            latency_p99_ms: self.provider_latency_p99_ms,
            decline_rate: self.provider_decline_rate,
            error_rate: self.provider_error_rate,
        };
        provider.validate().map_err(StartError::Setup)?;
        let mut worker = WorkerSettings {
            concurrency: self.concurrency.max(1),
            ..WorkerSettings::default()
        };
        worker.attempts.max = i64::from(self.max_attempts.max(1));
        Ok(PaymentSettings { provider, worker })
    }
}

/// Runs the service until SIGTERM or Ctrl-C.
pub async fn run(cli: Cli) -> Result<(), StartError> {
    sloop_kit::run(crate::service(cli.payment.settings()?), cli.service).await
}
