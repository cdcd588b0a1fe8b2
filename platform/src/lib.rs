//! `sloop up`: every service of the platform in this one process, each on its own port, its
//! own SQLite file and its own Tokio runtime, events on one in-memory bus.
//!
//! Each service's runtime threads are entered into its telemetry scope, so its spans, metrics
//! and log lines carry its own name, as they do when it runs as its own process.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sloop_auth::AuthSettings;
use sloop_gateway::GatewayConfig;
use sloop_kit::{EventBus, MemoryBus, Service, ServiceArgs, Settings, StartError};
use tokio_util::sync::CancellationToken;

/// The services `sloop up` runs, in the order they start: each after the ones it calls, the
/// gateway last, once everything it routes to listens.
pub const SERVICES: [&str; 9] = [
    "user",
    "auth",
    "chat",
    "store",
    "payment",
    "notification",
    "audit",
    "batch",
    "gateway",
];

/// How long every service together may take to report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How `sloop up` runs the platform.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Where each service keeps its SQLite file (`<service>.db`).
    pub data_dir: PathBuf,
    /// The address every service listens on.
    pub host: IpAddr,
    pub ports: Ports,
    /// Emails that get the admin role when they register.
    pub admin_emails: Vec<String>,
    /// The gateway's routes; the built-in ones when `None`.
    pub gateway_config: Option<GatewayConfig>,
    /// Settings every service shares (limits, shutdown timeout, chaos).
    pub service_args: ServiceArgs,
    /// Worker threads of each service's runtime.
    pub threads_per_service: usize,
}

/// Which port each service listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ports {
    /// Each service's conventional port (gateway 8080 ... payment 8088) plus an offset.
    Conventional { offset: u16 },
    /// Any free port, picked by the system (the summary says which).
    Any,
}

/// Why the platform did not come up.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error("cannot create the data directory {dir}: {source}")]
    DataDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{service}'s port {port} plus --port-offset {offset} is past 65535; pick a smaller offset"
    )]
    PortOutOfRange {
        service: &'static str,
        port: u16,
        offset: u16,
    },
    #[error("{service} did not start: {reason}")]
    Start {
        service: &'static str,
        reason: String,
    },
    #[error(
        "{service} did not report ready within {READY_TIMEOUT:?} at {url}; its log lines above say why"
    )]
    NotReady { service: &'static str, url: String },
    #[error("{service} stopped with an error: {source}")]
    Stop {
        service: &'static str,
        source: StartError,
    },
}

/// One service running on its own runtime thread.
struct RunningService {
    name: &'static str,
    url: String,
    stop: CancellationToken,
    thread: JoinHandle<Result<(), StartError>>,
}

/// The running platform.
pub struct Platform {
    services: Vec<RunningService>,
    started_in: Duration,
    data_dir: PathBuf,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.services.iter().map(|s| (s.name, &s.url)))
            .finish()
    }
}

impl Platform {
    /// Starts every service and waits until each one's `/readyz` answers 200. A service that
    /// fails to start stops the ones already running.
    pub async fn start(options: UpOptions) -> Result<Self, UpError> {
        let started = Instant::now();
        std::fs::create_dir_all(&options.data_dir).map_err(|source| UpError::DataDir {
            dir: options.data_dir.clone(),
            source,
        })?;
        let bus = EventBus::Memory(MemoryBus::new());
        let mut platform = Self {
            services: Vec::new(),
            started_in: Duration::ZERO,
            data_dir: options.data_dir.clone(),
        };
        for name in SERVICES {
            let result = platform.launch(name, &options, &bus).await;
            if let Err(err) = result {
                let _ = platform.stop().await;
                return Err(err);
            }
        }
        if let Err(err) = platform.wait_until_ready().await {
            let _ = platform.stop().await;
            return Err(err);
        }
        platform.started_in = started.elapsed();
        Ok(platform)
    }

    async fn launch(
        &mut self,
        name: &'static str,
        options: &UpOptions,
        bus: &EventBus,
    ) -> Result<(), UpError> {
        let upstreams: BTreeMap<String, String> = self
            .services
            .iter()
            .map(|s| (s.name.to_owned(), s.url.clone()))
            .collect();
        let service = build_service(name, options, &upstreams);
        let port = listen_port(name, service.port(), options.ports)?;
        let mut settings = Settings::from_args(&options.service_args, port, bus.clone());
        settings.listen = SocketAddr::new(options.host, port);
        settings.database_url = Some(format!(
            "sqlite://{}",
            options.data_dir.join(format!("{name}.db")).display()
        ));
        settings.upstream_urls = upstreams;
        let running = spawn(service, settings, options.threads_per_service).await?;
        self.services.push(running);
        Ok(())
    }

    async fn wait_until_ready(&self) -> Result<(), UpError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("a plain HTTP client builds");
        let deadline = Instant::now() + READY_TIMEOUT;
        for service in &self.services {
            let url = format!("{}/readyz", service.url);
            loop {
                let ready = client
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ready {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(UpError::NotReady {
                        service: service.name,
                        url,
                    });
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// Each service's name and base URL, in start order.
    pub fn services(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.services.iter().map(|s| (s.name, s.url.as_str()))
    }

    /// The base URL of service `name`, if it runs.
    pub fn url(&self, name: &str) -> Option<&str> {
        self.services()
            .find(|(n, _)| *n == name)
            .map(|(_, url)| url)
    }

    /// From the start until every service reported ready.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// What runs where, and where telemetry goes: printed once everything is ready.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "sloop {}: the platform is up ({} services, ready in {:.2} s)\n\n",
            env!("CARGO_PKG_VERSION"),
            self.services.len(),
            self.started_in.as_secs_f64()
        );
        for (name, url) in self.services().filter(|(n, _)| *n == "gateway") {
            text.push_str(&format!(
                "  {name:<13} {url}   <- the API: {url}/api/... (OpenAPI at each service's /openapi.json)\n"
            ));
        }
        for (name, url) in self.services().filter(|(n, _)| *n != "gateway") {
            text.push_str(&format!(
                "  {name:<13} {url}   /healthz /readyz /metrics /openapi.json\n"
            ));
        }
        text.push('\n');
        for (what, where_to) in telemetry_destinations(&self.data_dir) {
            text.push_str(&format!("  {what:<13} {where_to}\n"));
        }
        text.push_str("\nCtrl-C stops everything.\n");
        text
    }

    /// Stops the services in reverse start order (the gateway first, so no request reaches
    /// a service that already stopped), each draining its requests and flushing its outbox.
    pub async fn stop(self) -> Result<(), UpError> {
        let mut first_error = None;
        for service in self.services.into_iter().rev() {
            service.stop.cancel();
            let name = service.name;
            let joined = tokio::task::spawn_blocking(move || service.thread.join())
                .await
                .map_err(|e| e.to_string())
                .and_then(|joined| joined.map_err(|_| "its runtime thread panicked".to_owned()));
            let error = match joined {
                Ok(Ok(())) => None,
                Ok(Err(source)) => Some(UpError::Stop {
                    service: name,
                    source,
                }),
                Err(reason) => Some(UpError::Stop {
                    service: name,
                    source: StartError::Setup(reason),
                }),
            };
            if let Some(error) = error {
                tracing::error!(service = name, error = %error, "did not stop cleanly");
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// The service `name`, set up as `sloop up` runs it.
fn build_service(
    name: &'static str,
    options: &UpOptions,
    upstreams: &BTreeMap<String, String>,
) -> Service {
    match name {
        "user" => sloop_user::service(),
        "auth" => sloop_auth::service(AuthSettings {
            admin_emails: options.admin_emails.clone(),
            ..AuthSettings::default()
        }),
        "store" => sloop_store::service(Default::default()),
        "payment" => sloop_payment::service(Default::default()),
        "notification" => sloop_notification::service(Default::default()),
        "audit" => sloop_audit::service(),
        "batch" => sloop_batch::service(Default::default()),
        "chat" => sloop_chat::service(Default::default()),
        "gateway" => {
            let mut config = options
                .gateway_config
                .clone()
                .unwrap_or_else(GatewayConfig::defaults);
            for (upstream, url) in upstreams {
                if config.upstreams.contains_key(upstream) {
                    config.set_upstream(upstream, url);
                }
            }
            sloop_gateway::service(config)
        }
        other => unreachable!("SERVICES names no service {other}"),
    }
}

fn listen_port(service: &'static str, port: u16, ports: Ports) -> Result<u16, UpError> {
    match ports {
        Ports::Any => Ok(0),
        Ports::Conventional { offset } => port.checked_add(offset).ok_or(UpError::PortOutOfRange {
            service,
            port,
            offset,
        }),
    }
}

/// Starts `service` on a runtime of its own, on a thread of its own, every thread of it in
/// the service's telemetry scope; returns once it listens.
async fn spawn(
    service: Service,
    settings: Settings,
    threads: usize,
) -> Result<RunningService, UpError> {
    let name = service.name();
    let stop = CancellationToken::new();
    let (ready, listening) = tokio::sync::oneshot::channel();
    let stopped = stop.clone();
    let thread = std::thread::Builder::new()
        .name(format!("sloop-{name}"))
        .spawn(move || {
            telemetry::scope::enter(name);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads.max(1))
                .thread_name(format!("sloop-{name}"))
                .on_thread_start(move || telemetry::scope::enter(name))
                .enable_all()
                .build()
                .map_err(|e| StartError::Setup(format!("cannot start a runtime: {e}")));
            let runtime = match runtime {
                Ok(runtime) => runtime,
                Err(err) => {
                    let _ = ready.send(Err(err.to_string()));
                    return Err(err);
                }
            };
            runtime.block_on(async move {
                let running = match service.start(settings).await {
                    Ok(running) => running,
                    Err(err) => {
                        let _ = ready.send(Err(err.to_string()));
                        return Err(err);
                    }
                };
                let _ = ready.send(Ok(running.addr()));
                running.run_until(stopped.cancelled_owned()).await
            })
        })
        .map_err(|e| UpError::Start {
            service: name,
            reason: format!("cannot start its thread: {e}"),
        })?;
    let addr = match listening.await {
        Ok(Ok(addr)) => addr,
        Ok(Err(reason)) => {
            return Err(UpError::Start {
                service: name,
                reason,
            });
        }
        Err(_) => {
            return Err(UpError::Start {
                service: name,
                reason: "its runtime thread ended before it listened".to_owned(),
            });
        }
    };
    Ok(RunningService {
        name,
        url: format!("http://{addr}"),
        stop,
        thread,
    })
}

/// Where each kind of telemetry goes, from the standard environment variables.
fn telemetry_destinations(data_dir: &std::path::Path) -> Vec<(&'static str, String)> {
    let var = |key: &str| std::env::var(key).ok().filter(|v| !v.trim().is_empty());
    let traces = match var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))
    {
        _ if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) => {
            "off (OTEL_SDK_DISABLED=true)".to_owned()
        }
        Some(endpoint) => format!("OTLP to {endpoint}, one service.name per service"),
        None => {
            "not exported; set OTEL_EXPORTER_OTLP_ENDPOINT (e.g. http://localhost:4318 for Jaeger)"
                .to_owned()
        }
    };
    let logs = match var("LOKI_URL") {
        Some(url) => format!("stdout, and Loki at {url}"),
        None => "stdout (LOG_FORMAT=json for JSON lines; LOKI_URL to push to Loki)".to_owned(),
    };
    let errors = match var("SENTRY_DSN") {
        Some(_) => "Sentry (SENTRY_DSN)".to_owned(),
        None => "not reported; set SENTRY_DSN to send them to Sentry".to_owned(),
    };
    vec![
        (
            "data",
            format!("{} (one SQLite file per service)", data_dir.display()),
        ),
        ("events", "in-memory bus, in this process".to_owned()),
        ("traces", traces),
        (
            "metrics",
            "each service's own /metrics, listed above".to_owned(),
        ),
        ("logs", logs),
        ("errors", errors),
    ]
}
