//! Calendar windows and time slices in the generated rules, shown in promtool with traffic
//! whose answer is known: a calendar month forgets January's errors on the 1st of
//! February (a rolling window would not), and a Timeslices SLO counts bad minutes where an
//! occurrence SLO would count bad requests.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use support::{generate, promtool, run, tempdir};

/// `slo generate` for a native spec; returns the directory holding `shop.rules.yml`.
fn rules_for(spec: &str) -> std::path::PathBuf {
    let dir = tempdir();
    let path = dir.join("shop.yaml");
    std::fs::write(&path, spec).unwrap();
    let out = generate(&path);
    let _ = std::fs::remove_dir_all(dir);
    out
}

/// Runs one promtool test file next to the rules.
fn promtool_test(dir: &Path, test: &Value) {
    let file = dir.join("windows.test.yml");
    std::fs::write(&file, slo::rules::to_yaml(test)).unwrap();
    let mut command = Command::new(promtool());
    command.current_dir(dir).args(["test", "rules"]).arg(&file);
    assert!(run(command).contains("SUCCESS"));
}

/// One expected sample of a promtool `promql_expr_test`.
fn sample(expr: &str, at: &str, labels: &str, value: f64) -> Value {
    json!({ "expr": expr, "eval_time": at, "exp_samples": [{ "labels": labels, "value": value }] })
}

/// 100 requests a minute (series labelled `labels` plus status) of which 10 % fail for
/// `minutes`, then none for two hours more.
fn failing_until(minutes: u64, labels: &str) -> Vec<Value> {
    let good = format!("0+90x{minutes} {}+100x200", 90 * minutes + 100);
    let bad = format!("0+10x{minutes} {}+0x200", 10 * minutes);
    vec![
        json!({ "series": format!("http_server_requests_total{{{labels}status=\"200\"}}"), "values": good }),
        json!({ "series": format!("http_server_requests_total{{{labels}status=\"500\"}}"), "values": bad }),
    ]
}

/// A promtool test file over `shop.rules.yml`: one test of `input_series` sampled every
/// `interval`, checked by `checks`, with rules evaluated every `evaluation_interval`.
fn test_file(
    evaluation_interval: &str,
    interval: &str,
    input_series: Vec<Value>,
    checks: Vec<Value>,
) -> Value {
    json!({
        "rule_files": ["shop.rules.yml"],
        "evaluation_interval": evaluation_interval,
        "tests": [{ "interval": interval, "input_series": input_series, "promql_expr_test": checks }],
    })
}

/// The labels every recording of the SLO `shop-availability` carries, without its name.
const SLO_LABELS: &str =
    r#"sloth_id="shop-availability",sloth_service="shop",sloth_slo="availability""#;

#[test]
fn a_calendar_month_starts_again_on_the_first() {
    let dir = rules_for(
        "service: shop\nslos:\n  - name: availability\n    objective: 99\n    window: month\n    sli: { type: availability, selector: 'service=\"shop\"' }\n",
    );
    // One request a second... 100 a minute from 1970-01-01 (promtool's time zero): 10 % fail
    // until 23:50 on January 31st (743h50m), none after. February 1st is at 744h.
    let series = failing_until(743 * 60 + 50, "service=\"shop\",");
    let ratio = format!("round(slo:sli_error:ratio_rate30d{{{SLO_LABELS}}} * 1000)");
    let ratio_labels = format!("{{{SLO_LABELS},sloth_window=\"30d\"}}");
    let days = format!("slo:time_period:days{{{SLO_LABELS}}}");
    let days_labels = format!("slo:time_period:days{{{SLO_LABELS}}}");
    let remaining = format!("slo:period_error_budget_remaining:ratio{{{SLO_LABELS}}}");
    let remaining_labels = format!("slo:period_error_budget_remaining:ratio{{{SLO_LABELS}}}");
    let test = test_file(
        "10m",
        "1m",
        series,
        vec![
            // January 31st, 23:00: the month so far failed 10 % of requests.
            sample(&ratio, "743h", &ratio_labels, 100.0),
            sample(&days, "743h", &days_labels, 31.0),
            // February 1st, 01:00: a new month, nothing has failed in it.
            sample(&ratio, "745h", &ratio_labels, 0.0),
            sample(&remaining, "745h", &remaining_labels, 1.0),
            sample(&days, "745h", &days_labels, 28.0),
        ],
    );
    promtool_test(&dir, &test);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_calendar_week_starts_on_its_zones_clock() {
    // OpenSLO weeks from Saturday noon in New York: in 1970 (promtool's time zero) one
    // starts on January 3rd at 17:00 UTC (65h), five hours after noon UTC (60h).
    let dir = tempdir();
    let path = dir.join("shop.yaml");
    std::fs::write(
        &path,
        r#"apiVersion: openslo/v1
kind: SLO
metadata: { name: availability }
spec:
  service: shop
  indicator:
    metadata: { name: errors }
    spec:
      ratioMetric:
        bad: { metricSource: { type: Prometheus, spec: { query: 'sum(rate(http_server_requests_total{status="500"}[{{window}}]))' } } }
        total: { metricSource: { type: Prometheus, spec: { query: 'sum(rate(http_server_requests_total[{{window}}]))' } } }
  timeWindow:
    - duration: 1w
      calendar: { startTime: "2022-01-01 12:00:00", timeZone: America/New_York }
  budgetingMethod: Occurrences
  objectives: [ { target: 0.99 } ]
"#,
    )
    .unwrap();
    let rules = generate(&path);
    let _ = std::fs::remove_dir_all(dir);
    // 10 % fail until 63h50m: after noon UTC, before the New York week ends.
    let series = failing_until(63 * 60 + 50, "");
    let ratio = format!("round(slo:sli_error:ratio_rate7d{{{SLO_LABELS}}} * 1000)");
    let labels = format!("{{{SLO_LABELS},sloth_window=\"7d\"}}");
    let at = |time: &str, value: f64| sample(&ratio, time, &labels, value);
    let test = test_file(
        "10m",
        "1m",
        series,
        // Still the week of the failures at 64h30m: 383 evaluations at 10 % and four
        // clean since 63h50m give 9.9 % (a week from noon UTC would hold 24 and give
        // 8.6 %); a new week, with none, at 66h.
        vec![at("64h30m", 99.0), at("66h", 0.0)],
    );
    promtool_test(&rules, &test);
    let _ = std::fs::remove_dir_all(rules);
}

/// 100 requests a minute for two hours, sampled every 15s; in six minutes 10 % fail, in the
/// rest 2 %. Returns the error and total counter values.
fn two_hours_with_six_bad_minutes() -> (String, String) {
    let bad_minute = |m: usize| m % 20 == 10;
    let (mut errors, mut total) = (vec![0.0], vec![0.0]);
    for step in 0..(120 * 4) {
        let per_step_errors = if bad_minute(step / 4) { 2.5 } else { 0.5 };
        errors.push(errors.last().unwrap() + per_step_errors);
        total.push(total.last().unwrap() + 25.0);
    }
    let text = |v: &[f64]| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    (text(&errors), text(&total))
}

fn slice_spec(budgeting: &str) -> String {
    format!(
        "service: shop\nslos:\n  - name: availability\n    objective: 99\n    sli:\n      type: ratio\n      errors: sum(rate(requests_failed_total[{{{{window}}}}]))\n      total: sum(rate(requests_total[{{{{window}}}}]))\n    budgeting: {budgeting}\n"
    )
}

fn slice_test(expected_ratio_e4: f64) -> Value {
    let (errors, total) = two_hours_with_six_bad_minutes();
    test_file(
        "1m",
        "15s",
        vec![
            json!({ "series": "requests_failed_total", "values": errors }),
            json!({ "series": "requests_total", "values": total }),
        ],
        vec![sample(
            &format!("round(slo:sli_error:ratio_rate30d{{{SLO_LABELS}}} * 10000)"),
            "120m",
            &format!("{{{SLO_LABELS},sloth_window=\"30d\"}}"),
            expected_ratio_e4,
        )],
    )
}

#[test]
fn timeslices_count_bad_minutes_not_bad_requests() {
    // 121 evaluations (minute 0 has no rate yet, and is a good slice); 6 bad slices.
    let dir = rules_for(&slice_spec(
        "{ method: timeslices, slice: 1m, slice_objective: 95 }",
    ));
    promtool_test(&dir, &slice_test((6.0_f64 / 121.0 * 1e4).round()));
    let _ = std::fs::remove_dir_all(dir);

    // RatioTimeslices averages the slices' ratios instead: (6 × 10 % + 114 × 2 %) / 121.
    let dir = rules_for(&slice_spec("{ method: ratio-timeslices, slice: 1m }"));
    promtool_test(
        &dir,
        &slice_test(((6.0 * 0.1 + 114.0 * 0.02) / 121.0 * 1e4_f64).round()),
    );
    let _ = std::fs::remove_dir_all(dir);
}
