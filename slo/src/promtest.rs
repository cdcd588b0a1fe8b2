//! promtool unit tests for the generated rules: each alert window pair fires at a burn a
//! little above the one it is designed for and stays silent a little below it, and the
//! recordings read 0 (not NaN) when there is no traffic.
//!
//! Scenarios: a clean baseline, then a constant burn lasting exactly the pair's long
//! window. The baseline dilutes the slower rule of the same severity, so each rule is
//! shown on its own.

use std::time::Duration;

use serde_json::{Value, json};

use crate::math::{AlertWindow, Severity};
use crate::promql::{number, synthetic_labels};
use crate::rules::{alert_annotations, alert_labels, alert_name, slo_id, slo_labels};
use crate::spec::{ServiceSlos, Sli, Slo, prom_duration};

/// Requests per sample step in synthetic traffic.
const TRAFFIC: f64 = 1000.0;
/// How far above and below its threshold each scenario burns.
const FIRE_FACTOR: f64 = 1.25;
const SILENT_FACTOR: f64 = 0.75;

/// promtool test files for `rule_file`, one per severity (`<service>.page.test.yml`, ...),
/// each with an evaluation interval suited to its windows: the three-day ticket windows
/// evaluated every minute would take promtool minutes. Also returns, for each SLO that
/// cannot get synthetic inputs (raw PromQL SLIs, regex selectors), why.
pub fn test_files(
    service: &ServiceSlos,
    windows: &[AlertWindow],
    rule_file: &str,
) -> (Vec<(String, Value)>, Vec<String>) {
    let mut by_severity: Vec<(Severity, Vec<Value>)> = Vec::new();
    let mut skipped = Vec::new();
    for slo in &service.slos {
        let Some(inputs) = SyntheticInputs::for_slo(slo) else {
            skipped.push(format!(
                "{}: its SLI is raw PromQL or uses regex matchers, so no synthetic series can be derived; test its alerts by hand",
                slo_id(&service.service, slo)
            ));
            continue;
        };
        let mut add = |severity: Severity, test: Value| match by_severity
            .iter_mut()
            .find(|(s, _)| *s == severity)
        {
            Some((_, tests)) => tests.push(test),
            None => by_severity.push((severity, vec![test])),
        };
        add(Severity::Page, zero_traffic_test(service, slo, &inputs));
        if slo.alerting.enabled {
            for window in windows {
                for fires in [true, false] {
                    add(
                        window.severity,
                        window_test(service, slo, &inputs, windows, window, fires),
                    );
                }
            }
        }
    }
    let files = by_severity
        .into_iter()
        .map(|(severity, tests)| {
            let fast = windows
                .iter()
                .filter(|w| w.severity == severity)
                .all(|w| w.short <= Duration::from_secs(30 * 60));
            let interval = if fast { "1m" } else { "15m" };
            (
                format!("{}.{}.test.yml", service.service, severity.as_str()),
                json!({ "rule_files": [rule_file], "evaluation_interval": interval, "tests": tests }),
            )
        })
        .collect();
    (files, skipped)
}

/// How to write good and bad events for an SLI as raw series.
struct SyntheticInputs {
    /// (series selector, counts good events?, counts bad events?)
    series: Vec<(String, bool, bool)>,
}

impl SyntheticInputs {
    fn for_slo(slo: &Slo) -> Option<Self> {
        let with = |base: &[(String, String)], extra: &[(&str, &str)]| {
            let mut labels: Vec<String> =
                base.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            labels.extend(extra.iter().map(|(k, v)| format!("{k}=\"{v}\"")));
            format!("{{{}}}", labels.join(","))
        };
        match &slo.sli {
            Sli::Availability {
                metric,
                selector,
                error_status,
            } => {
                let base = synthetic_labels(selector)?;
                // A status value the error regex matches, and one it does not.
                let bad = if error_status == "5.." {
                    "500".to_owned()
                } else {
                    return None;
                };
                Some(Self {
                    series: vec![
                        (
                            format!("{metric}{}", with(&base, &[("status", "200")])),
                            true,
                            false,
                        ),
                        (
                            format!("{metric}{}", with(&base, &[("status", &bad)])),
                            false,
                            true,
                        ),
                    ],
                })
            }
            Sli::Latency {
                metric,
                selector,
                threshold_seconds,
            } => {
                let base = synthetic_labels(selector)?;
                let le = format!("{threshold_seconds}");
                Some(Self {
                    series: vec![
                        (
                            format!("{metric}_bucket{}", with(&base, &[("le", &le)])),
                            true,
                            false,
                        ),
                        (
                            format!("{metric}_bucket{}", with(&base, &[("le", "+Inf")])),
                            true,
                            true,
                        ),
                        (format!("{metric}_count{}", with(&base, &[])), true, true),
                    ],
                })
            }
            Sli::Ratio { .. } => None,
        }
    }

    /// Input series for phases of (steps, error ratio), as promtool's expanding notation.
    fn series(&self, phases: &[(u64, f64)]) -> Vec<Value> {
        self.series
            .iter()
            .map(|(name, good, bad)| {
                let per_step: Vec<(u64, f64)> = phases
                    .iter()
                    .map(|(steps, ratio)| {
                        let errors = TRAFFIC * ratio;
                        let inc = match (good, bad) {
                            (true, true) => TRAFFIC,
                            (true, false) => TRAFFIC - errors,
                            (false, true) => errors,
                            (false, false) => 0.0,
                        };
                        (*steps, inc)
                    })
                    .collect();
                json!({ "series": name, "values": counter_values(&per_step) })
            })
            .collect()
    }
}

/// A counter growing by `inc` at each of a phase's `steps` steps, phases back to back:
/// `0+0x3 5+5x2` is four samples at 0, then 5, 10, 15.
fn counter_values(phases: &[(u64, f64)]) -> String {
    let mut parts = Vec::new();
    let mut value = 0.0;
    for (i, (steps, inc)) in phases.iter().enumerate() {
        // The first phase starts with the sample at 0; later phases continue from the last.
        let (start, count) = if i == 0 {
            (0.0, *steps)
        } else {
            (value + inc, steps - 1)
        };
        parts.push(format!("{}+{}x{}", number(start), number(*inc), count));
        value = start + inc * count as f64;
    }
    parts.join(" ")
}

fn full_labels(service: &ServiceSlos, slo: &Slo, severity: Severity) -> Value {
    let labels = alert_labels(service, slo, severity);
    Value::Object(
        labels
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    )
}

fn window_test(
    service: &ServiceSlos,
    slo: &Slo,
    inputs: &SyntheticInputs,
    windows: &[AlertWindow],
    window: &AlertWindow,
    fires: bool,
) -> Value {
    let period = slo.window.period();
    let burn = window.burn_threshold(period) * if fires { FIRE_FACTOR } else { SILENT_FACTOR };
    let ratio = burn * slo.error_budget();
    let step = if window.short <= Duration::from_secs(30 * 60) {
        60
    } else {
        300
    };
    let longest_same = windows
        .iter()
        .filter(|w| w.severity == window.severity)
        .map(|w| w.long)
        .max()
        .unwrap_or(window.long);
    let baseline = longest_same.saturating_sub(window.long);
    let baseline_steps = baseline.as_secs() / step;
    let burn_steps = window.long.as_secs() / step;
    let phases: Vec<(u64, f64)> = if baseline_steps > 0 {
        vec![(baseline_steps, 0.0), (burn_steps, ratio)]
    } else {
        vec![(burn_steps, ratio)]
    };
    let eval = baseline + window.long;
    let expected: Vec<Value> = if fires {
        vec![
            json!({ "exp_labels": full_labels(service, slo, window.severity), "exp_annotations": alert_annotations(service, slo, windows, window.severity) }),
        ]
    } else {
        Vec::new()
    };
    json!({
        "name": format!(
            "{}: {} {} at {}x over {} and {}",
            slo_id(&service.service, slo),
            window.severity.as_str(),
            if fires { "fires" } else { "stays silent" },
            number(burn),
            prom_duration(window.long),
            prom_duration(window.short),
        ),
        "interval": format!("{step}s"),
        "input_series": inputs.series(&phases),
        "alert_rule_test": [{
            "eval_time": prom_duration(eval),
            "alertname": alert_name(window.severity),
            "exp_alerts": expected,
        }],
    })
}

fn zero_traffic_test(service: &ServiceSlos, slo: &Slo, inputs: &SyntheticInputs) -> Value {
    let mut labels = slo_labels(service, slo);
    labels.sort();
    let selector = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect::<Vec<_>>()
        .join(",");
    // Only the good-event series exists and it never moves: no traffic, no errors recorded.
    let idle: Vec<Value> = inputs
        .series
        .iter()
        .filter(|(_, good, _)| *good)
        .map(|(name, _, _)| json!({ "series": name, "values": "0+0x60" }))
        .collect();
    let sample = |name: &str, value: f64| {
        json!({ "expr": format!("{name}{{sloth_id=\"{}\"}}", slo_id(&service.service, slo)), "eval_time": "1h",
                "exp_samples": [{ "labels": format!("{name}{{{selector}}}"), "value": value }] })
    };
    json!({
        "name": format!("{}: no traffic reads as no errors, not NaN", slo_id(&service.service, slo)),
        "interval": "1m",
        "input_series": idle,
        "promql_expr_test": [
            sample("slo:sli_error:ratio_rate5m", 0.0),
            sample("slo:current_burn_rate:ratio", 0.0),
            sample("slo:period_error_budget_remaining:ratio", 1.0),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_phases_continue_where_they_left_off() {
        assert_eq!(counter_values(&[(3, 10.0)]), "0+10x3");
        // 3 flat steps (4 samples at 0), then 2 more samples rising by 5.
        assert_eq!(counter_values(&[(3, 0.0), (3, 5.0)]), "0+0x3 5+5x2");
    }
}
