//! PromQL for an SLI: errors and totals over a range, and label selectors.

use std::time::Duration;

use crate::spec::{Sli, prom_duration};

/// Error events per second over `range`, zero (not empty) when there were none.
pub fn errors_rate(sli: &Sli, range: Duration) -> String {
    let r = prom_duration(range);
    match sli {
        Sli::Availability {
            metric,
            selector,
            error_status,
        } => format!(
            "(sum(rate({metric}{}[{r}])) or vector(0))",
            braces(selector, &format!("status=~\"{error_status}\""))
        ),
        Sli::Latency {
            metric,
            selector,
            threshold_seconds,
        } => format!(
            "((sum(rate({metric}_count{}[{r}])) - sum(rate({metric}_bucket{}[{r}]))) or vector(0))",
            braces(selector, ""),
            braces(selector, &le_matcher(*threshold_seconds)),
        ),
        Sli::Ratio { errors, .. } => {
            format!("(({}) or vector(0))", errors.replace("{{window}}", &r))
        }
    }
}

/// All events per second over `range`, zero when there were none.
pub fn total_rate(sli: &Sli, range: Duration) -> String {
    let r = prom_duration(range);
    match sli {
        Sli::Availability {
            metric, selector, ..
        } => {
            format!(
                "(sum(rate({metric}{}[{r}])) or vector(0))",
                braces(selector, "")
            )
        }
        Sli::Latency {
            metric, selector, ..
        } => {
            format!(
                "(sum(rate({metric}_count{}[{r}])) or vector(0))",
                braces(selector, "")
            )
        }
        Sli::Ratio { total, .. } => format!("(({}) or vector(0))", total.replace("{{window}}", &r)),
    }
}

/// Error ratio over `range`: 0 when there was no traffic, never NaN or +Inf.
pub fn error_ratio(sli: &Sli, range: Duration) -> String {
    format!(
        "{}\n/\nclamp_min({}, 1e-12)",
        errors_rate(sli, range),
        total_rate(sli, range)
    )
}

/// Bad events as total minus good ones (OpenSLO's `good` form). A window with no good
/// series at all is all bad, not empty.
pub fn good_form_errors(total: &str, good: &str) -> String {
    format!("({total}) - (({good}) or ({total}) * 0)")
}

/// The good-events query of an errors query written by [`good_form_errors`].
pub fn good_of<'a>(errors: &'a str, total: &str) -> Option<&'a str> {
    errors
        .strip_prefix(&format!("({total}) - (("))?
        .strip_suffix(&format!(") or ({total}) * 0)"))
}

/// Bad events over `range` per group of `labels`, e.g. per route and status: `None` for a
/// ratio SLI whose queries are not plain counter sums, which cannot be regrouped.
pub fn errors_by(sli: &Sli, range: Duration, labels: &[String]) -> Option<String> {
    let r = prom_duration(range);
    let by = labels.join(", ");
    let increase = |series: &str| format!("sum by ({by}) (increase({series}[{r}]))");
    match sli {
        Sli::Availability {
            metric,
            selector,
            error_status,
        } => Some(increase(&format!(
            "{metric}{}",
            braces(selector, &format!("status=~\"{error_status}\""))
        ))),
        Sli::Latency {
            metric,
            selector,
            threshold_seconds,
        } => Some(format!(
            "{} - {}",
            increase(&format!("{metric}_count{}", braces(selector, ""))),
            increase(&format!(
                "{metric}_bucket{}",
                braces(selector, &le_matcher(*threshold_seconds))
            ))
        )),
        Sli::Ratio { errors, total } => {
            let counter = |query: &str| {
                let (metric, matchers) = crate::matchers::counter_query(query)?;
                let selector: Vec<String> = matchers.iter().map(|m| m.to_promql()).collect();
                Some(increase(&format!("{metric}{{{}}}", selector.join(","))))
            };
            // OpenSLO's good form: errors are total minus good, per group; a group with
            // no good events at all is all bad.
            match good_of(errors, total) {
                Some(good) => {
                    let (total, good) = (counter(total)?, counter(good)?);
                    Some(format!("{total} - ({good} or {total} * 0)"))
                }
                None => counter(errors),
            }
        }
    }
}

/// `{selector,extra}` with empty parts left out.
pub fn braces(selector: &str, extra: &str) -> String {
    let parts: Vec<&str> = [selector.trim(), extra]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// Matches the bucket whose upper bound is `threshold`, however the exporter wrote it
/// (`1` and `1.0` are the same bound).
pub fn le_matcher(threshold: f64) -> String {
    if threshold.fract() == 0.0 {
        format!("le=~\"{threshold:.0}(\\\\.0)?\"")
    } else {
        format!("le=\"{threshold}\"")
    }
}

/// A number written without float noise: 0.0144, not 0.014400000000000001.
pub fn number(x: f64) -> String {
    let text = format!("{x:.12}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text.is_empty() || text == "-" {
        "0".into()
    } else {
        text.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_ratio_is_zero_safe() {
        let sli = Sli::Availability {
            metric: "http_server_requests_total".into(),
            selector: "service=\"user\"".into(),
            error_status: "5..".into(),
        };
        let q = error_ratio(&sli, Duration::from_secs(300));
        assert!(q.contains("sum(rate(http_server_requests_total{service=\"user\",status=~\"5..\"}[5m])) or vector(0)"), "{q}");
        assert!(q.contains("clamp_min((sum(rate(http_server_requests_total{service=\"user\"}[5m])) or vector(0)), 1e-12)"), "{q}");
    }

    #[test]
    fn latency_reads_the_threshold_bucket() {
        let sli = Sli::Latency {
            metric: "d".into(),
            selector: String::new(),
            threshold_seconds: 0.2,
        };
        let q = errors_rate(&sli, Duration::from_secs(3600));
        assert!(
            q.contains("sum(rate(d_count{}[1h])) - sum(rate(d_bucket{le=\"0.2\"}[1h]))"),
            "{q}"
        );
        assert_eq!(le_matcher(1.0), "le=~\"1(\\\\.0)?\"");
    }

    #[test]
    fn errors_group_by_the_breakdown_labels() {
        let labels = vec!["route".to_owned(), "status".to_owned()];
        let sli = Sli::Availability {
            metric: "m".into(),
            selector: "service=\"user\"".into(),
            error_status: "5..".into(),
        };
        assert_eq!(
            errors_by(&sli, Duration::from_secs(3600), &labels).unwrap(),
            "sum by (route, status) (increase(m{service=\"user\",status=~\"5..\"}[1h]))"
        );
        let total = "sum(rate(t{a=\"b\"}[{{window}}]))";
        let good = Sli::Ratio {
            errors: good_form_errors(total, "sum(rate(t{code!~\"5..\"}[{{window}}]))"),
            total: total.into(),
        };
        let q = errors_by(&good, Duration::from_secs(60), &labels).unwrap();
        assert!(
            q.contains("increase(t{code!~\"5..\"}[1m])) or sum by"),
            "{q}"
        );
        let raw = Sli::Ratio {
            errors: "histogram_quantile(0.9, x)".into(),
            total: "vector(1)".into(),
        };
        assert_eq!(errors_by(&raw, Duration::from_secs(60), &labels), None);
    }

    #[test]
    fn selectors_and_numbers() {
        assert_eq!(number(14.4 * 0.001), "0.0144");
        assert_eq!(number(1.0), "1");
        assert_eq!(number(0.0), "0");
    }
}
