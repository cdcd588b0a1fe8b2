//! Shared by the SLO integration tests: the user service under known traffic, and the
//! `slo` binary's JSON report. Each test binary is its own process, so the global metrics
//! registry only ever holds that test's traffic.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use axum::routing::get;
use serde_json::Value;
use sloop_kit::testing::{TestApp, TestBackend};

pub const GOOD: usize = 1991;
pub const FAILED: usize = 1;
pub const SLOW: usize = 8;
pub const TOTAL: usize = GOOD + FAILED + SLOW;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The user service plus two routes that produce the failures and slowness the test
/// needs; everything else (telemetry layer, kit, metrics) is the production stack.
pub async fn user_service() -> TestApp {
    let service = sloop_kit::Service::new(sloop_user::NAME, 0)
        .database(&sloop_user::MIGRATIONS)
        .api(|ctx| {
            sloop_user::router(sloop_user::AppState::new(ctx))
                .route(
                    "/test/slow",
                    get(|| async {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        "slow"
                    }),
                )
                .route(
                    "/test/fail",
                    get(|| async { sloop_kit::Problem::internal(&"injected by the test") }),
                )
        });
    TestApp::spawn(service, TestBackend::Sqlite).await
}

/// Sends `good` fast GETs, `failed` 500s and `slow` 300 ms requests, interleaved so the
/// error ratio is steady over time.
pub async fn traffic(app: &TestApp, good: usize, failed: usize, slow: usize) {
    let mut paths: Vec<&str> = Vec::new();
    paths.extend(std::iter::repeat_n("/users", good));
    let every = (good / (failed + slow).max(1)).max(1);
    for (i, path) in std::iter::repeat_n("/test/fail", failed)
        .chain(std::iter::repeat_n("/test/slow", slow))
        .enumerate()
    {
        paths.insert(((i + 1) * every).min(paths.len()), path);
    }
    for chunk in paths.chunks(16) {
        let requests = chunk.iter().map(|p| app.client.get(app.url(p)).send());
        for response in futures::future::join_all(requests).await {
            response.unwrap();
        }
    }
}

pub fn slo_report(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_slo"))
        .current_dir(repo())
        .args(["report", "slos", "--format", "json"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "slo report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn slo<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["slos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap()
}

pub fn close(value: &Value, expected: f64, tolerance: f64) -> bool {
    (value.as_f64().unwrap() - expected).abs() <= tolerance
}
