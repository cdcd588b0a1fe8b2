//! `sloop-gateway`: runs the gateway on its own (the distributed mode).

use std::path::PathBuf;

use clap::Parser;
use sloop_gateway::GatewayConfig;
use sloop_kit::ServiceArgs;

/// The sloop gateway: the single entry point. Routes /api/<service>/... to each service,
/// verifies access tokens against auth's JWKS, rate-limits per client, and forwards with
/// time-outs, retries and circuit breakers.
///
/// Starts on 127.0.0.1:8080 with the built-in routes (every platform service on its
/// conventional port) unless --config names a file; `--upstream user=http://HOST:PORT`
/// moves one upstream without a file.
#[derive(Debug, Parser)]
#[command(name = "sloop-gateway", version)]
struct Cli {
    #[command(flatten)]
    service: ServiceArgs,

    /// Routes, upstreams, token and rate-limit settings (YAML). Print the built-in one with
    /// --print-config to start from it.
    #[arg(long, env = "GATEWAY_CONFIG")]
    config: Option<PathBuf>,

    /// Prints the configuration in use (built-in or --config) and exits.
    #[arg(long)]
    print_config: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.print_config {
        match &cli.config {
            Some(path) => print!("{}", std::fs::read_to_string(path)?),
            None => print!("{}", sloop_gateway::config::DEFAULT_CONFIG),
        }
        return Ok(());
    }
    let mut config = match &cli.config {
        Some(path) => GatewayConfig::load(path)?,
        None => GatewayConfig::defaults(),
    };
    for (name, url) in &cli.service.upstreams {
        if !config.upstreams.contains_key(name) {
            anyhow::bail!(
                "--upstream {name}: the gateway has no upstream `{name}`; it has {}",
                config
                    .upstreams
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        config.set_upstream(name, url);
    }
    sloop_kit::run(sloop_gateway::service(config), cli.service).await?;
    Ok(())
}
