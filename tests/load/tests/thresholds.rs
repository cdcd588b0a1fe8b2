//! Exit codes: a rate the target cannot sustain drops requests and fails `dropped==0`
//! with exit status 1 naming the threshold; a sustainable run exits 0; `--find-max` finds
//! the target's capacity. Runs the real `loadtest` binary against a server with a fixed
//! 50 ms service time.

use std::process::Command;
use std::time::Duration;

use axum::Router;
use axum::routing::get;

async fn slow_server() -> String {
    let app = Router::new().route(
        "/work",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            "done"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// A scenario file and an output directory of this call's own: the tests run in parallel
/// and must never write each other's files.
struct Run {
    scenario: std::path::PathBuf,
    out: std::path::PathBuf,
}

impl Run {
    fn new(rate: u32) -> Self {
        // Five in flight at 50 ms each: at most 100 requests per second get through.
        let text = format!(
            "name: capacity\nstages: [ {{ duration: 2s, rate: {rate} }} ]\nsteps: [ {{ name: work, path: /work }} ]\nmax_in_flight: 5\nmax_lateness: 200ms\nthresholds: [ \"dropped==0\", \"p(99)<1000\" ]\n"
        );
        let dir = std::env::temp_dir().join(format!("loadtest-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let scenario = dir.join("capacity.yaml");
        std::fs::write(&scenario, text).unwrap();
        Self {
            scenario,
            out: dir.join("out"),
        }
    }

    async fn loadtest(&self, target: &str, extra: &[&str]) -> std::process::Output {
        let (scenario, target, out) = (self.scenario.clone(), target.to_owned(), self.out.clone());
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_loadtest"))
                .arg(&scenario)
                .args(["--target", &target, "--out"])
                .arg(&out)
                .args(extra)
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn overload_drops_requests_and_fails_the_threshold() {
    let target = slow_server().await;

    let passing = Run::new(40).loadtest(&target, &[]).await;
    assert_eq!(
        passing.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&passing.stderr)
    );
    assert!(String::from_utf8_lossy(&passing.stdout).contains("PASS dropped==0"));

    let overload = Run::new(400);
    let failing = overload.loadtest(&target, &[]).await;
    assert_eq!(failing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&failing.stderr);
    assert!(stderr.contains("threshold failed: dropped==0"), "{stderr}");
    let out = &overload.out;
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("result.json")).unwrap()).unwrap();
    let dropped = result["overall"]["dropped"].as_u64().unwrap();
    let served = result["overall"]["requests"].as_u64().unwrap();
    assert!(
        dropped > 300,
        "most of the 800 due requests could not be sent: {dropped} dropped"
    );
    assert_eq!(
        dropped + served,
        800,
        "every due request is either served or counted as dropped"
    );
    assert!(out.join("work.hgrm").exists() && out.join("report.html").exists());
    // The report as a person opens it: charts drawn, nothing overflowing a laptop screen.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("new uPlot("), "charts are drawn by uPlot");
    let problems = tokio::task::spawn_blocking(move || {
        report_kit::browser::layout_problems(&html, report_kit::browser::LAYOUT_WIDTH)
    })
    .await
    .unwrap()
    .unwrap();
    assert!(problems.is_empty(), "the report's layout: {problems:#?}");

    // The SLO engine reads the same file: dropped requests are bad events to it too.
    let run = slo::evaluate::LoadTestResult::read(&out.join("result.json")).unwrap();
    let specs =
        slo::spec::load_path(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../slos"))
            .unwrap();
    let availability = specs[0]
        .slos
        .iter()
        .find(|s| s.name == "requests-availability")
        .unwrap();
    let measured = run
        .measure(availability, &slo::math::WORKBOOK_WINDOWS)
        .unwrap();
    assert_eq!(measured.period.total, 800.0);
    assert_eq!(measured.period.good, served as f64);
}

#[tokio::test(flavor = "multi_thread")]
async fn find_max_brackets_the_capacity() {
    let target = slow_server().await;
    // Starts at 40/s, doubles past the 100/s capacity, then bisects to within 10 %.
    let search = Run::new(40);
    let run = search
        .loadtest(
            &target,
            &["--find-max", "--trial", "2s", "--precision", "0.1"],
        )
        .await;
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let search: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(search.out.join("search.json")).unwrap())
            .unwrap();
    let max = search["max_rate"].as_f64().unwrap();
    assert!(
        (60.0..=105.0).contains(&max),
        "capacity is 100/s, found {max}: {stdout}"
    );
    let trials = search["trials"].as_array().unwrap();
    assert!(
        trials
            .iter()
            .any(|t| t["rate"].as_f64().unwrap() > 105.0 && t["passed"] == false),
        "a rate above capacity was tried and failed: {stdout}"
    );
    assert!(stdout.contains(&format!("highest rate sustained: {max:.0} requests/s")));
}
