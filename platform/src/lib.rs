//! `sloop up`: every service of the platform in this one process, each on its own port, its
//! own SQLite file and its own Tokio runtime, events on one in-memory bus.
//!
//! Each service's runtime threads are entered into its telemetry scope, so its spans, metrics
//! and log lines carry its own name, as they do when it runs as its own process.
//!
//! Chat may run as several instances (`--chat-instances`), as it does behind a balancing
//! gateway in production: each is its own scope (`chat#2`), with its own port and its own
//! registry, sharing chat's SQLite file; the gateway takes them in turn and messages cross
//! between them over the bus.

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

/// The scopes of chat's instances, for `--chat-instances` up to its maximum.
const CHAT_SCOPES: [&str; 4] = ["chat", "chat#2", "chat#3", "chat#4"];

/// The most chat instances `sloop up` runs.
pub const MAX_CHAT_INSTANCES: usize = CHAT_SCOPES.len();

/// Chat instance n (from 1) listens on chat's port plus 10·(n−1): 8083, 8093, 8103...
const INSTANCE_PORT_STEP: u16 = 10;

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
    /// How many chat instances run (1 to [`MAX_CHAT_INSTANCES`]).
    pub chat_instances: usize,
}

impl UpOptions {
    /// Every telemetry scope, in start order: each service, and `chat#n` for chat's further
    /// instances. Pass them to `telemetry::init_services`.
    pub fn scopes(&self) -> Vec<&'static str> {
        let chat = self.chat_instances.clamp(1, MAX_CHAT_INSTANCES);
        SERVICES
            .iter()
            .flat_map(|service| match *service {
                "chat" => CHAT_SCOPES[..chat].to_vec(),
                other => vec![other],
            })
            .collect()
    }
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

/// One service (or one instance of it) running on its own runtime thread.
struct RunningService {
    name: &'static str,
    /// The name, or `name#n` for a further instance.
    scope: &'static str,
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
            .entries(self.services.iter().map(|s| (s.scope, &s.url)))
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
        for scope in options.scopes() {
            let result = platform.launch(scope, &options, &bus).await;
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

    /// Starts the service (or the further instance) of `scope`.
    async fn launch(
        &mut self,
        scope: &'static str,
        options: &UpOptions,
        bus: &EventBus,
    ) -> Result<(), UpError> {
        let name = telemetry::scope::service_name(scope);
        let instance = self.services.iter().filter(|s| s.name == name).count();
        let instances = self.instances();
        let service = build_service(name, options, &instances);
        let port = listen_port(scope, service.port(), instance, options.ports)?;
        let mut settings = Settings::from_args(&options.service_args, port, bus.clone());
        settings.listen = SocketAddr::new(options.host, port);
        settings.database_url = Some(format!(
            "sqlite://{}",
            options.data_dir.join(format!("{name}.db")).display()
        ));
        // Services call the first instance of another; only the gateway balances.
        settings.upstream_urls = instances
            .into_iter()
            .map(|(name, mut urls)| (name, urls.swap_remove(0)))
            .collect();
        let running = spawn(service, scope, settings, options.threads_per_service).await?;
        self.services.push(running);
        Ok(())
    }

    /// The URLs of every instance started so far, by service.
    fn instances(&self) -> BTreeMap<String, Vec<String>> {
        let mut urls: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for service in &self.services {
            urls.entry(service.name.to_owned())
                .or_default()
                .push(service.url.clone());
        }
        urls
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
                        service: service.scope,
                        url,
                    });
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// Each service's scope (its name, or `chat#2` for a further instance) and base URL, in
    /// start order.
    pub fn services(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.services.iter().map(|s| (s.scope, s.url.as_str()))
    }

    /// The base URL of service `name` (its first instance), if it runs.
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
        let chat_instances = self.services.iter().filter(|s| s.name == "chat").count();
        let instances = match chat_instances {
            0 | 1 => String::new(),
            n => format!(", {n} chat instances"),
        };
        let mut text = format!(
            "sloop {}: the platform is up ({} services{instances}, ready in {:.2} s)\n\n",
            env!("CARGO_PKG_VERSION"),
            self.services.len() - chat_instances.saturating_sub(1),
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
            let name = service.scope;
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
    instances: &BTreeMap<String, Vec<String>>,
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
            for (upstream, urls) in instances {
                if config.upstreams.contains_key(upstream) {
                    config.set_upstream_instances(upstream, urls);
                }
            }
            sloop_gateway::service(config)
        }
        other => unreachable!("SERVICES names no service {other}"),
    }
}

/// The port of a service's `instance` (from 0): its conventional port plus the offset, and
/// [`INSTANCE_PORT_STEP`] more for each further instance.
fn listen_port(
    service: &'static str,
    port: u16,
    instance: usize,
    ports: Ports,
) -> Result<u16, UpError> {
    match ports {
        Ports::Any => Ok(0),
        Ports::Conventional { offset } => u16::try_from(instance)
            .ok()
            .and_then(|n| n.checked_mul(INSTANCE_PORT_STEP))
            .and_then(|step| port.checked_add(step)?.checked_add(offset))
            .ok_or(UpError::PortOutOfRange {
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
    scope: &'static str,
    settings: Settings,
    threads: usize,
) -> Result<RunningService, UpError> {
    let name = service.name();
    let stop = CancellationToken::new();
    let (ready, listening) = tokio::sync::oneshot::channel();
    let stopped = stop.clone();
    let thread = std::thread::Builder::new()
        .name(format!("sloop-{scope}"))
        .spawn(move || {
            telemetry::scope::enter(scope);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads.max(1))
                .thread_name(format!("sloop-{scope}"))
                .on_thread_start(move || telemetry::scope::enter(scope))
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
            service: scope,
            reason: format!("cannot start its thread: {e}"),
        })?;
    let addr = match listening.await {
        Ok(Ok(addr)) => addr,
        Ok(Err(reason)) => {
            return Err(UpError::Start {
                service: scope,
                reason,
            });
        }
        Err(_) => {
            return Err(UpError::Start {
                service: scope,
                reason: "its runtime thread ended before it listened".to_owned(),
            });
        }
    };
    Ok(RunningService {
        name,
        scope,
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
