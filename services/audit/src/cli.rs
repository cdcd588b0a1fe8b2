//! The `sloop-audit` command line: the service's flags, and running it from them.

use clap::Parser;
use sloop_kit::{ServiceArgs, StartError};

/// The sloop audit service: consumes every event the platform publishes into an
/// append-only, hash-chained log; admins query it and verify it over HTTP.
///
/// Starts on 127.0.0.1:8087 with a SQLite file in the working directory unless told
/// otherwise. Telemetry follows the OpenTelemetry environment variables
/// (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, ...), plus LOKI_URL and SENTRY_DSN.
#[derive(Debug, Parser)]
#[command(name = "sloop-audit", version)]
pub struct Cli {
    #[command(flatten)]
    service: ServiceArgs,
}

/// Runs the service until SIGTERM or Ctrl-C.
pub async fn run(cli: Cli) -> Result<(), StartError> {
    sloop_kit::run(crate::service(), cli.service).await
}
