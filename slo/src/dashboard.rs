//! A Grafana dashboard per service: budget remaining, burn rate per window, SLI over time
//! and firing SLO alerts, all read from the `slo:*` recordings.

use serde_json::{Value, json};

use crate::math::AlertWindow;
use crate::rules::{recorded_ranges, slo_id};
use crate::spec::{ServiceSlos, prom_duration};

/// Every PromQL query the dashboard runs, so tests can check each against Prometheus.
pub fn queries(dashboard: &Value) -> Vec<String> {
    dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect()
}

pub fn dashboard(service: &ServiceSlos, windows: &[AlertWindow]) -> Value {
    let mut panels = Vec::new();
    let mut y = 0;
    for slo in &service.slos {
        let id = slo_id(&service.service, slo);
        let sel = format!("{{sloth_id=\"{id}\"}}");
        panels.push(json!({
            "type": "row", "title": format!("{} — objective {}%", slo.name, crate::promql::number(slo.objective * 100.0)),
            "gridPos": { "x": 0, "y": y, "w": 24, "h": 1 }, "collapsed": false, "panels": []
        }));
        y += 1;
        panels.push(panel(
            "stat", "Error budget remaining", 0, y, 6, 8,
            vec![target(&format!("slo:period_error_budget_remaining:ratio{sel}"), "remaining")],
            json!({ "unit": "percentunit", "min": -1, "max": 1,
                    "thresholds": { "mode": "absolute", "steps": [
                        { "color": "red", "value": null }, { "color": "orange", "value": 0 }, { "color": "green", "value": 0.25 } ] } }),
        ));
        let burn_targets = recorded_ranges(windows)
            .into_iter()
            .map(|r| {
                let w = prom_duration(r);
                target(
                    &format!(
                        "slo:sli_error:ratio_rate{w}{sel} / {}",
                        crate::promql::number(slo.error_budget())
                    ),
                    &w,
                )
            })
            .collect();
        panels.push(panel(
            "timeseries",
            "Burn rate per window (1 = on budget)",
            6,
            y,
            9,
            8,
            burn_targets,
            json!({ "unit": "none", "min": 0 }),
        ));
        panels.push(panel(
            "timeseries",
            "SLI (good share, 5m)",
            15,
            y,
            9,
            8,
            vec![
                target(&format!("1 - slo:sli_error:ratio_rate5m{sel}"), "SLI"),
                target(&format!("slo:objective:ratio{sel}"), "objective"),
            ],
            json!({ "unit": "percentunit", "max": 1 }),
        ));
        y += 8;
        panels.push(panel(
            "table",
            "Firing SLO alerts",
            0,
            y,
            24,
            5,
            vec![target(
                &format!("ALERTS{{sloth_id=\"{id}\",alertstate=\"firing\"}}"),
                "{{alertname}} {{sloth_severity}}",
            )],
            json!({}),
        ));
        y += 5;
    }
    json!({
        "uid": format!("sloop-slo-{}", service.service),
        "title": format!("SLOs / {}", service.service),
        "tags": ["sloop", "slo"],
        "schemaVersion": 39,
        "time": { "from": "now-7d", "to": "now" },
        "refresh": "1m",
        "templating": { "list": [ { "name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus" } ] },
        "panels": panels,
    })
}

fn target(expr: &str, legend: &str) -> Value {
    json!({ "datasource": { "type": "prometheus", "uid": "${datasource}" }, "expr": expr, "legendFormat": legend, "refId": legend })
}

#[allow(clippy::too_many_arguments)]
fn panel(
    kind: &str,
    title: &str,
    x: u32,
    y: u32,
    w: u32,
    h: u32,
    targets: Vec<Value>,
    defaults: Value,
) -> Value {
    json!({
        "type": kind, "title": title,
        "datasource": { "type": "prometheus", "uid": "${datasource}" },
        "gridPos": { "x": x, "y": y, "w": w, "h": h },
        "targets": targets,
        "fieldConfig": { "defaults": defaults, "overrides": [] },
    })
}
