//! Checking one steady-state probe: an HTTP answer, a PromQL value within a tolerance, or
//! an SLO whose burn-rate conditions do not hold, measured by the slo crate over Prometheus.

use std::time::Duration;

use serde::Serialize;
use slo::math::{Severity, WORKBOOK_WINDOWS};

use super::spec::{Check, Probe};
use crate::targets::Targets;

/// One probe's outcome, as the journal keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub probe: String,
    pub held: bool,
    /// What was seen: a status, a value, burn rates.
    pub observed: String,
    /// Why it failed, when it did; a probe that cannot be checked has not held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a probe needs to reach its sources.
pub struct Sources {
    pub prometheus: String,
    pub targets: Targets,
    pub http: reqwest::Client,
}

pub async fn check(probe: &Probe, sources: &Sources) -> Outcome {
    let result = match &probe.check {
        Check::Http {
            service,
            path,
            status,
            timeout,
        } => http(sources, service, path, *status, *timeout).await,
        Check::Promql {
            query,
            min,
            max,
            empty,
        } => promql(&sources.prometheus, query, *min, *max, *empty).await,
        Check::Slo {
            slo,
            severity,
            max_burn_rate,
            ..
        } => slo_gate(&sources.prometheus, slo, *severity, *max_burn_rate).await,
    };
    match result {
        Ok((held, observed)) => Outcome {
            probe: probe.name.clone(),
            held,
            observed,
            error: None,
        },
        Err(error) => Outcome {
            probe: probe.name.clone(),
            held: false,
            observed: String::new(),
            error: Some(error),
        },
    }
}

async fn http(
    sources: &Sources,
    service: &str,
    path: &str,
    want: u16,
    timeout: Duration,
) -> Result<(bool, String), String> {
    let base = sources.targets.url(service).map_err(|e| e.to_string())?;
    let url = format!("{base}{path}");
    let response = sources
        .http
        .get(&url)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status().as_u16();
    Ok((
        status == want,
        format!("GET {url} → {status} (want {want})"),
    ))
}

async fn promql(
    prometheus: &str,
    query: &str,
    min: Option<f64>,
    max: Option<f64>,
    empty: Option<f64>,
) -> Result<(bool, String), String> {
    let value = match instant(prometheus, query).await? {
        Some(v) => v,
        None => empty.ok_or_else(|| {
            format!("`{query}` returned no data; add `or vector(0)` or set `empty:`")
        })?,
    };
    let held = min.is_none_or(|m| value >= m) && max.is_none_or(|m| value <= m);
    let range = match (min, max) {
        (Some(lo), Some(hi)) => format!("within [{lo}, {hi}]"),
        (Some(lo), None) => format!("≥ {lo}"),
        (None, Some(hi)) => format!("≤ {hi}"),
        (None, None) => String::new(),
    };
    Ok((held, format!("{} (want {range})", round(value))))
}

/// The first sample of an instant query now, `None` when the answer is empty.
async fn instant(prometheus: &str, query: &str) -> Result<Option<f64>, String> {
    let (base, query) = (prometheus.to_owned(), query.to_owned());
    tokio::task::spawn_blocking(move || {
        slo::evaluate::Prometheus::new(&base)
            .sample(&query)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| format!("the query failed: {e}"))?
}

/// Holds while no burn-rate condition of `severity` holds and, if given, the burn over the
/// shortest window stays at or under `max_burn_rate` — the numbers the generated alert
/// rules use, from the same recorded ranges.
async fn slo_gate(
    prometheus: &str,
    slo: &slo::spec::Slo,
    severity: Severity,
    max_burn_rate: Option<f64>,
) -> Result<(bool, String), String> {
    let base = prometheus.to_owned();
    let slo = slo.clone();
    tokio::task::spawn_blocking(move || {
        let measured = slo::evaluate::Prometheus::new(&base)
            .measure(&slo, &WORKBOOK_WINDOWS)
            .map_err(|e| e.to_string())?;
        let budget = slo.error_budget();
        let period = slo.window.period();
        let firing: Vec<String> = measured
            .alert_inputs
            .iter()
            .filter(|(w, long, short)| {
                w.severity == severity && w.fires(*long, *short, budget, period)
            })
            .map(|(w, ..)| {
                format!(
                    "{} over {}/{}",
                    severity.as_str(),
                    slo::spec::prom_duration(w.long),
                    slo::spec::prom_duration(w.short)
                )
            })
            .collect();
        let burn = slo::math::burn_rate(measured.current_ratio, budget);
        let burn_ok = max_burn_rate.is_none_or(|max| burn <= max);
        let shortest = measured
            .windows
            .first()
            .map(|(w, _)| w.clone())
            .unwrap_or_default();
        let observed = format!(
            "burn {}x over {shortest}{}; {}",
            round(burn),
            max_burn_rate
                .map(|m| format!(" (max {m}x)"))
                .unwrap_or_default(),
            if firing.is_empty() {
                format!("no {} condition holds", severity.as_str())
            } else {
                format!("firing: {}", firing.join(", "))
            }
        );
        Ok((firing.is_empty() && burn_ok, observed))
    })
    .await
    .map_err(|e| format!("the SLO measurement failed: {e}"))?
}

fn round(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}
