//! `alerts/alertmanager.yml` in a real Alertmanager: it passes `amtool check-config`, a page
//! and a ticket reach their own webhooks, and a ticket is inhibited while its SLO pages.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use platform_tests::monitoring::{alertmanager, alertmanager_config_for_tests, repo_root, tool};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::routing::post;
use serde_json::{Value, json};

type Received = Arc<Mutex<BTreeMap<String, Vec<Value>>>>;

fn config_path() -> PathBuf {
    repo_root().join("alerts/alertmanager.yml")
}

#[test]
fn the_configuration_passes_amtool() {
    let amtool = tool("AMTOOL", &["amtool"], "prometheus-alertmanager");
    let out = Command::new(&amtool)
        .arg("check-config")
        .arg(config_path())
        .output()
        .expect("amtool runs");
    assert!(
        out.status.success(),
        "amtool check-config failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn start_webhook() -> (String, Received) {
    let received: Received = Arc::default();
    let app = Router::new()
        .route(
            "/{receiver}",
            post(
                |State(r): State<Received>,
                 UrlPath(receiver): UrlPath<String>,
                 body: axum::Json<Value>| async move {
                    r.lock().unwrap().entry(receiver).or_default().push(body.0);
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

fn alert(name: &str, severity: &str, slo: &str) -> Value {
    json!({
        "labels": {
            "alertname": name,
            "severity": severity,
            "sloth_severity": severity,
            "sloth_service": "user",
            "sloth_slo": slo,
        },
        "annotations": {"summary": format!("user {slo} burning")},
    })
}

/// Alert names the `receiver` webhook got, with their status, in arrival order.
fn got(received: &Received, receiver: &str) -> Vec<(String, String)> {
    received
        .lock()
        .unwrap()
        .get(receiver)
        .into_iter()
        .flatten()
        .flat_map(|n| n["alerts"].as_array().cloned().unwrap_or_default())
        .map(|a| {
            (
                format!(
                    "{}/{}",
                    a["labels"]["alertname"].as_str().unwrap_or("?"),
                    a["labels"]["sloth_slo"].as_str().unwrap_or("?")
                ),
                a["status"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn pages_and_tickets_reach_their_receivers_and_a_paging_slo_holds_its_ticket() {
    let (webhook, received) = start_webhook().await;
    let am = alertmanager(&alertmanager_config_for_tests(&webhook)).await;
    let client = reqwest::Client::new();
    let alerts = json!([
        alert("ErrorBudgetBurnPage", "page", "requests-availability"),
        alert("ErrorBudgetBurnTicket", "ticket", "requests-availability"),
        alert("ErrorBudgetBurnTicket", "ticket", "requests-latency"),
    ]);
    let posted = client
        .post(format!("{}/api/v2/alerts", am.url))
        .json(&alerts)
        .send()
        .await
        .unwrap();
    assert!(
        posted.status().is_success(),
        "{}",
        posted.text().await.unwrap()
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    while got(&received, "page").is_empty() || got(&received, "ticket").is_empty() {
        assert!(
            Instant::now() < deadline,
            "webhooks got {:?}",
            received.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Give a wrongly routed or uninhibited notification time to arrive too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let page = got(&received, "page");
    let ticket = got(&received, "ticket");
    assert!(
        page.iter()
            .all(|(a, _)| a == "ErrorBudgetBurnPage/requests-availability"),
        "{page:?}"
    );
    assert!(
        ticket
            .iter()
            .all(|(a, _)| a == "ErrorBudgetBurnTicket/requests-latency"),
        "the ticket of a paging SLO must be inhibited: {ticket:?}"
    );

    let listed: Vec<Value> = client
        .get(format!("{}/api/v2/alerts", am.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let inhibited: Vec<&Value> = listed
        .iter()
        .filter(|a| !a["status"]["inhibitedBy"].as_array().unwrap().is_empty())
        .collect();
    assert_eq!(inhibited.len(), 1, "{listed:?}");
    assert_eq!(inhibited[0]["labels"]["sloth_slo"], "requests-availability");
}

/// GitHub's anchor for a Markdown heading: lower case, spaces to `-`, other punctuation gone.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_slo_alert_links_a_runbook_section_that_exists() {
    let root = repo_root();
    let mut checked = 0;
    for entry in std::fs::read_dir(root.join("alerts")).unwrap() {
        let path = entry.unwrap().path();
        if !path.to_string_lossy().ends_with(".rules.yml") {
            continue;
        }
        let rules: Value =
            serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for rule in rules["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap())
        {
            let Some(alert) = rule["alert"].as_str() else {
                continue;
            };
            let url = rule["annotations"]["runbook_url"]
                .as_str()
                .unwrap_or_else(|| {
                    panic!("{}: {alert} has no runbook_url annotation", path.display())
                });
            let (file, section) = url
                .split_once('#')
                .unwrap_or_else(|| panic!("{url}: no #section"));
            let text =
                std::fs::read_to_string(root.join(file)).unwrap_or_else(|e| panic!("{url}: {e}"));
            let anchors: Vec<String> = text
                .lines()
                .filter_map(|l| l.strip_prefix('#'))
                .map(|h| anchor(h.trim_start_matches('#')))
                .collect();
            assert!(
                anchors.iter().any(|a| a == section),
                "{}: {alert} links {url}, which has no such section",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 12, "only {checked} alerts found under alerts/");
}
