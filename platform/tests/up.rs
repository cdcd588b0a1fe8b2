//! `sloop up` as its users start it: the one binary, every service in one process, chat as
//! two instances. The shop journey passes through its gateway, its two chat users on
//! different instances; each service keeps its own identity, as in the distributed mode
//! (spans over OTLP name the service of each hop, each `/metrics` holds only that service's
//! or instance's series, each log line names its service); SIGTERM stops it cleanly.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use platform_tests::api::ApiClient;
use platform_tests::shop::{ADMIN_EMAIL, eventually, shop_journey};
use serde_json::Value;
use telemetry::testing::{OtlpReceiver, ReceivedSpan};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const SERVER: i32 = 2;

/// Chat instances `sloop up` runs here: the journey's two users land on different ones.
const CHAT_INSTANCES: usize = 2;

/// `sloop up` running as a child process, its stdout collected.
struct SloopUp {
    child: Child,
    urls: BTreeMap<String, String>,
    stdout: Arc<Mutex<Vec<String>>>,
}

impl SloopUp {
    async fn start(otlp: &str, data_dir: &std::path::Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sloop"))
            .args([
                "up",
                "--any-port",
                "--admin-email",
                ADMIN_EMAIL,
                "--chat-instances",
                &CHAT_INSTANCES.to_string(),
                "--data-dir",
            ])
            .arg(data_dir)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            .env("OTEL_BSP_SCHEDULE_DELAY", "200")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info,sqlx=warn")
            .env_remove("OTEL_SERVICE_NAME")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start `sloop up`");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (summary_done, summary) = tokio::sync::oneshot::channel();
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let collected = stdout.clone();
        tokio::spawn(async move {
            let mut summary_done = Some(summary_done);
            while let Ok(Some(line)) = lines.next_line().await {
                let last = line.contains("Ctrl-C stops everything");
                collected.lock().unwrap().push(line);
                if last && let Some(done) = summary_done.take() {
                    let _ = done.send(());
                }
            }
        });
        let printed = tokio::time::timeout(Duration::from_secs(120), summary).await;
        let output = stdout.lock().unwrap().join("\n");
        assert!(
            matches!(printed, Ok(Ok(()))),
            "`sloop up` printed no summary within 120 s:\n{output}"
        );
        let urls = summary_urls(&output);
        let missing: Vec<_> = sloop::SERVICES
            .iter()
            .copied()
            .chain(["chat#2"])
            .filter(|s| !urls.contains_key(*s))
            .collect();
        assert!(
            missing.is_empty(),
            "the summary names no URL for {missing:?}:\n{output}"
        );
        Self {
            child,
            urls,
            stdout,
        }
    }

    fn url(&self, service: &str) -> &str {
        &self.urls[service]
    }

    /// Each JSON log line printed so far.
    fn log_lines(&self) -> Vec<Value> {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.starts_with('{'))
            .map(|line| serde_json::from_str(line).expect("a log line is JSON"))
            .collect()
    }

    /// SIGTERM, and waits for a clean exit.
    async fn stop(mut self) {
        let pid = self.child.id().expect("still running");
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("`sloop up` stops within 60 s of SIGTERM")
            .expect("wait for `sloop up`");
        let tail: Vec<_> = self
            .stdout
            .lock()
            .unwrap()
            .iter()
            .rev()
            .take(30)
            .cloned()
            .collect();
        assert!(
            status.success(),
            "`sloop up` exited with {status}; last lines: {tail:#?}"
        );
    }
}

/// `name -> URL` from the summary's lines (`  store         http://127.0.0.1:PORT   ...`).
fn summary_urls(output: &str) -> BTreeMap<String, String> {
    output
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (name, url) = (words.next()?, words.next()?);
            (line.starts_with("  ") && url.starts_with("http://"))
                .then(|| (name.to_owned(), url.to_owned()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sloop_up_runs_the_shop_and_each_service_keeps_its_own_identity() {
    let receiver = OtlpReceiver::start().await;
    let data_dir = std::env::temp_dir().join(format!("sloop-up-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let platform = SloopUp::start(&receiver.endpoint, &data_dir).await;
    for service in sloop::SERVICES {
        assert!(
            data_dir.join(format!("{service}.db")).exists() || service == "gateway",
            "{service} keeps no SQLite file in {}",
            data_dir.display()
        );
    }

    shop_journey(&ApiClient::new(platform.url("gateway")), CHAT_INSTANCES).await;

    one_order_is_one_trace_across_services(&receiver).await;
    each_metrics_endpoint_holds_only_its_services_series(&platform).await;
    each_log_line_names_its_service(&platform);
    platform.stop().await;
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// An order placed through the gateway is one trace whose spans name gateway, store,
/// payment, notification and audit, each hop under its own service.
async fn one_order_is_one_trace_across_services(receiver: &OtlpReceiver) {
    let wanted: BTreeSet<&str> = ["gateway", "store", "payment", "notification", "audit"].into();
    let trace = eventually(
        "an order's trace across five services",
        Duration::from_secs(30),
        || {
            let spans = receiver.spans();
            let found = spans
                .iter()
                .filter(|s| s.kind == SERVER && s.name == "POST /api/orders")
                .map(|root| trace_of(&spans, &root.trace_id))
                .find(|trace| wanted.iter().all(|w| trace.iter().any(|s| s.service == *w)));
            std::future::ready(found.ok_or_else(|| {
                let services: BTreeSet<_> = spans.iter().map(|s| s.service.clone()).collect();
                format!("{} spans so far, from {services:?}", spans.len())
            }))
        },
    )
    .await;
    for span in &trace {
        let resource_name = span.resource.get("service.name").and_then(|v| v.as_str());
        assert_eq!(resource_name, Some(span.service.as_str()));
    }
    eventually(
        "spans from each chat instance, as chat with an instance id of its own",
        Duration::from_secs(30),
        || {
            let instances: BTreeSet<String> = receiver
                .spans()
                .iter()
                .filter(|s| s.service == "chat")
                .filter_map(|s| {
                    let id = s.resource.get("service.instance.id")?.as_str()?;
                    Some(id.to_owned())
                })
                .collect();
            std::future::ready(if instances.len() == CHAT_INSTANCES {
                Ok(())
            } else {
                Err(format!("chat instances seen: {instances:?}"))
            })
        },
    )
    .await;
    let server = |name: &str| {
        trace
            .iter()
            .find(|s| s.kind == SERVER && s.name == name)
            .unwrap_or_else(|| panic!("no `{name}` server span in the order's trace"))
    };
    assert_eq!(server("POST /api/orders").service, "gateway");
    assert_eq!(server("POST /orders").service, "store");
    let misplaced: Vec<_> = trace
        .iter()
        .filter(|s| s.name.starts_with("POST /api") && s.service != "gateway")
        .map(|s| format!("{} in {}", s.name, s.service))
        .collect();
    assert!(
        misplaced.is_empty(),
        "gateway spans under another service: {misplaced:?}"
    );
}

fn trace_of(spans: &[ReceivedSpan], trace_id: &str) -> Vec<ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.trace_id == trace_id)
        .cloned()
        .collect()
}

/// Each service's own metric family shows on its `/metrics` and on no other; request series
/// of the gateway's `/api` routes only on the gateway's.
async fn each_metrics_endpoint_holds_only_its_services_series(platform: &SloopUp) {
    let own = [
        ("gateway", "gateway_upstream_requests_total"),
        ("store", "store_orders_total"),
        ("payment", "payment_provider_requests_total"),
        ("notification", "notification_deliveries_total"),
        ("audit", "audit_entries_total"),
        ("batch", "batch_read_model_events_total"),
        ("chat", "chat_messages_delivered_total"),
    ];
    let client = reqwest::Client::new();
    for scope in sloop::SERVICES.iter().copied().chain(["chat#2"]) {
        let service = telemetry::scope::service_name(scope);
        let text = client
            .get(format!("{}/metrics", platform.url(scope)))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("metrics text");
        for (owner, family) in own {
            let samples = text.lines().any(|l| l.starts_with(family));
            let named = text.contains(family);
            if owner == service {
                assert!(
                    samples,
                    "{scope}'s /metrics lacks its own {family}:\n{text}"
                );
            } else {
                assert!(!named, "{scope}'s /metrics holds {owner}'s {family}");
            }
        }
        let api_routes = text.contains("route=\"/api/");
        assert_eq!(
            api_routes,
            service == "gateway",
            "{scope}'s /metrics and the gateway's /api routes"
        );
        assert!(
            text.contains("http_server_requests_total"),
            "{scope}'s /metrics lacks its request counter"
        );
        if service == "chat" {
            // Each instance counts the message it delivered to the socket it holds.
            let delivered: f64 = text
                .lines()
                .filter(|l| l.starts_with("chat_messages_delivered_total"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            assert!(delivered >= 1.0, "{scope} delivered nothing:\n{text}");
        }
    }
}

/// Every service logged, and a line from a service's own crate carries that service's name.
fn each_log_line_names_its_service(platform: &SloopUp) {
    let lines = platform.log_lines();
    for service in sloop::SERVICES {
        assert!(
            lines.iter().any(|l| l["service"] == service),
            "no log line names {service}"
        );
        let crate_target = format!("sloop_{service}");
        let wrong: Vec<_> = lines
            .iter()
            .filter(|l| {
                l["target"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(&crate_target))
            })
            .filter(|l| l["service"] != service)
            .collect();
        assert!(
            wrong.is_empty(),
            "{service}'s lines under another name: {wrong:#?}"
        );
    }
}
