//! The HTML report as a person opens it: rendered in a real headless Chromium at a
//! laptop's width, nothing overflows the page or is clipped; it carries its charts and
//! what burned the budget. The check itself fails on a page that does overflow.

mod support;

use report_kit::browser::{LAYOUT_WIDTH, layout_problems};
use support::{FAILED, GOOD, SLOW, traffic, user_service};

#[test]
fn the_layout_check_catches_a_page_wider_than_the_screen() {
    let page = "<!doctype html><html><body><div style=\"width:3000px\">wide</div><pre style=\"overflow:auto;width:200px\">a line far too long for two hundred pixels of width</pre><section style=\"width:300px\"><pre id=\"table\">| SLO | objective | SLI | budget left | minutes left | burn |</pre></section></body></html>";
    let problems = layout_problems(page, LAYOUT_WIDTH).unwrap();
    assert!(
        problems.iter().any(|p| p.contains("scrolls sideways")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("pre") && p.contains("clips or scrolls")),
        "{problems:?}"
    );
    // A text table wider than its section spills out of it, as the old report's did.
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("pre#table") && p.contains("spills")),
        "{problems:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_slo_report_fits_a_laptop_screen() {
    let app = user_service().await;
    traffic(&app, GOOD, FAILED, SLOW).await;
    let metrics = app.url("/metrics");
    let html = tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_slo"))
            .current_dir(support::repo())
            .args(["report", "slos", "--format", "html", "--scrape", &metrics])
            .args(["--interval", "500ms"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        // Freshness is raw PromQL: a scrape cannot measure it, so it is left out, saying so.
        assert!(
            stderr.contains("skipping batch-sales-report-freshness"),
            "{stderr}"
        );
        String::from_utf8(out.stdout).unwrap()
    })
    .await
    .unwrap();
    assert!(html.contains("new uPlot("), "charts are drawn by uPlot");
    assert!(html.contains("/test/fail") && html.contains("What burned the budget"));
    // The state in sentences: after the tests' traffic the latency SLO is overspent.
    assert!(html.contains("The budget is spent."), "{html}");
    let problems = tokio::task::spawn_blocking(move || layout_problems(&html, LAYOUT_WIDTH))
        .await
        .unwrap()
        .unwrap();
    assert!(problems.is_empty(), "the report's layout: {problems:#?}");
}
