//! Experiment files: the YAML a person writes, checked into a [`Plan`] whose every mistake
//! points at file, line and field, the way `slo validate` does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chaos::Rule;
use serde::Deserialize;
use serde_saphyr::Spanned;
use slo::spec::{ServiceSlos, Slo};

/// Mistakes point at file, line and field, in the same words as `slo validate`.
pub use slo::spec::{Location, SpecError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    title: Spanned<String>,
    #[serde(default)]
    description: String,
    steady_state: SteadyStateFile,
    method: Spanned<Vec<StepFile>>,
    #[serde(default)]
    expect_alerts: Vec<ExpectFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SteadyStateFile {
    title: String,
    probes: Spanned<Vec<ProbeFile>>,
    /// How often the `during` probes run.
    #[serde(default)]
    interval: Option<Spanned<String>>,
    /// How long the `after` probes may take to hold again once the faults are gone.
    #[serde(default)]
    settle: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeFile {
    name: Spanned<String>,
    #[serde(default)]
    when: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    http: Option<HttpFile>,
    #[serde(default)]
    promql: Option<PromqlFile>,
    #[serde(default)]
    slo: Option<SloFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    service: Spanned<String>,
    #[serde(default = "root")]
    path: String,
    #[serde(default = "ok")]
    status: u16,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
}

fn root() -> String {
    "/".into()
}

fn ok() -> u16 {
    200
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromqlFile {
    query: Spanned<String>,
    #[serde(default)]
    min: Option<f64>,
    #[serde(default)]
    max: Option<f64>,
    /// The value an empty answer stands for; without it an empty answer fails the probe.
    #[serde(default)]
    empty: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SloFile {
    file: Spanned<String>,
    name: Spanned<String>,
    /// Holds while none of this severity's burn-rate conditions hold (default page).
    #[serde(default)]
    severity: Option<Spanned<String>>,
    /// And, if given, while the burn rate over the shortest alert window stays at or below it.
    #[serde(default)]
    max_burn_rate: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    fault: Option<FaultFile>,
    #[serde(default)]
    load: Option<LoadFile>,
    #[serde(default)]
    wait: Option<Spanned<String>>,
    /// Wait until every alert expected to fire has fired, for at most this long.
    #[serde(default)]
    await_alerts: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultFile {
    service: Spanned<String>,
    rule: Spanned<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadFile {
    scenario: Spanned<String>,
    /// A service name from the targets, or a base URL.
    target: Spanned<String>,
    #[serde(default)]
    rate: Option<f64>,
    #[serde(default)]
    duration: Option<Spanned<String>>,
    /// Go on with the next step while the load runs.
    #[serde(default)]
    background: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectFile {
    alert: Spanned<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// `false`: the alert must stay silent for the whole run.
    #[serde(default = "yes")]
    fires: bool,
    #[serde(default)]
    fires_within: Option<Spanned<String>>,
    #[serde(default)]
    resolves_within: Option<Spanned<String>>,
    /// The Alertmanager receiver (webhook path) that must be notified, when the run listens.
    #[serde(default)]
    receiver: Option<String>,
}

fn yes() -> bool {
    true
}

/// A checked experiment, ready to run.
#[derive(Debug)]
pub struct Plan {
    pub path: PathBuf,
    pub title: String,
    pub description: String,
    pub hypothesis: Hypothesis,
    pub method: Vec<Step>,
    pub expect: Vec<ExpectedAlert>,
}

#[derive(Debug)]
pub struct Hypothesis {
    pub title: String,
    pub probes: Vec<Probe>,
    pub interval: Duration,
    pub settle: Duration,
}

/// When a probe is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Before,
    During,
    After,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Before => "before",
            Phase::During => "during",
            Phase::After => "after",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Probe {
    pub name: String,
    pub when: Vec<Phase>,
    pub check: Check,
}

#[derive(Debug, Clone)]
pub enum Check {
    Http {
        service: String,
        path: String,
        status: u16,
        timeout: Duration,
    },
    Promql {
        query: String,
        min: Option<f64>,
        max: Option<f64>,
        empty: Option<f64>,
    },
    Slo {
        service: Box<ServiceSlos>,
        slo: Box<Slo>,
        severity: slo::math::Severity,
        max_burn_rate: Option<f64>,
    },
}

#[derive(Debug)]
pub struct Step {
    pub name: String,
    pub action: Action,
}

#[derive(Debug)]
pub enum Action {
    Fault {
        services: Vec<String>,
        rule: Box<Rule>,
    },
    Load {
        scenario_path: PathBuf,
        scenario: Box<loadtest::scenario::Scenario>,
        target: String,
        background: bool,
    },
    Wait(Duration),
    /// Until every alert expected to fire has, or this long passes.
    AwaitAlerts(Duration),
}

#[derive(Debug, Clone)]
pub struct ExpectedAlert {
    pub alert: String,
    pub labels: BTreeMap<String, String>,
    pub fires: bool,
    pub fires_within: Duration,
    pub resolves_within: Option<Duration>,
    pub receiver: Option<String>,
}

impl ExpectedAlert {
    /// `alertname{k="v",…}`, for messages.
    pub fn describe(&self) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        format!("{}{{{}}}", self.alert, labels.join(","))
    }
}

/// Reads and checks `path`. SLO and scenario files are read relative to the working
/// directory, then to the experiment's own directory.
pub fn load(path: &Path) -> Result<Plan, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

pub fn parse(path: &Path, text: &str) -> Result<Plan, SpecError> {
    let file: File = serde_saphyr::from_str(text).map_err(|e| SpecError::Syntax {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let checker = Checker { path };
    checker.plan(file)
}

struct Checker<'a> {
    path: &'a Path,
}

impl Checker<'_> {
    fn invalid(&self, line: u64, field: &str, message: impl Into<String>) -> SpecError {
        SpecError::Invalid {
            at: Location {
                file: self.path.to_owned(),
                line,
                field: field.to_owned(),
            },
            message: message.into(),
        }
    }

    /// A duration up to a day: longer is a typo, and would overflow deadlines.
    fn duration(&self, text: &Spanned<String>, field: &str) -> Result<Duration, SpecError> {
        const LONGEST: Duration = Duration::from_secs(24 * 60 * 60);
        let invalid = |message: String| self.invalid(text.referenced.line(), field, message);
        let d = sloop_duration::parse(&text.value).map_err(|e| invalid(e.to_string()))?;
        if d > LONGEST {
            return Err(invalid(format!("`{}` is longer than a day", text.value)));
        }
        Ok(d)
    }

    fn optional_duration(
        &self,
        text: &Option<Spanned<String>>,
        field: &str,
        default: Duration,
    ) -> Result<Duration, SpecError> {
        text.as_ref()
            .map_or(Ok(default), |t| self.duration(t, field))
    }

    /// A file named in the experiment: as given, else next to the experiment.
    fn find(&self, name: &Spanned<String>, field: &str) -> Result<PathBuf, SpecError> {
        let given = PathBuf::from(&name.value);
        if given.is_file() {
            return Ok(given);
        }
        let beside = self
            .path
            .parent()
            .map(|dir| dir.join(&given))
            .filter(|p| p.is_file());
        beside.ok_or_else(|| {
            self.invalid(
                name.referenced.line(),
                field,
                format!(
                    "no file `{}` (looked in the working directory and beside the experiment)",
                    name.value
                ),
            )
        })
    }

    fn plan(&self, file: File) -> Result<Plan, SpecError> {
        if file.title.value.trim().is_empty() {
            return Err(self.invalid(
                file.title.referenced.line(),
                "title",
                "say what the experiment shows",
            ));
        }
        let hypothesis = self.hypothesis(file.steady_state)?;
        if file.method.value.is_empty() {
            return Err(self.invalid(
                file.method.referenced.line(),
                "method",
                "an experiment needs at least one step (fault, load or wait)",
            ));
        }
        let method = file
            .method
            .value
            .into_iter()
            .enumerate()
            .map(|(i, step)| self.step(i, step, file.method.referenced.line()))
            .collect::<Result<Vec<_>, _>>()?;
        if !method
            .iter()
            .any(|s| matches!(s.action, Action::Fault { .. }))
        {
            return Err(self.invalid(
                file.method.referenced.line(),
                "method",
                "no step injects a fault; add a `fault:` step",
            ));
        }
        let expect = file
            .expect_alerts
            .into_iter()
            .enumerate()
            .map(|(i, e)| self.expected(i, e))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Plan {
            path: self.path.to_owned(),
            title: file.title.value,
            description: file.description.trim().to_owned(),
            hypothesis,
            method,
            expect,
        })
    }

    fn hypothesis(&self, file: SteadyStateFile) -> Result<Hypothesis, SpecError> {
        if file.probes.value.is_empty() {
            return Err(self.invalid(
                file.probes.referenced.line(),
                "steady_state.probes",
                "a steady state needs at least one probe (http, promql or slo)",
            ));
        }
        let probes = file
            .probes
            .value
            .into_iter()
            .enumerate()
            .map(|(i, p)| self.probe(i, p))
            .collect::<Result<Vec<_>, _>>()?;
        let interval = self.optional_duration(
            &file.interval,
            "steady_state.interval",
            Duration::from_secs(5),
        )?;
        if let Some(text) = file.interval.as_ref().filter(|_| interval.is_zero()) {
            return Err(self.invalid(
                text.referenced.line(),
                "steady_state.interval",
                "the probes need time between checks; give at least 1s",
            ));
        }
        Ok(Hypothesis {
            title: file.title,
            probes,
            interval,
            settle: self.optional_duration(
                &file.settle,
                "steady_state.settle",
                Duration::from_secs(60),
            )?,
        })
    }

    fn probe(&self, index: usize, file: ProbeFile) -> Result<Probe, SpecError> {
        let field = |name: &str| format!("steady_state.probes[{index}].{name}");
        let line = file.name.referenced.line();
        let when = match &file.when {
            None => vec![Phase::Before, Phase::During, Phase::After],
            Some(list) => list
                .value
                .iter()
                .map(|w| match w.as_str() {
                    "before" => Ok(Phase::Before),
                    "during" => Ok(Phase::During),
                    "after" => Ok(Phase::After),
                    other => Err(self.invalid(
                        list.referenced.line(),
                        &field("when"),
                        format!("`{other}` is not a phase; use before, during and after"),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        if let Some(list) = file.when.as_ref().filter(|_| when.is_empty()) {
            return Err(self.invalid(
                list.referenced.line(),
                &field("when"),
                "a probe checked in no phase proves nothing; name before, during or after, \
                 or leave `when` out for all three",
            ));
        }
        let kinds = [
            file.http.is_some(),
            file.promql.is_some(),
            file.slo.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(self.invalid(
                line,
                &field("http|promql|slo"),
                "give a probe exactly one of http, promql or slo",
            ));
        }
        let check = if let Some(http) = file.http {
            Check::Http {
                service: http.service.value,
                path: http.path,
                status: http.status,
                timeout: self.optional_duration(
                    &http.timeout,
                    &field("http.timeout"),
                    Duration::from_secs(5),
                )?,
            }
        } else if let Some(promql) = file.promql {
            if promql.min.is_none() && promql.max.is_none() {
                return Err(self.invalid(
                    promql.query.referenced.line(),
                    &field("promql"),
                    "give the tolerance: min, max or both",
                ));
            }
            Check::Promql {
                query: promql.query.value,
                min: promql.min,
                max: promql.max,
                empty: promql.empty,
            }
        } else if let Some(slo) = file.slo {
            self.slo_check(&slo, &field("slo"))?
        } else {
            unreachable!("exactly one kind was checked above")
        };
        Ok(Probe {
            name: file.name.value,
            when,
            check,
        })
    }

    fn slo_check(&self, file: &SloFile, field: &str) -> Result<Check, SpecError> {
        let path = self.find(&file.file, &format!("{field}.file"))?;
        let services = slo::spec::load_path(&path).map_err(|e| {
            self.invalid(
                file.file.referenced.line(),
                &format!("{field}.file"),
                e.to_string(),
            )
        })?;
        let found = services.iter().find_map(|service| {
            service
                .slos
                .iter()
                .find(|s| s.name == file.name.value)
                .map(|s| (service.clone(), s.clone()))
        });
        let Some((service, slo)) = found else {
            let known: Vec<&str> = services
                .iter()
                .flat_map(|s| s.slos.iter().map(|o| o.name.as_str()))
                .collect();
            return Err(self.invalid(
                file.name.referenced.line(),
                &format!("{field}.name"),
                format!(
                    "{} has no SLO `{}`; it has {}",
                    path.display(),
                    file.name.value,
                    known.join(", ")
                ),
            ));
        };
        let severity = match file.severity.as_ref().map(|s| s.value.as_str()) {
            None | Some("page") => slo::math::Severity::Page,
            Some("ticket") => slo::math::Severity::Ticket,
            Some(other) => {
                return Err(self.invalid(
                    file.severity.as_ref().map_or(0, |s| s.referenced.line()),
                    &format!("{field}.severity"),
                    format!("`{other}` is not a severity; use page or ticket"),
                ));
            }
        };
        Ok(Check::Slo {
            service: Box::new(service),
            slo: Box::new(slo),
            severity,
            max_burn_rate: file.max_burn_rate,
        })
    }

    fn step(&self, index: usize, file: StepFile, method_line: u64) -> Result<Step, SpecError> {
        let field = |name: &str| format!("method[{index}].{name}");
        let kinds = [
            file.fault.is_some(),
            file.load.is_some(),
            file.wait.is_some(),
            file.await_alerts.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(self.invalid(
                method_line,
                &format!("method[{index}]"),
                "give each step exactly one of fault, load, wait or await_alerts",
            ));
        }
        let (name, action) = if let Some(fault) = file.fault {
            let line = fault.rule.referenced.line();
            let rule: Rule = serde_json::from_value(fault.rule.value).map_err(|e| {
                self.invalid(line, &field("fault.rule"), format!("not a fault rule: {e}"))
            })?;
            let services: Vec<String> = fault
                .service
                .value
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
            if services.is_empty() {
                return Err(self.invalid(
                    fault.service.referenced.line(),
                    &field("fault.service"),
                    "name the service(s) to inject into",
                ));
            }
            for service in &services {
                rule.check(service)
                    .map_err(|e| self.invalid(line, &field("fault.rule"), e))?;
            }
            (
                format!("fault on {}", services.join(", ")),
                Action::Fault {
                    services,
                    rule: Box::new(rule),
                },
            )
        } else if let Some(load) = file.load {
            let path = self.find(&load.scenario, &field("load.scenario"))?;
            let shown = path.display().to_string();
            let invalid_scenario = |e: &dyn std::fmt::Display| {
                self.invalid(
                    load.scenario.referenced.line(),
                    &field("load.scenario"),
                    e.to_string(),
                )
            };
            let text = std::fs::read_to_string(&path).map_err(|e| invalid_scenario(&e))?;
            let mut scenario = loadtest::scenario::Scenario::parse(&shown, &text)
                .map_err(|e| invalid_scenario(&e))?;
            if load.rate.is_some() || load.duration.is_some() {
                let stages = scenario.stages(&shown).map_err(|e| invalid_scenario(&e))?;
                let rate = match load.rate {
                    Some(rate) if rate > 0.0 && rate.is_finite() => rate,
                    Some(_) => {
                        return Err(self.invalid(
                            load.scenario.referenced.line(),
                            &field("load.rate"),
                            "a rate is requests per second, above 0",
                        ));
                    }
                    None => stages
                        .iter()
                        .map(|s| s.from_rate.max(s.to_rate))
                        .fold(0.0, f64::max),
                };
                let duration = match &load.duration {
                    Some(d) => self.duration(d, &field("load.duration"))?,
                    None => stages.iter().map(|s| s.duration).sum(),
                };
                scenario.stages = vec![loadtest::scenario::StageSpec {
                    duration: format!("{}ms", duration.as_millis()),
                    rate: Some(rate),
                    from: None,
                    to: None,
                }];
            }
            scenario.stages(&shown).map_err(|e| invalid_scenario(&e))?;
            (
                format!("load {} at {}", path.display(), load.target.value),
                Action::Load {
                    scenario_path: path,
                    scenario: Box::new(scenario),
                    target: load.target.value,
                    background: load.background,
                },
            )
        } else if let Some(wait) = &file.wait {
            let d = self.duration(wait, &field("wait"))?;
            (
                format!("wait {}", sloop_duration::format(d)),
                Action::Wait(d),
            )
        } else if let Some(most) = &file.await_alerts {
            let d = self.duration(most, &field("await_alerts"))?;
            (
                format!(
                    "until the expected alerts fire and reach their receivers (at most {})",
                    sloop_duration::format(d)
                ),
                Action::AwaitAlerts(d),
            )
        } else {
            unreachable!("exactly one kind was checked above")
        };
        Ok(Step {
            name: file.name.unwrap_or(name),
            action,
        })
    }

    fn expected(&self, index: usize, file: ExpectFile) -> Result<ExpectedAlert, SpecError> {
        let field = |name: &str| format!("expect_alerts[{index}].{name}");
        let line = file.alert.referenced.line();
        let fires_within = match (&file.fires_within, file.fires) {
            (Some(t), _) => self.duration(t, &field("fires_within"))?,
            (None, false) => Duration::ZERO,
            (None, true) => {
                return Err(self.invalid(
                    line,
                    &field("fires_within"),
                    "say how soon after the first fault the alert must fire, e.g. fires_within: 3m",
                ));
            }
        };
        if !file.fires && (file.resolves_within.is_some() || file.receiver.is_some()) {
            return Err(self.invalid(
                line,
                &field("fires"),
                "an alert expected to stay silent has nothing to resolve or notify",
            ));
        }
        Ok(ExpectedAlert {
            alert: file.alert.value,
            labels: file.labels,
            fires: file.fires,
            fires_within,
            resolves_within: file
                .resolves_within
                .as_ref()
                .map(|t| self.duration(t, &field("resolves_within")))
                .transpose()?,
            receiver: file.receiver,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
title: Errors in the user service page
steady_state:
  title: healthy
  probes:
    - name: ready
      http: { service: user, path: /readyz }
    - name: few errors
      when: [before, after]
      promql: { query: "vector(0)", max: 0.01 }
method:
  - wait: 1s
  - fault:
      service: user
      rule: { action: { abort: { status: 503 } }, probability: 0.5, ttl: 2m }
  - wait: 2s
expect_alerts:
  - alert: ErrorBudgetBurnPage
    labels: { sloth_service: user }
    fires_within: 3m
    resolves_within: 5m
    receiver: page
"#;

    #[test]
    fn a_good_file_becomes_a_plan() {
        let plan = parse(Path::new("e.yaml"), GOOD).unwrap();
        assert_eq!(plan.method.len(), 3);
        assert_eq!(
            plan.hypothesis.probes[1].when,
            vec![Phase::Before, Phase::After]
        );
        assert_eq!(plan.hypothesis.probes[0].when.len(), 3);
        assert_eq!(plan.expect[0].fires_within, Duration::from_secs(180));
        assert!(matches!(plan.method[1].action, Action::Fault { .. }));
    }

    fn error(text: &str) -> String {
        parse(Path::new("e.yaml"), text).unwrap_err().to_string()
    }

    #[test]
    fn mistakes_point_at_file_line_and_field() {
        let bad_wait = GOOD.replace("- wait: 2s", "- wait: soon");
        let err = error(&bad_wait);
        assert!(err.starts_with("e.yaml:16: method[2].wait:"), "{err}");

        let bad_phase = GOOD.replace("[before, after]", "[before, later]");
        let err = error(&bad_phase);
        assert!(
            err.starts_with("e.yaml:9: steady_state.probes[1].when"),
            "{err}"
        );

        let bad_rule = GOOD.replace("probability: 0.5", "probability: 1.5");
        let err = error(&bad_rule);
        assert!(err.contains("method[1].fault.rule"), "{err}");
        assert!(err.contains("probability"), "{err}");

        let never = GOOD.replace("[before, after]", "[]");
        assert!(error(&never).contains("no phase"), "{}", error(&never));

        let busy = GOOD.replace("  title: healthy\n", "  title: healthy\n  interval: 0s\n");
        assert!(
            error(&busy).contains("steady_state.interval"),
            "{}",
            error(&busy)
        );

        let forever = GOOD.replace("- wait: 2s", "- wait: 300000000000y");
        assert!(error(&forever).contains("longer than a day"));

        let no_deadline = GOOD.replace("    fires_within: 3m\n", "");
        assert!(error(&no_deadline).contains("fires_within"));

        let unknown = GOOD.replace("title: healthy", "title: healthy\n  tolerance: 1");
        assert!(error(&unknown).contains("tolerance"), "{}", error(&unknown));
    }

    #[test]
    fn a_method_without_a_fault_is_refused() {
        let text = GOOD.replace(
            "  - fault:\n      service: user\n      rule: { action: { abort: { status: 503 } }, probability: 0.5, ttl: 2m }\n",
            "",
        );
        assert!(error(&text).contains("no step injects a fault"));
    }

    #[test]
    fn missing_files_say_where_they_were_looked_for() {
        let text = GOOD.replace(
            "promql: { query: \"vector(0)\", max: 0.01 }",
            "slo: { file: nowhere.yaml, name: x }",
        );
        let err = error(&text);
        assert!(err.contains("nowhere.yaml"), "{err}");
        assert!(err.contains("working directory"), "{err}");
    }
}
