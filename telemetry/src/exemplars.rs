//! Exemplars on the request duration histogram, and the OpenMetrics exposition that carries
//! them: for each series and bucket, the trace and span of the latest sampled request that
//! fell in it, so Prometheus (with exemplar storage on) keeps them and Grafana jumps from a
//! latency bucket to the trace behind it.
//!
//! The Prometheus exporter crate writes the text format 0.0.4, which has no exemplars. When a
//! scrape asks for OpenMetrics (`Accept: application/openmetrics-text`, as Prometheus does by
//! default), that text is rewritten into OpenMetrics 1.0: no blank lines, counter families
//! named without `_total`, an exemplar after each `_bucket` sample that has one, and `# EOF`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock, TryLockError};
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanId, TraceId};

use crate::metrics::{DURATION_BUCKETS, SERVER_DURATION};

/// The content type of the OpenMetrics exposition.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One request that fell into a bucket.
#[derive(Debug, Clone, Copy)]
struct Exemplar {
    trace_id: TraceId,
    span_id: SpanId,
    seconds: f64,
    at: f64,
}

/// One request duration series (its `route` is the store's key) and one exemplar slot per
/// bucket, the last for `+Inf`.
struct Series {
    service: &'static str,
    method: &'static str,
    status: u16,
    slots: Vec<Option<Exemplar>>,
}

/// By route, so recording looks a series up without allocating: this runs on every request.
type Store = HashMap<String, Vec<Series>>;

fn store() -> &'static Mutex<Store> {
    static STORE: OnceLock<Mutex<Store>> = OnceLock::new();
    STORE.get_or_init(Mutex::default)
}

/// The request behind a duration sample: its series' labels and its span.
pub(crate) struct Sample<'a> {
    pub service: &'static str,
    pub method: &'static str,
    pub route: &'a str,
    pub status: u16,
    pub seconds: f64,
    pub trace_id: TraceId,
    pub span_id: SpanId,
}

/// Keeps `sample` as the exemplar of the bucket its duration falls in.
pub(crate) fn record(sample: Sample<'_>) {
    let bucket = DURATION_BUCKETS
        .iter()
        .position(|bound| sample.seconds <= *bound)
        .unwrap_or(DURATION_BUCKETS.len());
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    let exemplar = Exemplar {
        trace_id: sample.trace_id,
        span_id: sample.span_id,
        seconds: sample.seconds,
        at,
    };
    // An exemplar is a sample: when another request holds the store, this one is skipped
    // rather than made to wait, so busy workers never queue on the lock.
    let mut store = match store().try_lock() {
        Ok(store) => store,
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => return,
    };
    if !store.contains_key(sample.route) {
        store.insert(sample.route.to_owned(), Vec::new());
    }
    let route = store.get_mut(sample.route).expect("inserted above");
    let position = route.iter().position(|series| {
        (series.service, series.method, series.status)
            == (sample.service, sample.method, sample.status)
    });
    let series = match position {
        Some(i) => &mut route[i],
        None => {
            route.push(Series {
                service: sample.service,
                method: sample.method,
                status: sample.status,
                slots: vec![None; DURATION_BUCKETS.len() + 1],
            });
            route.last_mut().expect("pushed above")
        }
    };
    series.slots[bucket] = Some(exemplar);
}

/// Whether an `Accept` header asks for OpenMetrics.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| accept.contains("application/openmetrics-text"))
}

/// Rewrites the exporter's text exposition as OpenMetrics 1.0 with exemplars.
pub fn to_openmetrics(text: &str) -> String {
    let store = store()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            out.push_str("# TYPE ");
            out.push_str(&family_name(rest));
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            out.push_str("# HELP ");
            out.push_str(&family_name(rest));
        } else {
            out.push_str(line);
            if let Some(exemplar) = exemplar_for(&store, line) {
                let _ = write!(
                    out,
                    " # {{trace_id=\"{}\",span_id=\"{}\"}} {} {:.3}",
                    exemplar.trace_id, exemplar.span_id, exemplar.seconds, exemplar.at
                );
            }
        }
        out.push('\n');
    }
    out.push_str("# EOF\n");
    out
}

/// `name rest` of a `# TYPE` or `# HELP` line with a counter's `_total` taken off its name:
/// in OpenMetrics the family is `x` and its sample `x_total`.
fn family_name(rest: &str) -> String {
    let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
    let name = name.strip_suffix("_total").unwrap_or(name);
    format!("{name} {tail}").trim_end().to_owned()
}

/// The exemplar for a `http_server_request_duration_seconds_bucket{...} N` sample, if any.
fn exemplar_for(store: &Store, line: &str) -> Option<Exemplar> {
    let labels = line
        .strip_prefix(SERVER_DURATION)?
        .strip_prefix("_bucket{")?
        .rsplit_once("} ")?
        .0;
    let labels = parse_labels(labels)?;
    let bucket = match labels.get("le")?.as_str() {
        "+Inf" => DURATION_BUCKETS.len(),
        bound => {
            let bound: f64 = bound.parse().ok()?;
            DURATION_BUCKETS
                .iter()
                .position(|b| (b - bound).abs() < 1e-9)?
        }
    };
    let label = |name: &str| labels.get(name).map(String::as_str).unwrap_or_default();
    let status: u16 = label("status").parse().ok()?;
    let series = store.get(label("route"))?.iter().find(|series| {
        series.service == label("service")
            && series.method == label("method")
            && series.status == status
    })?;
    series.slots.get(bucket).copied().flatten()
}

/// `a="x",b="y\"z"` as a map, undoing the exposition's escapes. Loki's label sets are
/// written the same way, so its test receiver reads them with this too.
pub(crate) fn parse_labels(text: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let close = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => value.push(match chars.next()?.1 {
                    'n' => '\n',
                    't' => '\t',
                    other => other,
                }),
                c => value.push(c),
            }
        };
        labels.insert(name.trim().to_owned(), value);
        rest = after[close + 1..].trim_start_matches(',').trim_start();
    }
    Some(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP http_server_requests_total HTTP server requests completed.
# TYPE http_server_requests_total counter
http_server_requests_total{service="ex",method="GET",route="/ex/{id}",status="200"} 3

# TYPE http_server_active_requests gauge
http_server_active_requests{service="ex",method="GET"} 0

# HELP http_server_request_duration_seconds Duration of HTTP server requests.
# TYPE http_server_request_duration_seconds histogram
http_server_request_duration_seconds_bucket{service="ex",method="GET",route="/ex/{id}",status="200",le="0.005"} 0
http_server_request_duration_seconds_bucket{service="ex",method="GET",route="/ex/{id}",status="200",le="0.2"} 3
http_server_request_duration_seconds_bucket{service="ex",method="GET",route="/ex/{id}",status="200",le="+Inf"} 3
http_server_request_duration_seconds_sum{service="ex",method="GET",route="/ex/{id}",status="200"} 0.45
http_server_request_duration_seconds_count{service="ex",method="GET",route="/ex/{id}",status="200"} 3

"#;

    #[test]
    fn the_exposition_becomes_openmetrics_with_an_exemplar_in_the_bucket_it_fell_in() {
        let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        let span_id = SpanId::from_hex("00f067aa0ba902b7").unwrap();
        record(Sample {
            service: "ex",
            method: "GET",
            route: "/ex/{id}",
            status: 200,
            seconds: 0.18,
            trace_id,
            span_id,
        });

        let open = to_openmetrics(TEXT);
        assert!(open.ends_with("\n# EOF\n"), "{open}");
        assert!(
            !open.lines().any(|l| l.trim().is_empty()),
            "blank line in:\n{open}"
        );
        assert!(
            open.contains("# TYPE http_server_requests counter\n"),
            "{open}"
        );
        assert!(
            open.contains("# HELP http_server_requests HTTP server requests"),
            "{open}"
        );
        assert!(
            open.contains("\nhttp_server_requests_total{"),
            "samples keep _total"
        );

        let with_exemplars: Vec<&str> = open.lines().filter(|l| l.contains(" # {")).collect();
        assert_eq!(with_exemplars.len(), 1, "{open}");
        let line = with_exemplars[0];
        assert!(line.contains(r#"le="0.2"} 3 # {trace_id="4bf92f3577b34da6a3ce929d0e0e4736",span_id="00f067aa0ba902b7"} 0.18 "#), "{line}");
    }

    #[test]
    fn only_an_openmetrics_accept_header_gets_openmetrics() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_openmetrics(Some(prometheus)));
        assert!(!wants_openmetrics(Some("text/plain")));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(None));
    }

    #[test]
    fn escaped_label_values_are_read_back() {
        let labels = parse_labels(r#"a="x",b="y\"z",c="back\\slash""#).unwrap();
        assert_eq!(labels["a"], "x");
        assert_eq!(labels["b"], "y\"z");
        assert_eq!(labels["c"], "back\\slash");
    }
}
