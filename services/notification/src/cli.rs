//! The `sloop-notification` command line: the service's flags, and running it from them.

use std::time::Duration;

use clap::Parser;
use sloop_kit::{ServiceArgs, StartError};

use crate::NotificationSettings;
use crate::senders::ChannelSettings;
use crate::worker::WorkerSettings;

/// The sloop notification service: notifications per user from UserCreated, OrderConfirmed
/// and OrderCancelled events, read over HTTP, and sent through simulated email, push and
/// SMS providers with retries.
///
/// Starts on 127.0.0.1:8086 with a SQLite file in the working directory unless told
/// otherwise. Each channel's simulated latency, failure rate and attempts can be set below.
/// Telemetry follows the OpenTelemetry environment variables (OTEL_EXPORTER_OTLP_ENDPOINT,
/// OTEL_SERVICE_NAME, ...), plus LOKI_URL and SENTRY_DSN.
#[derive(Debug, Parser)]
#[command(name = "sloop-notification", version)]
pub struct Cli {
    #[command(flatten)]
    service: ServiceArgs,
    #[command(flatten)]
    notification: NotificationArgs,
}

#[derive(Debug, clap::Args)]
struct NotificationArgs {
    /// Shortest simulated email send, in milliseconds.
    #[arg(long, env = "NOTIFICATION_EMAIL_LATENCY_MIN_MS", default_value_t = 20)]
    email_latency_min_ms: u64,
    /// Longest simulated email send, in milliseconds.
    #[arg(long, env = "NOTIFICATION_EMAIL_LATENCY_MAX_MS", default_value_t = 80)]
    email_latency_max_ms: u64,
    /// Share of email sends that fail (0 to 1).
    #[arg(long, env = "NOTIFICATION_EMAIL_FAILURE_RATE", default_value_t = 0.0, value_parser = rate)]
    email_failure_rate: f64,
    /// Email attempts in all before a delivery is given up.
    #[arg(long, env = "NOTIFICATION_EMAIL_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    email_max_attempts: u32,

    /// Shortest simulated push send, in milliseconds.
    #[arg(long, env = "NOTIFICATION_PUSH_LATENCY_MIN_MS", default_value_t = 5)]
    push_latency_min_ms: u64,
    /// Longest simulated push send, in milliseconds.
    #[arg(long, env = "NOTIFICATION_PUSH_LATENCY_MAX_MS", default_value_t = 30)]
    push_latency_max_ms: u64,
    /// Share of push sends that fail (0 to 1).
    #[arg(long, env = "NOTIFICATION_PUSH_FAILURE_RATE", default_value_t = 0.0, value_parser = rate)]
    push_failure_rate: f64,
    /// Push attempts in all before a delivery is given up.
    #[arg(long, env = "NOTIFICATION_PUSH_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    push_max_attempts: u32,

    /// Shortest simulated SMS send, in milliseconds.
    #[arg(long, env = "NOTIFICATION_SMS_LATENCY_MIN_MS", default_value_t = 50)]
    sms_latency_min_ms: u64,
    /// Longest simulated SMS send, in milliseconds.
    #[arg(long, env = "NOTIFICATION_SMS_LATENCY_MAX_MS", default_value_t = 200)]
    sms_latency_max_ms: u64,
    /// Share of SMS sends that fail (0 to 1).
    #[arg(long, env = "NOTIFICATION_SMS_FAILURE_RATE", default_value_t = 0.0, value_parser = rate)]
    sms_failure_rate: f64,
    /// SMS attempts in all before a delivery is given up.
    #[arg(long, env = "NOTIFICATION_SMS_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    sms_max_attempts: u32,

    /// Sends in flight at most, over all channels.
    #[arg(long, env = "NOTIFICATION_DELIVERY_CONCURRENCY", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    delivery_concurrency: u32,
    /// How often the worker looks for due deliveries, in milliseconds.
    #[arg(long, env = "NOTIFICATION_DELIVERY_POLL_MS", default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    delivery_poll_ms: u64,
    /// How long one attempt holds a delivery before another worker may take it, in
    /// milliseconds; longer than any send takes.
    #[arg(long, env = "NOTIFICATION_DELIVERY_CLAIM_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    delivery_claim_ms: u64,
    /// Wait before a failed delivery's second attempt, in milliseconds; doubled for each
    /// further one.
    #[arg(long, env = "NOTIFICATION_RETRY_BACKOFF_MS", default_value_t = 500)]
    retry_backoff_ms: u64,
    /// The longest wait between two attempts, in milliseconds.
    #[arg(
        long,
        env = "NOTIFICATION_RETRY_MAX_BACKOFF_MS",
        default_value_t = 60_000
    )]
    retry_max_backoff_ms: u64,
}

/// A probability: a number from 0 to 1.
fn rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!("`{text}` is not a rate between 0 and 1")),
    }
}

fn channel(min_ms: u64, max_ms: u64, failure_rate: f64, max_attempts: u32) -> ChannelSettings {
    ChannelSettings {
        latency_min: Duration::from_millis(min_ms),
        latency_max: Duration::from_millis(max_ms),
        failure_rate,
        max_attempts,
    }
}

impl NotificationArgs {
    fn settings(&self) -> NotificationSettings {
        NotificationSettings {
            email: channel(
                self.email_latency_min_ms,
                self.email_latency_max_ms,
                self.email_failure_rate,
                self.email_max_attempts,
            ),
            push: channel(
                self.push_latency_min_ms,
                self.push_latency_max_ms,
                self.push_failure_rate,
                self.push_max_attempts,
            ),
            sms: channel(
                self.sms_latency_min_ms,
                self.sms_latency_max_ms,
                self.sms_failure_rate,
                self.sms_max_attempts,
            ),
            worker: WorkerSettings {
                concurrency: self.delivery_concurrency as usize,
                poll: Duration::from_millis(self.delivery_poll_ms),
                claim_hold: Duration::from_millis(self.delivery_claim_ms),
                first_backoff: Duration::from_millis(self.retry_backoff_ms),
                max_backoff: Duration::from_millis(self.retry_max_backoff_ms),
            },
        }
    }
}

/// Runs the service until SIGTERM or Ctrl-C; refuses settings that cannot work.
pub async fn run(cli: Cli) -> Result<(), StartError> {
    let settings = cli.notification.settings();
    settings
        .validate()
        .map_err(|err| StartError::Setup(err.to_string()))?;
    sloop_kit::run(crate::service(settings), cli.service).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_settings_defaults() {
        let cli = Cli::try_parse_from(["sloop-notification"]).unwrap();
        assert_eq!(cli.notification.settings(), NotificationSettings::default());
    }

    #[test]
    fn flags_set_each_channel() {
        let cli = Cli::try_parse_from([
            "sloop-notification",
            "--sms-failure-rate",
            "1",
            "--sms-max-attempts",
            "3",
            "--push-latency-max-ms",
            "10",
        ])
        .unwrap();
        let settings = cli.notification.settings();
        assert_eq!(settings.sms.failure_rate, 1.0);
        assert_eq!(settings.sms.max_attempts, 3);
        assert_eq!(settings.push.latency_max, Duration::from_millis(10));
        assert!(Cli::try_parse_from(["sloop-notification", "--email-failure-rate", "2"]).is_err());
        assert!(Cli::try_parse_from(["sloop-notification", "--sms-max-attempts", "0"]).is_err());
    }
}
