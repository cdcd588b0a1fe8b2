//! Results: the JSON result file (read by `slo`), a percentile table per step, `.hgrm`
//! spectra, and a self-contained HTML page with latency and throughput over time and the
//! latency distribution.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::engine::RunResult;
use crate::stats::Summary;
use crate::thresholds::Threshold;

pub use loadtest_result::{Results, Second, ThresholdResult};

pub fn results(scenario: &str, target: &str, run: &RunResult, thresholds: &[Threshold]) -> Results {
    let checked: Vec<ThresholdResult> = thresholds
        .iter()
        .map(|t| {
            let stats = match &t.step {
                Some(step) => run.steps.get(step).cloned().unwrap_or_default(),
                None => run.overall.clone(),
            };
            let (value, passed) = t.check(&stats);
            ThresholdResult {
                threshold: t.text.clone(),
                step: t.step.clone(),
                value,
                passed,
            }
        })
        .collect();
    Results {
        scenario: scenario.into(),
        target: target.into(),
        duration_s: run.elapsed.as_secs_f64(),
        planned: run.planned,
        achieved_rps: run.overall.completed() as f64 / run.elapsed.as_secs_f64().max(1e-9),
        overall: run.overall.summary(),
        steps: run
            .steps
            .iter()
            .map(|(k, v)| (k.clone(), v.summary()))
            .collect(),
        passed: checked.iter().all(|t| t.passed),
        thresholds: checked,
        timeline: run.timeline.seconds(),
    }
}

/// Percentiles (ms, from intended send time), counts and statuses per step.
pub fn table(results: &Results) -> String {
    let mut out = format!(
        "{:<14} {:>8} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}  statuses\n",
        "step", "requests", "failed", "dropped", "p50", "p90", "p99", "p99.9", "max"
    );
    let row = |name: &str, s: &Summary| {
        let l = &s.latency_ms;
        let statuses: Vec<String> = s.statuses.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        format!(
            "{:<14} {:>8} {:>7} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}  {}\n",
            name,
            s.requests,
            s.failed,
            s.dropped,
            l.p50,
            l.p90,
            l.p99,
            l.p99_9,
            l.max,
            statuses.join(" ")
        )
    };
    for (name, summary) in &results.steps {
        out += &row(name, summary);
    }
    out += &row("ALL", &results.overall);
    let _ = writeln!(
        out,
        "\n{:.1} s, {} planned, {:.1} requests/s achieved. Latency in ms from each request's intended send time.",
        results.duration_s, results.planned, results.achieved_rps
    );
    for t in &results.thresholds {
        let _ = writeln!(
            out,
            "{} {}{} (measured {})",
            if t.passed { "PASS" } else { "FAIL" },
            t.step
                .as_ref()
                .map(|s| format!("{s}: "))
                .unwrap_or_default(),
            t.threshold,
            crate::report::number(t.value)
        );
    }
    out
}

pub fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        format!("{x:.4}")
    }
}

/// Percentile rows per step and overall, for the HTML table.
fn summary_rows(results: &Results) -> Vec<Vec<String>> {
    let row = |name: &str, s: &Summary| {
        let l = &s.latency_ms;
        let statuses: Vec<String> = s
            .statuses
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let mut cells = vec![
            name.to_owned(),
            s.requests.to_string(),
            s.failed.to_string(),
            s.dropped.to_string(),
        ];
        cells.extend([l.p50, l.p90, l.p99, l.p99_9, l.max].map(|v| format!("{v:.2}")));
        cells.push(statuses.join(", "));
        cells
    };
    let mut rows: Vec<Vec<String>> = results.steps.iter().map(|(n, s)| row(n, s)).collect();
    rows.push(row("all", &results.overall));
    rows
}

/// (x, y) points of one chart series.
type Points = Vec<(f64, f64)>;

/// Responses per second over the run. The last second is usually cut short by the end of
/// the run: its count is scaled to a whole second, and dropped when under a fifth of one,
/// so the line does not plunge at the end for want of time rather than throughput.
fn throughput(timeline: &[Second], duration_s: f64) -> (Points, Points) {
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    for s in timeline {
        let covered = (duration_s - s.second as f64).clamp(0.0, 1.0);
        if covered < 0.2 {
            continue;
        }
        let x = s.second as f64;
        ok.push((x, (s.requests - s.failed) as f64 / covered));
        failed.push((x, s.failed as f64 / covered));
    }
    (ok, failed)
}

/// A self-contained page (report-kit): the verdict, the percentile table, latency and
/// throughput over time, and the latency distribution, with axes, units, legends and
/// values under the cursor.
pub fn html(results: &Results, spectra: &BTreeMap<String, Vec<(f64, f64)>>) -> String {
    let mut page = report_kit::Page::new(&format!("loadtest: {}", results.scenario));
    page.paragraph(&format!(
        "{} against {}: {:.1} s, {} requests planned, {:.1} requests/s achieved. {}",
        results.scenario,
        results.target,
        results.duration_s,
        results.planned,
        results.achieved_rps,
        if results.passed {
            "All thresholds passed."
        } else {
            "Thresholds failed."
        }
    ));
    page.table(
        &[
            "step", "requests", "failed", "dropped", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms",
            "max ms", "statuses",
        ],
        summary_rows(results),
    );
    if !results.thresholds.is_empty() {
        page.table(
            &["threshold", "measured", "result"],
            results
                .thresholds
                .iter()
                .map(|t| {
                    vec![
                        format!(
                            "{}{}",
                            t.step
                                .as_ref()
                                .map(|s| format!("{s}: "))
                                .unwrap_or_default(),
                            t.threshold
                        ),
                        number(t.value),
                        if t.passed { "pass" } else { "FAIL" }.to_owned(),
                    ]
                })
                .collect(),
        );
    }
    let secs = |f: fn(&Second) -> f64| -> Vec<(f64, f64)> {
        results
            .timeline
            .iter()
            .map(|s| (s.second as f64, f(s)))
            .collect()
    };
    page.chart(
        report_kit::Chart::new(
            "Latency over time, from each request's intended send time",
            "seconds since start",
            "latency (ms)",
        )
        .series("p50", &secs(|s| s.p50_ms))
        .series("p99", &secs(|s| s.p99_ms)),
    );
    let (ok, failed) = throughput(&results.timeline, results.duration_s);
    page.chart(
        report_kit::Chart::new("Throughput", "seconds since start", "responses per second")
            .series("ok", &ok)
            .series("failed", &failed),
    );
    let mut distribution = report_kit::Chart::new(
        "Latency distribution",
        "percentile, as 1/(1-p): 10 = p90, 100 = p99, 1000 = p99.9",
        "latency (ms)",
    )
    .log_x();
    for (name, points) in spectra {
        distribution = distribution.series(name, points);
    }
    page.chart(distribution);
    page.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_partial_second_is_scaled_not_plunged() {
        let second = |n, requests| Second {
            second: n,
            requests,
            failed: 0,
            p50_ms: 1.0,
            p99_ms: 2.0,
        };
        let mut timeline = vec![second(0, 100), second(1, 100), second(2, 50)];
        let (ok, _) = throughput(&timeline, 2.5);
        assert_eq!(ok, vec![(0.0, 100.0), (1.0, 100.0), (2.0, 100.0)]);
        timeline[2].requests = 10;
        assert_eq!(
            throughput(&timeline, 2.1).0.len(),
            2,
            "a tenth of a second is not plotted"
        );
    }
}
