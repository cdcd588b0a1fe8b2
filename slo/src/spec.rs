//! SLO specifications: the native YAML format, and the model every format is read into.
//!
//! Native files look like `slos/user.yaml` in this repository. OpenSLO v1 and Sloth
//! `prometheus/v1` files are read by [`crate::formats`] into the same [`ServiceSlos`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::calendar::{Calendar, CalendarUnit};

/// Where a spec problem is: file, line and the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: u64,
    pub field: String,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.field)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("{at}: {message}")]
    Invalid { at: Location, message: String },
}

/// All SLOs of one service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSlos {
    pub service: String,
    pub labels: Vec<(String, String)>,
    pub slos: Vec<Slo>,
    /// The file they came from, for messages.
    pub source: PathBuf,
    /// What of the file sloop reads but does not act on (e.g. a Sloth plugin it cannot
    /// run), for `slo validate` and `slo generate` to tell the user.
    pub notes: Vec<String>,
}

/// One objective over one window.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    pub name: String,
    pub description: String,
    /// Target share of good events, e.g. 0.999.
    pub objective: f64,
    pub window: Window,
    pub sli: Sli,
    pub budgeting: Budgeting,
    pub alerting: Alerting,
    pub labels: Vec<(String, String)>,
    /// Labels the budget breakdown groups bad events by, besides route and status.
    pub breakdown: Vec<String>,
}

impl Slo {
    /// The error budget as a share of events: 1 - objective.
    pub fn error_budget(&self) -> f64 {
        1.0 - self.objective
    }
}

/// The compliance window.
#[derive(Debug, Clone, PartialEq)]
pub enum Window {
    Rolling(Duration),
    /// This week or this month as the calendar says; alert math spreads the budget over
    /// 7 or 30 days.
    Calendar(Calendar),
}

impl Window {
    /// The period the budget is spread over, for burn-rate math.
    pub fn period(&self) -> Duration {
        match self {
            Window::Rolling(d) => *d,
            Window::Calendar(c) => c.nominal(),
        }
    }

    /// `30d`, `calendar month (Europe/Berlin)`.
    pub fn describe(&self) -> String {
        match self {
            Window::Rolling(d) => prom_duration(*d),
            Window::Calendar(c) => c.describe(),
        }
    }
}

/// How good and total events are counted.
#[derive(Debug, Clone, PartialEq)]
pub enum Sli {
    /// Requests whose status does not match `error_status` are good.
    Availability {
        metric: String,
        selector: String,
        error_status: String,
    },
    /// Requests faster than `threshold_seconds` are good, read from the histogram bucket
    /// whose `le` equals the threshold.
    Latency {
        metric: String,
        selector: String,
        threshold_seconds: f64,
    },
    /// Raw PromQL; `{{window}}` is replaced by each range, e.g. `[{{window}}]`.
    Ratio { errors: String, total: String },
}

/// Whether the budget counts bad events, bad time slices, or the slices' mean ratio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budgeting {
    Occurrences,
    /// A slice of `slice` is good when its good-event ratio reaches `slice_objective`;
    /// the SLI is good slices over all slices.
    Timeslices {
        slice: Duration,
        slice_objective: f64,
    },
    /// OpenSLO's `RatioTimeslices`: the SLI is the mean of every slice's good-event ratio.
    RatioTimeslices {
        slice: Duration,
    },
}

impl Budgeting {
    /// The slice length, for the slice-based methods.
    pub fn slice(&self) -> Option<Duration> {
        match self {
            Budgeting::Occurrences => None,
            Budgeting::Timeslices { slice, .. } | Budgeting::RatioTimeslices { slice } => {
                Some(*slice)
            }
        }
    }
}

/// Alert settings of one SLO: its page and its ticket alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Alerting {
    /// The name both alerts share (Sloth's `alerting.name`); without one they are
    /// `ErrorBudgetBurnPage` and `ErrorBudgetBurnTicket`.
    pub name: Option<String>,
    pub page: Alert,
    pub ticket: Alert,
}

/// One alert: whether it exists, what it carries and how long it waits before firing.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub enabled: bool,
    pub labels: Vec<(String, String)>,
    /// E.g. `runbook_url`, `summary`.
    pub annotations: Vec<(String, String)>,
    /// Prometheus' `for:`: how long the condition holds before the alert fires.
    pub pending: Option<Duration>,
}

impl Alert {
    fn with_severity(severity: &str) -> Self {
        Self {
            enabled: true,
            labels: vec![("severity".into(), severity.into())],
            annotations: Vec::new(),
            pending: None,
        }
    }
}

impl Default for Alerting {
    fn default() -> Self {
        Self {
            name: None,
            page: Alert::with_severity("page"),
            ticket: Alert::with_severity("ticket"),
        }
    }
}

impl Alerting {
    pub fn alert(&self, severity: crate::math::Severity) -> &Alert {
        match severity {
            crate::math::Severity::Page => &self.page,
            crate::math::Severity::Ticket => &self.ticket,
        }
    }

    /// The `alertname` an alert of this severity fires under.
    pub fn name(&self, severity: crate::math::Severity) -> String {
        match (&self.name, severity) {
            (Some(name), _) => name.clone(),
            (None, crate::math::Severity::Page) => "ErrorBudgetBurnPage".into(),
            (None, crate::math::Severity::Ticket) => "ErrorBudgetBurnTicket".into(),
        }
    }
}

// ---- the native YAML shape -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeFile {
    service: Spanned<String>,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    slos: Vec<NativeSlo>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeSlo {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    /// Percent, e.g. 99.9.
    objective: Spanned<f64>,
    #[serde(default = "default_window")]
    window: Spanned<String>,
    sli: NativeSli,
    #[serde(default)]
    budgeting: Option<NativeBudgeting>,
    #[serde(default)]
    alerting: Option<NativeAlerting>,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    /// Labels to break the spent budget down by, besides route and status.
    #[serde(default)]
    breakdown: Vec<String>,
}

fn default_window() -> Spanned<String> {
    Spanned::new(
        "30d".into(),
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum NativeSli {
    Availability {
        #[serde(default)]
        metric: Option<String>,
        selector: String,
        #[serde(default)]
        error_status: Option<String>,
    },
    Latency {
        #[serde(default)]
        metric: Option<String>,
        selector: String,
        threshold: Spanned<f64>,
    },
    Ratio {
        errors: String,
        total: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeBudgeting {
    method: Spanned<String>,
    #[serde(default)]
    slice: Option<String>,
    /// Percent of good events that makes a slice good.
    #[serde(default)]
    slice_objective: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeAlerting {
    #[serde(default = "yes")]
    enabled: bool,
    /// One alert name for both severities, as Sloth's `alerting.name`.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    page_labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    ticket_labels: std::collections::BTreeMap<String, String>,
    /// Annotations on both alerts (e.g. `runbook_url`), as Sloth's `alerting.annotations`.
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
    /// `for:` of the page alert, e.g. `2m`.
    #[serde(default)]
    page_for: Option<Spanned<String>>,
    #[serde(default)]
    ticket_for: Option<Spanned<String>>,
}

fn yes() -> bool {
    true
}

pub const DEFAULT_REQUESTS_METRIC: &str = "http_server_requests_total";
pub const DEFAULT_DURATION_METRIC: &str = "http_server_request_duration_seconds";

/// Reads every `.yaml`/`.yml` file at `path` (a file or a directory), in any format.
pub fn load_path(path: &Path) -> Result<Vec<ServiceSlos>, SpecError> {
    let files = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|source| SpecError::Read {
                path: path.to_owned(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_owned()]
    };
    let mut all = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| SpecError::Read {
            path: file.clone(),
            source,
        })?;
        all.extend(crate::formats::parse_any(&file, &text)?);
    }
    Ok(all)
}

/// Parses a native spec.
pub fn parse_native(path: &Path, text: &str) -> Result<ServiceSlos, SpecError> {
    let file: NativeFile = serde_saphyr::from_str(text).map_err(|e| SpecError::Syntax {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let at = |line: u64, field: &str| Location {
        file: path.to_owned(),
        line,
        field: field.to_owned(),
    };
    if file.service.value.trim().is_empty() {
        return Err(SpecError::Invalid {
            at: at(file.service.referenced.line(), "service"),
            message: "service must name the service, e.g. `service: user`".into(),
        });
    }
    let mut slos = Vec::new();
    for native in file.slos {
        let line = native.name.referenced.line();
        let name = native.name.value.clone();
        let field = |f: &str| format!("slos[{name}].{f}");
        let objective = native.objective.value;
        if !(objective > 0.0 && objective < 100.0) {
            return Err(SpecError::Invalid {
                at: at(native.objective.referenced.line(), &field("objective")),
                message: format!(
                    "objective is a percentage between 0 and 100 (exclusive), e.g. 99.9; got {objective}"
                ),
            });
        }
        let window = parse_window(&native.window.value).map_err(|message| SpecError::Invalid {
            at: at(native.window.referenced.line().max(line), &field("window")),
            message,
        })?;
        let sli = match native.sli {
            NativeSli::Availability {
                metric,
                selector,
                error_status,
            } => Sli::Availability {
                metric: metric.unwrap_or_else(|| DEFAULT_REQUESTS_METRIC.into()),
                selector,
                error_status: error_status.unwrap_or_else(|| "5..".into()),
            },
            NativeSli::Latency {
                metric,
                selector,
                threshold,
            } => {
                if !(threshold.value > 0.0 && threshold.value.is_finite()) {
                    return Err(SpecError::Invalid {
                        at: at(threshold.referenced.line(), &field("sli.threshold")),
                        message: "threshold is in seconds and must be positive, e.g. 0.2".into(),
                    });
                }
                Sli::Latency {
                    metric: metric.unwrap_or_else(|| DEFAULT_DURATION_METRIC.into()),
                    selector,
                    threshold_seconds: threshold.value,
                }
            }
            NativeSli::Ratio { errors, total } => Sli::Ratio { errors, total },
        };
        let budgeting = match native.budgeting {
            None => Budgeting::Occurrences,
            Some(b) => parse_budgeting(&b).map_err(|message| SpecError::Invalid {
                at: at(b.method.referenced.line(), &field("budgeting")),
                message,
            })?,
        };
        let alerting = match native.alerting {
            None => Alerting::default(),
            Some(a) => {
                let defaults = Alerting::default();
                let pending = |text: &Option<Spanned<String>>, name: &str| {
                    text.as_ref()
                        .map(|t| {
                            parse_duration(&t.value).map_err(|message| SpecError::Invalid {
                                at: at(t.referenced.line(), &field(&format!("alerting.{name}"))),
                                message,
                            })
                        })
                        .transpose()
                };
                let alert = |base: Alert, labels, pending| Alert {
                    enabled: a.enabled,
                    labels: merge(base.labels, labels),
                    annotations: a.annotations.clone().into_iter().collect(),
                    pending,
                };
                Alerting {
                    name: a.name.clone(),
                    page: alert(
                        defaults.page,
                        a.page_labels.clone(),
                        pending(&a.page_for, "page_for")?,
                    ),
                    ticket: alert(
                        defaults.ticket,
                        a.ticket_labels.clone(),
                        pending(&a.ticket_for, "ticket_for")?,
                    ),
                }
            }
        };
        slos.push(Slo {
            name,
            description: native.description,
            objective: objective / 100.0,
            window,
            sli,
            budgeting,
            alerting,
            labels: native.labels.into_iter().collect(),
            breakdown: native.breakdown,
        });
    }
    let service = ServiceSlos {
        service: file.service.value,
        labels: file.labels.into_iter().collect(),
        slos,
        source: path.to_owned(),
        notes: Vec::new(),
    };
    check_names(&service)?;
    Ok(service)
}

fn merge(
    mut base: Vec<(String, String)>,
    extra: std::collections::BTreeMap<String, String>,
) -> Vec<(String, String)> {
    for (k, v) in extra {
        base.retain(|(bk, _)| *bk != k);
        base.push((k, v));
    }
    base
}

/// Names become rule labels and alert ids, so they must be simple and unique.
pub fn check_names(service: &ServiceSlos) -> Result<(), SpecError> {
    let mut seen = std::collections::HashSet::new();
    for slo in &service.slos {
        let valid = !slo.name.is_empty()
            && slo
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        let at = Location {
            file: service.source.clone(),
            line: 0,
            field: format!("slos[{}].name", slo.name),
        };
        if !valid {
            return Err(SpecError::Invalid {
                at,
                message: "names use letters, digits, - and _ only, e.g. requests-availability"
                    .into(),
            });
        }
        if !seen.insert(&slo.name) {
            return Err(SpecError::Invalid {
                at,
                message: "two SLOs of one service share this name; names must be unique".into(),
            });
        }
    }
    Ok(())
}

/// `30d`, `4w`, `720h` (rolling), or `month` / `week` (calendar, UTC).
pub fn parse_window(text: &str) -> Result<Window, String> {
    match text {
        "month" | "calendar-month" => {
            return Ok(Window::Calendar(Calendar::utc(CalendarUnit::Month)));
        }
        "week" | "calendar-week" => return Ok(Window::Calendar(Calendar::utc(CalendarUnit::Week))),
        _ => {}
    }
    // `1M` and `1y` read as 30.44 and 365.25 days; a month as the calendar has it is `month`.
    let units = text.split(|c: char| !c.is_ascii_alphabetic());
    if units
        .into_iter()
        .any(|u| matches!(u, "M" | "month" | "months" | "y" | "year" | "years"))
    {
        return Err(format!(
            "window {text} has no fixed length; write `month` for calendar months or days, e.g. 30d"
        ));
    }
    let duration = parse_duration(text)?;
    if duration < Duration::from_secs(3600) {
        return Err(format!(
            "window {text} is shorter than an hour; SLO windows are days, e.g. 30d"
        ));
    }
    Ok(Window::Rolling(duration))
}

/// A positive duration in sloop's one grammar (`5m`, `6h`, `30d`), its error as text for
/// spec messages. Whole seconds only: Prometheus ranges and `for:` are written in them.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = sloop_duration::parse_positive(text).map_err(|e| e.to_string())?;
    if duration.subsec_nanos() != 0 {
        return Err(format!(
            "`{text}` is not a whole number of seconds; Prometheus ranges are, e.g. 30s or 5m"
        ));
    }
    Ok(duration)
}

/// Formats a duration the way Prometheus writes ranges: `5m`, `1h`, `30d`.
pub fn prom_duration(d: Duration) -> String {
    let s = d.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if s.is_multiple_of(size) && s >= size {
            return format!("{}{unit}", s / size);
        }
    }
    format!("{s}s")
}

fn parse_budgeting(b: &NativeBudgeting) -> Result<Budgeting, String> {
    match b.method.value.as_str() {
        "occurrences" => Ok(Budgeting::Occurrences),
        "timeslices" => {
            let slice = parse_duration(b.slice.as_deref().unwrap_or("1m"))?;
            let slice_objective = b.slice_objective.unwrap_or(99.0);
            if !(slice_objective > 0.0 && slice_objective <= 100.0) {
                return Err("slice_objective is a percentage, e.g. 99".into());
            }
            Ok(Budgeting::Timeslices {
                slice,
                slice_objective: slice_objective / 100.0,
            })
        }
        "ratio-timeslices" => Ok(Budgeting::RatioTimeslices {
            slice: parse_duration(b.slice.as_deref().unwrap_or("1m"))?,
        }),
        other => Err(format!(
            "budgeting method `{other}` is unknown; use occurrences, timeslices or ratio-timeslices"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
service: user
labels: { team: platform }
slos:
  - name: requests-availability
    objective: 99.9
    window: 30d
    sli:
      type: availability
      selector: 'service="user"'
  - name: requests-latency
    objective: 99.9
    sli:
      type: latency
      selector: 'service="user"'
      threshold: 0.2
    budgeting: { method: timeslices, slice: 5m, slice_objective: 95 }
    alerting: { page_labels: { team: platform } }
"#;

    fn parse(text: &str) -> Result<ServiceSlos, SpecError> {
        parse_native(Path::new("slos/user.yaml"), text)
    }

    #[test]
    fn native_spec_reads_with_defaults() {
        let spec = parse(GOOD).unwrap();
        assert_eq!(spec.service, "user");
        assert_eq!(spec.slos.len(), 2);
        let availability = &spec.slos[0];
        assert!((availability.objective - 0.999).abs() < 1e-12);
        assert!((availability.error_budget() - 0.001).abs() < 1e-12);
        assert_eq!(
            availability.window,
            Window::Rolling(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(
            availability.sli,
            Sli::Availability {
                metric: DEFAULT_REQUESTS_METRIC.into(),
                selector: "service=\"user\"".into(),
                error_status: "5..".into()
            }
        );
        let latency = &spec.slos[1];
        assert_eq!(
            latency.window,
            Window::Rolling(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(
            latency.budgeting,
            Budgeting::Timeslices {
                slice: Duration::from_secs(300),
                slice_objective: 0.95
            }
        );
        assert!(
            latency
                .alerting
                .page
                .labels
                .contains(&("team".into(), "platform".into()))
        );
        assert!(
            latency
                .alerting
                .page
                .labels
                .contains(&("severity".into(), "page".into()))
        );
    }

    #[test]
    fn errors_point_at_file_line_and_field() {
        let bad = GOOD.replace(
            "objective: 99.9\n    window: 30d",
            "objective: 120\n    window: 30d",
        );
        let err = parse(&bad).unwrap_err().to_string();
        assert!(
            err.starts_with("slos/user.yaml:6: slos[requests-availability].objective"),
            "{err}"
        );
        assert!(err.contains("between 0 and 100"), "{err}");

        let bad = GOOD.replace("window: 30d", "window: 30x");
        let err = parse(&bad).unwrap_err().to_string();
        assert!(err.starts_with("slos/user.yaml:7:"), "{err}");
        assert!(err.contains("not a duration"), "{err}");

        let bad = GOOD.replace("threshold: 0.2", "threshold: -1");
        let err = parse(&bad).unwrap_err().to_string();
        assert!(
            err.contains("sli.threshold") && err.contains("positive"),
            "{err}"
        );

        let bad = GOOD.replace("type: availability", "type: freshness");
        let err = parse(&bad).unwrap_err().to_string();
        assert!(
            err.contains("slos/user.yaml") && err.contains("freshness"),
            "{err}"
        );

        let bad = GOOD.replace("requests-latency", "requests-availability");
        assert!(parse(&bad).unwrap_err().to_string().contains("unique"));
    }

    #[test]
    fn durations_round_trip() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(prom_duration(Duration::from_secs(300)), "5m");
        assert_eq!(prom_duration(Duration::from_secs(3 * 86_400)), "3d");
        assert_eq!(prom_duration(Duration::from_secs(30 * 86_400)), "30d");
        assert_eq!(prom_duration(Duration::from_secs(90)), "90s");
        assert!(parse_duration("0m").is_err());
        assert!(parse_window("10m").is_err());
        assert!(parse_window("1M").unwrap_err().contains("`month`"));
        assert!(parse_window("30days").is_ok());
        assert!(
            parse_duration("1500ms")
                .unwrap_err()
                .contains("whole number of seconds")
        );
        assert_eq!(
            parse_window("month"),
            Ok(Window::Calendar(Calendar::utc(CalendarUnit::Month)))
        );
    }
}
