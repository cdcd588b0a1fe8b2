//! Reading other tools' SLO files into the native model: OpenSLO v1 (`SLO`, `SLI`,
//! `DataSource` documents; `ratioMetric` and `thresholdMetric`) and Sloth `prometheus/v1`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use serde_saphyr::Spanned;

use crate::spec::{
    Alert, Alerting, Budgeting, Location, ServiceSlos, Sli, Slo, SpecError, Window, check_names,
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
        parse_sloth(path, text)
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

/// Sloth plugins that do what sloop does anyway; any other plugin is named in a note.
const SLOTH_CORE_PLUGINS: [&str; 4] = [
    "sloth.dev/core/validate/v1",
    "sloth.dev/core/sli_rules/v1",
    "sloth.dev/core/metadata_rules/v1",
    "sloth.dev/core/alert_rules/v1",
];

#[derive(Deserialize)]
struct SlothFile {
    service: String,
    #[serde(default, deserialize_with = "label_values")]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    slo_plugins: Option<SlothPlugins>,
    slos: Vec<SlothSlo>,
}

#[derive(Deserialize)]
struct SlothPlugins {
    #[serde(default)]
    chain: Vec<SlothPluginRef>,
}

#[derive(Deserialize)]
struct SlothPluginRef {
    id: String,
}

#[derive(Deserialize)]
struct SlothSlo {
    name: Spanned<String>,
    objective: Spanned<f64>,
    #[serde(default)]
    description: String,
    #[serde(default, deserialize_with = "label_values")]
    labels: BTreeMap<String, String>,
    sli: SlothSli,
    #[serde(default)]
    alerting: Option<SlothAlerting>,
    #[serde(default)]
    plugins: Option<SlothPlugins>,
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
    name: Option<String>,
    #[serde(default, deserialize_with = "label_values")]
    labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "label_values")]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    page_alert: Option<SlothAlert>,
    #[serde(default)]
    ticket_alert: Option<SlothAlert>,
}

#[derive(Deserialize, Default)]
struct SlothAlert {
    #[serde(default)]
    disable: bool,
    #[serde(default, deserialize_with = "label_values")]
    labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "label_values")]
    annotations: BTreeMap<String, String>,
    /// `for:`, from Sloth's `alert_for` plugin.
    #[serde(default, rename = "for")]
    pending: Option<Spanned<String>>,
}

/// Label values as YAML writes them: `tier: 2` and `generated: true` are the strings `2`
/// and `true` to Prometheus, as they are to Sloth.
fn label_values<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let raw: Option<BTreeMap<String, Value>> = Option::deserialize(deserializer)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s,
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (k, text)
        })
        .collect())
}

/// Every document of a Sloth file (`---` separates services, as in Sloth's multifile example).
fn parse_sloth(path: &Path, text: &str) -> Result<Vec<ServiceSlos>, SpecError> {
    let files: Vec<SlothFile> =
        serde_saphyr::from_multiple(text).map_err(|e| SpecError::Syntax {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    files
        .into_iter()
        .map(|file| sloth_service(path, file))
        .collect()
}

fn sloth_service(path: &Path, file: SlothFile) -> Result<ServiceSlos, SpecError> {
    let at = |line: u64, field: String| Location {
        file: path.to_owned(),
        line,
        field,
    };
    let mut notes = plugin_notes(file.slo_plugins.as_ref(), &file.service);
    let mut slos = Vec::new();
    for s in file.slos {
        let line = s.name.referenced.line();
        let name = s.name.value.clone();
        let field = |f: &str| format!("slos[{name}].{f}");
        notes.extend(plugin_notes(
            s.plugins.as_ref(),
            &format!("{}/{name}", file.service),
        ));
        let sli = match (&s.sli.events, &s.sli.raw, &s.sli.plugin) {
            (Some(events), _, _) => Sli::Ratio {
                errors: sloth_template(&events.error_query),
                total: sloth_template(&events.total_query),
            },
            (None, Some(_), _) => {
                return Err(SpecError::Invalid {
                    at: at(line, field("sli.raw")),
                    message: "a raw SLI (error_ratio_query) has no event counts to budget \
                              with; write it as `events` with error_query and total_query"
                        .into(),
                });
            }
            _ => {
                return Err(SpecError::Invalid {
                    at: at(line, field("sli.plugin")),
                    message: "Sloth SLI plugins are Go code sloop cannot run; write the SLI as \
                              `events` with the error_query and total_query the plugin builds"
                        .into(),
                });
            }
        };
        let objective = s.objective.value;
        if !(objective > 0.0 && objective < 100.0) {
            return Err(SpecError::Invalid {
                at: at(s.objective.referenced.line(), field("objective")),
                message: format!("objective is a percentage, e.g. 99.9; got {objective}"),
            });
        }
        let alerting = match s.alerting {
            None => Alerting::default(),
            Some(a) => sloth_alerting(a, |t, f| {
                parse_duration(&t.value).map_err(|message| SpecError::Invalid {
                    at: at(t.referenced.line(), field(f)),
                    message,
                })
            })?,
        };
        slos.push(Slo {
            name,
            description: s.description,
            objective: objective / 100.0,
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
        notes,
    };
    check_names(&service)?;
    Ok(service)
}

/// Sloth's alerting block: one name for both alerts, shared labels and annotations under
/// each alert's own (the alert's win), each alert disabled or delayed on its own.
fn sloth_alerting(
    a: SlothAlerting,
    pending: impl Fn(&Spanned<String>, &str) -> Result<std::time::Duration, SpecError>,
) -> Result<Alerting, SpecError> {
    let defaults = Alerting::default();
    let alert = |base: Alert, own: Option<SlothAlert>, name: &str| -> Result<Alert, SpecError> {
        let own = own.unwrap_or_default();
        let mut labels = base.labels;
        labels.extend(a.labels.clone().into_iter().chain(own.labels));
        dedup_labels(&mut labels);
        let mut annotations: Vec<(String, String)> = a
            .annotations
            .clone()
            .into_iter()
            .chain(own.annotations)
            .collect();
        dedup_labels(&mut annotations);
        Ok(Alert {
            enabled: !own.disable,
            labels,
            annotations,
            pending: own
                .pending
                .as_ref()
                .map(|t| pending(t, &format!("alerting.{name}.for")))
                .transpose()?,
        })
    };
    Ok(Alerting {
        name: a.name.clone(),
        page: alert(defaults.page, a.page_alert, "page_alert")?,
        ticket: alert(defaults.ticket, a.ticket_alert, "ticket_alert")?,
    })
}

/// What a file asks of Sloth plugins that sloop does not run.
fn plugin_notes(plugins: Option<&SlothPlugins>, owner: &str) -> Vec<String> {
    plugins
        .into_iter()
        .flat_map(|p| &p.chain)
        .filter(|p| !SLOTH_CORE_PLUGINS.contains(&p.id.as_str()))
        .map(|p| {
            format!(
                "{owner}: Sloth plugin `{}` is not run; sloop generates what Sloth's core plugins do",
                p.id
            )
        })
        .collect()
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
                notes: Vec::new(),
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
        assert_eq!(slo.alerting.name.as_deref(), Some("MyServiceHighErrorRate"));
        let page = &slo.alerting.page.labels;
        assert!(page.contains(&("severity".into(), "pageteam".into())));
        assert!(!page.contains(&("severity".into(), "page".into())));
        assert!(
            slo.alerting
                .ticket
                .labels
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
