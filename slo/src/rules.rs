//! Prometheus rules for a service's SLOs: Sloth-compatible `slo:*` recordings, and
//! multi-window multi-burn-rate alerts built from [`crate::math::WORKBOOK_WINDOWS`].

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::calendar::{Calendar, CalendarUnit};
use crate::math::{AlertWindow, Severity, alert_ranges};
use crate::promql::{error_ratio, errors_rate, number, total_rate};
use crate::spec::{Budgeting, ServiceSlos, Slo, Window, prom_duration};

/// `service-slo`: unique across the platform, used to select one SLO's series.
pub fn slo_id(service: &str, slo: &Slo) -> String {
    format!("{service}-{}", slo.name)
}

/// The labels every series of one SLO carries (Sloth's names, which dashboards expect).
pub fn slo_labels(service: &ServiceSlos, slo: &Slo) -> Vec<(String, String)> {
    let mut labels = vec![
        ("sloth_service".to_owned(), service.service.clone()),
        ("sloth_slo".to_owned(), slo.name.clone()),
        ("sloth_id".to_owned(), slo_id(&service.service, slo)),
    ];
    labels.extend(service.labels.iter().cloned());
    labels.extend(slo.labels.iter().cloned());
    labels
}

fn label_map(labels: &[(String, String)]) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<Map<_, _>>(),
    )
}

/// Every range a recording is kept for: the alert windows plus 5m for the current burn.
pub fn recorded_ranges(windows: &[AlertWindow]) -> Vec<Duration> {
    let mut ranges = alert_ranges(windows);
    ranges.push(Duration::from_secs(300));
    ranges.sort();
    ranges.dedup();
    ranges
}

fn record(name: &str, expr: String, labels: &[(String, String)]) -> Value {
    json!({ "record": name, "expr": expr, "labels": label_map(labels) })
}

/// The error ratio over one range, labelled with it as Sloth does (`sloth_window`), which
/// Sloth's dashboards select on.
fn window_record(range: Duration, expr: String, labels: &[(String, String)]) -> Value {
    let window = prom_duration(range);
    let mut labels = labels.to_vec();
    labels.push(("sloth_window".into(), window.clone()));
    record(&format!("slo:sli_error:ratio_rate{window}"), expr, &labels)
}

/// `sloth_slo_info`: one series per SLO naming its objective, as Sloth writes it.
fn info_record(slo: &Slo, labels: &[(String, String)]) -> Value {
    let mut labels = labels.to_vec();
    labels.extend([
        ("sloth_mode".to_owned(), "sloop-generate".to_owned()),
        ("sloth_objective".to_owned(), number(slo.objective * 100.0)),
        (
            "sloth_version".to_owned(),
            format!("sloop-{}", env!("CARGO_PKG_VERSION")),
        ),
    ]);
    record("sloth_slo_info", "vector(1)".into(), &labels)
}

/// The error ratio of every alert window. Occurrence SLOs divide errors by requests. Slice
/// SLOs record each slice's error ratio and what it costs (1 for a bad slice under
/// Timeslices, its error ratio under RatioTimeslices) at every evaluation, and average that
/// over the window: with the evaluation interval equal to the slice, that is the share of
/// bad slices (or the slices' mean ratio); a shorter interval samples overlapping slices,
/// which weighs every moment alike. Raw samples, not subqueries, keep the cost at what the
/// window holds.
fn window_rules(
    slo: &Slo,
    labels: &[(String, String)],
    select: &str,
    windows: &[AlertWindow],
) -> Vec<Value> {
    // A rolling period that is also an alert window is recorded once, as the period.
    let mut ranges = recorded_ranges(windows);
    if let Window::Rolling(period) = slo.window {
        ranges.retain(|r| *r != period);
    }
    let Some(slice) = slo.budgeting.slice() else {
        return ranges
            .into_iter()
            .map(|range| window_record(range, error_ratio(&slo.sli, range), labels))
            .collect();
    };
    let mut slice_labels = labels.to_vec();
    slice_labels.push(("sloth_slice".into(), prom_duration(slice)));
    let mut rules = vec![
        record(
            "slo:sli_error:slice_ratio",
            error_ratio(&slo.sli, slice),
            &slice_labels,
        ),
        record("slo:sli_error:slice_cost", slice_cost(slo, select), labels),
    ];
    rules.extend(ranges.into_iter().map(|range| {
        let expr = format!(
            "avg_over_time(slo:sli_error:slice_cost{select}[{}])",
            prom_duration(range)
        );
        window_record(range, expr, labels)
    }));
    rules
}

/// What one slice costs a slice SLO: 1 for a bad slice (Timeslices), or its own error
/// ratio (RatioTimeslices).
fn slice_cost(slo: &Slo, select: &str) -> String {
    let ratio = format!("max without (sloth_slice) (slo:sli_error:slice_ratio{select})");
    match slo.budgeting {
        Budgeting::Timeslices {
            slice_objective, ..
        } => format!("{ratio} > bool {}", number(1.0 - slice_objective)),
        _ => ratio,
    }
}

/// The period's error ratio. A rolling period of an occurrence SLO is a ratio of sums of
/// 5m rates (not an average of ratios, which would weigh a quiet night like a busy
/// afternoon); of a slice SLO, the mean slice cost. A calendar period sums only the samples
/// recorded in the current week or month: each is recorded again labelled with its period
/// (`calendar_period`), and the sums keep the label of the current one.
pub fn period_rules(slo: &Slo, labels: &[(String, String)], select: &str) -> Vec<Value> {
    let period = slo.window.period();
    let mut rules = Vec::new();
    let five = Duration::from_secs(300);
    let summed: Vec<&str> = if slo.budgeting.slice().is_none() {
        rules.push(record(
            "slo:sli_errors:rate5m",
            errors_rate(&slo.sli, five),
            labels,
        ));
        rules.push(record(
            "slo:sli_requests:rate5m",
            total_rate(&slo.sli, five),
            labels,
        ));
        vec!["slo:sli_errors:rate5m", "slo:sli_requests:rate5m"]
    } else {
        vec!["slo:sli_error:slice_cost"]
    };
    let expr = match &slo.window {
        Window::Rolling(d) => {
            let range = prom_duration(*d);
            match summed.as_slice() {
                [errors, requests] => format!(
                    "sum_over_time({errors}{select}[{range}])\n/\nclamp_min(sum_over_time({requests}{select}[{range}]), 1e-12)"
                ),
                _ => format!("avg_over_time(slo:sli_error:slice_cost{select}[{range}])"),
            }
        }
        Window::Calendar(calendar) => {
            rules.push(record(
                "slo:calendar_period:id",
                format!(
                    "count_values(\"calendar_period\", {})",
                    calendar_period_id(calendar)
                ),
                labels,
            ));
            for name in &summed {
                rules.push(record(
                    &format!("{name}:calendar"),
                    format!(
                        "{name}{select} * on() group_left(calendar_period) slo:calendar_period:id{select}"
                    ),
                    labels,
                ));
            }
            let range = match calendar.unit {
                CalendarUnit::Week => "7d",
                CalendarUnit::Month => "31d",
            };
            let this_period = |over_time: &str, name: &str| {
                format!(
                    "sum without (calendar_period) ({over_time}({name}:calendar{select}[{range}]) and on(calendar_period) slo:calendar_period:id{select})"
                )
            };
            match summed.as_slice() {
                [errors, requests] => format!(
                    "{}\n/\nclamp_min({}, 1e-12)",
                    this_period("sum_over_time", errors),
                    this_period("sum_over_time", requests)
                ),
                _ => format!(
                    "{}\n/\nclamp_min({}, 1)",
                    this_period("sum_over_time", "slo:sli_error:slice_cost"),
                    this_period("count_over_time", "slo:sli_error:slice_cost")
                ),
            }
        }
    };
    rules.push(window_record(period, expr, labels));
    rules
}

/// Local time in the calendar's zone, as a PromQL scalar (seconds since the epoch as if
/// the wall clock were UTC).
fn local_time(calendar: &Calendar) -> String {
    format!("time() + {}", calendar.offset_expr())
}

/// Which week or month an evaluation falls in, in the calendar's zone.
fn calendar_period_id(calendar: &Calendar) -> String {
    let local = local_time(calendar);
    match calendar.unit {
        CalendarUnit::Month => {
            format!("year(vector({local})) * 12 + month(vector({local}))")
        }
        CalendarUnit::Week => format!(
            "floor(vector(({local} - {}) / 604800))",
            calendar.anchor_local_epoch()
        ),
    }
}

/// How much of the current week or month has gone by, 0 to 1, as a PromQL scalar.
fn calendar_elapsed(calendar: &Calendar) -> String {
    let local = local_time(calendar);
    match calendar.unit {
        CalendarUnit::Month => {
            let v = format!("vector({local})");
            format!(
                "scalar(((day_of_month({v}) - 1) * 86400 + hour({v}) * 3600 + minute({v}) * 60) / (days_in_month({v}) * 86400))"
            )
        }
        CalendarUnit::Week => format!(
            "((({local} - {}) % 604800) / 604800)",
            calendar.anchor_local_epoch()
        ),
    }
}

/// `slo:time_period:days`: the window's length, or the current month's.
fn period_days(window: &Window) -> String {
    match window {
        Window::Calendar(c) if c.unit == CalendarUnit::Month => {
            format!("days_in_month(vector({}))", local_time(c))
        }
        _ => format!(
            "vector({})",
            number(window.period().as_secs_f64() / 86_400.0)
        ),
    }
}

/// `slo:period_error_budget_remaining:ratio`. A calendar period's budget is the whole
/// period's: what the burn so far has spent of it grows with the share of the period gone,
/// so one bad hour on the 1st does not read as a spent month.
fn budget_remaining(window: &Window, select: &str) -> String {
    match window {
        Window::Rolling(_) => format!("1 - slo:period_burn_rate:ratio{select}"),
        Window::Calendar(c) => format!(
            "1 - slo:period_burn_rate:ratio{select} * {}",
            calendar_elapsed(c)
        ),
    }
}

/// The rule file for one service, as a YAML-ready value.
pub fn rule_groups(service: &ServiceSlos, windows: &[AlertWindow]) -> Value {
    let mut groups = Vec::new();
    for slo in &service.slos {
        let id = slo_id(&service.service, slo);
        let labels = slo_labels(service, slo);
        let select = format!("{{sloth_id=\"{id}\"}}");
        let budget = slo.error_budget();
        let period = slo.window.period();
        let period_range = prom_duration(period);

        let mut sli = window_rules(slo, &labels, &select, windows);
        sli.extend(period_rules(slo, &labels, &select));

        let meta = [
            record(
                "slo:objective:ratio",
                format!("vector({})", number(slo.objective)),
                &labels,
            ),
            record(
                "slo:error_budget:ratio",
                format!("vector({})", number(budget)),
                &labels,
            ),
            record("slo:time_period:days", period_days(&slo.window), &labels),
            record(
                "slo:current_burn_rate:ratio",
                format!(
                    "max without (sloth_window) (slo:sli_error:ratio_rate5m{select}) / {}",
                    number(budget)
                ),
                &labels,
            ),
            record(
                "slo:period_burn_rate:ratio",
                format!(
                    "max without (sloth_window) (slo:sli_error:ratio_rate{period_range}{select}) / {}",
                    number(budget)
                ),
                &labels,
            ),
            record(
                "slo:period_error_budget_remaining:ratio",
                budget_remaining(&slo.window, &select),
                &labels,
            ),
            info_record(slo, &labels),
        ];
        let mut rules = sli;
        rules.extend(meta);
        rules.extend(
            [Severity::Page, Severity::Ticket]
                .into_iter()
                .filter(|severity| slo.alerting.alert(*severity).enabled)
                .filter_map(|severity| alert_rule(service, slo, windows, severity)),
        );
        // One group per SLO: Prometheus runs the rules of a group in order, so the alerts
        // always read this evaluation's recordings. Across groups the order is not defined,
        // and an alert could read recordings older than the lookback window.
        groups.push(json!({ "name": format!("slo-{id}"), "rules": rules }));
    }
    json!({ "groups": groups })
}

/// The PromQL condition of one window pair: both windows burn faster than designed. The
/// two recordings differ in `sloth_window`, so it is dropped before they are joined.
pub fn window_condition(id: &str, window: &AlertWindow, budget: f64, period: Duration) -> String {
    let limit = number(window.burn_threshold(period) * budget);
    let over = |range: Duration| {
        format!(
            "max(slo:sli_error:ratio_rate{}{{sloth_id=\"{id}\"}} > {limit}) without (sloth_window)",
            prom_duration(range)
        )
    };
    format!("({}\nand\n{})", over(window.long), over(window.short))
}

fn alert_rule(
    service: &ServiceSlos,
    slo: &Slo,
    windows: &[AlertWindow],
    severity: Severity,
) -> Option<Value> {
    let id = slo_id(&service.service, slo);
    let period = slo.window.period();
    let pairs: Vec<&AlertWindow> = windows.iter().filter(|w| w.severity == severity).collect();
    if pairs.is_empty() {
        return None;
    }
    let expr = pairs
        .iter()
        .map(|w| window_condition(&id, w, slo.error_budget(), period))
        .collect::<Vec<_>>()
        .join("\nor\n");
    let mut rule = json!({
        "alert": slo.alerting.name(severity),
        "expr": expr,
        "labels": label_map(&alert_labels(service, slo, severity)),
        "annotations": annotations(service, slo, severity, &pairs, period),
    });
    if let Some(pending) = slo.alerting.alert(severity).pending {
        rule["for"] = json!(prom_duration(pending));
    }
    Some(rule)
}

/// Every label an alert of this severity carries: the SLO's, then the severity's own.
pub fn alert_labels(service: &ServiceSlos, slo: &Slo, severity: Severity) -> Vec<(String, String)> {
    let mut labels = slo_labels(service, slo);
    labels.push(("sloth_severity".into(), severity.as_str().into()));
    labels.extend(slo.alerting.alert(severity).labels.iter().cloned());
    labels
}

/// What an alert of this severity says: which burns it watches and what to do.
pub fn alert_annotations(
    service: &ServiceSlos,
    slo: &Slo,
    windows: &[AlertWindow],
    severity: Severity,
) -> Value {
    let pairs: Vec<&AlertWindow> = windows.iter().filter(|w| w.severity == severity).collect();
    annotations(service, slo, severity, &pairs, slo.window.period())
}

fn annotations(
    service: &ServiceSlos,
    slo: &Slo,
    severity: Severity,
    pairs: &[&AlertWindow],
    period: Duration,
) -> Value {
    let burns = pairs
        .iter()
        .map(|w| {
            format!(
                "{}x over {} and {}",
                number(w.burn_threshold(period)),
                prom_duration(w.long),
                prom_duration(w.short)
            )
        })
        .collect::<Vec<_>>()
        .join(", or ");
    let mut annotations = json!({
        "summary": format!("{} {} is burning its error budget too fast", service.service, slo.name),
        "description": format!(
            "{}: the error ratio exceeds {burns} (objective {}%, period {}). At this rate the budget runs out early; check `slo report` and the SLO dashboard.",
            slo_id(&service.service, slo),
            number(slo.objective * 100.0),
            prom_duration(period),
        ),
    });
    for (name, value) in &slo.alerting.alert(severity).annotations {
        annotations[name] = json!(value);
    }
    annotations
}

/// Renders a value as YAML.
pub fn to_yaml(value: &Value) -> String {
    serde_saphyr::to_string(value).expect("JSON values always serialise to YAML")
}
