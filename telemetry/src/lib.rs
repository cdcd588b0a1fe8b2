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
pub mod scope;
#[cfg(feature = "testing")]
pub mod testing;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use opentelemetry::global::BoxedTracer;
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
    tracer_providers: Vec<SdkTracerProvider>,
    loki: Vec<(
        tracing_loki::BackgroundTaskController,
        tokio::task::JoinHandle<()>,
    )>,
    sentry: Option<sentry::ClientInitGuard>,
    flushed: bool,
}

impl std::fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("services", &self.tracer_providers.len())
            .field("loki", &!self.loki.is_empty())
            .field("sentry", &self.sentry.is_some())
            .finish()
    }
}

impl TelemetryGuard {
    /// Exports every buffered span, log line and error, waiting at most a few seconds for
    /// each sink so a dead collector cannot block shutdown.
    pub async fn shutdown(mut self) {
        for (controller, task) in std::mem::take(&mut self.loki) {
            controller.shutdown().await;
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        let providers = self.tracer_providers.clone();
        let _ = tokio::task::spawn_blocking(move || providers.iter().for_each(flush_traces)).await;
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
        for provider in &self.tracer_providers {
            let _ = provider.force_flush();
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if !self.flushed {
            self.tracer_providers.iter().for_each(flush_traces);
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
    crate::metrics::install();
    start(vec![ServiceTelemetry {
        scope: None,
        config,
    }])
}

/// Starts telemetry for several services sharing this process (`sloop up`), each with its
/// own identity: spans made on a thread entered into a service's [`scope`] carry that
/// service's `service.name`, its metrics go to its own registry, its log lines name it.
/// A second instance of a service is its own scope, `name#2` (see [`scope`]).
/// `OTEL_SERVICE_NAME` is not read: one name cannot be right for all of them.
pub fn init_services(services: &[&'static str]) -> Result<TelemetryGuard, InitError> {
    let mut telemetry = Vec::with_capacity(services.len());
    for service in services {
        let name = scope::service_name(service);
        let mut config = TelemetryConfig::from_env(name)?;
        config.service_name = name.to_owned();
        telemetry.push(ServiceTelemetry {
            scope: Some(service),
            config,
        });
    }
    crate::metrics::install_per_service(services).map_err(|_| InitError::AlreadyInitialized)?;
    start(telemetry)
}

/// One service's telemetry settings, and the scope its threads enter when it shares the
/// process (`None`: it has the process to itself).
struct ServiceTelemetry {
    scope: Option<&'static str>,
    config: TelemetryConfig,
}

/// The tracer providers of services sharing the process, for [`tracer`].
static SCOPED_PROVIDERS: OnceLock<Vec<(&'static str, SdkTracerProvider)>> = OnceLock::new();

/// A tracer of the current service, for spans built by hand rather than through `tracing`.
pub fn tracer(instrumentation: &'static str) -> BoxedTracer {
    let scoped = SCOPED_PROVIDERS.get().and_then(|providers| {
        let current = scope::current()?;
        providers.iter().find(|(service, _)| *service == current)
    });
    match scoped {
        Some((_, provider)) => BoxedTracer::new(Box::new(provider.tracer(instrumentation))),
        None => opentelemetry::global::tracer(instrumentation),
    }
}

fn start(services: Vec<ServiceTelemetry>) -> Result<TelemetryGuard, InitError> {
    // Log format and filter, Sentry and the SDK switch come from the one environment every
    // service of the process shares.
    let shared = &services.first().expect("at least one service").config;
    SDK_DISABLED.store(shared.sdk_disabled, Ordering::Relaxed);
    let process_name = match services.first().and_then(|s| s.scope) {
        Some(_) => "sloop",
        None => shared.service_name.as_str(),
    };
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> =
        vec![stdout_layer(shared, process_name)?];
    let mut tracer_providers = Vec::with_capacity(services.len());
    let mut loki = Vec::new();
    for service in &services {
        tracer_providers.push(build_tracer_provider(&service.config)?);
        if let Some(url) = &service.config.loki_url {
            let (layer, controller, task) = loki_layer(&service.config, url)?;
            let layer = layer.with_filter(env_filter(&service.config)?).boxed();
            layers.push(in_scope(service.scope, layer));
            loki.push((controller, tokio::spawn(task)));
        }
    }
    if !shared.sdk_disabled {
        let scoped: Vec<_> = services
            .iter()
            .zip(&tracer_providers)
            .filter_map(|(service, provider)| {
                let scope = service.scope?;
                Some((scope, provider.tracer(service.config.service_name.clone())))
            })
            .collect();
        layers.push(if scoped.is_empty() {
            span_layer(tracer_providers[0].tracer(shared.service_name.clone()))
        } else {
            span_layer(scope::ScopedTracer {
                services: scoped,
                outside: SdkTracerProvider::builder().build().tracer("outside"),
            })
        });
    }
    let sentry = shared.sentry_dsn.as_ref().map(|dsn| {
        layers.extend(sentry_layers());
        SENTRY_ENABLED.store(true, Ordering::Relaxed);
        init_sentry(shared, dsn)
    });

    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|_| InitError::AlreadyInitialized)?;
    let scoped: Vec<_> = services
        .iter()
        .zip(&tracer_providers)
        .filter_map(|(service, provider)| Some((service.scope?, provider.clone())))
        .collect();
    if scoped.is_empty() {
        opentelemetry::global::set_tracer_provider(tracer_providers[0].clone());
    } else {
        let _ = SCOPED_PROVIDERS.set(scoped);
    }
    Ok(TelemetryGuard {
        tracer_providers,
        loki,
        sentry,
        flushed: false,
    })
}

/// `layer` (a Loki stream) seeing only what threads of `scope` do; everything when there is
/// no scope.
fn in_scope(
    scope: Option<&'static str>,
    layer: Box<dyn Layer<Registry> + Send + Sync>,
) -> Box<dyn Layer<Registry> + Send + Sync> {
    match scope {
        None => layer,
        Some(service) => layer
            // A dynamic filter: a plain `filter_fn` is asked once per callsite and its
            // answer cached, so the first service to reach a shared callsite (the kit's
            // request span) would keep it for good.
            .with_filter(tracing_subscriber::filter::dynamic_filter_fn(
                move |_, _| scope::current() == Some(service),
            ))
            .boxed(),
    }
}

/// Spans to OTLP, whatever RUST_LOG says: quieting logs must not break traces.
fn span_layer<T>(tracer: T) -> Box<dyn Layer<Registry> + Send + Sync>
where
    T: opentelemetry::trace::Tracer + Send + Sync + 'static,
    T::Span: Send + Sync,
{
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        // Idle/busy timings cost a clock read per poll and no one reads them. Source
        // locations, threads and targets describe our code, not the operation, and the
        // semantic conventions have no place for them on a request's span.
        .with_tracked_inactivity(false)
        // Making each entered span the OpenTelemetry current context costs a context clone
        // and a thread-local push on every poll of every instrumented future; our code
        // always asks a span for its context (`span.context()`) instead.
        .with_context_activation(false)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_filter(LevelFilter::INFO)
        .boxed()
}

/// Errors become Sentry events; warnings and info become breadcrumbs sent with them. Traces
/// stay with OpenTelemetry, so Sentry's span layer is not installed.
fn sentry_layers() -> [Box<dyn Layer<Registry> + Send + Sync>; 2] {
    use sentry::integrations::tracing::{BreadcrumbLayer, ErrorLayer};
    [
        BreadcrumbLayer::new()
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                matches!(*meta.level(), tracing::Level::WARN | tracing::Level::INFO)
            }))
            .boxed(),
        // tracing-loki reports its own failed pushes at ERROR: a Loki outage is not an
        // application error, and would otherwise send an event per retry. A panic is
        // reported by Sentry's panic handler, with its backtrace, not by its log line.
        ErrorLayer::new()
            .with_filter(LevelFilter::ERROR)
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                !meta.target().starts_with("tracing_loki") && meta.target() != PANIC_TARGET
            }))
            .boxed(),
    ]
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

/// Log lines on stdout; `service` names lines logged outside every service's scope.
fn stdout_layer(
    config: &TelemetryConfig,
    service: &str,
) -> Result<Box<dyn Layer<Registry> + Send + Sync>, InitError> {
    let filter = env_filter(config)?;
    let service = service.to_owned();
    Ok(match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(logs::FlatFields)
            .event_format(logs::FlatJson { service })
            .with_filter(filter)
            .boxed(),
        // The default text format prints each span's fields, trace_id and span_id included.
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .event_format(logs::WithService {
                inner: tracing_subscriber::fmt::format(),
                service,
            })
            .with_filter(filter)
            .boxed(),
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
