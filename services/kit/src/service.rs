//! The service chassis. A service is described once — name, port, database migrations, the
//! events it publishes and consumes, its background workers, the services it calls, its
//! API and OpenAPI document — and started by one function that wires telemetry, the
//! database, the event bus, the outbox relay, the probes and graceful shutdown around it.
//!
//! ```no_run
//! # use sloop_kit::{Service, ServiceArgs};
//! # fn router(_: &sloop_kit::Context) -> axum::Router { axum::Router::new() }
//! # async fn main_(args: ServiceArgs) -> Result<(), sloop_kit::StartError> {
//! # static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate::Migrator::DEFAULT;
//! let service = Service::new("user", 8082)
//!     .database(&MIGRATIONS)
//!     .api(router);
//! sloop_kit::run(service, args).await
//! # }
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use futures::future::BoxFuture;
use sqlx::migrate::Migrator;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use utoipa::openapi::OpenApi;

use crate::bus::{BusError, EventBus};
use crate::config::ServiceArgs;
use crate::consumer::{self, Consumer};
use crate::db::{Database, DbError, redact};
use crate::event::{DEAD_LETTER_SUFFIX, EventType};
use crate::health::Check;
use crate::outbox::{Outbox, Relay, RelaySettings};
use crate::retention::{self, Retention};
use crate::server::{Limits, Server, app};
use crate::upstream::{CallPolicy, Upstream};

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("telemetry: {0}")]
    Telemetry(#[from] telemetry::InitError),
    #[error("database: {0}")]
    Database(#[from] DbError),
    #[error("event bus: {0}")]
    Bus(#[from] BusError),
    #[error(
        "cannot listen on {addr}: {source}; is another process using it? pick one with --listen"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
    #[error("{0}")]
    Setup(String),
}

type ApiFn = Box<dyn FnOnce(&Context) -> Router + Send>;
type HandlerFn = Box<dyn FnOnce(&Context) -> Consumer + Send>;
type WorkerFn = Box<dyn FnOnce(Context, CancellationToken) -> BoxFuture<'static, ()> + Send>;
type CheckFn = Box<dyn FnOnce(&Context) -> Check + Send>;

/// A service, described once.
pub struct Service {
    name: &'static str,
    port: u16,
    migrations: Option<&'static Migrator>,
    publishes: Vec<EventType>,
    consumers: Vec<(String, HandlerFn)>,
    workers: Vec<(&'static str, WorkerFn)>,
    upstreams: Vec<(&'static str, u16, CallPolicy)>,
    checks: Vec<CheckFn>,
    api: Option<ApiFn>,
    openapi: Option<OpenApi>,
    relay: RelaySettings,
    describe_metrics: Vec<fn()>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.name)
            .field("port", &self.port)
            .field("publishes", &self.publishes)
            .field(
                "consumers",
                &self.consumers.iter().map(|(g, _)| g).collect::<Vec<_>>(),
            )
            .field(
                "workers",
                &self.workers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("upstreams", &self.upstreams)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// `name` is the service's identity in telemetry (`service` label, `service.name`) and
    /// names its default SQLite file; `port` is its conventional port.
    pub fn new(name: &'static str, port: u16) -> Self {
        Self {
            name,
            port,
            migrations: None,
            publishes: Vec::new(),
            consumers: Vec::new(),
            workers: Vec::new(),
            upstreams: Vec::new(),
            checks: Vec::new(),
            api: None,
            openapi: None,
            relay: RelaySettings::default(),
            describe_metrics: Vec::new(),
        }
    }

    /// The service owns a database with these migrations (the kit adds its outbox,
    /// processed-events and lease tables beside them).
    pub fn database(mut self, migrations: &'static Migrator) -> Self {
        self.migrations = Some(migrations);
        self
    }

    /// Events the service writes to its outbox.
    pub fn publishes(mut self, events: &[EventType]) -> Self {
        self.publishes.extend_from_slice(events);
        self
    }

    /// A consumer group; `build` makes its handler once the database and bus exist.
    pub fn consumes<F>(mut self, group: &str, build: F) -> Self
    where
        F: FnOnce(&Context) -> Consumer + Send + 'static,
    {
        self.consumers.push((group.to_owned(), Box::new(build)));
        self
    }

    /// A background task. It must return soon after `stop` is cancelled.
    pub fn worker<F, Fut>(mut self, name: &'static str, work: F) -> Self
    where
        F: FnOnce(Context, CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.workers
            .push((name, Box::new(move |ctx, stop| Box::pin(work(ctx, stop)))));
        self
    }

    /// Another service this one calls, at `127.0.0.1:<port>` unless `--upstream NAME=URL`
    /// says otherwise.
    pub fn upstream(self, name: &'static str, port: u16) -> Self {
        self.upstream_with(name, port, CallPolicy::default())
    }

    pub fn upstream_with(mut self, name: &'static str, port: u16, policy: CallPolicy) -> Self {
        self.upstreams.push((name, port, policy));
        self
    }

    /// A readiness check of the service's own, beside the database's.
    pub fn readiness<F>(mut self, build: F) -> Self
    where
        F: FnOnce(&Context) -> Check + Send + 'static,
    {
        self.checks.push(Box::new(build));
        self
    }

    /// The HTTP API, built once the database, bus and upstreams exist.
    pub fn api<F>(mut self, build: F) -> Self
    where
        F: FnOnce(&Context) -> Router + Send + 'static,
    {
        self.api = Some(Box::new(build));
        self
    }

    /// The API's OpenAPI document, served at `/openapi.json` after the kit adds the error
    /// responses its layers produce.
    pub fn openapi(mut self, doc: OpenApi) -> Self {
        self.openapi = Some(crate::openapi::complete(doc));
        self
    }

    /// Gives the service's own metrics their help text. It runs at start, once the metrics
    /// recorder is installed: descriptions given before that are lost, and promtool then
    /// rejects the exposition for missing help.
    pub fn metrics(mut self, describe: fn()) -> Self {
        self.describe_metrics.push(describe);
        self
    }

    pub fn relay_settings(mut self, settings: RelaySettings) -> Self {
        self.relay = settings;
        self
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The completed OpenAPI document, if the service has one.
    pub fn openapi_doc(&self) -> Option<&OpenApi> {
        self.openapi.as_ref()
    }

    /// Starts the service: database and migrations, API, outbox relay, consumers and
    /// workers. Telemetry must already be initialised (see [`run`]).
    pub async fn start(self, settings: Settings) -> Result<Running, StartError> {
        let name = self.name;
        telemetry::metrics::install();
        for describe in &self.describe_metrics {
            describe();
        }
        let chaos = settings
            .chaos
            .resolve(name)
            .map_err(|err| StartError::Setup(err.to_string()))?;
        let faults = chaos.as_ref().map(|c| c.faults.clone());
        let db = match (self.migrations, &settings.database_url) {
            (Some(migrations), url) => {
                let url = url
                    .clone()
                    .unwrap_or_else(|| format!("sqlite://sloop-{name}.db"));
                Some(
                    Database::connect(
                        &url,
                        settings.db_max_connections,
                        migrations,
                        faults.clone(),
                    )
                    .await?,
                )
            }
            (None, _) => None,
        };
        let upstreams = self
            .upstreams
            .iter()
            .map(|(upstream, port, policy)| {
                let url = settings
                    .upstream_urls
                    .get(*upstream)
                    .cloned()
                    .unwrap_or_else(|| format!("http://127.0.0.1:{port}"));
                (*upstream, Upstream::new(name, upstream, &url, *policy))
            })
            .collect();
        let stopping = CancellationToken::new();
        let ctx = Context(Arc::new(ContextInner {
            service: name,
            db: db.clone(),
            outbox: Outbox::new(name),
            bus: settings.bus.clone(),
            upstreams,
            stopping: stopping.clone(),
        }));

        let consumers: Vec<Consumer> = self
            .consumers
            .into_iter()
            .map(|(_, build)| build(&ctx))
            .collect();
        if !consumers.is_empty() && db.is_none() {
            return Err(StartError::Setup(format!(
                "service {name} consumes events but has no database to record them in; declare .database(...)"
            )));
        }
        let all_topics = topics(&self.publishes, &consumers);
        let mut checks: Vec<Check> = db.iter().cloned().map(Check::database).collect();
        checks.extend(self.checks.into_iter().map(|build| build(&ctx)));
        let mut api = self.api.map(|build| build(&ctx));
        if let Some(doc) = self.openapi {
            api = Some(api.unwrap_or_default().merge(crate::openapi::router(doc)));
        }
        let router = app(name, api, checks, settings.limits, chaos.as_ref());
        let server = Server::bind(settings.listen, router).await?;
        let addr = server.local_addr();

        let tracker = TaskTracker::new();
        let relay_stop = CancellationToken::new();
        let mut relay_task = None;
        if let Some(db) = &db {
            let relay = Relay::new(
                name,
                db.clone(),
                settings.bus.clone(),
                ctx.outbox().clone(),
                self.relay,
            )
            .with_faults(faults.clone());
            let bus = settings.bus.clone();
            let (stop, drain) = (relay_stop.clone(), settings.shutdown_timeout);
            let publish_topics = topics(&self.publishes, &[]);
            relay_task = Some(tokio::spawn(async move {
                if ensure_topics(&bus, &publish_topics, &stop).await {
                    relay.run(stop, drain).await;
                }
            }));
        }
        for consumer in consumers {
            let running = consumer::Running {
                service: name,
                db: db.clone().expect("checked above"),
                bus: settings.bus.clone(),
                outbox: ctx.outbox().clone(),
                consumer,
                faults: faults.clone(),
            };
            let stop = stopping.clone();
            let topics = all_topics.clone();
            tracker.spawn(async move {
                if ensure_topics(&running.bus, &topics, &stop).await {
                    running.run(stop).await;
                }
            });
        }
        if let Some(chaos) = &chaos {
            tracker.spawn(chaos.faults.clone().run_sweeper(stopping.clone()));
        }
        if let Some(db) = &db {
            let (db, stop) = (db.clone(), stopping.clone());
            tracker.spawn(retention::run(name, db, settings.retention, stop));
        }
        for (worker, work) in self.workers {
            let future = work(ctx.clone(), stopping.clone());
            tracker.spawn(async move {
                future.await;
                tracing::debug!(worker, "worker stopped");
            });
        }
        tracker.close();

        let (stop_server, server_stopped) = oneshot::channel::<()>();
        let grace = settings.shutdown_timeout;
        let server_task = tokio::spawn(async move {
            server
                .run_until_stopped(
                    async move {
                        let _ = server_stopped.await;
                    },
                    grace,
                )
                .await
        });
        tracing::info!(
            service = name,
            address = %addr,
            database = db.as_ref().map(|_| redact(settings.database_url.as_deref().unwrap_or("sqlite"))).unwrap_or_default(),
            event_bus = settings.bus.system(),
            "listening"
        );
        Ok(Running {
            ctx,
            addr,
            stop_server: Some(stop_server),
            server_task,
            tracker,
            stopping,
            relay_stop,
            relay_task,
            grace,
        })
    }
}

/// Every topic a service touches: what it publishes, what it consumes and their dead-letter
/// topics. Kafka brokers that do not create topics on first use need them created up front.
fn topics(publishes: &[EventType], consumers: &[Consumer]) -> Vec<String> {
    let mut topics: Vec<String> = publishes.iter().map(|e| e.topic.to_owned()).collect();
    for consumer in consumers {
        for topic in consumer.topics() {
            topics.push(topic.clone());
            topics.push(format!("{topic}{DEAD_LETTER_SUFFIX}"));
        }
    }
    topics.sort();
    topics.dedup();
    topics
}

/// Creates `topics` on the bus, retrying while the broker is unreachable. Returns false
/// when stopped first.
async fn ensure_topics(bus: &EventBus, topics: &[String], stop: &CancellationToken) -> bool {
    let mut wait = Duration::from_millis(200);
    loop {
        match bus.ensure_topics(topics).await {
            Ok(()) => return true,
            Err(err) => tracing::warn!(error = %err, "cannot create topics yet; retrying"),
        }
        tokio::select! {
            _ = stop.cancelled() => return false,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

/// Where and how one instance of a service runs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// `None`: `sqlite://sloop-<service>.db` in the working directory.
    pub database_url: Option<String>,
    pub db_max_connections: u32,
    pub bus: EventBus,
    /// Base URLs by upstream name, overriding the platform's ports.
    pub upstream_urls: BTreeMap<String, String>,
    pub limits: Limits,
    /// How long each stage of shutdown may take.
    pub shutdown_timeout: Duration,
    /// Fault injection: off by default.
    pub chaos: chaos::Switch,
    /// How long the kit's own rows (published outbox events, applied-event ids) are kept.
    pub retention: Retention,
}

impl Settings {
    /// Settings from the command line, with the bus already connected (services in one
    /// process share one).
    pub fn from_args(args: &ServiceArgs, default_port: u16, bus: EventBus) -> Self {
        Self {
            listen: args
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], default_port))),
            database_url: args.database_url.clone(),
            db_max_connections: args.db_max_connections,
            bus,
            upstream_urls: args.upstreams.iter().cloned().collect(),
            limits: Limits::from(args),
            shutdown_timeout: args.shutdown_timeout,
            chaos: args.chaos_switch(),
            retention: args.retention(),
        }
    }
}

/// What handlers, consumers and workers share: the database, the outbox, the bus, the
/// upstream clients and the shutdown signal. Cheap to clone.
#[derive(Clone)]
pub struct Context(Arc<ContextInner>);

struct ContextInner {
    service: &'static str,
    db: Option<Database>,
    outbox: Outbox,
    bus: EventBus,
    upstreams: BTreeMap<&'static str, Upstream>,
    stopping: CancellationToken,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("service", &self.0.service)
            .finish_non_exhaustive()
    }
}

impl Context {
    pub fn service(&self) -> &'static str {
        self.0.service
    }

    /// The service's database. Panics if the service declared none: that is a wiring
    /// mistake found on the first start, not a runtime condition.
    pub fn db(&self) -> &Database {
        self.0
            .db
            .as_ref()
            .unwrap_or_else(|| panic!("service {} declared no database", self.0.service))
    }

    pub fn outbox(&self) -> &Outbox {
        &self.0.outbox
    }

    pub fn bus(&self) -> &EventBus {
        &self.0.bus
    }

    /// The client for upstream `name`. Panics if the service did not declare it, for the
    /// same reason as [`Context::db`].
    pub fn upstream(&self, name: &str) -> &Upstream {
        self.0
            .upstreams
            .get(name)
            .unwrap_or_else(|| panic!("service {} declared no upstream {name}", self.0.service))
    }

    /// Cancelled when the service starts shutting down.
    pub fn stopping(&self) -> &CancellationToken {
        &self.0.stopping
    }
}

/// A started service.
pub struct Running {
    ctx: Context,
    addr: SocketAddr,
    stop_server: Option<oneshot::Sender<()>>,
    server_task: tokio::task::JoinHandle<Result<(), StartError>>,
    /// Consumers and workers.
    tracker: TaskTracker,
    stopping: CancellationToken,
    relay_stop: CancellationToken,
    relay_task: Option<tokio::task::JoinHandle<()>>,
    grace: Duration,
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Waits until the server stops by itself (an error) or `signal` completes, then
    /// shuts down.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> Result<(), StartError> {
        tokio::select! {
            result = &mut self.server_task => {
                let result = result.unwrap_or_else(|e| Err(StartError::Setup(format!("server task failed: {e}"))));
                self.stop_workers().await;
                return result;
            }
            _ = signal => {}
        }
        self.shutdown().await
    }

    /// Stops in order: stop accepting and drain in-flight requests; stop consumers after
    /// their current message and workers; flush the outbox relay; close the bus and the
    /// database. Each stage gets at most the shutdown timeout.
    pub async fn shutdown(mut self) -> Result<(), StartError> {
        tracing::info!(grace = ?self.grace, "shutting down: draining in-flight requests");
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
        let served = (&mut self.server_task)
            .await
            .unwrap_or_else(|e| Err(StartError::Setup(format!("server task failed: {e}"))));
        self.stop_workers().await;
        served
    }

    async fn stop_workers(&mut self) {
        self.stopping.cancel();
        if tokio::time::timeout(self.grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("consumers or workers still running after the grace period");
        }
        // The relay last, so events the consumers and workers wrote still go out.
        self.relay_stop.cancel();
        if let Some(relay) = self.relay_task.take()
            && tokio::time::timeout(self.grace * 2, relay).await.is_err()
        {
            tracing::warn!("outbox relay still flushing after the grace period; stopping anyway");
        }
        if let Some(db) = &self.ctx.0.db {
            db.close().await;
        }
    }
}

/// Runs a service from start to clean exit: telemetry, the bus, [`Service::start`], and on
/// SIGTERM or Ctrl-C the ordered shutdown and the telemetry flush.
pub async fn run(service: Service, args: ServiceArgs) -> Result<(), StartError> {
    let telemetry = telemetry::init(service.name())?;
    let bus = EventBus::connect(&args.event_bus, service.name())?;
    if bus.system() == "memory" && !service.consumers.is_empty() {
        tracing::warn!(
            "the event bus is `memory`: only services in this process reach these consumers; \
             run `sloop up`, or use --event-bus kafka://HOST:PORT for separate processes"
        );
    }
    let settings = Settings::from_args(&args, service.port(), bus);
    let result = match service.start(settings).await {
        Ok(running) => running.run_until(crate::server::shutdown_signal()).await,
        Err(err) => Err(err),
    };
    tracing::info!("stopped; flushing telemetry");
    telemetry.shutdown().await;
    result
}
