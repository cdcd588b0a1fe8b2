//! Reading other tools' SLO files into the native model: OpenSLO v1 (`SLO`, `SLI`,
//! `DataSource` documents; `ratioMetric` and `thresholdMetric`) and Sloth `prometheus/v1`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::spec::{
    Alerting, Budgeting, Location, ServiceSlos, Sli, Slo, SpecError, Window, check_names,
    parse_duration, parse_native, parse_window,
};

/// Detects the format of `text` and reads it.
pub fn parse_any(path: &Path, text: &str) -> Result<Vec<ServiceSlos>, SpecError> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| SpecError::Syntax {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let first = docs.first().cloned().unwrap_or(Value::Null);
    if first["apiVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("openslo/"))
    {
        parse_openslo(path, docs)
    } else if first["version"] == "prometheus/v1" {
        Ok(vec![parse_sloth(path, text)?])
    } else {
        Ok(vec![parse_native(path, text)?])
    }
}

fn invalid(path: &Path, field: &str, message: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        at: Location {
            file: path.to_owned(),
            line: 0,
            field: field.to_owned(),
        },
        message: message.into(),
    }
}

/// Sloth writes `{{.window}}`; the native format writes `{{window}}`.
fn sloth_template(query: &str) -> String {
    query.replace("{{.window}}", "{{window}}")
}

#[derive(Deserialize)]
struct SlothFile {
    service: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    slos: Vec<SlothSlo>,
}

#[derive(Deserialize)]
struct SlothSlo {
    name: String,
    objective: f64,
    #[serde(default)]
    description: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    sli: SlothSli,
    #[serde(default)]
    alerting: Option<SlothAlerting>,
}

#[derive(Deserialize)]
struct SlothSli {
    events: Option<SlothEvents>,
    raw: Option<Value>,
    plugin: Option<Value>,
}

#[derive(Deserialize)]
struct SlothEvents {
    error_query: String,
    total_query: String,
}

#[derive(Deserialize)]
struct SlothAlerting {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    page_alert: Option<SlothAlert>,
    #[serde(default)]
    ticket_alert: Option<SlothAlert>,
}

#[derive(Deserialize)]
struct SlothAlert {
    #[serde(default)]
    disable: bool,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

fn parse_sloth(path: &Path, text: &str) -> Result<ServiceSlos, SpecError> {
    let file: SlothFile = serde_saphyr::from_str(text).map_err(|e| SpecError::Syntax {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let mut slos = Vec::new();
    for s in file.slos {
        let field = |f: &str| format!("slos[{}].{f}", s.name);
        let sli = match (&s.sli.events, &s.sli.raw, &s.sli.plugin) {
            (Some(events), _, _) => Sli::Ratio {
                errors: sloth_template(&events.error_query),
                total: sloth_template(&events.total_query),
            },
            _ => {
                return Err(invalid(
                    path,
                    &field("sli"),
                    "only Sloth `events` SLIs (error_query and total_query) are supported; \
                     rewrite `raw` or `plugin` SLIs as events",
                ));
            }
        };
        if !(s.objective > 0.0 && s.objective < 100.0) {
            return Err(invalid(
                path,
                &field("objective"),
                "objective is a percentage, e.g. 99.9",
            ));
        }
        let mut alerting = Alerting::default();
        if let Some(a) = s.alerting {
            let extra: Vec<(String, String)> = a.labels.into_iter().collect();
            let page = a.page_alert.unwrap_or(SlothAlert {
                disable: false,
                labels: BTreeMap::new(),
            });
            let ticket = a.ticket_alert.unwrap_or(SlothAlert {
                disable: false,
                labels: BTreeMap::new(),
            });
            alerting.enabled = !(page.disable && ticket.disable);
            alerting.annotations = a.annotations.into_iter().collect();
            alerting
                .page_labels
                .extend(extra.iter().cloned().chain(page.labels));
            alerting
                .ticket_labels
                .extend(extra.into_iter().chain(ticket.labels));
            dedup_labels(&mut alerting.page_labels);
            dedup_labels(&mut alerting.ticket_labels);
        }
        slos.push(Slo {
            name: s.name,
            description: s.description,
            objective: s.objective / 100.0,
            // Sloth's period is 30 days unless configured globally.
            window: Window::Rolling(std::time::Duration::from_secs(30 * 86_400)),
            sli,
            budgeting: Budgeting::Occurrences,
            alerting,
            labels: s.labels.into_iter().collect(),
        });
    }
    let service = ServiceSlos {
        service: file.service,
        labels: file.labels.into_iter().collect(),
        slos,
        source: path.to_owned(),
    };
    check_names(&service)?;
    Ok(service)
}

/// Later labels win, as in a YAML map.
fn dedup_labels(labels: &mut Vec<(String, String)>) {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in labels.drain(..).rev() {
        if seen.insert(k.clone()) {
            out.push((k, v));
        }
    }
    out.reverse();
    *labels = out;
}

/// A Prometheus query in an OpenSLO `metricSource`.
fn metric_query(metric: &Value) -> Option<String> {
    let source = &metric["metricSource"];
    let spec = &source["spec"];
    spec["query"]
        .as_str()
        .or_else(|| spec["promql"].as_str())
        .map(|q| q.to_owned())
}

fn parse_openslo(path: &Path, docs: Vec<Value>) -> Result<Vec<ServiceSlos>, SpecError> {
    let by_kind =
        |kind: &str| -> Vec<&Value> { docs.iter().filter(|d| d["kind"] == kind).collect() };
    let indicators: BTreeMap<String, &Value> = by_kind("SLI")
        .into_iter()
        .filter_map(|d| Some((d["metadata"]["name"].as_str()?.to_owned(), d)))
        .collect();
    let mut services: BTreeMap<String, Vec<Slo>> = BTreeMap::new();
    for doc in by_kind("SLO") {
        let name = doc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let field = |f: &str| format!("SLO[{name}].spec.{f}");
        let spec = &doc["spec"];
        let service = spec["service"]
            .as_str()
            .ok_or_else(|| invalid(path, &field("service"), "every SLO names its service"))?;
        let indicator_spec = match spec["indicatorRef"].as_str() {
            Some(reference) => &indicators.get(reference).ok_or_else(|| {
                invalid(
                    path,
                    &field("indicatorRef"),
                    format!("no SLI document is named `{reference}`"),
                )
            })?["spec"],
            None => &spec["indicator"]["spec"],
        };
        let objective = &spec["objectives"][0];
        let target = objective["target"]
            .as_f64()
            .or_else(|| objective["targetPercent"].as_f64().map(|p| p / 100.0))
            .ok_or_else(|| {
                invalid(
                    path,
                    &field("objectives[0].target"),
                    "set target, e.g. 0.999",
                )
            })?;
        if !(target > 0.0 && target < 1.0) {
            return Err(invalid(
                path,
                &field("objectives[0].target"),
                "target is a ratio between 0 and 1, e.g. 0.999",
            ));
        }
        let sli = openslo_sli(indicator_spec, objective)
            .map_err(|message| invalid(path, &field("indicator"), message))?;
        let time_window = &spec["timeWindow"][0];
        let window = match (
            time_window["duration"].as_str(),
            time_window["isRolling"].as_bool(),
        ) {
            (Some("1M"), Some(false)) => Window::CalendarMonth,
            (Some(duration), _) => parse_window(duration)
                .map_err(|m| invalid(path, &field("timeWindow[0].duration"), m))?,
            (None, _) => Window::Rolling(std::time::Duration::from_secs(30 * 86_400)),
        };
        let budgeting = match spec["budgetingMethod"].as_str() {
            None | Some("Occurrences") => Budgeting::Occurrences,
            Some("Timeslices") => Budgeting::Timeslices {
                slice: objective["timeSliceWindow"]
                    .as_str()
                    .map(parse_duration)
                    .transpose()
                    .map_err(|m| invalid(path, &field("objectives[0].timeSliceWindow"), m))?
                    .unwrap_or(std::time::Duration::from_secs(60)),
                slice_objective: objective["timeSliceTarget"].as_f64().unwrap_or(0.95),
            },
            Some(other) => {
                return Err(invalid(
                    path,
                    &field("budgetingMethod"),
                    format!("`{other}` is not supported; use Occurrences or Timeslices"),
                ));
            }
        };
        services.entry(service.to_owned()).or_default().push(Slo {
            name,
            description: spec["description"].as_str().unwrap_or_default().to_owned(),
            objective: target,
            window,
            sli,
            budgeting,
            alerting: Alerting::default(),
            labels: Vec::new(),
        });
    }
    if services.is_empty() {
        return Err(invalid(path, "kind", "no `kind: SLO` document found"));
    }
    services
        .into_iter()
        .map(|(service, slos)| {
            let service = ServiceSlos {
                service,
                labels: Vec::new(),
                slos,
                source: path.to_owned(),
            };
            check_names(&service)?;
            Ok(service)
        })
        .collect()
}

fn openslo_sli(indicator: &Value, objective: &Value) -> Result<Sli, String> {
    let ratio = &indicator["ratioMetric"];
    if ratio.is_object() {
        let total =
            metric_query(&ratio["total"]).ok_or("ratioMetric.total needs a metricSource query")?;
        if let Some(bad) = metric_query(&ratio["bad"]) {
            return Ok(Sli::Ratio { errors: bad, total });
        }
        if let Some(good) = metric_query(&ratio["good"]) {
            return Ok(Sli::Ratio {
                errors: format!("({total}) - ({good})"),
                total,
            });
        }
        return Err("ratioMetric needs `good` or `bad` with a metricSource query".into());
    }
    let threshold = &indicator["thresholdMetric"];
    if threshold.is_object() {
        let query = metric_query(threshold).ok_or("thresholdMetric needs a metricSource query")?;
        let value = objective["value"]
            .as_f64()
            .ok_or("a thresholdMetric objective needs `value`, e.g. 0.2")?;
        let op = objective["op"].as_str().unwrap_or("lte");
        let comparison = match op {
            "lt" => "<",
            "lte" => "<=",
            "gt" => ">",
            "gte" => ">=",
            other => {
                return Err(format!(
                    "objective op `{other}` is not one of lt, lte, gt, gte"
                ));
            }
        };
        // A threshold SLI is good while the metric meets the threshold: the error ratio over
        // a window is the share of evaluation steps where it did not.
        return Ok(Sli::Ratio {
            errors: format!(
                "count_over_time((({query}) {comparison} bool {value} == 0)[{{{{window}}}}:1m])"
            ),
            total: format!("count_over_time(({query})[{{{{window}}}}:1m])"),
        });
    }
    Err("the indicator needs ratioMetric or thresholdMetric".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sloth_files_read_into_the_native_model() {
        let text = r##"
version: "prometheus/v1"
service: "myservice"
labels: { owner: "myteam" }
slos:
  - name: "requests-availability"
    objective: 99.9
    description: "Common SLO based on availability for HTTP request responses."
    sli:
      events:
        error_query: sum(rate(http_request_duration_seconds_count{job="myservice",code=~"(5..|429)"}[{{.window}}]))
        total_query: sum(rate(http_request_duration_seconds_count{job="myservice"}[{{.window}}]))
    alerting:
      name: MyServiceHighErrorRate
      labels: { category: "availability" }
      page_alert: { labels: { severity: pageteam, routing_key: myteam } }
      ticket_alert: { labels: { severity: "slack", slack_channel: "#alerts-myteam" } }
"##;
        let parsed = parse_any(Path::new("sloth.yaml"), text).unwrap();
        let slo = &parsed[0].slos[0];
        assert_eq!(parsed[0].service, "myservice");
        assert!((slo.objective - 0.999).abs() < 1e-12);
        match &slo.sli {
            Sli::Ratio { errors, total } => {
                assert!(errors.contains("[{{window}}]"));
                assert!(total.contains("job=\"myservice\""));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            slo.alerting
                .page_labels
                .contains(&("severity".into(), "pageteam".into()))
        );
        assert!(
            !slo.alerting
                .page_labels
                .contains(&("severity".into(), "page".into()))
        );
        assert!(
            slo.alerting
                .ticket_labels
                .contains(&("category".into(), "availability".into()))
        );
    }

    #[test]
    fn openslo_ratio_and_threshold_metrics() {
        let text = r#"
apiVersion: openslo/v1
kind: SLI
metadata: { name: good-requests }
spec:
  ratioMetric:
    counter: true
    good: { metricSource: { type: Prometheus, spec: { query: 'sum(rate(ok_total[{{window}}]))' } } }
    total: { metricSource: { type: Prometheus, spec: { query: 'sum(rate(all_total[{{window}}]))' } } }
---
apiVersion: openslo/v1
kind: SLO
metadata: { name: availability }
spec:
  service: checkout
  indicatorRef: good-requests
  timeWindow: [ { duration: 28d, isRolling: true } ]
  budgetingMethod: Occurrences
  objectives: [ { target: 0.995 } ]
---
apiVersion: openslo/v1
kind: SLO
metadata: { name: p99-latency }
spec:
  service: checkout
  indicator:
    metadata: { name: p99 }
    spec:
      thresholdMetric: { metricSource: { type: Prometheus, spec: { query: 'histogram_quantile(0.99, sum by (le) (rate(d_bucket[5m])))' } } }
  timeWindow: [ { duration: 1M, isRolling: false } ]
  budgetingMethod: Timeslices
  objectives: [ { op: lte, value: 0.2, target: 0.99, timeSliceTarget: 0.9, timeSliceWindow: 5m } ]
"#;
        let parsed = parse_any(Path::new("openslo.yaml"), text).unwrap();
        assert_eq!(parsed.len(), 1);
        let slos = &parsed[0].slos;
        assert_eq!(parsed[0].service, "checkout");
        assert_eq!(
            slos[0].window,
            Window::Rolling(std::time::Duration::from_secs(28 * 86_400))
        );
        match &slos[0].sli {
            Sli::Ratio { errors, .. } => {
                assert!(errors.contains("all_total") && errors.contains("ok_total"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(slos[1].window, Window::CalendarMonth);
        assert!(matches!(slos[1].budgeting, Budgeting::Timeslices { .. }));
        match &slos[1].sli {
            Sli::Ratio { errors, .. } => assert!(errors.contains("<= bool 0.2")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn openslo_errors_name_the_document_and_field() {
        let text = "apiVersion: openslo/v1\nkind: SLO\nmetadata: { name: a }\nspec:\n  service: s\n  indicatorRef: missing\n  objectives: [ { target: 0.99 } ]\n";
        let err = parse_any(Path::new("o.yaml"), text)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("SLO[a].spec.indicatorRef") && err.contains("missing"),
            "{err}"
        );
    }
}
