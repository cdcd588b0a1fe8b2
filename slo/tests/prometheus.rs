//! A real Prometheus scrapes a real user service under known traffic: N good, M failed and
//! K slow requests. The generated rules run in that Prometheus, every dashboard query
//! answers, and `slo report` (from Prometheus, and from raw scrapes with no Prometheus)
//! gives the SLI, budget and burn that the traffic implies.

mod support;

use std::time::{Duration, Instant};

use platform_tests::monitoring::{self, Server, query};

use serde_json::Value;
use support::{
    FAILED, GOOD, SLOW, TOTAL, assert_breakdown, close, repo, slo, slo_report, traffic,
    user_service,
};

/// Prometheus scraping `target` every second, running the generated user rules.
async fn start_prometheus(target: &str) -> Server {
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {rules}\nscrape_configs:\n  - job_name: user\n    static_configs:\n      - targets: ['{target}']\n",
        rules = repo().join("alerts/user.rules.yml").display()
    );
    monitoring::prometheus(&config).await
}

async fn scalar(prometheus: &str, promql: &str) -> Option<f64> {
    query(prometheus, promql).await[0]["value"][1]
        .as_str()
        .map(|v| v.parse().unwrap())
}

/// Waits until Prometheus has scraped the target twice more, so the counters it holds
/// include everything sent so far.
async fn two_more_scrapes(prometheus: &str) {
    let count = |v: Option<f64>| v.unwrap_or(0.0);
    let start = count(scalar(prometheus, "count_over_time(up{job=\"user\"}[1h])").await);
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(scalar(prometheus, "count_over_time(up{job=\"user\"}[1h])").await) < start + 2.0 {
        assert!(
            Instant::now() < deadline,
            "Prometheus is not scraping the user service"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn report_from_prometheus_matches_the_traffic() {
    let app = user_service().await;
    // Warm-up with the same mix, before Prometheus starts so no scrape lands mid-way.
    // Every series then exists from the first scrape on, and each counter's first value
    // stands in the same proportion to its increase, so rate()'s extrapolation (which it
    // limits near a counter's zero point) scales every series alike: ratios come out exact.
    traffic(&app, GOOD, FAILED, SLOW).await;
    let prometheus = start_prometheus(&app.addr.to_string()).await;
    two_more_scrapes(&prometheus.url).await;
    traffic(&app, GOOD, FAILED, SLOW).await;
    two_more_scrapes(&prometheus.url).await;
    // One more rule evaluation after the last scrape.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let availability_ratio = FAILED as f64 / TOTAL as f64; // 0.0005: burn 0.5
    let latency_ratio = SLOW as f64 / TOTAL as f64; // 0.004: burn 4

    let report = slo_report(&["--prometheus", &prometheus.url]);
    let a = slo(&report, "user-requests-availability");
    assert!(close(&a["sli"], 1.0 - availability_ratio, 1e-9), "{a}");
    assert!(close(&a["budget_remaining"], 0.5, 1e-6), "{a}");
    assert!(close(&a["current_burn"], 0.5, 1e-6), "{a}");
    assert!(
        a["burn_rates"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| close(&b["burn_rate"], 0.5, 1e-6)),
        "{a}"
    );
    assert_eq!(a["firing"], serde_json::json!([]));
    assert_eq!(a["verdict"], "ok");
    // The last day's 1h burn, every 15m: 0 before the traffic, 0.5 at the end.
    let history = a["history"].as_array().unwrap();
    assert!(history.len() >= 96, "{a}");
    assert!(close(&history.last().unwrap()[1], 0.5, 1e-6), "{a}");
    assert!(close(&history[0][1], 0.0, 1e-12), "{a}");
    // As HTML, with the burn over the day drawn, it fits a laptop screen.
    let html = std::process::Command::new(env!("CARGO_BIN_EXE_slo"))
        .current_dir(repo())
        .args([
            "report",
            "slos",
            "--format",
            "html",
            "--prometheus",
            &prometheus.url,
        ])
        .output()
        .unwrap();
    let html = String::from_utf8(html.stdout).unwrap();
    assert!(html.contains("Burn rate over the last day"), "{html}");
    let problems =
        report_kit::browser::layout_problems(&html, report_kit::browser::LAYOUT_WIDTH).unwrap();
    assert!(problems.is_empty(), "the report's layout: {problems:#?}");

    let l = slo(&report, "user-requests-latency");
    assert!(close(&l["sli"], 1.0 - latency_ratio, 1e-9), "{l}");
    assert!(close(&l["budget_remaining"], -3.0, 1e-6), "{l}");
    assert!(close(&l["current_burn"], 4.0, 1e-6), "{l}");
    assert_eq!(
        l["firing"],
        serde_json::json!(["ErrorBudgetBurnTicket"]),
        "burn 4 is over the 3x and 1x ticket lines only"
    );
    assert_eq!(l["verdict"], "exhausted");
    assert_eq!(l["breached"], true);

    // What burned the budget: the routes made to fail and to be slow.
    assert_breakdown(a, l, 1e-3);

    // The generated recording rules, evaluated by Prometheus itself, agree.
    let burn = scalar(
        &prometheus.url,
        "slo:current_burn_rate:ratio{sloth_id=\"user-requests-latency\"}",
    )
    .await
    .unwrap();
    assert!((burn - 4.0).abs() < 1e-6, "recorded burn {burn}");
    let remaining = scalar(
        &prometheus.url,
        "slo:period_error_budget_remaining:ratio{sloth_id=\"user-requests-availability\"}",
    )
    .await
    .unwrap();
    assert!(
        remaining.is_finite() && (remaining - 0.5).abs() < 0.3,
        "period budget left {remaining}"
    );
    let firing = query(&prometheus.url, "ALERTS{alertstate=\"firing\"}").await;
    let names: Vec<&str> = firing
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["metric"]["sloth_id"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["user-requests-latency"], "{firing}");

    // Every dashboard query is valid PromQL with data behind it.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("dashboards/user-slo.json")).unwrap(),
    )
    .unwrap();
    for promql in slo::dashboard::queries(&dashboard) {
        let result = query(&prometheus.url, &promql).await;
        let alerts_panel = promql.starts_with("ALERTS");
        assert!(
            alerts_panel || !result.as_array().unwrap().is_empty(),
            "dashboard query has no data: {promql}"
        );
    }
    app.stop().await;
}
