//! Running the platform as separate processes, the way it is deployed: each service's own
//! binary against its own PostgreSQL database, events over a Kafka-protocol broker, spans
//! exported over OTLP. Tests drive it through the gateway.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use sloop_kit::testing::{Broker, TestBackend, fresh_database_url};
use tokio::process::{Child, Command};

pub mod api;
pub mod in_process;
pub mod monitoring;
pub mod shop;

/// A binary of another workspace package, built beside this test's own (`cargo test
/// --workspace` builds them all); panics saying how to build it when it is missing.
pub fn workspace_binary(name: &str, package: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join(name))
        .expect("tests run from target/<profile>/deps");
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build -p {package}` (./scripts/test.sh builds everything)",
        path.display()
    );
    path
}

/// The gateway's built-in configuration (`services/gateway/gateway.yaml`) with another rate
/// limit, written to a temporary file for `--config`.
pub fn gateway_config_file(rate: u32, burst: u32) -> PathBuf {
    let builtin = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../services/gateway/gateway.yaml"
    );
    let text = std::fs::read_to_string(builtin).expect("the gateway's built-in configuration");
    let default = "rate_limit: { rate: 100, burst: 200 }";
    assert!(
        text.contains(default),
        "the built-in rate limit changed shape"
    );
    let text = text.replace(
        default,
        &format!("rate_limit: {{ rate: {rate}, burst: {burst} }}"),
    );
    let path = std::env::temp_dir().join(format!("gateway-{}.yaml", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, text).expect("write the gateway configuration");
    path
}

/// A free loopback port (the services must know each other's ports before starting).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One service process.
pub struct Process {
    pub name: &'static str,
    pub port: u16,
    binary: PathBuf,
    env: BTreeMap<String, String>,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Process {
    /// `binary` is this crate's `platform-service`.
    pub fn new(binary: &std::path::Path, name: &'static str, port: u16) -> Self {
        Self {
            name,
            port,
            binary: binary.to_owned(),
            env: BTreeMap::new(),
            args: vec![name.into(), "--listen".into(), format!("127.0.0.1:{port}")],
            log: std::env::temp_dir().join(format!(
                "sloop-{name}-{}.log",
                uuid::Uuid::new_v4().simple()
            )),
            child: None,
        }
    }

    /// A service's own binary (`sloop-user`, …), which takes `--listen` directly.
    pub fn standalone(binary: &std::path::Path, name: &'static str, port: u16) -> Self {
        let mut process = Self::new(binary, name, port);
        process.args.remove(0);
        process
    }

    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.insert(key.to_owned(), value.into());
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Starts it and waits until `/readyz` answers 200.
    pub async fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the log");
        let child = Command::new(&self.binary)
            .args(&self.args)
            .envs(&self.env)
            .env("LOG_FORMAT", "json")
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ready = client.get(self.url("/readyz")).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("{} exited with {status}:\n{}", self.name, self.log());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} was not ready within 30 s:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, and waits for a clean exit (status 0).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await;
            }
            let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .unwrap_or_else(|_| panic!("{} did not stop within 30 s", self.name))
                .expect("wait for the process");
            assert!(
                status.success(),
                "{} exited with {status}:\n{}",
                self.name,
                self.log()
            );
        }
    }

    /// SIGKILL: no shutdown, no flush, as a crash or an OOM kill would end it.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill the process");
        }
    }

    /// The database it was started with (`DATABASE_URL`).
    pub fn database_url(&self) -> Option<&str> {
        self.env.get("DATABASE_URL").map(String::as_str)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The platform's services as processes, each with its own PostgreSQL database, events on
/// a Tansu broker, spans to `otlp`: user, auth and the gateway, plus (with
/// [`Platform::start_with_shop`]) store, payment, notification, audit, batch and chat.
pub struct Platform {
    pub broker: Broker,
    pub user: Process,
    pub auth: Process,
    pub gateway: Process,
    /// store, payment, notification, audit, batch and chat, when started.
    pub shop: Vec<Process>,
}

/// The services behind the shop, in start order.
pub const SHOP: [&str; 6] = ["store", "payment", "notification", "audit", "batch", "chat"];

impl Platform {
    /// `binary` is the `platform-service` executable (`env!("CARGO_BIN_EXE_platform-service")`).
    pub async fn start(
        binary: &std::path::Path,
        otlp_endpoint: &str,
        gateway_config: &std::path::Path,
    ) -> Self {
        Self::start_services(binary, otlp_endpoint, gateway_config, &[]).await
    }

    /// Every service, the shop's included.
    pub async fn start_with_shop(
        binary: &std::path::Path,
        otlp_endpoint: &str,
        gateway_config: &std::path::Path,
    ) -> Self {
        Self::start_services(binary, otlp_endpoint, gateway_config, &SHOP).await
    }

    async fn start_services(
        bin: &std::path::Path,
        otlp_endpoint: &str,
        gateway_config: &std::path::Path,
        shop: &[&'static str],
    ) -> Self {
        let broker = Broker::start().await;
        let bus = broker.url().to_string();
        let (user_port, auth_port, gateway_port) = (free_port(), free_port(), free_port());
        let telemetry = |p: Process| {
            p.env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_endpoint)
                .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
                .env("RUST_LOG", "info,librdkafka=warn")
        };
        let mut user = telemetry(Process::new(bin, "user", user_port))
            .env(
                "DATABASE_URL",
                fresh_database_url(TestBackend::Postgres).await,
            )
            .env("EVENT_BUS", &bus);
        let mut auth = telemetry(Process::new(bin, "auth", auth_port))
            .env(
                "DATABASE_URL",
                fresh_database_url(TestBackend::Postgres).await,
            )
            .env("EVENT_BUS", &bus)
            .env("UPSTREAMS", format!("user=http://127.0.0.1:{user_port}"))
            .env("AUTH_ADMIN_EMAILS", shop::ADMIN_EMAIL)
            .env("AUTH_HASH_MEMORY_KIB", "1024")
            .env("AUTH_HASH_ITERATIONS", "1");
        let mut upstreams =
            format!("user=http://127.0.0.1:{user_port},auth=http://127.0.0.1:{auth_port}");
        let mut shop_processes = Vec::new();
        for name in shop {
            let process = telemetry(Process::new(bin, name, free_port()))
                .env(
                    "DATABASE_URL",
                    fresh_database_url(TestBackend::Postgres).await,
                )
                .env("EVENT_BUS", &bus)
                // A delivery claimed by a killed instance comes due again after this.
                .env("NOTIFICATION_DELIVERY_CLAIM_MS", "3000");
            upstreams.push_str(&format!(",{name}=http://127.0.0.1:{}", process.port));
            shop_processes.push(process);
        }
        let mut gateway = telemetry(Process::new(bin, "gateway", gateway_port))
            .arg("--config")
            .arg(gateway_config.display().to_string())
            .env("UPSTREAMS", upstreams);
        user.start().await;
        auth.start().await;
        for process in &mut shop_processes {
            process.start().await;
        }
        gateway.start().await;
        Self {
            broker,
            user,
            auth,
            gateway,
            shop: shop_processes,
        }
    }

    /// The shop service `name`. Panics when the shop was not started.
    pub fn service(&mut self, name: &str) -> &mut Process {
        self.shop
            .iter_mut()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("{name} is not running; use Platform::start_with_shop"))
    }

    pub async fn stop(mut self) {
        self.gateway.stop().await;
        for process in self.shop.iter_mut().rev() {
            process.stop().await;
        }
        self.auth.stop().await;
        self.user.stop().await;
        self.broker.stop().await;
    }
}
