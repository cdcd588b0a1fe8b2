//! `sloop-user`: runs the user service on its own (the distributed mode).

use clap::Parser;
use sloop_kit::ServiceArgs;

/// The sloop user service: accounts, statuses and cursor pagination over HTTP; publishes
/// UserCreated, UserUpdated and UserStatusChanged events.
///
/// Starts on 127.0.0.1:8082 with a SQLite file in the working directory unless told
/// otherwise. Telemetry follows the OpenTelemetry environment variables
/// (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, ...), plus LOKI_URL and SENTRY_DSN.
#[derive(Debug, Parser)]
#[command(name = "sloop-user", version)]
struct Cli {
    #[command(flatten)]
    service: ServiceArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    sloop_kit::run(sloop_user::service(), cli.service).await?;
    Ok(())
}
