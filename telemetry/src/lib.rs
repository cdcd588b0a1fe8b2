//! One telemetry set-up for every sloop service: traces over OTLP, Prometheus metrics,
//! structured logs (stdout and Loki) and errors to Sentry, configured from the standard env.
//!
//! ```no_run
//! # async fn run() -> Result<(), telemetry::InitError> {
//! let guard = telemetry::init("user")?;
//! // ... serve, with `telemetry::http::instrument(router, "user")` ...
//! guard.shutdown().await; // flushes every exporter
//! # Ok(()) }
//! ```

pub mod client;
pub mod config;
mod exemplars;
mod export;
pub mod http;
mod logs;
pub mod metrics;
pub mod propagation;
#[cfg(feature = "testing")]
pub mod testing;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

pub use client::HttpClient;
pub use config::{ConfigError, LogFormat, OtlpProtocol, SamplerConfig, TelemetryConfig};

/// Why telemetry could not start. Each variant says which setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("RUST_LOG={value:?} is invalid: {source}; e.g. RUST_LOG=info,sqlx=warn")]
    LogFilter {
        value: String,
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("cannot build the OTLP exporter for {endpoint}: {source}")]
    Otlp {
        endpoint: String,
        source: opentelemetry_otlp::ExporterBuildError,
    },
    #[error("cannot set up the Loki exporter (LOKI_URL): {0}")]
    Loki(String),
    #[error("telemetry is already initialised in this process")]
    AlreadyInitialized,
}

/// Keeps the exporters alive; [`TelemetryGuard::shutdown`] flushes them. Dropping the guard
/// without calling it still flushes traces, but cannot wait for Loki.
pub struct TelemetryGuard {
    tracer_provider: SdkTracerProvider,
    loki: Option<(
        tracing_loki::BackgroundTaskController,
        tokio::task::JoinHandle<()>,
    )>,
    sentry: Option<sentry::ClientInitGuard>,
    flushed: bool,
}

impl std::fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("loki", &self.loki.is_some())
            .field("sentry", &self.sentry.is_some())
            .finish()
    }
}

impl TelemetryGuard {
    /// Exports every buffered span, log line and error, waiting at most a few seconds for
    /// each sink so a dead collector cannot block shutdown.
    pub async fn shutdown(mut self) {
        if let Some((controller, task)) = self.loki.take() {
            controller.shutdown().await;
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        let provider = self.tracer_provider.clone();
        let _ = tokio::task::spawn_blocking(move || flush_traces(&provider)).await;
        self.flushed = true;
        if let Some(sentry) = self.sentry.take() {
            // The transport's own timeouts bound this; the outer one is a backstop.
            let flushed = tokio::task::spawn_blocking(move || {
                sentry.flush(Some(SENTRY_TIMEOUT));
            });
            let _ = tokio::time::timeout(SENTRY_TIMEOUT * 4, flushed).await;
        }
    }

    /// Exports buffered spans now, without shutting down (tests use it to read their spans).
    pub fn force_flush(&self) {
        let _ = self.tracer_provider.force_flush();
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if !self.flushed {
            flush_traces(&self.tracer_provider);
        }
    }
}

fn flush_traces(provider: &SdkTracerProvider) {
    let _ = provider.force_flush();
    let _ = provider.shutdown_with_timeout(Duration::from_secs(5));
}

static SDK_DISABLED: AtomicBool = AtomicBool::new(false);
static SENTRY_ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether errors go to Sentry (`SENTRY_DSN` set): only then does a request get a Sentry
/// scope of its own.
fn sentry_enabled() -> bool {
    SENTRY_ENABLED.load(Ordering::Relaxed)
}

/// Whether `OTEL_SDK_DISABLED=true` switched telemetry off in this process; then
/// [`http::instrument`] leaves routers as they are.
pub fn sdk_disabled() -> bool {
    SDK_DISABLED.load(Ordering::Relaxed)
}

/// Starts telemetry for `service` from the process environment. Call once, inside the Tokio
/// runtime, before serving.
pub fn init(service: &str) -> Result<TelemetryGuard, InitError> {
    init_with(TelemetryConfig::from_env(service)?)
}

/// Starts telemetry from an explicit configuration.
pub fn init_with(config: TelemetryConfig) -> Result<TelemetryGuard, InitError> {
    SDK_DISABLED.store(config.sdk_disabled, Ordering::Relaxed);
    crate::metrics::install();
    let tracer_provider = build_tracer_provider(&config)?;

    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
    layers.push(stdout_layer(&config)?);
    if !config.sdk_disabled {
        // Spans go to OTLP whatever RUST_LOG says: quieting logs must not break traces.
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(tracer_provider.tracer(config.service_name.clone()))
                // Idle/busy timings cost a clock read per poll and no one reads them. Source
                // locations, threads and targets describe our code, not the operation, and
                // the semantic conventions have no place for them on a request's span.
                .with_tracked_inactivity(false)
                // Making each entered span the OpenTelemetry current context costs a context
                // clone and a thread-local push on every poll of every instrumented future;
                // our code always asks a span for its context (`span.context()`) instead.
                .with_context_activation(false)
                .with_location(false)
                .with_threads(false)
                .with_target(false)
                .with_filter(LevelFilter::INFO)
                .boxed(),
        );
    }
    let loki = match &config.loki_url {
        Some(url) => {
            let (layer, controller, task) = loki_layer(&config, url)?;
            layers.push(layer.with_filter(env_filter(&config)?).boxed());
            Some((controller, tokio::spawn(task)))
        }
        None => None,
    };
    let sentry = config.sentry_dsn.as_ref().map(|dsn| {
        // Errors become Sentry events; warnings and info become breadcrumbs sent with them.
        // Traces stay with OpenTelemetry, so Sentry's span layer is not installed.
        use sentry::integrations::tracing::{BreadcrumbLayer, ErrorLayer};
        layers.push(
            BreadcrumbLayer::new()
                .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                    matches!(*meta.level(), tracing::Level::WARN | tracing::Level::INFO)
                }))
                .boxed(),
        );
        // tracing-loki reports its own failed pushes at ERROR: a Loki outage is not an
        // application error, and would otherwise send an event per retry. A panic is
        // reported by Sentry's panic handler, with its backtrace, not by its log line.
        layers.push(
            ErrorLayer::new()
                .with_filter(LevelFilter::ERROR)
                .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                    !meta.target().starts_with("tracing_loki") && meta.target() != PANIC_TARGET
                }))
                .boxed(),
        );
        SENTRY_ENABLED.store(true, Ordering::Relaxed);
        init_sentry(&config, dsn)
    });

    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|_| InitError::AlreadyInitialized)?;
    opentelemetry::global::set_tracer_provider(tracer_provider.clone());
    Ok(TelemetryGuard {
        tracer_provider,
        loki,
        sentry,
        flushed: false,
    })
}

/// The target of the log line for a request whose handler panicked. Sentry's panic handler
/// reports the panic itself, so the Sentry error layer skips this target.
pub const PANIC_TARGET: &str = "sloop::panic";

/// The target of spans meant for traces only (one per database statement): log layers skip
/// them, so they cost no field formatting, and lines logged inside them carry the request's
/// fields as before.
pub const TRACE_ONLY_TARGET: &str = "sloop::trace_only";

fn env_filter(config: &TelemetryConfig) -> Result<EnvFilter, InitError> {
    let error = |source| InitError::LogFilter {
        value: config.log_filter.clone(),
        source,
    };
    let trace_only = format!("{TRACE_ONLY_TARGET}=off")
        .parse()
        .expect("a fixed directive parses");
    Ok(EnvFilter::try_new(&config.log_filter)
        .map_err(error)?
        .add_directive(trace_only))
}

fn stdout_layer(
    config: &TelemetryConfig,
) -> Result<Box<dyn Layer<Registry> + Send + Sync>, InitError> {
    let filter = env_filter(config)?;
    Ok(match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(logs::FlatFields)
            .event_format(logs::FlatJson)
            .with_filter(filter)
            .boxed(),
        // The default text format prints each span's fields, trace_id and span_id included.
        LogFormat::Pretty => tracing_subscriber::fmt::layer().with_filter(filter).boxed(),
    })
}

fn build_tracer_provider(config: &TelemetryConfig) -> Result<SdkTracerProvider, InitError> {
    let mut builder = SdkTracerProvider::builder()
        .with_resource(export::resource(config))
        .with_sampler(sampler(config.sampler));
    if let Some(otlp) = config.otlp.as_ref().filter(|_| !config.sdk_disabled) {
        let otlp_error = |source| InitError::Otlp {
            endpoint: otlp.traces_endpoint.clone(),
            source,
        };
        let exporter = match otlp.protocol {
            OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(otlp.traces_endpoint.clone())
                .build()
                .map_err(otlp_error)?,
            OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(otlp.traces_endpoint.clone())
                .build()
                .map_err(otlp_error)?,
        };
        builder = builder.with_batch_exporter(export::WithoutLogOnlyFields(exporter));
    }
    Ok(builder.build())
}

fn sampler(config: SamplerConfig) -> Sampler {
    match config {
        SamplerConfig::AlwaysOn => Sampler::AlwaysOn,
        SamplerConfig::AlwaysOff => Sampler::AlwaysOff,
        SamplerConfig::TraceIdRatio(r) => Sampler::TraceIdRatioBased(r),
        SamplerConfig::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        SamplerConfig::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        SamplerConfig::ParentBasedTraceIdRatio(r) => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r)))
        }
    }
}

fn loki_layer(
    config: &TelemetryConfig,
    url: &str,
) -> Result<
    (
        tracing_loki::Layer,
        tracing_loki::BackgroundTaskController,
        tracing_loki::BackgroundTask,
    ),
    InitError,
> {
    let loki_error = |e: &dyn std::fmt::Display| InitError::Loki(e.to_string());
    let url = tracing_loki::url::Url::parse(url).map_err(|e| loki_error(&e))?;
    tracing_loki::builder()
        .label("service", config.service_name.clone())
        .map_err(|e| loki_error(&e))?
        .extra_field("pid", std::process::id().to_string())
        .map_err(|e| loki_error(&e))?
        .build_controller_url(url)
        .map_err(|e| loki_error(&e))
}

/// The longest any one Sentry delivery may take, and how long a flush waits.
const SENTRY_TIMEOUT: Duration = Duration::from_secs(2);

/// Sentry's HTTP transport with timeouts: the stock one has none, so an endpoint that accepts
/// and never answers would hold its sending thread, and so shutdown, forever.
struct BoundedSentryTransport;

impl sentry::TransportFactory for BoundedSentryTransport {
    fn create_transport_with_options(
        &self,
        options: sentry::TransportOptions,
    ) -> Arc<dyn sentry::Transport> {
        let transport = sentry::transports::ReqwestHttpTransportOptions::from(options);
        let transport = match reqwest::Client::builder()
            .connect_timeout(SENTRY_TIMEOUT)
            .timeout(SENTRY_TIMEOUT)
            .build()
        {
            Ok(client) => transport.with_client(client),
            Err(_) => transport,
        };
        Arc::new(transport.build())
    }
}

fn init_sentry(config: &TelemetryConfig, dsn: &str) -> sentry::ClientInitGuard {
    let mut options = sentry::ClientOptions::new()
        .dsn(dsn)
        .release(format!(
            "{}@{}",
            config.service_name,
            env!("CARGO_PKG_VERSION")
        ))
        .transport(BoundedSentryTransport)
        // How long the panic handler waits to deliver a panic, on the panicking thread.
        .shutdown_timeout(SENTRY_TIMEOUT);
    if let Some(environment) = &config.environment {
        options = options.environment(environment.clone());
    }
    sentry::init(options)
}
