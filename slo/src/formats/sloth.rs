//! Sloth `prometheus/v1` files: one service per YAML document, `events` SLIs, Sloth's
//! alerting block (one alert name, shared and per-alert labels and annotations, `for:`
//! from its `alert_for` plugin), and plugins named when sloop cannot run them.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;

use super::window_template;
use crate::spec::{
    Alert, Alerting, Budgeting, Location, ServiceSlos, Sli, Slo, SpecError, Window, check_names,
    parse_duration,
};

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
    sli: Spanned<SlothSli>,
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
pub(super) fn parse(path: &Path, text: &str) -> Result<Vec<ServiceSlos>, SpecError> {
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
        let name = s.name.value.clone();
        let field = |f: &str| format!("slos[{name}].{f}");
        notes.extend(plugin_notes(
            s.plugins.as_ref(),
            &format!("{}/{name}", file.service),
        ));
        let sli_line = s.sli.referenced.line();
        let sli = match (&s.sli.value.events, &s.sli.value.raw, &s.sli.value.plugin) {
            (Some(events), _, _) => Sli::Ratio {
                errors: window_template(&events.error_query),
                total: window_template(&events.total_query),
            },
            (None, Some(_), _) => {
                return Err(SpecError::Invalid {
                    at: at(sli_line, field("sli.raw")),
                    message: "a raw SLI (error_ratio_query) has no event counts to budget \
                              with; write it as `events` with error_query and total_query"
                        .into(),
                });
            }
            _ => {
                return Err(SpecError::Invalid {
                    at: at(sli_line, field("sli.plugin")),
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
            breakdown: Vec::new(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::parse_any;

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
}
