//! The `sloop-user` command line: the service's flags, and running it from them.

use clap::Parser;
use sloop_kit::{ServiceArgs, StartError};

/// The sloop user service: accounts, statuses and cursor pagination over HTTP; publishes
/// UserCreated, UserUpdated and UserStatusChanged events.
///
/// Starts on 127.0.0.1:8082 with a SQLite file in the working directory unless told
/// otherwise. Telemetry follows the OpenTelemetry environment variables
/// (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, ...), plus LOKI_URL and SENTRY_DSN.
#[derive(Debug, Parser)]
#[command(name = "sloop-user", version)]
pub struct Cli {
    #[command(flatten)]
    service: ServiceArgs,
}

/// Runs the service until SIGTERM or Ctrl-C.
pub async fn run(cli: Cli) -> Result<(), StartError> {
    sloop_kit::run(crate::service(), cli.service).await
}
