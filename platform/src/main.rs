//! `sloop`: the platform's command. `sloop up` runs every service in this one process.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use sloop::{MAX_CHAT_INSTANCES, Platform, Ports, UpOptions};
use sloop_gateway::GatewayConfig;
use sloop_kit::ServiceArgs;

/// Services allocate and free small buffers on every request; mimalloc does that faster
/// than glibc's allocator (measured on the gateway: 1.8x the throughput).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// sloop: an observability-first microservice platform.
#[derive(Debug, Parser)]
#[command(name = "sloop", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the whole platform in this process, with nothing else to install.
    ///
    /// Every service (gateway, auth, user, chat, store, payment, notification, audit, batch)
    /// listens on
    /// its own port, keeps its own SQLite file under --data-dir and runs on its own runtime;
    /// events travel on an in-memory bus. Each keeps its own identity in telemetry: its own
    /// service.name on spans, its own /metrics, its own name on log lines.
    ///
    /// Telemetry follows the standard variables: OTEL_EXPORTER_OTLP_ENDPOINT (traces),
    /// LOKI_URL, SENTRY_DSN, RUST_LOG, LOG_FORMAT=json. Settings every service shares come
    /// from their usual variables too (DB_MAX_CONNECTIONS, SHUTDOWN_TIMEOUT, CHAOS, ...).
    ///
    /// Once every /readyz answers, a summary says what runs where. Ctrl-C or SIGTERM stops
    /// everything, the gateway first.
    ///
    /// Example: sloop up --admin-email ops@example.com
    Up(UpArgs),
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    /// Where each service keeps its SQLite database (<service>.db); created when missing,
    /// and kept across runs.
    #[arg(long, env = "SLOOP_DATA_DIR", default_value = "sloop-data")]
    data_dir: PathBuf,

    /// The address every service listens on.
    #[arg(long, env = "SLOOP_HOST", default_value = "127.0.0.1")]
    host: IpAddr,

    /// Added to every service's conventional port (gateway 8080, auth 8081, user 8082,
    /// chat 8083, store 8084, batch 8085, notification 8086, audit 8087, payment 8088), to run beside another
    /// copy.
    #[arg(long, env = "SLOOP_PORT_OFFSET", default_value_t = 0)]
    port_offset: u16,

    /// Puts each service on any free port instead; the summary says which.
    #[arg(long, conflicts_with = "port_offset")]
    any_port: bool,

    /// Accounts registered with these emails get the admin role (product and catalog
    /// changes, audit, payment administration, batch jobs). Repeat the flag or separate with commas.
    #[arg(long = "admin-email", env = "AUTH_ADMIN_EMAILS", value_delimiter = ',')]
    admin_emails: Vec<String>,

    /// The gateway's routes and limits (YAML); the built-in ones otherwise. Print those with
    /// `sloop-gateway --print-config` to start from them.
    #[arg(long, env = "GATEWAY_CONFIG")]
    gateway_config: Option<PathBuf>,

    /// Worker threads of each service's runtime.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    threads_per_service: u16,

    /// Chat instances to run behind the gateway, which hands out sockets and requests to
    /// them in turn; messages reach members on every instance through the bus. Instance n
    /// listens on chat's port plus 10·(n−1) (8083, 8093, ...) and shares chat's SQLite file.
    #[arg(long, env = "SLOOP_CHAT_INSTANCES", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=MAX_CHAT_INSTANCES as i64))]
    chat_instances: u16,
}

/// The settings every service shares, read from the same variables as each service's own
/// binary (the per-service ones, such as LISTEN_ADDR, are set by `sloop up` instead).
#[derive(Debug, Parser)]
struct SharedServiceArgs {
    #[command(flatten)]
    args: ServiceArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    match cli.command {
        Command::Up(args) => runtime.block_on(up(args)),
    }
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let options = options(args)?;
    let telemetry = telemetry::init_services(&options.scopes())?;
    let platform = Platform::start(options).await;
    let result = match platform {
        Ok(platform) => {
            println!("{}", platform.summary());
            sloop_kit::shutdown_signal().await;
            tracing::info!("stopping every service, the gateway first");
            platform.stop().await.map_err(anyhow::Error::from)
        }
        Err(err) => Err(err.into()),
    };
    telemetry.shutdown().await;
    result
}

fn options(args: UpArgs) -> anyhow::Result<UpOptions> {
    let gateway_config = args
        .gateway_config
        .as_deref()
        .map(GatewayConfig::load)
        .transpose()?;
    let shared = SharedServiceArgs::try_parse_from(["sloop up"])
        .context("a variable every service reads is invalid")?;
    Ok(UpOptions {
        data_dir: args.data_dir,
        host: args.host,
        ports: if args.any_port {
            Ports::Any
        } else {
            Ports::Conventional {
                offset: args.port_offset,
            }
        },
        admin_emails: args.admin_emails,
        gateway_config,
        service_args: shared.args,
        threads_per_service: usize::from(args.threads_per_service),
        chat_instances: usize::from(args.chat_instances),
    })
}
