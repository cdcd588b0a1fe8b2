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

/// promtool, or a failure that says how to install it.
pub fn promtool() -> String {
    platform_tests::monitoring::tool("PROMTOOL", &["promtool"], "prometheus")
}

/// Runs a command that must succeed; returns its stdout and stderr.
pub fn run(mut command: Command) -> String {
    let out = command.output().expect("run command");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{command:?} failed:\n{text}");
    text
}

/// A fresh directory for one test's generated files.
pub fn tempdir() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("slo-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `slo generate` for `spec` into a fresh directory, which it returns.
pub fn generate(spec: &Path) -> PathBuf {
    let out = tempdir();
    let mut generate = Command::new(env!("CARGO_BIN_EXE_slo"));
    generate
        .arg("generate")
        .arg(spec)
        .arg("--rules-dir")
        .arg(&out)
        .arg("--dashboards-dir")
        .arg(&out);
    run(generate);
    out
}

/// `promtool test rules` on every test file in `dir`, side by side (each takes seconds).
pub fn promtool_tests_pass(dir: &Path) -> usize {
    let promtool = promtool();
    let tests: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".test.yml"))
        .collect();
    let handles: Vec<_> = tests
        .iter()
        .map(|file| {
            let (promtool, file) = (promtool.clone(), file.clone());
            std::thread::spawn(move || {
                let mut test = Command::new(&promtool);
                test.current_dir(file.parent().unwrap())
                    .args(["test", "rules"])
                    .arg(&file);
                run(test)
            })
        })
        .collect();
    for handle in handles {
        assert!(handle.join().unwrap().contains("SUCCESS"));
    }
    tests.len()
}

/// `slo validate` on one file: whether it passed, and what it printed.
pub fn validate(path: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_slo"))
        .arg("validate")
        .arg(path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The budget breakdown of the availability (`a`) and latency (`l`) reports names the
/// route made to fail and the route made slow, each having spent all of its SLO's budget
/// that was spent.
pub fn assert_breakdown(a: &Value, l: &Value, tolerance: f64) {
    let top = &a["breakdown"][0];
    assert_eq!(top["labels"]["route"], "/test/fail", "{a}");
    assert_eq!(top["labels"]["status"], "5xx", "{a}");
    assert!(close(&top["budget_spent"], 0.5, tolerance), "{a}");
    assert!(close(&top["share_of_errors"], 1.0, 1e-9), "{a}");
    let slow = &l["breakdown"][0];
    assert_eq!(slow["labels"]["route"], "/test/slow", "{l}");
    assert!(close(&slow["budget_spent"], 4.0, tolerance * 4.0), "{l}");
}
