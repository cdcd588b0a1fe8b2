//! `slo report` from two raw scrapes of a service's /metrics, with no Prometheus at all:
//! the numbers match the known traffic exactly.

mod support;

use support::{FAILED, GOOD, SLOW, TOTAL, close, slo, slo_report, traffic, user_service};

#[tokio::test(flavor = "multi_thread")]
async fn report_from_raw_scrapes_needs_no_prometheus() {
    let app = user_service().await;
    traffic(&app, GOOD, FAILED, SLOW).await;
    let metrics = app.url("/metrics");
    let report = tokio::task::spawn_blocking(move || {
        slo_report(&["--scrape", &metrics, "--interval", "1s"])
    })
    .await
    .unwrap();
    let a = slo(&report, "user-requests-availability");
    assert_eq!(a["total"], TOTAL as f64);
    assert_eq!(a["good"], (GOOD + SLOW) as f64);
    assert!(close(&a["budget_remaining"], 0.5, 1e-9), "{a}");
    let l = slo(&report, "user-requests-latency");
    assert_eq!(l["good"], (GOOD + FAILED) as f64);
    assert!(close(&l["budget_remaining"], -3.0, 1e-9), "{l}");
    assert_eq!(l["verdict"], "exhausted");
    app.stop().await;
}
