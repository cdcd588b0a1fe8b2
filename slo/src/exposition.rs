//! The Prometheus text exposition format, read well enough to count events: samples with
//! their labels, and PromQL-style selectors to pick them.

use std::collections::BTreeMap;

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ExpositionError {
    #[error("line {line}: {message}")]
    Malformed { line: usize, message: String },
    #[error("selector `{selector}`: {message}")]
    Selector { selector: String, message: String },
}

/// Parses every sample; comments and blank lines are skipped.
pub fn parse(text: &str) -> Result<Vec<Sample>, ExpositionError> {
    let mut samples = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let malformed = |message: &str| ExpositionError::Malformed {
            line: index + 1,
            message: message.into(),
        };
        let (name, labels, rest) = match line.find('{') {
            Some(open) => {
                let close = line.rfind('}').ok_or_else(|| malformed("unclosed {"))?;
                (
                    &line[..open],
                    parse_labels(&line[open + 1..close]).map_err(|m| malformed(&m))?,
                    &line[close + 1..],
                )
            }
            None => {
                let (name, rest) = line.split_once(' ').ok_or_else(|| malformed("no value"))?;
                (name, BTreeMap::new(), rest)
            }
        };
        let value_text = rest
            .split_whitespace()
            .next()
            .ok_or_else(|| malformed("no value"))?;
        let value = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            other => other
                .parse()
                .map_err(|_| malformed("value is not a number"))?,
        };
        samples.push(Sample {
            name: name.trim().to_owned(),
            labels,
            value,
        });
    }
    Ok(samples)
}

fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or("label without =")?;
        let name = rest[..eq].trim().trim_start_matches(',').trim().to_owned();
        let after = rest[eq + 1..].trim_start();
        let body = after.strip_prefix('"').ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = body.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => return Err("dangling escape".into()),
                },
                '"' => {
                    end = Some(i);
                    break;
                }
                other => value.push(other),
            }
        }
        let end = end.ok_or("unterminated label value")?;
        labels.insert(name, value);
        rest = body[end + 1..]
            .trim_start()
            .trim_start_matches(',')
            .trim_start();
    }
    Ok(labels)
}

/// One label matcher of a selector.
#[derive(Debug, Clone)]
enum Matcher {
    Equal(String, String),
    NotEqual(String, String),
    Regex(String, regex::Regex),
    NotRegex(String, regex::Regex),
}

/// A PromQL label selector such as `service="user",status=~"5.."`.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    matchers: Vec<Matcher>,
}

impl Selector {
    pub fn parse(text: &str) -> Result<Self, ExpositionError> {
        let labels_err = |message: String| ExpositionError::Selector {
            selector: text.into(),
            message,
        };
        let mut matchers = Vec::new();
        for part in split_matchers(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (name, op, value) = ["=~", "!~", "!=", "="]
                .iter()
                .find_map(|op| part.split_once(op).map(|(n, v)| (n.trim(), *op, v.trim())))
                .ok_or_else(|| labels_err(format!("`{part}` is not name=\"value\"")))?;
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .ok_or_else(|| {
                    labels_err(format!("the value in `{part}` must be in double quotes"))
                })?
                .replace("\\\\", "\\");
            let regex = || {
                regex::Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| labels_err(format!("bad regex in `{part}`: {e}")))
            };
            matchers.push(match op {
                "=" => Matcher::Equal(name.into(), value.clone()),
                "!=" => Matcher::NotEqual(name.into(), value.clone()),
                "=~" => Matcher::Regex(name.into(), regex()?),
                _ => Matcher::NotRegex(name.into(), regex()?),
            });
        }
        Ok(Self { matchers })
    }

    /// Adds one more matcher, e.g. the error-status regex of an availability SLI.
    pub fn and(mut self, other: &str) -> Result<Self, ExpositionError> {
        self.matchers.extend(Selector::parse(other)?.matchers);
        Ok(self)
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let get = |name: &str| labels.get(name).map(String::as_str).unwrap_or("");
        self.matchers.iter().all(|m| match m {
            Matcher::Equal(n, v) => get(n) == v,
            Matcher::NotEqual(n, v) => get(n) != v,
            Matcher::Regex(n, r) => r.is_match(get(n)),
            Matcher::NotRegex(n, r) => !r.is_match(get(n)),
        })
    }
}

/// Splits on commas outside quotes.
fn split_matchers(text: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut quoted = false;
    let mut escaped = false;
    for c in text.chars() {
        match c {
            '\\' if quoted => {
                escaped = !escaped;
                parts.last_mut().expect("non-empty").push(c);
                continue;
            }
            '"' if !escaped => quoted = !quoted,
            ',' if !quoted => {
                parts.push(String::new());
                continue;
            }
            _ => {}
        }
        escaped = false;
        parts.last_mut().expect("non-empty").push(c);
    }
    parts
}

/// Sum of the samples named `name` whose labels match `selector`.
pub fn sum(samples: &[Sample], name: &str, selector: &Selector) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && selector.matches(&s.labels))
        .map(|s| s.value)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP http_server_requests_total HTTP server requests completed.
# TYPE http_server_requests_total counter
http_server_requests_total{service="user",method="GET",route="/users/{id}",status="200"} 90
http_server_requests_total{service="user",method="GET",route="/users/{id}",status="503"} 7
http_server_requests_total{service="user",method="POST",route="/users",status="500"} 3
http_server_requests_total{service="chat",method="GET",route="/rooms",status="500"} 100
http_server_request_duration_seconds_bucket{service="user",le="0.2"} 95
http_server_request_duration_seconds_bucket{service="user",le="+Inf"} 100
up 1
"#;

    #[test]
    fn counts_by_selector() {
        let samples = parse(TEXT).unwrap();
        let user = Selector::parse(r#"service="user""#).unwrap();
        assert_eq!(sum(&samples, "http_server_requests_total", &user), 100.0);
        let errors = user.clone().and(r#"status=~"5..""#).unwrap();
        assert_eq!(sum(&samples, "http_server_requests_total", &errors), 10.0);
        let not_post = Selector::parse(r#"service="user",method!="POST""#).unwrap();
        assert_eq!(sum(&samples, "http_server_requests_total", &not_post), 97.0);
        let le = user.and(r#"le="0.2""#).unwrap();
        assert_eq!(
            sum(&samples, "http_server_request_duration_seconds_bucket", &le),
            95.0
        );
        assert_eq!(sum(&samples, "up", &Selector::default()), 1.0);
    }

    #[test]
    fn bad_input_is_reported_not_panicked() {
        assert!(parse("metric{a=\"1\" 2").is_err());
        assert!(parse("metric{a=1} 2").is_err());
        assert!(parse("metric{a=\"1\"} two").is_err());
        assert!(Selector::parse("service=user").is_err());
        assert!(Selector::parse("status=~\"(\"").is_err());
    }

    #[test]
    fn escaped_label_values() {
        let samples = parse(r#"m{path="a\"b",x="c,d"} 1"#).unwrap();
        assert_eq!(samples[0].labels["path"], "a\"b");
        assert_eq!(samples[0].labels["x"], "c,d");
    }
}
