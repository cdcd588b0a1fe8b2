//! Scenario files: named HTTP steps with weights, templated paths, headers and JSON bodies,
//! values captured from responses, a set-up phase, load stages and thresholds.
//!
//! Templates: `{{seq}}` (a number unique within the run), `{{uuid}}` (random), and
//! `{{name}}` for a value captured earlier under `name` (a random one of those captured).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::schedule::Stage;
use crate::thresholds::{Threshold, ThresholdError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// Target, e.g. `http://127.0.0.1:8082`; `--target` overrides it.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Run once, in order, before the measured phase; not measured.
    #[serde(default)]
    pub setup: Vec<Step>,
    pub stages: Vec<StageSpec>,
    /// The measured mix.
    pub steps: Vec<Step>,
    /// Whole-run thresholds, e.g. `p(99)<200`.
    #[serde(default)]
    pub thresholds: Vec<String>,
    /// Most requests in flight at once (default 2000).
    #[serde(default)]
    pub max_in_flight: Option<usize>,
    /// A request not sent within this long of its due time is dropped (default `1s`).
    #[serde(default)]
    pub max_lateness: Option<String>,
    /// Per-request time-out (default `10s`).
    #[serde(default)]
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    pub duration: String,
    /// Constant requests per second...
    #[serde(default)]
    pub rate: Option<f64>,
    /// ...or a linear ramp from one rate to another.
    #[serde(default)]
    pub from: Option<f64>,
    #[serde(default)]
    pub to: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub name: String,
    /// Share of the mix, relative to the other steps' weights.
    #[serde(default = "one")]
    pub weight: u32,
    /// Set-up steps only: how many times to run.
    #[serde(default = "one")]
    pub repeat: u32,
    #[serde(default = "get")]
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub json: Option<Value>,
    /// Variable name -> JSON pointer into the response body, e.g. `user_id: /id`.
    #[serde(default)]
    pub capture: BTreeMap<String, String>,
    /// Statuses that count as success (default: anything below 400).
    #[serde(default)]
    pub expect: Vec<u16>,
    #[serde(default)]
    pub thresholds: Vec<String>,
}

fn one() -> u32 {
    1
}

fn get() -> String {
    "GET".into()
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    #[error("{path}: {field}: {message}")]
    Invalid {
        path: String,
        field: String,
        message: String,
    },
    #[error("{path}: {0}", path = .1)]
    Threshold(ThresholdError, String),
}

impl Scenario {
    pub fn parse(path: &str, text: &str) -> Result<Self, ScenarioError> {
        let scenario: Scenario =
            serde_saphyr::from_str(text).map_err(|e| ScenarioError::Syntax {
                path: path.into(),
                message: e.to_string(),
            })?;
        scenario.validate(path)?;
        Ok(scenario)
    }

    fn validate(&self, path: &str) -> Result<(), ScenarioError> {
        let invalid = |field: &str, message: &str| ScenarioError::Invalid {
            path: path.into(),
            field: field.into(),
            message: message.into(),
        };
        if self.steps.is_empty() {
            return Err(invalid("steps", "list at least one step to measure"));
        }
        if self.steps.iter().all(|s| s.weight == 0) {
            return Err(invalid("steps", "at least one step needs a weight above 0"));
        }
        self.stages(path)?;
        for step in self.steps.iter().chain(&self.setup) {
            reqwest::Method::from_bytes(step.method.as_bytes()).map_err(|_| {
                invalid(
                    &format!("steps[{}].method", step.name),
                    "not an HTTP method",
                )
            })?;
            if !step.path.starts_with('/') {
                return Err(invalid(
                    &format!("steps[{}].path", step.name),
                    "paths start with /",
                ));
            }
            for pointer in step.capture.values() {
                if !pointer.is_empty() && !pointer.starts_with('/') {
                    return Err(invalid(
                        &format!("steps[{}].capture", step.name),
                        "captures are JSON pointers such as /id",
                    ));
                }
            }
        }
        self.thresholds(path)?;
        for field in [&self.max_lateness, &self.timeout].into_iter().flatten() {
            parse_duration(field).map_err(|m| invalid("max_lateness/timeout", &m))?;
        }
        Ok(())
    }

    pub fn stages(&self, path: &str) -> Result<Vec<Stage>, ScenarioError> {
        if self.stages.is_empty() {
            return Err(ScenarioError::Invalid {
                path: path.into(),
                field: "stages".into(),
                message: "give at least one stage, e.g. { duration: 60s, rate: 1000 }".into(),
            });
        }
        self.stages
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let invalid = |message: String| ScenarioError::Invalid {
                    path: path.into(),
                    field: format!("stages[{i}]"),
                    message,
                };
                let duration = parse_duration(&s.duration).map_err(invalid)?;
                let (from, to) = match (s.rate, s.from, s.to) {
                    (Some(r), None, None) => (r, r),
                    (None, Some(f), Some(t)) => (f, t),
                    _ => return Err(invalid("give either `rate`, or `from` and `to`".into())),
                };
                if from < 0.0 || to < 0.0 || !from.is_finite() || !to.is_finite() {
                    return Err(invalid("rates are requests per second, 0 or more".into()));
                }
                Ok(Stage {
                    duration,
                    from_rate: from,
                    to_rate: to,
                })
            })
            .collect()
    }

    pub fn thresholds(&self, path: &str) -> Result<Vec<Threshold>, ScenarioError> {
        let whole = self.thresholds.iter().map(|t| Threshold::parse(t, None));
        let per_step = self.steps.iter().flat_map(|s| {
            s.thresholds
                .iter()
                .map(|t| Threshold::parse(t, Some(&s.name)))
        });
        whole
            .chain(per_step)
            .collect::<Result<_, _>>()
            .map_err(|e| ScenarioError::Threshold(e, path.into()))
    }

    pub fn max_lateness(&self) -> Duration {
        self.max_lateness
            .as_deref()
            .and_then(|d| parse_duration(d).ok())
            .unwrap_or(Duration::from_secs(1))
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
            .as_deref()
            .and_then(|d| parse_duration(d).ok())
            .unwrap_or(Duration::from_secs(10))
    }
}

/// A positive duration (`500ms`, `10s`, `2m`), its error as text for scenario messages.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    sloop_duration::parse_positive(text).map_err(|e| e.to_string())
}

/// Values captured from responses, shared by every request of a run.
#[derive(Debug, Default)]
pub struct Captures {
    values: HashMap<String, Vec<String>>,
}

/// How many values of one name are kept; older ones are replaced at random.
const CAPTURE_CAP: usize = 10_000;

impl Captures {
    pub fn add(&mut self, name: &str, value: String) {
        let list = self.values.entry(name.to_owned()).or_default();
        if list.len() < CAPTURE_CAP {
            list.push(value);
        } else {
            let i = rand::random_range(0..list.len());
            list[i] = value;
        }
    }

    pub fn pick(&self, name: &str) -> Option<&String> {
        let list = self.values.get(name)?;
        if list.is_empty() {
            None
        } else {
            list.get(rand::random_range(0..list.len()))
        }
    }
}

/// Fills `{{...}}` placeholders. An unknown name is an error: a typo would otherwise
/// hammer a wrong URL at full rate.
pub fn render(template: &str, seq: u64, captures: &Captures) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| format!("unclosed {{{{ in `{template}`"))?;
        let name = after[..close].trim();
        match name {
            "seq" => out.push_str(&seq.to_string()),
            "uuid" => out.push_str(&uuid::Uuid::new_v4().to_string()),
            other => out.push_str(captures.pick(other).ok_or_else(|| {
                format!("`{{{{{other}}}}}` has no value: capture it in a set-up step first")
            })?),
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Renders every string inside a JSON body.
pub fn render_json(value: &Value, seq: u64, captures: &Captures) -> Result<Value, String> {
    Ok(match value {
        Value::String(s) => Value::String(render(s, seq, captures)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| render_json(v, seq, captures))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_json(v, seq, captures)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCENARIO: &str = r#"
name: user-mix
setup:
  - name: seed
    method: POST
    path: /users
    repeat: 10
    json: { email: "seed-{{seq}}@example.com", name: "Seed {{seq}}" }
    capture: { user_id: /id }
stages:
  - { duration: 5s, from: 0, to: 100 }
  - { duration: 10s, rate: 100 }
steps:
  - { name: get, weight: 8, path: "/users/{{user_id}}", thresholds: ["p(99.9)<200"] }
  - { name: create, method: POST, path: /users, json: { email: "u-{{uuid}}@example.com", name: "U" } }
thresholds: ["p(99)<200", "rate<0.001", "dropped==0"]
"#;

    #[test]
    fn scenarios_parse_and_validate() {
        let s = Scenario::parse("mix.yaml", SCENARIO).unwrap();
        assert_eq!(s.steps.len(), 2);
        assert_eq!(s.setup[0].repeat, 10);
        assert_eq!(s.stages("mix.yaml").unwrap().len(), 2);
        assert_eq!(s.thresholds("mix.yaml").unwrap().len(), 4);
        let bad = SCENARIO.replace("rate<0.001", "rate<<");
        assert!(
            Scenario::parse("mix.yaml", &bad)
                .unwrap_err()
                .to_string()
                .contains("mix.yaml")
        );
        let bad = SCENARIO.replace("{ duration: 10s, rate: 100 }", "{ duration: 10s }");
        assert!(
            Scenario::parse("mix.yaml", &bad)
                .unwrap_err()
                .to_string()
                .contains("stages[1]")
        );
    }

    #[test]
    fn templates_fill_sequence_uuid_and_captures() {
        let mut captures = Captures::default();
        captures.add("user_id", "abc".into());
        assert_eq!(
            render("/users/{{user_id}}?n={{seq}}", 7, &captures).unwrap(),
            "/users/abc?n=7"
        );
        assert_eq!(render("{{uuid}}", 0, &captures).unwrap().len(), 36);
        assert!(
            render("/x/{{missing}}", 0, &captures)
                .unwrap_err()
                .contains("missing")
        );
        let body =
            render_json(&serde_json::json!({"a": ["{{seq}}"], "b": 1}), 3, &captures).unwrap();
        assert_eq!(body, serde_json::json!({"a": ["3"], "b": 1}));
    }
}
