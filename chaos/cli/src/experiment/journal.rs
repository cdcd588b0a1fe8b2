//! The record of a run: every probe and action with its time and output, the alerts seen,
//! the verdict; written as JSON (for machines) and rendered as Markdown and HTML (for people).

use std::fmt::Write as _;

use serde::Serialize;

use super::alerts::Notified;

/// How an experiment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The steady state held where it had to and every expected alert behaved.
    Passed,
    /// The platform did not behave as the experiment expects.
    Deviated,
    /// The experiment could not run to its end: a failing baseline, an error, Ctrl-C.
    Aborted,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Deviated => "deviated",
            Verdict::Aborted => "aborted",
        }
    }

    /// 0 passed, 1 deviated, 3 aborted (2 is kept for usage errors and invalid files).
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Passed => 0,
            Verdict::Deviated => 1,
            Verdict::Aborted => 3,
        }
    }
}

/// One thing that happened.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Seconds since the run started.
    pub t: f64,
    pub at: String,
    /// before, method, during, rollback, after.
    pub phase: &'static str,
    /// probe, fault, load, wait, rollback, alert, note.
    pub kind: &'static str,
    pub name: String,
    pub ok: bool,
    pub detail: serde_json::Value,
}

/// What became of one expected alert.
#[derive(Debug, Clone, Serialize)]
pub struct AlertRecord {
    pub alert: String,
    pub expected: String,
    /// Whether it was expected to fire (else to stay silent).
    pub fires: bool,
    /// Seconds since the run started, when Alertmanager first listed it active.
    pub fired_at: Option<f64>,
    pub resolved_at: Option<f64>,
    /// When its receiver's webhook got it firing, and resolved.
    pub notified_at: Option<f64>,
    pub notified_resolved_at: Option<f64>,
    pub met: bool,
    pub detail: String,
}

/// A time series for the report's chart, seconds since the start against a value.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Journal {
    pub experiment: String,
    pub title: String,
    pub description: String,
    pub started_at: String,
    pub ended_at: String,
    pub duration_seconds: f64,
    pub verdict: Verdict,
    pub reason: String,
    /// From the first fault applied to the end of the rollback, in seconds since the start.
    pub fault_window: Option<(f64, f64)>,
    pub entries: Vec<Entry>,
    pub alerts: Vec<AlertRecord>,
    pub notifications: Vec<Notified>,
    /// Burn rate of each SLO a probe gates on, over the run.
    pub series: Vec<Series>,
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Journal {
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Chaos experiment: {}\n", self.title);
        if !self.description.is_empty() {
            let _ = writeln!(md, "{}\n", self.description);
        }
        let _ = writeln!(
            md,
            "**Verdict: {}** — {}\n\n- file: `{}`\n- started {}, ran {:.0} s\n- faults active: {}\n",
            self.verdict.as_str().to_uppercase(),
            self.reason,
            self.experiment,
            self.started_at,
            self.duration_seconds,
            self.fault_window
                .map(|(a, b)| format!("{a:.0} s to {b:.0} s"))
                .unwrap_or_else(|| "never (nothing was injected)".into()),
        );
        if !self.alerts.is_empty() {
            md.push_str("## Expected alerts\n\n| alert | met | fired | notified | resolved | resolved notified | detail |\n|---|---|---|---|---|---|---|\n");
            for a in &self.alerts {
                let _ = writeln!(
                    md,
                    "| `{}` | {} | {} | {} | {} | {} | {} |",
                    a.expected,
                    if a.met { "yes" } else { "**no**" },
                    secs(a.fired_at),
                    secs(a.notified_at),
                    secs(a.resolved_at),
                    secs(a.notified_resolved_at),
                    a.detail
                );
            }
            md.push('\n');
        }
        md.push_str(
            "## Journal\n\n| t (s) | phase | what | ok | detail |\n|---:|---|---|---|---|\n",
        );
        for e in &self.entries {
            let _ = writeln!(
                md,
                "| {:.1} | {} | {} {} | {} | {} |",
                e.t,
                e.phase,
                e.kind,
                e.name.replace('|', "\\|"),
                if e.ok { "✓" } else { "✗" },
                brief(&e.detail).replace('|', "\\|")
            );
        }
        if !self.notifications.is_empty() {
            md.push_str("\n## Webhook notifications\n\n| t (s) | receiver | alert | status | SLO |\n|---:|---|---|---|---|\n");
            for n in &self.notifications {
                let _ = writeln!(
                    md,
                    "| {:.1} | {} | {} | {} | {} |",
                    n.t,
                    n.receiver,
                    n.alertname,
                    n.status,
                    n.labels.get("sloth_id").map(String::as_str).unwrap_or("")
                );
            }
        }
        md
    }

    /// A self-contained page: the verdict, the burn chart with the fault window marked, the
    /// expected alerts and the journal.
    pub fn html(&self) -> String {
        let mut page = report_kit::Page::new(&format!("Chaos experiment: {}", self.title));
        page.paragraph(&format!(
            "Verdict: {} — {}",
            self.verdict.as_str().to_uppercase(),
            self.reason
        ));
        if !self.description.is_empty() {
            page.paragraph(&self.description);
        }
        if !self.series.is_empty() {
            let mut chart = report_kit::Chart::new(
                "Burn rate over the run",
                "seconds since start",
                "burn rate (×budget)",
            );
            for s in &self.series {
                chart = chart.series(&s.name, &s.points);
            }
            chart = chart.threshold(14.4, "page (14.4×)").threshold(1.0, "1×");
            if let Some((from, to)) = self.fault_window {
                chart = chart.band(from, to, "faults active");
            }
            page.chart(chart);
        }
        if !self.alerts.is_empty() {
            page.heading("Expected alerts");
            page.table(
                &[
                    "alert",
                    "met",
                    "fired (s)",
                    "notified (s)",
                    "resolved (s)",
                    "resolved notified (s)",
                    "detail",
                ],
                self.alerts
                    .iter()
                    .map(|a| {
                        vec![
                            a.expected.clone(),
                            if a.met { "yes".into() } else { "NO".into() },
                            secs(a.fired_at),
                            secs(a.notified_at),
                            secs(a.resolved_at),
                            secs(a.notified_resolved_at),
                            a.detail.clone(),
                        ]
                    })
                    .collect(),
            );
        }
        page.heading("Journal");
        page.table(
            &["t (s)", "phase", "what", "ok", "detail"],
            self.entries
                .iter()
                .map(|e| {
                    vec![
                        format!("{:.1}", e.t),
                        e.phase.to_owned(),
                        format!("{} {}", e.kind, e.name),
                        if e.ok { "✓".into() } else { "✗".into() },
                        brief(&e.detail),
                    ]
                })
                .collect(),
        );
        page.render()
    }
}

fn secs(t: Option<f64>) -> String {
    t.map(|t| format!("{t:.0}")).unwrap_or_else(|| "—".into())
}

/// One line for a table cell.
fn brief(detail: &serde_json::Value) -> String {
    match detail {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}
