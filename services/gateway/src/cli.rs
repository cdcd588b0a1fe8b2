//! The `sloop-gateway` command line: the service's flags, the configuration file, and
//! running it from them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Parser;
use sloop_kit::{ServiceArgs, StartError};

use crate::config::{ConfigError, DEFAULT_CONFIG, GatewayConfig};

/// The sloop gateway: the single entry point. Routes /api/<service>/... to each service,
/// verifies access tokens against auth's JWKS, rate-limits per client, and forwards with
/// time-outs, retries and circuit breakers.
///
/// Starts on 127.0.0.1:8080 with the built-in routes (every platform service on its
/// conventional port) unless --config names a file; `--upstream user=http://HOST:PORT`
/// moves one upstream without a file, and naming an upstream more than once
/// (`--upstream chat=http://A:8083,chat=http://B:8083`) shares its requests among those
/// instances in turn.
#[derive(Debug, Parser)]
#[command(name = "sloop-gateway", version)]
pub struct Cli {
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

/// Why the gateway did not run.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("--upstream {name}: the gateway has no upstream `{name}`; it has {known}")]
    UnknownUpstream { name: String, known: String },
    #[error(transparent)]
    Start(#[from] StartError),
}

/// Runs the gateway until SIGTERM or Ctrl-C (or prints its configuration).
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let mut config = match &cli.config {
        Some(path) => GatewayConfig::load(path)?,
        None => GatewayConfig::defaults(),
    };
    if cli.print_config {
        match &cli.config {
            Some(path) => print!("{}", std::fs::read_to_string(path).unwrap_or_default()),
            None => print!("{DEFAULT_CONFIG}"),
        }
        return Ok(());
    }
    let mut overrides: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, url) in &cli.service.upstreams {
        overrides.entry(name).or_default().push(url);
    }
    for (name, urls) in overrides {
        if !config.upstreams.contains_key(name) {
            return Err(CliError::UnknownUpstream {
                name: name.to_owned(),
                known: config
                    .upstreams
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        config.set_upstream_instances(name, &urls);
    }
    sloop_kit::run(crate::service(config), cli.service).await?;
    Ok(())
}
