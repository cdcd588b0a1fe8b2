//! promtool unit tests for the generated rules: each alert window pair fires at a burn a
//! little above the one it is designed for and stays silent a little below it, and the
//! recordings read 0 (not NaN) when there is no traffic.
//!
//! Scenarios: a clean baseline, then a constant burn lasting exactly the pair's long
//! window. The baseline dilutes the slower rule of the same severity, so each rule is
//! shown on its own.

use std::time::Duration;

use serde_json::{Value, json};

use crate::matchers::{self, Matcher, Op};
use crate::math::{AlertWindow, Severity};
use crate::promql::number;
use crate::rules::{alert_annotations, alert_labels, slo_id, slo_labels};
use crate::spec::{ServiceSlos, Sli, Slo, prom_duration};

/// Requests per sample step in synthetic traffic.
const TRAFFIC: f64 = 1000.0;
/// How far above and below its threshold each scenario burns.
const FIRE_FACTOR: f64 = 1.25;
const SILENT_FACTOR: f64 = 0.75;

/// promtool test files for `rule_file`, one per severity (`<service>.page.test.yml`, ...),
/// each with an evaluation interval suited to its windows: the three-day ticket windows
/// evaluated every minute would take promtool minutes. Also returns, for each SLO that
/// cannot get synthetic inputs (SLIs of other query shapes), why.
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
                "{}: its SLI queries are not `sum(rate(counter{{…}}[window]))` over one counter (or no label value satisfies their matchers), so no synthetic series can be derived; test its alerts by hand",
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
        if slo.budgeting.slice().is_some() {
            // A steady error ratio makes every slice good or every slice bad: burns between
            // need patterns of slices, which the slice tests in slo's own suite cover.
            skipped.push(format!(
                "{}'s alert windows: it budgets time slices, and a steady synthetic burn makes every slice alike",
                slo_id(&service.service, slo)
            ));
            continue;
        }
        for window in windows {
            if !slo.alerting.alert(window.severity).enabled {
                continue;
            }
            for fires in [true, false] {
                add(
                    window.severity,
                    window_test(service, slo, &inputs, windows, window, fires),
                );
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
        let series = |metric: &str, labels: &[(String, String)], good: bool, bad: bool| {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            (format!("{metric}{{{}}}", labels.join(",")), good, bad)
        };
        let with = |mut base: Vec<(String, String)>, label: &str, value: &str| {
            base.retain(|(k, _)| k != label);
            base.push((label.to_owned(), value.to_owned()));
            base
        };
        match &slo.sli {
            Sli::Availability {
                metric,
                selector,
                error_status,
            } => {
                let selected = matchers::parse(selector)?;
                let error = Matcher {
                    label: "status".into(),
                    op: Op::Matches,
                    value: error_status.clone(),
                };
                let base = matchers::satisfying(&selected)?;
                let bad = matchers::satisfying(&[selected.clone(), vec![error.clone()]].concat())?;
                let good = matchers::violating("status", &selected, &error)?;
                Some(Self {
                    series: vec![
                        series(metric, &with(base, "status", &good), true, false),
                        series(metric, &bad, false, true),
                    ],
                })
            }
            Sli::Latency {
                metric,
                selector,
                threshold_seconds,
            } => {
                let base = matchers::satisfying(&matchers::parse(selector)?)?;
                let le = format!("{threshold_seconds}");
                Some(Self {
                    series: vec![
                        series(
                            &format!("{metric}_bucket"),
                            &with(base.clone(), "le", &le),
                            true,
                            false,
                        ),
                        series(
                            &format!("{metric}_bucket"),
                            &with(base.clone(), "le", "+Inf"),
                            true,
                            true,
                        ),
                        series(&format!("{metric}_count"), &base, true, true),
                    ],
                })
            }
            Sli::Ratio { errors, total } => {
                // Errors and total count the same counter, errors with more matchers (or,
                // from OpenSLO's `good`, errors are total minus good events). One series
                // passes the picked-out matchers, the other passes total's and fails one
                // of the picked-out ones.
                let (metric, total_matchers) = matchers::counter_query(total)?;
                let (picked_query, picks_errors) = match crate::promql::good_of(errors, total) {
                    Some(good) => (good, false),
                    None => (errors.as_str(), true),
                };
                let (picked_metric, picked) = matchers::counter_query(picked_query)?;
                (metric == picked_metric).then_some(())?;
                let matching =
                    matchers::satisfying(&[total_matchers.clone(), picked.clone()].concat())?;
                let other = picked
                    .iter()
                    .filter(|p| !total_matchers.contains(p))
                    .find_map(|p| {
                        let value = matchers::violating(&p.label, &total_matchers, p)?;
                        let pinned = Matcher {
                            label: p.label.clone(),
                            op: Op::Equal,
                            value,
                        };
                        matchers::satisfying(&[total_matchers.clone(), vec![pinned]].concat())
                    })?;
                let (good, bad) = if picks_errors {
                    (other, matching)
                } else {
                    (matching, other)
                };
                Some(Self {
                    series: vec![
                        series(&metric, &good, true, false),
                        series(&metric, &bad, false, true),
                    ],
                })
            }
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
    // A clean baseline as long as the longest window the test's alert name covers, so the
    // burn shows in the pair under test and is diluted in the slower ones. When page and
    // ticket share a name (Sloth's `alerting.name`), that covers the other severity's
    // windows too, which must stay silent.
    let shared_name = slo.alerting.name.is_some();
    let longest_same = windows
        .iter()
        .filter(|w| shared_name || w.severity == window.severity)
        .map(|w| w.long)
        .max()
        .unwrap_or(window.long);
    let baseline = longest_same.saturating_sub(window.long);
    // An alert with `for:` fires that long after its condition first holds, so the burn
    // lasts that much longer.
    let pending = slo
        .alerting
        .alert(window.severity)
        .pending
        .unwrap_or_default();
    let burning_for = window.long + pending;
    let baseline_steps = baseline.as_secs() / step;
    let burn_steps = burning_for.as_secs().div_ceil(step);
    let phases: Vec<(u64, f64)> = if baseline_steps > 0 {
        vec![(baseline_steps, 0.0), (burn_steps, ratio)]
    } else {
        vec![(burn_steps, ratio)]
    };
    let eval = Duration::from_secs((baseline_steps + burn_steps) * step);
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
            "alertname": slo.alerting.name(window.severity),
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
    let sample = |name: &str, window: Option<&str>, value: f64| {
        let selector = match window {
            Some(window) => format!("{selector},sloth_window=\"{window}\""),
            None => selector.clone(),
        };
        json!({ "expr": format!("{name}{{sloth_id=\"{}\"}}", slo_id(&service.service, slo)), "eval_time": "1h",
                "exp_samples": [{ "labels": format!("{name}{{{selector}}}"), "value": value }] })
    };
    json!({
        "name": format!("{}: no traffic reads as no errors, not NaN", slo_id(&service.service, slo)),
        "interval": "1m",
        "input_series": idle,
        "promql_expr_test": [
            sample("slo:sli_error:ratio_rate5m", Some("5m"), 0.0),
            sample("slo:current_burn_rate:ratio", None, 0.0),
            sample("slo:period_error_budget_remaining:ratio", None, 1.0),
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
