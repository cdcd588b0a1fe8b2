//! OpenSLO v1 files: `SLO`, `SLI` and `DataSource` objects, one per YAML document or as a
//! YAML list of objects (as the OpenSLO SDK's examples are); `ratioMetric` and
//! `thresholdMetric` SLIs over Prometheus; `Occurrences`, `Timeslices` and
//! `RatioTimeslices` budgeting; rolling and calendar windows. Errors point at the line of
//! the field at fault.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;

use super::window_template;
use crate::calendar::{Calendar, CalendarUnit};
use crate::spec::{
    Alerting, Budgeting, Location, ServiceSlos, Sli, Slo, SpecError, Window, check_names,
};

/// What sloop supports, for errors about metric sources it does not.
const SUPPORTED_SOURCES: &str =
    "sloop reads Prometheus metric sources (`type: Prometheus` with the PromQL in `spec.query`)";

/// Kinds sloop reads without acting on them; named in a note.
const UNUSED_KINDS: [&str; 4] = [
    "AlertPolicy",
    "AlertCondition",
    "AlertNotificationTarget",
    "Service",
];

#[derive(Deserialize)]
struct RawObject {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: Value,
    #[serde(default)]
    spec: Option<BTreeMap<String, Spanned<Value>>>,
}

/// One OpenSLO object, with the line each of its top-level `spec` fields is on.
struct Object {
    kind: String,
    name: String,
    labels: Vec<(String, String)>,
    line: u64,
    spec: BTreeMap<String, Spanned<Value>>,
}

impl Object {
    fn field(&self, name: &str) -> &Value {
        self.spec.get(name).map_or(&Value::Null, |s| &s.value)
    }
}

pub(super) fn parse(path: &Path, text: &str, lists: bool) -> Result<Vec<ServiceSlos>, SpecError> {
    let syntax = |e: serde_saphyr::Error| SpecError::Syntax {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let raw: Vec<Spanned<RawObject>> = if lists {
        serde_saphyr::from_multiple::<Vec<Spanned<RawObject>>>(text)
            .map_err(syntax)?
            .into_iter()
            .flatten()
            .collect()
    } else {
        serde_saphyr::from_multiple(text).map_err(syntax)?
    };
    let objects: Vec<Object> = raw.into_iter().map(object).collect();
    Reader {
        path,
        lines: text.lines().collect(),
        objects: &objects,
    }
    .services()
}

fn object(raw: Spanned<RawObject>) -> Object {
    let line = raw.referenced.line();
    let raw = raw.value;
    Object {
        kind: raw.kind.unwrap_or_default(),
        name: raw.metadata["name"].as_str().unwrap_or_default().to_owned(),
        labels: labels(&raw.metadata["labels"]),
        line,
        spec: raw.spec.unwrap_or_default(),
    }
}

/// OpenSLO label values are a string or a list of strings; a list becomes `a,b`.
fn labels(value: &Value) -> Vec<(String, String)> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Array(items) => items
                    .iter()
                    .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect()
}

struct Reader<'a> {
    path: &'a Path,
    lines: Vec<&'a str>,
    objects: &'a [Object],
}

impl Reader<'_> {
    /// The line of `spec.<field>`'s key, or of the object when it is missing. A span gives
    /// where a value starts, which for a block mapping or list is a line below its key.
    fn line_of(&self, object: &Object, field: &str) -> u64 {
        let Some(value) = object.spec.get(field) else {
            return object.line;
        };
        let start = value.referenced.line() as usize;
        let key = format!("{field}:");
        let quoted = format!("\"{field}\":");
        (object.line.max(1) as usize..=start)
            .rev()
            .find(|&l| {
                self.lines.get(l - 1).is_some_and(|text| {
                    let text = text.trim_start();
                    text.starts_with(&key) || text.starts_with(&quoted)
                })
            })
            .unwrap_or(start) as u64
    }

    fn invalid(&self, line: u64, field: String, message: impl Into<String>) -> SpecError {
        SpecError::Invalid {
            at: Location {
                file: self.path.to_owned(),
                line,
                field,
            },
            message: message.into(),
        }
    }

    fn of_kind<'b>(&'b self, kind: &'b str) -> impl Iterator<Item = &'b Object> + 'b {
        self.objects.iter().filter(move |o| o.kind == kind)
    }

    fn services(&self) -> Result<Vec<ServiceSlos>, SpecError> {
        let mut services: BTreeMap<String, Vec<Slo>> = BTreeMap::new();
        for slo in self.of_kind("SLO") {
            let service = slo.field("service").as_str().ok_or_else(|| {
                self.invalid(
                    slo.line,
                    format!("SLO[{}].spec.service", slo.name),
                    "every SLO names its service",
                )
            })?;
            services
                .entry(service.to_owned())
                .or_default()
                .extend(self.slos(slo)?);
        }
        if services.is_empty() {
            return Err(self.invalid(0, "kind".into(), "no `kind: SLO` object found"));
        }
        let notes: Vec<String> = UNUSED_KINDS
            .iter()
            .filter(|kind| self.of_kind(kind).next().is_some())
            .map(|kind| {
                format!(
                    "{kind} objects are not read: sloop pages and tickets on multi-window burn rates"
                )
            })
            .collect();
        services
            .into_iter()
            .map(|(service, slos)| {
                let service = ServiceSlos {
                    service,
                    labels: Vec::new(),
                    slos,
                    source: self.path.to_owned(),
                    notes: notes.clone(),
                };
                check_names(&service)?;
                Ok(service)
            })
            .collect()
    }

    /// One sloop SLO per objective (suffixed `-2`, `-3`… after the first).
    fn slos(&self, slo: &Object) -> Result<Vec<Slo>, SpecError> {
        let field = |f: &str| format!("SLO[{}].spec.{f}", slo.name);
        let indicator = self.indicator(slo)?;
        let window = self.window(slo)?;
        let objectives = slo.field("objectives").as_array().ok_or_else(|| {
            self.invalid(
                self.line_of(slo, "objectives"),
                field("objectives"),
                "set objectives, e.g. [ { target: 0.999 } ]",
            )
        })?;
        let mut out = Vec::new();
        for (i, objective) in objectives.iter().enumerate() {
            let at = |f: &str| {
                (
                    self.line_of(slo, "objectives"),
                    field(&format!("objectives[{i}].{f}")),
                )
            };
            let target = objective["target"]
                .as_f64()
                .or_else(|| objective["targetPercent"].as_f64().map(|p| p / 100.0))
                .ok_or_else(|| {
                    let (line, f) = at("target");
                    self.invalid(line, f, "set target, e.g. 0.999 (or targetPercent: 99.9)")
                })?;
            if !(target > 0.0 && target < 1.0) {
                let (line, f) = at("target");
                return Err(self.invalid(
                    line,
                    f,
                    format!("target is a ratio between 0 and 1, e.g. 0.999; got {target}"),
                ));
            }
            let sli = openslo_sli(&indicator, objective).map_err(|message| {
                self.invalid(
                    self.line_of(slo, indicator.field),
                    field(indicator.field),
                    message,
                )
            })?;
            let budgeting = self.budgeting(slo, objective, i)?;
            out.push(Slo {
                name: if i == 0 {
                    slo.name.clone()
                } else {
                    format!("{}-{}", slo.name, i + 1)
                },
                description: slo
                    .field("description")
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                objective: target,
                window: window.clone(),
                sli,
                budgeting,
                alerting: Alerting::default(),
                labels: slo.labels.clone(),
                breakdown: Vec::new(),
            });
        }
        Ok(out)
    }

    /// The SLO's SLI spec, inline or by `indicatorRef`, with its metric sources resolved.
    fn indicator(&self, slo: &Object) -> Result<Indicator, SpecError> {
        let (field, spec) = match slo.field("indicatorRef").as_str() {
            Some(reference) => {
                let sli = self
                    .of_kind("SLI")
                    .find(|o| o.name == reference)
                    .ok_or_else(|| {
                        self.invalid(
                            self.line_of(slo, "indicatorRef"),
                            format!("SLO[{}].spec.indicatorRef", slo.name),
                            format!("no SLI object is named `{reference}`"),
                        )
                    })?;
                let spec: serde_json::Map<String, Value> = sli
                    .spec
                    .iter()
                    .map(|(k, v)| (k.clone(), v.value.clone()))
                    .collect();
                ("indicatorRef", Value::Object(spec))
            }
            None => ("indicator", slo.field("indicator")["spec"].clone()),
        };
        let sources: BTreeMap<String, String> = self
            .of_kind("DataSource")
            .filter_map(|d| Some((d.name.clone(), d.field("type").as_str()?.to_owned())))
            .collect();
        Ok(Indicator {
            field,
            spec,
            sources,
        })
    }

    fn window(&self, slo: &Object) -> Result<Window, SpecError> {
        let line = self.line_of(slo, "timeWindow");
        let field = format!("SLO[{}].spec.timeWindow", slo.name);
        let invalid = |message: String| self.invalid(line, field.clone(), message);
        let windows = match slo.field("timeWindow") {
            Value::Null => return Ok(Window::Rolling(Duration::from_secs(30 * 86_400))),
            Value::Array(windows) if windows.len() == 1 => windows,
            _ => return Err(invalid("timeWindow is a list of exactly one window".into())),
        };
        let window = &windows[0];
        let duration = window["duration"]
            .as_str()
            .ok_or_else(|| invalid("set duration, e.g. 28d (rolling) or 1M (calendar)".into()))?;
        let (count, unit) = openslo_duration(duration).map_err(&invalid)?;
        let calendar = &window["calendar"];
        let rolling = window["isRolling"].as_bool().unwrap_or(calendar.is_null());
        if rolling {
            let seconds = count.saturating_mul(unit_seconds(unit));
            if seconds < 3600 {
                return Err(invalid(format!(
                    "a rolling window of {duration} is shorter than an hour; SLO windows are days, e.g. 28d"
                )));
            }
            return Ok(Window::Rolling(Duration::from_secs(seconds)));
        }
        let calendar_unit = match (count, unit) {
            (1, 'w') => CalendarUnit::Week,
            (1, 'M') => CalendarUnit::Month,
            (_, 'm') => {
                return Err(invalid(format!(
                    "a calendar window of {duration} is {count} minute(s); months are written 1M"
                )));
            }
            _ => {
                return Err(invalid(format!(
                    "calendar windows of 1w and 1M are supported, not {duration}"
                )));
            }
        };
        // Unquoted, `2022-01-01 12:00:00` may also arrive as a YAML timestamp.
        let start = match &calendar["startTime"] {
            Value::String(s) => s.clone(),
            Value::Null => "2024-01-01 00:00:00".to_owned(),
            other => other.to_string(),
        };
        let zone = calendar["timeZone"].as_str().unwrap_or("UTC");
        Calendar::new(calendar_unit, &start, zone)
            .map(Window::Calendar)
            .map_err(|e| invalid(e.to_string()))
    }

    fn budgeting(&self, slo: &Object, objective: &Value, i: usize) -> Result<Budgeting, SpecError> {
        let method = slo
            .field("budgetingMethod")
            .as_str()
            .unwrap_or("Occurrences");
        let at = |f: &str| {
            (
                self.line_of(slo, "objectives"),
                format!("SLO[{}].spec.objectives[{i}].{f}", slo.name),
            )
        };
        let slice = || -> Result<Duration, SpecError> {
            let (line, field) = at("timeSliceWindow");
            let text = match &objective["timeSliceWindow"] {
                Value::String(s) => s.clone(),
                // The spec once allowed a bare number of minutes.
                Value::Number(n) => format!("{n}m"),
                _ => {
                    return Err(self.invalid(
                        line,
                        field,
                        format!("{method} budgeting needs timeSliceWindow, e.g. 1m"),
                    ));
                }
            };
            let (count, unit) =
                openslo_duration(&text).map_err(|m| self.invalid(line, field, m))?;
            Ok(Duration::from_secs(
                count.saturating_mul(unit_seconds(unit)),
            ))
        };
        match method {
            "Occurrences" => Ok(Budgeting::Occurrences),
            "Timeslices" => {
                let (line, field) = at("timeSliceTarget");
                let slice_objective = objective["timeSliceTarget"].as_f64().ok_or_else(|| {
                    self.invalid(line, field.clone(), "Timeslices budgeting needs timeSliceTarget, e.g. 0.95")
                })?;
                if !(slice_objective > 0.0 && slice_objective <= 1.0) {
                    return Err(self.invalid(line, field, "timeSliceTarget is a ratio in (0, 1], e.g. 0.95"));
                }
                Ok(Budgeting::Timeslices {
                    slice: slice()?,
                    slice_objective,
                })
            }
            "RatioTimeslices" => Ok(Budgeting::RatioTimeslices { slice: slice()? }),
            other => Err(self.invalid(
                self.line_of(slo, "budgetingMethod"),
                format!("SLO[{}].spec.budgetingMethod", slo.name),
                format!("`{other}` is not a budgeting method; use Occurrences, Timeslices or RatioTimeslices"),
            )),
        }
    }
}

/// An SLI spec and the DataSource types its metric sources may refer to.
struct Indicator {
    /// `indicator` or `indicatorRef`, for messages.
    field: &'static str,
    spec: Value,
    sources: BTreeMap<String, String>,
}

impl Indicator {
    /// The PromQL of a ratio's `metricSource`, with `{{window}}` where its range goes.
    fn query(&self, metric: &Value, counter: bool) -> Result<String, String> {
        ranged(&self.source_query(metric)?, counter)
    }

    /// The PromQL of a Prometheus `metricSource`, as written.
    fn source_query(&self, metric: &Value) -> Result<String, String> {
        let source = &metric["metricSource"];
        let kind = match (source["type"].as_str(), source["metricSourceRef"].as_str()) {
            (Some(kind), _) => kind.to_owned(),
            (None, Some(reference)) => self.sources.get(reference).cloned().ok_or_else(|| {
                format!("metricSourceRef `{reference}` names no DataSource object with a type")
            })?,
            (None, None) => {
                return Err(format!("the metricSource has no type; {SUPPORTED_SOURCES}"));
            }
        };
        if !kind.eq_ignore_ascii_case("prometheus") {
            return Err(format!(
                "metricSource type `{kind}` is not supported; {SUPPORTED_SOURCES}"
            ));
        }
        let spec = &source["spec"];
        let query = spec["query"]
            .as_str()
            .or_else(|| spec["promql"].as_str())
            .ok_or_else(|| {
                format!("the Prometheus metricSource has no spec.query; {SUPPORTED_SOURCES}")
            })?;
        Ok(window_template(query))
    }
}

/// A query with a `{{window}}` range is used as written. A counter read bare, as
/// `sum(metric{…})` or `metric{…}`, becomes its rate over the window; any other query
/// needs the range written in.
fn ranged(query: &str, counter: bool) -> Result<String, String> {
    if query.contains("{{window}}") {
        return Ok(query.to_owned());
    }
    let trimmed = query.trim();
    let inner = trimmed
        .strip_prefix("sum(")
        .and_then(|q| q.strip_suffix(')'))
        .unwrap_or(trimmed);
    let selector_only =
        crate::matchers::counter_query(&format!("sum(rate({inner}[{{{{window}}}}]))")).is_some();
    if counter && selector_only {
        return Ok(format!("sum(rate({inner}[{{{{window}}}}]))"));
    }
    Err(format!(
        "the query `{trimmed}` has no range to evaluate windows with; write it with {{{{window}}}}, e.g. sum(rate(http_requests_total[{{{{window}}}}]))"
    ))
}

fn openslo_sli(indicator: &Indicator, objective: &Value) -> Result<Sli, String> {
    let spec = &indicator.spec;
    let ratio = &spec["ratioMetric"];
    if ratio.is_object() {
        let counter = ratio["counter"].as_bool().unwrap_or(true);
        if ratio["raw"].is_object() {
            return Err("a `raw` ratioMetric (a precomputed ratio) has no event counts to budget with; use good or bad with total".into());
        }
        let total = indicator.query(&ratio["total"], counter)?;
        if ratio["bad"].is_object() {
            let bad = indicator.query(&ratio["bad"], counter)?;
            return Ok(Sli::Ratio { errors: bad, total });
        }
        if ratio["good"].is_object() {
            let good = indicator.query(&ratio["good"], counter)?;
            return Ok(Sli::Ratio {
                errors: crate::promql::good_form_errors(&total, &good),
                total,
            });
        }
        return Err("ratioMetric needs `good` or `bad` next to `total`".into());
    }
    let threshold = &spec["thresholdMetric"];
    if threshold.is_object() {
        // A threshold metric is read as it is, at each step: no range needed.
        let query = indicator.source_query(threshold)?;
        let value = objective["value"]
            .as_f64()
            .ok_or("a thresholdMetric objective needs `value`, e.g. 0.2")?;
        let comparison = match objective["op"].as_str().unwrap_or("lte") {
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

/// OpenSLO's duration shorthand: a whole number and one of m h d w M Q Y (case matters:
/// `m` is minutes, `M` months).
fn openslo_duration(text: &str) -> Result<(u64, char), String> {
    let text = text.trim();
    let unit = text.chars().last().unwrap_or(' ');
    let count: u64 = text[..text.len() - unit.len_utf8().min(text.len())]
        .parse()
        .map_err(|_| format!("`{text}` is not an OpenSLO duration; write a number and one of m, h, d, w, M, Q, Y, e.g. 28d or 1M"))?;
    if !"mhdwMQY".contains(unit) {
        return Err(format!(
            "`{text}` has unit `{unit}`; OpenSLO durations use m, h, d, w, M, Q or Y"
        ));
    }
    if count == 0 {
        return Err(format!("`{text}` is zero; a duration must be positive"));
    }
    Ok((count, unit))
}

/// Seconds per unit; months, quarters and years as 30, 90 and 365 days for rolling
/// windows (as the OpenSLO SDK counts them).
fn unit_seconds(unit: char) -> u64 {
    match unit {
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        'M' => 30 * 86_400,
        'Q' => 90 * 86_400,
        _ => 365 * 86_400,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::parse_any;

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
        assert_eq!(
            slos[1].window,
            Window::Calendar(Calendar::utc(CalendarUnit::Month))
        );
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
