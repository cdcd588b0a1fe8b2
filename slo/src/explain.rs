//! `slo explain`: one SLO in words. What it measures, how much failure its budget allows,
//! the PromQL behind each window, each alert's thresholds and the share of the budget it
//! stands for, and, measured against a live source, how long until each alert fires at
//! the current burn.

use std::fmt::Write as _;
use std::time::Duration;

use crate::evaluate::{Measured, humanize};
use crate::math::{AlertWindow, Severity, budget_minutes, burn_rate};
use crate::promql::{error_ratio, number};
use crate::rules::{alert_labels, period_rules, recorded_ranges, slo_id};
use crate::spec::{Budgeting, ServiceSlos, Sli, Slo, Window, prom_duration};

/// The explanation of `slo`; `now` adds the current burn and time to each alert.
pub fn explain(
    service: &ServiceSlos,
    slo: &Slo,
    windows: &[AlertWindow],
    now: Option<&Measured>,
) -> String {
    let mut out = String::new();
    let id = slo_id(&service.service, slo);
    let _ = writeln!(out, "{id}: {} of service {}", slo.name, service.service);
    if !slo.description.is_empty() {
        let _ = writeln!(out, "  {}", slo.description);
    }
    let _ = writeln!(out, "\nWhat it measures\n  {}", measures(slo));
    let _ = writeln!(out, "\nObjective\n  {}", objective(slo));
    let _ = writeln!(
        out,
        "\nPromQL of each window (error ratio; 0, not NaN, without traffic)"
    );
    // A rolling period that is also an alert window is listed once, as the period below.
    let period = slo.window.period();
    for range in recorded_ranges(windows)
        .into_iter()
        .filter(|r| *r != period || !matches!(slo.window, Window::Rolling(_)))
    {
        let query = error_ratio(&slo.sli, range).replace('\n', " ");
        let _ = writeln!(out, "  {:>4}  {query}", prom_duration(range));
    }
    let select = format!("{{sloth_id=\"{id}\"}}");
    if let Some(period) = period_rules(slo, &[], &select).last() {
        let query = period["expr"]
            .as_str()
            .unwrap_or_default()
            .replace('\n', " ");
        let _ = writeln!(
            out,
            "  {:>4}  {query}\n        (the period, over what the generated rules record every evaluation)",
            prom_duration(slo.window.period())
        );
    }
    if let Some(slice) = slo.budgeting.slice() {
        let _ = writeln!(
            out,
            "  The generated rules record this ratio over each {} slice and average what \
             each slice costs over the window (see Objective).",
            prom_duration(slice)
        );
    }
    let _ = writeln!(out, "\nAlerts");
    for severity in [Severity::Page, Severity::Ticket] {
        let _ = write!(out, "{}", alert(service, slo, windows, severity, now));
    }
    match now {
        Some(m) => {
            let burn = burn_rate(m.current_ratio, slo.error_budget());
            let _ = writeln!(
                out,
                "\nNow\n  Error ratio over the last 5m: {}% (burn {}x).",
                number((m.current_ratio * 100.0 * 1e4).round() / 1e4),
                number((burn * 100.0).round() / 100.0)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "\nPass --prometheus URL to see the current burn and how long until each alert fires at it."
            );
        }
    }
    out
}

fn measures(slo: &Slo) -> String {
    match &slo.sli {
        Sli::Availability {
            metric,
            selector,
            error_status,
        } => format!(
            "Availability: the share of requests counted by {metric}{{{selector}}} whose status does not match `{error_status}`."
        ),
        Sli::Latency {
            metric,
            selector,
            threshold_seconds,
        } => format!(
            "Latency: the share of requests in the histogram {metric}{{{selector}}} that finish within {} ms (the `le` bucket of {threshold_seconds}).",
            number(threshold_seconds * 1000.0)
        ),
        Sli::Ratio { errors, total } => format!(
            "A ratio of two queries: errors\n    {errors}\n  over all events\n    {total}\n  where {{{{window}}}} is each window's range."
        ),
    }
}

fn objective(slo: &Slo) -> String {
    let period = slo.window.period();
    let budget = slo.error_budget();
    let window = match &slo.window {
        Window::Rolling(d) => format!("over a rolling {}", prom_duration(*d)),
        Window::Calendar(c) => format!(
            "over each {}; alert thresholds spread the budget over {}",
            c.describe(),
            prom_duration(period)
        ),
    };
    let budgeting = match slo.budgeting {
        Budgeting::Occurrences => format!(
            "Its error budget is {}% of events: 1 in {} may fail, or {} minutes of total outage.",
            number(budget * 100.0),
            number((1.0 / budget).round()),
            number((budget_minutes(budget, period) * 10.0).round() / 10.0)
        ),
        Budgeting::Timeslices {
            slice,
            slice_objective,
        } => format!(
            "It counts time slices, not events: a {} slice is good when at least {}% of its events are; {}% of slices may be bad.",
            prom_duration(slice),
            number(slice_objective * 100.0),
            number(budget * 100.0)
        ),
        Budgeting::RatioTimeslices { slice } => format!(
            "It averages time slices: the SLI is the mean of every {} slice's good ratio, so a quiet slice weighs as much as a busy one.",
            prom_duration(slice)
        ),
    };
    format!(
        "{}% {window}.\n  {budgeting}",
        number(slo.objective * 100.0)
    )
}

fn alert(
    service: &ServiceSlos,
    slo: &Slo,
    windows: &[AlertWindow],
    severity: Severity,
    now: Option<&Measured>,
) -> String {
    let settings = slo.alerting.alert(severity);
    let name = slo.alerting.name(severity);
    if !settings.enabled {
        return format!("  {name} ({}): disabled.\n", severity.as_str());
    }
    let period = slo.window.period();
    let budget = slo.error_budget();
    let mut out = format!("  {name} ({}) fires when", severity.as_str());
    let pairs: Vec<&AlertWindow> = windows.iter().filter(|w| w.severity == severity).collect();
    for (i, w) in pairs.iter().enumerate() {
        let burn = w.burn_threshold(period);
        let _ = write!(
            out,
            "{}\n    the error ratio is over {}% (a {}x burn) in both the last {} and the last {}: \
             at that pace {}% of the budget goes in {}",
            if i == 0 { "" } else { ", or" },
            number(burn * budget * 100.0),
            number(burn),
            prom_duration(w.long),
            prom_duration(w.short),
            number(w.budget_share * 100.0),
            prom_duration(w.long)
        );
        if let Some(m) = now {
            let at = m.alert_inputs.iter().find(|(input, _, _)| input == *w);
            if let Some((_, long, short)) = at {
                let when = w.time_to_fire(*long, *short, m.current_ratio, budget, period);
                let _ = write!(out, " ({})", firing_in(when, settings.pending));
            }
        }
    }
    out.push_str(".\n");
    if let Some(pending) = settings.pending {
        let _ = writeln!(
            out,
            "    It waits {} (for:) before firing.",
            prom_duration(pending)
        );
    }
    let labels = alert_labels(service, slo, severity)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("sloth_"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(out, "    Labels: {labels}.");
    out
}

/// `firing now`, `fires in 25m at the current burn`, `will not fire at the current burn`.
/// With a `for:`, a condition that holds already fires once it has held that long, which
/// the windows alone cannot tell.
fn firing_in(when: Option<Duration>, pending: Option<Duration>) -> String {
    match (when, pending.unwrap_or_default()) {
        (None, _) => "will not fire at the current burn".into(),
        (Some(t), p) if t.is_zero() && p.is_zero() => "firing now".into(),
        (Some(t), p) if t.is_zero() => format!(
            "its condition holds now; it fires once it has held for {}",
            prom_duration(p)
        ),
        (Some(t), p) => format!(
            "fires in {} at the current burn",
            humanize(Duration::from_secs((t + p).as_secs().max(1)))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::{Counts, WORKBOOK_WINDOWS};
    use crate::spec::parse_native;

    fn service() -> ServiceSlos {
        parse_native(
            std::path::Path::new("user.yaml"),
            "service: user\nslos:\n  - name: availability\n    objective: 99.9\n    sli: { type: availability, selector: 'service=\"user\"' }\n    alerting: { page_for: 2m }\n",
        )
        .unwrap()
    }

    #[test]
    fn says_what_is_measured_and_when_each_alert_fires() {
        let service = service();
        let text = explain(&service, &service.slos[0], &WORKBOOK_WINDOWS, None);
        assert!(text.contains("status does not match `5..`"), "{text}");
        assert!(
            text.contains("1 in 1000 may fail, or 43.2 minutes"),
            "{text}"
        );
        assert!(
            text.contains("over 1.44% (a 14.4x burn) in both the last 1h and the last 5m"),
            "{text}"
        );
        assert!(text.contains("2% of the budget goes in 1h"), "{text}");
        assert!(text.contains("It waits 2m (for:)"), "{text}");
        assert!(text.contains("   1h  (sum(rate(http_server_requests_total{service=\"user\",status=~\"5..\"}[1h]))"), "{text}");
        assert!(text.contains("--prometheus"), "{text}");
    }

    #[test]
    fn with_a_live_burn_it_says_how_long_until_each_alert_fires() {
        let service = service();
        let measured = Measured {
            period: Counts::new(1000.0, 1000.0),
            period_label: "30d".into(),
            windows: vec![],
            current_ratio: 0.0288,
            breakdown: vec![],
            calendar: None,
            history: vec![],
            alert_inputs: WORKBOOK_WINDOWS.iter().map(|w| (*w, 0.0, 0.0)).collect(),
        };
        let text = explain(
            &service,
            &service.slos[0],
            &WORKBOOK_WINDOWS,
            Some(&measured),
        );
        // The hour window reaches 14.4x in 30m; the page alert then waits its 2m.
        assert!(text.contains("fires in 32m at the current burn"), "{text}");
        let holding = Measured {
            alert_inputs: WORKBOOK_WINDOWS.iter().map(|w| (*w, 0.02, 0.02)).collect(),
            ..measured
        };
        let text = explain(
            &service,
            &service.slos[0],
            &WORKBOOK_WINDOWS,
            Some(&holding),
        );
        assert!(
            text.contains("its condition holds now; it fires once it has held for 2m"),
            "{text}"
        );
        assert!(text.contains("burn 28.8x"), "{text}");
    }
}
