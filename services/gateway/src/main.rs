//! `sloop-gateway`: runs the gateway on its own (the distributed mode).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sloop_gateway::cli::run(sloop_gateway::cli::Cli::parse()).await?;
    Ok(())
}
