//! PromQL label matchers (`code=~"(5..|429)"`, `job!="batch"`): reading them out of a
//! selector or a simple counter query, and picking label values that satisfy them, so
//! promtool tests can write synthetic series an SLI's queries select.

use regex::Regex;
use regex_syntax::hir::{Class, Hir, HirKind};

/// One matcher of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    pub label: String,
    pub op: Op,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Equal,
    NotEqual,
    Matches,
    NotMatches,
}

impl Matcher {
    /// The matcher as PromQL writes it: `code=~"5.."`.
    pub fn to_promql(&self) -> String {
        let op = match self.op {
            Op::Equal => "=",
            Op::NotEqual => "!=",
            Op::Matches => "=~",
            Op::NotMatches => "!~",
        };
        let value = self.value.replace('\\', "\\\\").replace('"', "\\\"");
        format!("{}{op}\"{value}\"", self.label)
    }

    /// Whether `value` passes this matcher; Prometheus regexes match the whole value.
    pub fn accepts(&self, value: &str) -> bool {
        match self.op {
            Op::Equal => value == self.value,
            Op::NotEqual => value != self.value,
            Op::Matches | Op::NotMatches => {
                let whole = Regex::new(&format!("^(?:{})$", self.value));
                let matched = whole.is_ok_and(|re| re.is_match(value));
                matched == (self.op == Op::Matches)
            }
        }
    }
}

/// Splits a selector body (`a="x", b=~"y|z"`) into matchers; `None` if it is not one.
pub fn parse(selector: &str) -> Option<Vec<Matcher>> {
    let mut matchers = Vec::new();
    let mut rest = selector.trim();
    while !rest.is_empty() {
        let name_end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
        let label = rest[..name_end].to_owned();
        let after = rest[name_end..].trim_start();
        let (op, after) = [
            ("=~", Op::Matches),
            ("!~", Op::NotMatches),
            ("!=", Op::NotEqual),
            ("=", Op::Equal),
        ]
        .into_iter()
        .find_map(|(text, op)| after.strip_prefix(text).map(|a| (op, a)))?;
        let (value, after) = quoted(after.trim_start())?;
        if label.is_empty() {
            return None;
        }
        matchers.push(Matcher { label, op, value });
        rest = after.trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Some(matchers)
}

/// A double-quoted PromQL string and what follows it.
fn quoted(text: &str) -> Option<(String, &str)> {
    let body = text.strip_prefix('"')?;
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &body[i + 1..])),
            '\\' => value.push(chars.next()?.1),
            other => value.push(other),
        }
    }
    None
}

/// The metric and matchers of a query of the shape `sum(rate(metric{…}[{{window}}]))`
/// (or `increase`), the shape Sloth's examples and most event SLIs have; `None` for any
/// other query, whose series cannot be derived.
pub fn counter_query(query: &str) -> Option<(String, Vec<Matcher>)> {
    let compact = without_spaces(query);
    let inner = ["sum(rate(", "sum(increase("]
        .into_iter()
        .find_map(|p| compact.strip_prefix(p))?
        .strip_suffix("[{{window}}]))")?;
    let (metric, selector) = match inner.split_once('{') {
        Some((metric, rest)) => (metric, rest.strip_suffix('}')?),
        None => (inner, ""),
    };
    let valid_metric = !metric.is_empty()
        && metric
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    valid_metric.then_some(())?;
    Some((metric.to_owned(), parse(selector)?))
}

/// The query with whitespace outside string literals removed.
fn without_spaces(query: &str) -> String {
    let mut out = String::new();
    let mut in_string = false;
    let mut escaped = false;
    for c in query.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => escaped = false,
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

/// Label pairs a series needs to pass every matcher: per label, a value all its matchers
/// accept. `None` when no value can be found for some label.
pub fn satisfying(matchers: &[Matcher]) -> Option<Vec<(String, String)>> {
    let mut labels: Vec<(String, String)> = Vec::new();
    for m in matchers {
        if labels.iter().any(|(l, _)| *l == m.label) {
            continue;
        }
        let own: Vec<&Matcher> = matchers.iter().filter(|o| o.label == m.label).collect();
        let value = candidates(&own, &NEUTRAL_VALUES).find(|v| own.iter().all(|o| o.accepts(v)))?;
        // An empty value is the label's absence, which Prometheus treats alike.
        if !value.is_empty() {
            labels.push((m.label.clone(), value));
        }
    }
    Some(labels)
}

/// A value for `label` that `required` accepts and `excluded` does not.
pub fn violating(label: &str, required: &[Matcher], excluded: &Matcher) -> Option<String> {
    let own: Vec<&Matcher> = required.iter().filter(|m| m.label == label).collect();
    // What a negative matcher names is exactly what fails it.
    let named = match excluded.op {
        Op::NotEqual => Some(excluded.value.clone()),
        Op::NotMatches => example_of(&excluded.value),
        Op::Equal | Op::Matches => None,
    };
    named
        .into_iter()
        .chain(candidates(&own, &SUCCESS_VALUES))
        .find(|v| !v.is_empty() && own.iter().all(|m| m.accepts(v)) && !excluded.accepts(v))
}

/// Values tried for a label only excluded from (`route!="/openapi.json"`).
const NEUTRAL_VALUES: [&str; 4] = ["synthetic", "synthetic-other", "0", "200"];
/// Values tried for a label whose value must not be an error's: a success status first,
/// since SLIs most often pick errors out by status.
const SUCCESS_VALUES: [&str; 4] = ["200", "ok", "synthetic", "synthetic-other"];

/// Values worth trying for one label: what its `=` and `=~` matchers describe, then
/// `fallbacks`.
fn candidates<'a>(
    matchers: &'a [&'a Matcher],
    fallbacks: &'a [&'a str],
) -> impl Iterator<Item = String> + 'a {
    matchers
        .iter()
        .filter_map(|m| match m.op {
            Op::Equal => Some(m.value.clone()),
            Op::Matches => example_of(&m.value),
            Op::NotEqual | Op::NotMatches => None,
        })
        .chain(fallbacks.iter().map(|v| (*v).to_owned()))
}

/// The shortest string the regex matches, preferring digits and letters where it allows
/// a choice: `(5..|429)` gives `500`.
pub fn example_of(regex: &str) -> Option<String> {
    let hir = regex_syntax::parse(regex).ok()?;
    let mut out = String::new();
    write_example(&hir, &mut out).then_some(out)
}

fn write_example(hir: &Hir, out: &mut String) -> bool {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => true,
        HirKind::Literal(literal) => match std::str::from_utf8(&literal.0) {
            Ok(text) => {
                out.push_str(text);
                true
            }
            Err(_) => false,
        },
        HirKind::Class(Class::Unicode(class)) => {
            let contains = |c: char| {
                class
                    .ranges()
                    .iter()
                    .any(|r| r.start() <= c && c <= r.end())
            };
            let preferred = ('0'..='9')
                .chain('a'..='z')
                .chain('A'..='Z')
                .find(|c| contains(*c));
            match preferred.or_else(|| class.ranges().first().map(|r| r.start())) {
                Some(c) => {
                    out.push(c);
                    true
                }
                None => false,
            }
        }
        HirKind::Class(Class::Bytes(_)) => false,
        HirKind::Repetition(repetition) => {
            (0..repetition.min).all(|_| write_example(&repetition.sub, out))
        }
        HirKind::Capture(capture) => write_example(&capture.sub, out),
        HirKind::Concat(parts) => parts.iter().all(|p| write_example(p, out)),
        HirKind::Alternation(branches) => branches
            .first()
            .is_some_and(|first| write_example(first, out)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_split_into_matchers() {
        let m = parse(r#"job="myservice", code=~"(5..|429)",route!~"/doc.*", a!="x,y""#).unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(m[1].op, Op::Matches);
        assert_eq!(m[1].value, "(5..|429)");
        assert_eq!(m[3].value, "x,y");
        assert_eq!(parse("").unwrap(), vec![]);
        assert!(parse("job=myservice").is_none());
    }

    #[test]
    fn counter_queries_are_recognised_whatever_their_spacing() {
        let (metric, m) = counter_query(
            "sum(rate(http_request_duration_seconds_count{job=\"myservice\",code=~\"(5..|429)\"}[{{window}}]))",
        )
        .unwrap();
        assert_eq!(metric, "http_request_duration_seconds_count");
        assert_eq!(m.len(), 2);
        let (metric, m) = counter_query("sum(\n  increase(x_total[{{window}}])\n)").unwrap();
        assert_eq!((metric.as_str(), m.len()), ("x_total", 0));
        assert!(counter_query("histogram_quantile(0.9, sum(rate(x[{{window}}])))").is_none());
        assert!(counter_query("sum(rate(x{a=\"b\"}[5m]))").is_none());
    }

    #[test]
    fn regex_matchers_get_values_they_accept() {
        assert_eq!(example_of("(5..|429)").as_deref(), Some("500"));
        assert_eq!(example_of("4[0-9]{2}").as_deref(), Some("400"));
        assert_eq!(example_of("GET|POST").as_deref(), Some("GET"));
        let m = parse(r#"job="a", code=~"(5..|429)", path!~"/health.*""#).unwrap();
        let labels = satisfying(&m).unwrap();
        assert_eq!(
            labels,
            vec![
                ("job".into(), "a".into()),
                ("code".into(), "500".into()),
                ("path".into(), "synthetic".into())
            ]
        );
        let total = parse(r#"job="a""#).unwrap();
        let errors = &parse(r#"code=~"(5..|429)""#).unwrap()[0];
        assert_eq!(violating("code", &total, errors).as_deref(), Some("200"));
        let good = &parse(r#"code!~"5..""#).unwrap()[0];
        assert_eq!(violating("code", &total, good).as_deref(), Some("500"));
        let impossible = parse(r#"a="x", a="y""#).unwrap();
        assert!(satisfying(&impossible).is_none());
    }
}
