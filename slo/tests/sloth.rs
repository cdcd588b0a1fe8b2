//! Sloth's own files, as its authors wrote them (`tests/fixtures/sloth`, origin noted
//! there): every prometheus/v1 example reads or says exactly why not; the rules sloop
//! generates carry the names and labels Sloth's generate, so Alertmanager routes and Sloth's
//! Grafana dashboards keep working; an SLI with a regex matcher gets promtool tests; a
//! per-alert `for:` is kept; and every query of Sloth's two published dashboards answers
//! in a real Prometheus running sloop's rules.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use platform_tests::monitoring::{self, query};
use serde_json::Value;
use support::{generate, promtool_tests_pass, run, validate};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sloth")
        .join(name)
}

fn yaml(path: &Path) -> Value {
    serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn every_sloth_example_reads_or_says_why_not() {
    let readable = [
        ("getting-started.yml", 1),
        ("home-wifi.yml", 1),
        ("kubernetes-apiserver.yml", 1),
        ("multifile.yml", 2),
        ("no-alerts.yml", 1),
        ("contrib-slo-plugins.yml", 1),
        ("slo-plugin-getting-started.yml", 1),
        ("victoria-metrics.yml", 1),
    ];
    for (name, services) in readable {
        let (ok, text) = validate(&fixture(name));
        assert!(ok, "{name}: {text}");
        assert_eq!(text.matches("ok: ").count(), services, "{name}: {text}");
    }
    // Plugins sloop cannot run are named, not silently dropped.
    let (_, text) = validate(&fixture("contrib-slo-plugins.yml"));
    assert!(
        text.contains("note:") && text.contains("sloth.dev/contrib/info_labels/v1"),
        "{text}"
    );

    let (ok, text) = validate(&fixture("plugin-getting-started.yml"));
    assert!(!ok);
    assert!(
        text.contains("plugin-getting-started.yml:13: slos[requests-availability].sli.plugin")
            && text.contains("Go code"),
        "{text}"
    );
    let (ok, text) = validate(&fixture("raw-home-wifi.yml"));
    assert!(!ok);
    assert!(
        text.contains(".sli.raw") && text.contains("events"),
        "{text}"
    );
}

/// Labels of `sloth_slo_info` that name the tool that wrote the rules, not the SLO.
const GENERATOR_LABELS: [&str; 3] = ["sloth_mode", "sloth_spec", "sloth_version"];

/// Record name plus labels, without Sloth's generation-script label and sloop's own
/// raw-rate recordings.
fn recordings(rules: &Value) -> Vec<(String, BTreeMap<String, String>)> {
    let mut out = Vec::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let Some(record) = rule["record"].as_str() else {
                continue;
            };
            let labels: BTreeMap<String, String> = rule["labels"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| {
                    *k != "cmd"
                        && !(record == "sloth_slo_info" && GENERATOR_LABELS.contains(&k.as_str()))
                })
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            out.push((record.to_owned(), labels));
        }
    }
    out
}

fn alerts(rules: &Value) -> Vec<&Value> {
    rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter(|r| r["alert"].is_string())
        .collect()
}

#[test]
fn getting_started_rules_carry_sloths_names_and_labels() {
    let out = generate(&fixture("getting-started.yml"));
    let ours = yaml(&out.join("myservice.rules.yml"));
    let sloths = yaml(&fixture("_gen/getting-started.yml"));

    let our_records = recordings(&ours);
    for record in recordings(&sloths) {
        assert!(
            our_records.contains(&record),
            "Sloth records {record:?}; sloop's recordings are {our_records:#?}"
        );
    }

    let (our_alerts, sloth_alerts) = (alerts(&ours), alerts(&sloths));
    assert_eq!(our_alerts.len(), sloth_alerts.len());
    for (ours, sloths) in our_alerts.iter().zip(&sloth_alerts) {
        assert_eq!(ours["alert"], "MyServiceHighErrorRate");
        assert_eq!(ours["alert"], sloths["alert"]);
        for (label, value) in sloths["labels"].as_object().unwrap() {
            assert_eq!(&ours["labels"][label], value, "alert label {label}");
        }
        assert_eq!(
            ours["annotations"]["summary"],
            sloths["annotations"]["summary"]
        );
    }
    let _ = std::fs::remove_dir_all(out);
}

/// getting-started with Sloth's `alert_for` settings on both alerts.
fn getting_started_with_for() -> PathBuf {
    let text = std::fs::read_to_string(fixture("getting-started.yml")).unwrap();
    let text = text
        .replace(
            "      page_alert:\n        labels:",
            "      page_alert:\n        for: 5m\n        labels:",
        )
        .replace(
            "      ticket_alert:\n        labels:",
            "      ticket_alert:\n        for: 30m\n        labels:",
        );
    assert!(text.contains("for: 5m") && text.contains("for: 30m"));
    let dir = support::tempdir();
    let path = dir.join("getting-started-for.yml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn regex_matcher_sli_with_alert_for_gets_passing_promtool_tests() {
    let spec = getting_started_with_for();
    let out = generate(&spec);
    let rules = yaml(&out.join("myservice.rules.yml"));
    let fors: Vec<&str> = alerts(&rules)
        .iter()
        .map(|a| a["for"].as_str().unwrap())
        .collect();
    assert_eq!(fors, ["5m", "30m"]);

    // The error query's `code=~"(5..|429)"` is satisfied by a value the tests write.
    let page = std::fs::read_to_string(out.join("myservice.page.test.yml")).unwrap();
    assert!(
        page.contains(r#"code=\"500\""#) || page.contains(r#"code="500""#),
        "{page}"
    );
    assert!(page.contains("200"), "{page}");
    assert_eq!(promtool_tests_pass(&out), 2);

    let mut check = Command::new(support::promtool());
    check
        .args(["check", "rules"])
        .arg(out.join("myservice.rules.yml"));
    run(check);
    let _ = std::fs::remove_dir_all(out);
    let _ = std::fs::remove_dir_all(spec.parent().unwrap());
}

/// Every `expr` anywhere in a dashboard (rows nest their panels).
fn exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", Value::String(expr)) => out.push(expr.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

/// The dashboards' template variables, as Grafana would fill them for myservice. The
/// month panels sum a `[32d:1h]` subquery, whose hourly steps need hours of history; the
/// test has seconds of it, so they run over `[10m:1s]`: the same joins and labels over the
/// data there is.
fn fill(expr: &str, sli_window: &str) -> String {
    let month = time::OffsetDateTime::now_utc().month() as u8;
    expr.replace("${service}", "myservice")
        .replace("$service", "myservice")
        .replace("${slo}", "requests-availability")
        .replace("$slo", "requests-availability")
        .replace("${sli_window}", sli_window)
        .replace("${min_burning_rate}", "0")
        .replace("${__to:date:M}", &month.to_string())
        .replace("[32d:1h]", "[10m:1s]")
}

/// Sloth's example metric, counting 100 good and 1 failed request between scrapes.
async fn example_exporter() -> String {
    let scrapes = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let n = scrapes.fetch_add(1, Ordering::Relaxed);
            async move {
                format!(
                    "# TYPE http_request_duration_seconds_count counter\nhttp_request_duration_seconds_count{{code=\"200\"}} {}\nhttp_request_duration_seconds_count{{code=\"500\"}} {}\n",
                    n * 100,
                    n
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn sloths_dashboards_answer_on_sloops_rules() {
    let out = generate(&fixture("getting-started.yml"));
    let target = example_exporter().await;
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {rules}\nscrape_configs:\n  - job_name: myservice\n    static_configs:\n      - targets: ['{target}']\n",
        rules = out.join("myservice.rules.yml").display()
    );
    let prometheus = monitoring::prometheus(&config).await;
    monitoring::wait_scraped(&prometheus, "myservice").await;
    // Burn needs two scrapes inside the 5m rate, then one rule evaluation.
    let deadline = Instant::now() + Duration::from_secs(60);
    while query(&prometheus.url, "slo:current_burn_rate:ratio > 0")
        .await
        .as_array()
        .is_none_or(|r| r.is_empty())
    {
        assert!(
            Instant::now() < deadline,
            "no burn recorded:\n{}",
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    for file in ["14348-slo-detail.json", "14643-slo-high-level.json"] {
        let dashboard: Value = serde_json::from_str(
            &std::fs::read_to_string(fixture("dashboards").join(file)).unwrap(),
        )
        .unwrap();
        let mut found = Vec::new();
        exprs(&dashboard["panels"], &mut found);
        assert!(found.len() >= 8, "{file}: {found:?}");
        for expr in &found {
            let windows: &[&str] = if expr.contains("${sli_window}") {
                &["5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"]
            } else {
                &["5m"]
            };
            for window in windows {
                let promql = fill(expr, window);
                let result = query(&prometheus.url, &promql).await;
                assert!(
                    result.as_array().is_some_and(|r| !r.is_empty()),
                    "{file}: no data for {promql}"
                );
            }
        }
        // Template variables: label_values(<query>, <label>) lists values of that label.
        for variable in dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let definition = variable["query"]["query"]
                .as_str()
                .or_else(|| variable["query"].as_str())
                .unwrap_or_default();
            let Some(args) = definition
                .strip_prefix("label_values(")
                .and_then(|a| a.strip_suffix(')'))
            else {
                continue;
            };
            let (series, label) = args.rsplit_once(',').unwrap();
            let promql = fill(series.trim(), "5m");
            let result = query(&prometheus.url, &promql).await;
            let values: Vec<&str> = result
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|s| s["metric"][label.trim()].as_str())
                .collect();
            assert!(
                !values.is_empty(),
                "{file}: variable {definition} has no values"
            );
        }
    }
    let _ = std::fs::remove_dir_all(out);
}
