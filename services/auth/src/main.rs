//! `sloop-auth`: runs the auth service on its own (the distributed mode).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sloop_auth::cli::run(sloop_auth::cli::Cli::parse()).await?;
    Ok(())
}
