//! `sloop-user`: runs the user service on its own (the distributed mode).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sloop_user::cli::run(sloop_user::cli::Cli::parse()).await?;
    Ok(())
}
