//! The SLO report: per SLO the SLI, budget left (ratio and minutes), burn per window, the
//! alerts that would fire, time to exhaustion and the policy verdict; rendered as a
//! terminal table, Markdown, JSON or a self-contained HTML page with charts.

use std::fmt::Write as _;

use serde::Serialize;

use crate::breakdown::{Offender, offenders};
use crate::evaluate::{Measured, humanize};
use crate::math::{Severity, Verdict, budget_minutes, burn_rate, time_to_exhaustion, verdict};
use crate::promql::number;
use crate::rules::slo_id;
use crate::spec::{ServiceSlos, Slo};
use report_kit::{Chart, Page};

#[derive(Debug, Clone, Serialize)]
pub struct SloReport {
    pub id: String,
    pub service: String,
    pub slo: String,
    pub objective: f64,
    pub window: String,
    /// Share of good events (or good time slices) over `measured_over`.
    pub sli: f64,
    pub measured_over: String,
    pub good: f64,
    pub total: f64,
    pub budget_remaining: f64,
    /// Budget left, as minutes of total outage.
    pub budget_remaining_minutes: f64,
    pub burn_rates: Vec<WindowBurn>,
    pub current_burn: f64,
    pub firing: Vec<String>,
    /// Seconds until the budget is gone at the current burn; `None` when it is not burning.
    pub exhaustion_seconds: Option<u64>,
    pub verdict: Verdict,
    pub breached: bool,
    /// What burned the budget: bad events by route and status class, biggest first.
    pub breakdown: Vec<Offender>,
    /// Each alert window pair's burn threshold, e.g. ("page: 1h and 5m", 14.4).
    pub alert_burns: Vec<(String, f64)>,
    /// The 1h burn rate over the last day, as (hours before the report, burn); empty
    /// unless read from Prometheus.
    pub history: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WindowBurn {
    pub window: String,
    pub error_ratio: f64,
    pub burn_rate: f64,
}

pub fn build(
    service: &ServiceSlos,
    slo: &Slo,
    measured: &Measured,
    at_risk_below: f64,
) -> SloReport {
    let budget = slo.error_budget();
    let period = slo.window.period();
    let error_ratio = measured.period.error_ratio();
    // A calendar period's budget is the whole period's: the burn so far spends it in
    // proportion to how much of the period has gone.
    let (gone, length, left) = match measured.calendar {
        Some(p) => (
            p.elapsed.as_secs_f64() / p.length.as_secs_f64(),
            p.length,
            Some(p.length.saturating_sub(p.elapsed)),
        ),
        None => (1.0, period, None),
    };
    let remaining = 1.0 - burn_rate(error_ratio, budget) * gone;
    let current_burn = burn_rate(measured.current_ratio, budget);
    // The budget of a calendar period starts again at its end.
    let exhaustion = time_to_exhaustion(remaining, current_burn, length)
        .filter(|t| left.is_none_or(|left| *t <= left));
    let mut firing: Vec<String> = Vec::new();
    let mut paging = false;
    for (window, long, short) in &measured.alert_inputs {
        let alert = slo.alerting.alert(window.severity);
        if alert.enabled && window.fires(*long, *short, budget, period) {
            paging |= window.severity == Severity::Page;
            // Sloth's page and ticket alerts share one name; the severity tells them apart.
            let name = match slo.alerting.name {
                Some(_) => format!(
                    "{} ({})",
                    slo.alerting.name(window.severity),
                    window.severity.as_str()
                ),
                None => slo.alerting.name(window.severity),
            };
            if !firing.contains(&name) {
                firing.push(name);
            }
        }
    }
    SloReport {
        id: slo_id(&service.service, slo),
        service: service.service.clone(),
        slo: slo.name.clone(),
        objective: slo.objective,
        window: slo.window.describe(),
        sli: measured.period.sli(),
        measured_over: measured.period_label.clone(),
        good: measured.period.good,
        total: measured.period.total,
        budget_remaining: remaining,
        budget_remaining_minutes: remaining.max(0.0) * budget_minutes(budget, length),
        burn_rates: measured
            .windows
            .iter()
            .map(|(w, r)| WindowBurn {
                window: w.clone(),
                error_ratio: *r,
                burn_rate: burn_rate(*r, budget),
            })
            .collect(),
        current_burn,
        firing,
        exhaustion_seconds: exhaustion.map(|d| d.as_secs()),
        verdict: verdict(remaining, paging, at_risk_below),
        breached: measured.period.sli() < slo.objective,
        breakdown: offenders(measured.breakdown.clone(), 1.0 - remaining),
        history: measured
            .history
            .iter()
            .map(|(hours, ratio)| (*hours, burn_rate(*ratio, slo.error_budget())))
            .collect(),
        alert_burns: measured
            .alert_inputs
            .iter()
            .map(|(w, _, _)| {
                (
                    format!(
                        "{}: {} and {}",
                        w.severity.as_str(),
                        crate::spec::prom_duration(w.long),
                        crate::spec::prom_duration(w.short)
                    ),
                    w.burn_threshold(period),
                )
            })
            .collect(),
    }
}

fn percent(x: f64) -> String {
    format!("{}%", number((x * 100_000.0).round() / 1000.0))
}

/// When the budget runs out, for the table's "exhausted in" column.
fn exhaustion(r: &SloReport) -> String {
    match r.exhaustion_seconds {
        None if r.current_burn > 0.0 => "not this period".into(),
        None => "not being spent".into(),
        Some(0) => "exhausted".into(),
        Some(s) => humanize(std::time::Duration::from_secs(s)),
    }
}

fn burns(r: &SloReport) -> String {
    r.burn_rates
        .iter()
        .map(|b| {
            format!(
                "{} {}x",
                b.window,
                number((b.burn_rate * 100.0).round() / 100.0)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

const HEADERS: [&str; 9] = [
    "SLO",
    "objective",
    "SLI",
    "budget left",
    "minutes left",
    "burn",
    "alerts",
    "exhausted in",
    "verdict",
];

fn rows(reports: &[SloReport]) -> Vec<[String; 9]> {
    reports
        .iter()
        .map(|r| {
            [
                r.id.clone(),
                percent(r.objective),
                format!("{} ({})", percent(r.sli), r.measured_over),
                percent(r.budget_remaining),
                format!("{:.1}", r.budget_remaining_minutes),
                burns(r),
                if r.firing.is_empty() {
                    "none".into()
                } else {
                    r.firing.join(", ")
                },
                exhaustion(r),
                r.verdict.as_str().into(),
            ]
        })
        .collect()
}

/// Aligned columns for a terminal.
pub fn table(reports: &[SloReport]) -> String {
    let rows = rows(reports);
    let mut widths = HEADERS.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = line(HEADERS.to_vec()) + "\n";
    for row in &rows {
        out += &line(row.iter().map(String::as_str).collect());
        out.push('\n');
    }
    for r in reports.iter().filter(|r| !r.breakdown.is_empty()) {
        let _ = writeln!(
            out,
            "\nWhat burned {}'s budget ({}):",
            r.id, r.measured_over
        );
        for o in &r.breakdown {
            let _ = writeln!(out, "  {}", offender_line(o));
        }
    }
    out
}

/// `route=/users status=5xx: 12 bad events, 30% of the budget, 80% of the bad events`.
fn offender_line(o: &Offender) -> String {
    format!(
        "{}: {} bad events, {} of the budget, {} of the bad events",
        o.describe(),
        number(o.errors.round()),
        percent(o.budget_spent),
        percent(o.share_of_errors)
    )
}

pub fn markdown(reports: &[SloReport]) -> String {
    let mut out = String::from("# SLO report\n\n");
    out += &format!(
        "| {} |\n|{}|\n",
        HEADERS.join(" | "),
        HEADERS.map(|_| "---").join("|")
    );
    for row in rows(reports) {
        out += &format!("| {} |\n", row.map(|c| c.replace('|', "\\|")).join(" | "));
    }
    for r in reports {
        let _ = write!(
            out,
            "\n## {}\n\n{} good of {} events {}. Budget left {} ({:.1} minutes of full outage). Verdict: **{}**.\n\n| window | error ratio | burn rate |\n|---|---|---|\n",
            r.id,
            number(r.good.round()),
            number(r.total.round()),
            r.measured_over,
            percent(r.budget_remaining),
            r.budget_remaining_minutes,
            r.verdict.as_str()
        );
        for b in &r.burn_rates {
            let _ = writeln!(
                out,
                "| {} | {} | {}x |",
                b.window,
                percent(b.error_ratio),
                number((b.burn_rate * 100.0).round() / 100.0)
            );
        }
        if !r.breakdown.is_empty() {
            out += "\nWhat burned the budget:\n\n| group | bad events | budget spent | share of bad events |\n|---|---|---|---|\n";
            for o in &r.breakdown {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} |",
                    o.describe().replace('|', "\\|"),
                    number(o.errors.round()),
                    percent(o.budget_spent),
                    percent(o.share_of_errors)
                );
            }
        }
    }
    out
}

pub fn json(reports: &[SloReport]) -> String {
    serde_json::to_string_pretty(&serde_json::json!({ "slos": reports }))
        .expect("reports serialise")
}

/// A self-contained page (report-kit): the summary table, then per SLO its state in
/// sentences, the burn of each window as bars against the alert thresholds, and what
/// burned the budget.
pub fn html(reports: &[SloReport]) -> String {
    let mut page = Page::new("SLO report");
    page.table(&HEADERS, rows(reports).into_iter().map(Vec::from).collect());
    for r in reports {
        page.heading(&r.id);
        page.paragraph(&state(r));
        let windows: Vec<String> = r.burn_rates.iter().map(|b| b.window.clone()).collect();
        let burns: Vec<(f64, f64)> = r
            .burn_rates
            .iter()
            .enumerate()
            .map(|(i, b)| (i as f64, b.burn_rate))
            .collect();
        let mut chart = Chart::new(
            "Burn rate per window",
            "window",
            "burn rate (1 = budget lasts the period)",
        )
        .categories(&windows)
        .series("burn", &burns);
        for (label, burn) in &r.alert_burns {
            chart = chart.threshold(*burn, label);
        }
        page.chart(chart);
        if !r.history.is_empty() {
            let mut over_time = Chart::new(
                "Burn rate over the last day (1h window)",
                "hours before this report",
                "burn rate (1 = budget lasts the period)",
            )
            .series("1h burn", &r.history);
            // The thresholds that read the 1h window: the fast page pair's.
            for (label, burn) in r.alert_burns.iter().filter(|(l, _)| l.contains(": 1h ")) {
                over_time = over_time.threshold(*burn, label);
            }
            page.chart(over_time);
        }
        if !r.breakdown.is_empty() {
            page.paragraph(&format!("What burned the budget ({}):", r.measured_over));
            page.table(
                &["group", "bad events", "budget spent", "share of bad events"],
                r.breakdown
                    .iter()
                    .map(|o| {
                        vec![
                            o.describe(),
                            number(o.errors.round()),
                            percent(o.budget_spent),
                            percent(o.share_of_errors),
                        ]
                    })
                    .collect(),
            );
        }
    }
    page.render()
}

/// The SLO's state as a person would say it.
fn state(r: &SloReport) -> String {
    let lasting = match r.exhaustion_seconds {
        None if r.current_burn > 0.0 => {
            "At the current burn the budget lasts past the end of this period.".to_owned()
        }
        None => "The budget is not being spent right now.".to_owned(),
        Some(0) => "The budget is spent.".to_owned(),
        Some(s) => format!(
            "At the current burn ({}x) the budget runs out in {}.",
            number((r.current_burn * 100.0).round() / 100.0),
            humanize(std::time::Duration::from_secs(s))
        ),
    };
    format!(
        "Objective {} over {}; SLI {} ({}). Budget left {} ({:.1} minutes of full outage). {lasting} Alerts firing: {}. Verdict: {}.",
        percent(r.objective),
        r.window,
        percent(r.sli),
        r.measured_over,
        percent(r.budget_remaining),
        r.budget_remaining_minutes,
        if r.firing.is_empty() {
            "none".to_owned()
        } else {
            r.firing.join(", ")
        },
        r.verdict.as_str()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::{Counts, WORKBOOK_WINDOWS};
    use crate::spec::{Alerting, Budgeting, Sli, Window};
    use std::time::Duration;

    fn slo() -> (ServiceSlos, Slo) {
        let slo = Slo {
            name: "availability".into(),
            description: String::new(),
            objective: 0.999,
            window: Window::Rolling(Duration::from_secs(30 * 86_400)),
            sli: Sli::Ratio {
                errors: "e".into(),
                total: "t".into(),
            },
            budgeting: Budgeting::Occurrences,
            alerting: Alerting::default(),
            labels: vec![],
            breakdown: vec![],
        };
        let service = ServiceSlos {
            service: "user".into(),
            labels: vec![],
            slos: vec![slo.clone()],
            source: "x".into(),
            notes: vec![],
        };
        (service, slo)
    }

    #[test]
    fn report_numbers_follow_the_math() {
        let (service, slo) = slo();
        // Half the budget spent; burning at 14.4x right now on every window.
        let measured = Measured {
            period: Counts::new(999_500.0, 1_000_000.0),
            period_label: "30d".into(),
            windows: vec![("5m".into(), 0.0144), ("1h".into(), 0.0144)],
            current_ratio: 0.0144,
            breakdown: vec![],
            calendar: None,
            history: vec![],
            alert_inputs: WORKBOOK_WINDOWS
                .iter()
                .map(|w| (*w, 0.0144 * 1.01, 0.0144 * 1.01))
                .collect(),
        };
        let r = build(&service, &slo, &measured, 0.25);
        assert!((r.budget_remaining - 0.5).abs() < 1e-9);
        assert!((r.budget_remaining_minutes - 21.6).abs() < 1e-9);
        assert!((r.current_burn - 14.4).abs() < 1e-9);
        // Half a budget at 14.4x lasts 25 hours.
        assert_eq!(r.exhaustion_seconds, Some(25 * 3600));
        assert_eq!(
            r.firing,
            vec!["ErrorBudgetBurnPage", "ErrorBudgetBurnTicket"]
        );
        assert_eq!(r.verdict, Verdict::AtRisk);
        assert!(!r.breached);
        let text = table(std::slice::from_ref(&r));
        assert!(
            text.contains("user-availability") && text.contains("at risk"),
            "{text}"
        );
        assert!(markdown(std::slice::from_ref(&r)).contains("| 5m | 1.44% | 14.4x |"));
        let page = html(std::slice::from_ref(&r));
        assert!(
            page.contains("new uPlot("),
            "the burn chart is drawn by uPlot"
        );
        assert!(page.contains("the budget runs out in"), "{page}");
        let parsed: serde_json::Value = serde_json::from_str(&json(&[r])).unwrap();
        assert_eq!(parsed["slos"][0]["verdict"], "at-risk");
    }
}
