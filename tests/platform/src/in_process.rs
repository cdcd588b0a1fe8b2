//! The whole platform in this test process: every service on its own port and its own
//! database, events on one bus, the gateway in front — started through the same service
//! descriptions as the binaries. On SQLite with the in-memory bus it is the embedded mode;
//! on PostgreSQL with a Kafka bus, the distributed mode's data path in one process.

use sloop_auth::AuthSettings;
use sloop_auth::passwords::HashCost;
use sloop_gateway::GatewayConfig;
use sloop_gateway::config::RateLimit;
use sloop_kit::testing::{TestApp, TestBackend};
use sloop_kit::{EventBus, MemoryBus, Service};

use crate::shop::ADMIN_EMAIL;

/// Every service, running.
pub struct InProcess {
    pub gateway: TestApp,
    /// The services behind the gateway, by name.
    pub services: Vec<(&'static str, TestApp)>,
}

impl InProcess {
    /// The embedded mode: SQLite files and the in-memory bus.
    pub async fn start() -> Self {
        Self::start_on(TestBackend::Sqlite, EventBus::Memory(MemoryBus::new())).await
    }

    /// Every service on a fresh database of `backend`, all on `bus`.
    pub async fn start_on(backend: TestBackend, bus: EventBus) -> Self {
        let start = |service: Service| TestApp::builder(service).backend(backend).bus(bus.clone());
        let user = start(sloop_user::service()).spawn().await;
        let auth_settings = AuthSettings {
            hash_cost: HashCost {
                memory_kib: 1024,
                iterations: 1,
            },
            admin_emails: vec![ADMIN_EMAIL.to_owned()],
            ..AuthSettings::default()
        };
        let auth = start(sloop_auth::service(auth_settings))
            .upstream("user", user.url(""))
            .spawn()
            .await;
        let store = start(sloop_store::service(Default::default()))
            .spawn()
            .await;
        let payment = start(sloop_payment::service(Default::default()))
            .spawn()
            .await;
        let notification = start(sloop_notification::service(Default::default()))
            .spawn()
            .await;
        let audit = start(sloop_audit::service()).spawn().await;
        let services = vec![
            ("user", user),
            ("auth", auth),
            ("store", store),
            ("payment", payment),
            ("notification", notification),
            ("audit", audit),
        ];
        let mut config = GatewayConfig::defaults();
        for (name, app) in &services {
            config.set_upstream(name, &app.url(""));
        }
        config.rate_limit = RateLimit {
            rate: 10_000.0,
            burst: 10_000.0,
        };
        let gateway = TestApp::spawn(sloop_gateway::service(config), TestBackend::Sqlite).await;
        Self { gateway, services }
    }

    /// The service `name`. Panics on a name it does not run.
    pub fn service(&self, name: &str) -> &TestApp {
        self.services
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, app)| app)
            .unwrap_or_else(|| panic!("no service {name} in this platform"))
    }

    pub async fn stop(self) {
        self.gateway.stop().await;
        for (_, app) in self.services.into_iter().rev() {
            app.stop().await;
        }
    }
}
