//! The whole platform in this test process: every service on its own port and its own
//! SQLite database, events on one in-memory bus, the gateway in front — the embedded mode,
//! started through the same service descriptions as the binaries.

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
    pub async fn start() -> Self {
        let bus = EventBus::Memory(MemoryBus::new());
        let start = |service: Service| {
            TestApp::builder(service)
                .backend(TestBackend::Sqlite)
                .bus(bus.clone())
        };
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

    pub async fn stop(self) {
        self.gateway.stop().await;
        for (_, app) in self.services.into_iter().rev() {
            app.stop().await;
        }
    }
}
