//! Results: the JSON result file (read by `slo`), a percentile table per step, `.hgrm`
//! spectra, and a self-contained HTML page with latency and throughput over time and the
//! latency distribution.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::engine::RunResult;
use crate::stats::Summary;
use crate::thresholds::Threshold;
use report_kit::escape;

pub use loadtest_result::{Results, ThresholdResult};

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

/// A self-contained page: latency over time (p50, p99), throughput over time, and the
/// latency distribution (percentile spectrum), as inline SVG.
pub fn html(results: &Results, spectra: &BTreeMap<String, Vec<(f64, f64)>>) -> String {
    let secs: Vec<f64> = results.timeline.iter().map(|s| s.second as f64).collect();
    let latency = line_chart(
        "Latency over time (ms, from intended send)",
        &secs,
        &[
            ("p50", results.timeline.iter().map(|s| s.p50_ms).collect()),
            ("p99", results.timeline.iter().map(|s| s.p99_ms).collect()),
        ],
        false,
    );
    let throughput = line_chart(
        "Throughput (responses per second)",
        &secs,
        &[
            (
                "ok",
                results
                    .timeline
                    .iter()
                    .map(|s| (s.requests - s.failed) as f64)
                    .collect(),
            ),
            (
                "failed",
                results.timeline.iter().map(|s| s.failed as f64).collect(),
            ),
        ],
        false,
    );
    let series: Vec<(&str, Vec<f64>)> = spectra
        .iter()
        .map(|(k, v)| (k.as_str(), v.iter().map(|p| p.1).collect()))
        .collect();
    let xs: Vec<f64> = spectra
        .values()
        .next()
        .map(|v| v.iter().map(|p| p.0).collect())
        .unwrap_or_default();
    let distribution = line_chart(
        "Latency distribution (ms by percentile; x: 1/(1-p), log)",
        &xs,
        &series,
        true,
    );
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>loadtest: {name}</title><style>body{{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto}}pre{{background:#f6f6f6;padding:1em;overflow:auto}}</style></head><body><h1>loadtest: {name}</h1><p>{verdict}</p><pre>{table}</pre>{latency}{throughput}{distribution}</body></html>",
        name = escape(&results.scenario),
        verdict = if results.passed {
            "All thresholds passed."
        } else {
            "<strong style=\"color:#c62828\">Thresholds failed.</strong>"
        },
        table = escape(&table(results)),
    )
}

const COLOURS: [&str; 6] = [
    "#1565c0", "#c62828", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f",
];

fn line_chart(title: &str, xs: &[f64], series: &[(&str, Vec<f64>)], log_x: bool) -> String {
    let (w, h, pad) = (900.0, 260.0, 40.0);
    let fx = |x: f64| if log_x { x.max(1.0).log10() } else { x };
    let (x0, x1) = xs.iter().fold((f64::MAX, f64::MIN), |(a, b), x| {
        (a.min(fx(*x)), b.max(fx(*x)))
    });
    let y1 = series
        .iter()
        .flat_map(|s| s.1.iter())
        .fold(0.0_f64, |m, y| m.max(*y))
        .max(1e-9);
    let sx = |x: f64| pad + (fx(x) - x0) / (x1 - x0).max(1e-9) * (w - 2.0 * pad);
    let sy = |y: f64| h - pad - y / y1 * (h - 2.0 * pad);
    let mut svg = format!(
        "<h3>{}</h3><svg width=\"{w}\" height=\"{h}\" role=\"img\"><line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"/><text x=\"0\" y=\"{}\">{}</text>",
        escape(title),
        h - pad,
        w - pad,
        h - pad,
        pad,
        number((y1 * 100.0).round() / 100.0)
    );
    for (i, (name, ys)) in series.iter().enumerate() {
        let points: Vec<String> = xs
            .iter()
            .zip(ys)
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        let colour = COLOURS[i % COLOURS.len()];
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/><text x=\"{}\" y=\"{}\" fill=\"{colour}\">{}</text>",
            points.join(" "),
            w - pad - 80.0,
            pad + 14.0 * i as f64,
            escape(name)
        );
    }
    svg + "</svg>"
}
