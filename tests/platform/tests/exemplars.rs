//! A real Prometheus, with exemplar storage on, scrapes the real `sloop-user` binary: the
//! OpenMetrics exposition parses (the target is up), and the request duration histogram's
//! exemplars carry the trace ids of the requests behind them, so Grafana can jump from a
//! latency bucket to the trace. The Grafana data sources in `dashboards/datasources.yml`
//! follow those links: their exemplar label is the one Prometheus stores, and their Loki
//! trace-id pattern finds the trace id in the service's real log lines.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use platform_tests::monitoring;
use platform_tests::{Process, free_port, workspace_binary};
use serde_json::{Value, json};
use sloop_kit::testing::{TestBackend, fresh_database_url};

#[tokio::test(flavor = "multi_thread")]
async fn latency_buckets_carry_exemplars_with_the_trace_ids_of_their_requests() {
    let binary = workspace_binary("sloop-user", "sloop-user");
    let mut user = Process::standalone(&binary, "user", free_port()).env(
        "DATABASE_URL",
        fresh_database_url(TestBackend::Sqlite).await,
    );
    user.start().await;
    let target = format!("127.0.0.1:{}", user.port);
    let prometheus = monitoring::prometheus(&format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: user\n    static_configs:\n      - targets: ['{target}']\n"
    ))
    .await;

    let client = reqwest::Client::new();
    let created: Value = client
        .post(user.url("/users"))
        .json(&json!({"email": "exemplar@example.com", "name": "Exemplar"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().expect("a user id");
    let mut sent = HashSet::new();
    for _ in 0..20 {
        let trace_id = uuid::Uuid::new_v4().simple().to_string();
        let response = client
            .get(user.url(&format!("/users/{id}")))
            .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        sent.insert(trace_id);
    }
    // Scraped as OpenMetrics and parsed: a malformed exposition would leave the target down.
    monitoring::wait_scraped(&prometheus, "user").await;

    let deadline = Instant::now() + Duration::from_secs(30);
    let found = loop {
        let exemplars = query_exemplars(&prometheus.url).await;
        let ours: Vec<&Value> = exemplars
            .iter()
            .filter(|e| {
                e["labels"]["trace_id"]
                    .as_str()
                    .is_some_and(|t| sent.contains(t))
            })
            .collect();
        if let Some(exemplar) = ours.first() {
            break (*exemplar).clone();
        }
        assert!(
            Instant::now() < deadline,
            "no exemplar with one of our trace ids; Prometheus has {exemplars:#?}\n{}",
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let span_id = found["labels"]["span_id"].as_str().unwrap_or_default();
    assert_eq!(span_id.len(), 16, "{found}");
    let seconds: f64 = found["value"].as_str().unwrap().parse().unwrap();
    assert!(seconds > 0.0 && seconds < 10.0, "{found}");
    user.stop().await;

    grafana_links_follow(&found, &user.log());
}

/// The data-source settings a user copies into Grafana link what this service emits.
fn grafana_links_follow(exemplar: &Value, log: &str) {
    let path = platform_tests::monitoring::repo_root().join("dashboards/datasources.yml");
    let text = std::fs::read_to_string(&path).expect("dashboards/datasources.yml");
    let settings: Value = serde_saphyr::from_str(&text).expect("datasources.yml is YAML");
    let source = |kind: &str| {
        settings["datasources"]
            .as_array()
            .and_then(|all| all.iter().find(|d| d["type"] == kind))
            .unwrap_or_else(|| panic!("no {kind} data source in {}", path.display()))
            .clone()
    };
    let jaeger_uid = source("jaeger")["uid"].clone();

    let destination = &source("prometheus")["jsonData"]["exemplarTraceIdDestinations"][0];
    assert_eq!(destination["datasourceUid"], jaeger_uid);
    let label = destination["name"]
        .as_str()
        .expect("an exemplar label name");
    assert!(
        exemplar["labels"][label].is_string(),
        "no {label} on {exemplar}"
    );

    let derived = &source("loki")["jsonData"]["derivedFields"][0];
    assert_eq!(derived["datasourceUid"], jaeger_uid);
    let pattern = regex::Regex::new(derived["matcherRegex"].as_str().unwrap()).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("user created"))
        .unwrap_or_else(|| panic!("no `user created` line in:\n{log}"));
    let fields: Value = serde_json::from_str(line).unwrap();
    let captured = pattern
        .captures(line)
        .and_then(|c| c.get(1))
        .unwrap_or_else(|| panic!("{pattern} finds no trace id in {line}"));
    assert_eq!(captured.as_str(), fields["trace_id"], "{line}");
}

/// Every exemplar Prometheus holds for the read route's duration buckets.
async fn query_exemplars(prometheus: &str) -> Vec<Value> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let body: Value = reqwest::Client::new()
        .get(format!("{prometheus}/api/v1/query_exemplars"))
        .query(&[
            (
                "query",
                r#"http_server_request_duration_seconds_bucket{route="/users/{id}"}"#.to_owned(),
            ),
            ("start", (now - 300).to_string()),
            ("end", (now + 60).to_string()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "success", "{body}");
    body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|series| series["exemplars"].as_array().cloned().unwrap_or_default())
        .collect()
}
