//! `slo report` from two raw scrapes of a service's /metrics, with no Prometheus at all:
//! the numbers match the known traffic exactly, and `slo gate` exits by the budget floor.

mod support;

use support::{
    FAILED, GOOD, SLOW, TOTAL, assert_breakdown, close, slo, slo_report, traffic, user_service,
};

#[tokio::test(flavor = "multi_thread")]
async fn report_and_gate_from_raw_scrapes_need_no_prometheus() {
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

    // What burned the budget: the routes made to fail and to be slow.
    assert_breakdown(a, l, 1e-9);

    // `slo gate` on the same traffic: exit 0 above the floor, 1 below it, saying why.
    // Only the availability SLO, which has half its budget left after this traffic.
    let spec = std::env::temp_dir().join(format!("gate-{}.yaml", std::process::id()));
    std::fs::write(
        &spec,
        "service: user\nslos:\n  - name: requests-availability\n    objective: 99.9\n    sli: { type: availability, selector: 'service=\"user\"' }\n",
    )
    .unwrap();
    let metrics = app.url("/metrics");
    let gate = move |floor: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_slo"))
            .args(["gate"])
            .arg(&spec)
            .args([
                "--scrape",
                &metrics,
                "--interval",
                "1s",
                "--min-budget",
                floor,
            ])
            .output()
            .unwrap()
    };
    let (pass, fail) = tokio::task::spawn_blocking(move || (gate("40"), gate("60")))
        .await
        .unwrap();
    assert_eq!(
        pass.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&pass.stderr)
    );
    assert_eq!(fail.status.code(), Some(1));
    let why = String::from_utf8_lossy(&fail.stderr);
    assert!(why.contains("user-requests-availability has 50.00% of its error budget left, under the floor of 60.00%"), "{why}");
    app.stop().await;
}
