//! The `sloop-store` command line: the service's flags, and running it from them.

use std::time::Duration;

use clap::Parser;
use sloop_kit::{ServiceArgs, StartError};

use crate::StoreSettings;

/// The sloop store service: products, categories, search, stock, and orders. Publishes
/// OrderPlaced, OrderConfirmed and OrderCancelled; consumes payment's events to confirm or
/// cancel orders.
///
/// Starts on 127.0.0.1:8084 with a SQLite file in the working directory unless told
/// otherwise.
#[derive(Debug, Parser)]
#[command(name = "sloop-store", version)]
pub struct Cli {
    #[command(flatten)]
    service: ServiceArgs,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, clap::Args)]
struct StoreArgs {
    /// How long an order waits for its payment before it is cancelled and its stock
    /// released.
    #[arg(long, env = "STORE_PAYMENT_DEADLINE", default_value = "2m", value_parser = sloop_duration::parse_positive)]
    payment_deadline: Duration,

    /// How often overdue orders are looked for.
    #[arg(long, env = "STORE_TIMEOUT_SWEEP", default_value = "5s", value_parser = sloop_duration::parse_positive)]
    timeout_sweep: Duration,
}

/// Runs the service until SIGTERM or Ctrl-C.
pub async fn run(cli: Cli) -> Result<(), StartError> {
    let settings = StoreSettings {
        payment_deadline: cli.store.payment_deadline,
        sweep_every: cli.store.timeout_sweep,
    };
    sloop_kit::run(crate::service(settings), cli.service).await
}
