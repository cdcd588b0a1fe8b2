//! Measuring SLOs from a data source: a Prometheus server's HTTP API, or two scrapes of
//! services' `/metrics` a known time apart (no Prometheus needed).

use std::time::Duration;

use std::collections::BTreeMap;

use crate::breakdown::{self, Group};
use crate::exposition::{self, Sample, Selector};
use crate::math::{AlertWindow, Counts, ratio_timeslice_counts, timeslice_counts};
use crate::promql::{error_ratio, errors_by, errors_rate, total_rate};
use crate::spec::{Budgeting, Sli, Slo, Window, prom_duration};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot reach {url}: {source}; is it running, and is the URL right?")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("Prometheus rejected `{query}`: {message}")]
    Query { query: String, message: String },
    #[error("{0}")]
    Exposition(#[from] exposition::ExpositionError),
    #[error("load test result {0}")]
    LoadTest(String),
    #[error(
        "SLO {0} uses a raw PromQL SLI, which only a Prometheus source can evaluate; use --prometheus"
    )]
    NeedsPrometheus(String),
}

/// What was measured for one SLO.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Good and total over the compliance window (or what the source can see of it).
    pub period: Counts,
    /// What `period` covers, e.g. `30d` or `since the process started`.
    pub period_label: String,
    /// Error ratio per named window, shortest first.
    pub windows: Vec<(String, f64)>,
    /// The ratio that drives the current burn rate (the shortest window).
    pub current_ratio: f64,
    /// Each alert window pair as (long, short) error ratios.
    pub alert_inputs: Vec<(AlertWindow, f64, f64)>,
    /// Bad events over `period` per group of the breakdown labels (route, status, …);
    /// empty when the source cannot tell them apart.
    pub breakdown: Vec<Group>,
    /// For a calendar window: how far into the current week or month, and its length.
    pub calendar: Option<CalendarProgress>,
    /// The error ratio over 1h, every 15m for the last day, as (hours before now, ratio);
    /// empty when the source has no history.
    pub history: Vec<(f64, f64)>,
}

/// How far a calendar period has gone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CalendarProgress {
    pub elapsed: Duration,
    pub length: Duration,
}

/// Where measurements come from.
pub enum Source {
    Prometheus(Prometheus),
    Scrapes(Scrapes),
    LoadTest(LoadTestResult),
}

impl Source {
    pub fn measure(&self, slo: &Slo, windows: &[AlertWindow]) -> Result<Measured, SourceError> {
        match self {
            Source::Prometheus(p) => p.measure(slo, windows),
            Source::Scrapes(s) => s.measure(slo, windows),
            Source::LoadTest(l) => l.measure(slo, windows),
        }
    }
}

/// A `loadtest` run's `result.json`, as one more source of good and total events.
#[derive(Debug, Clone)]
pub struct LoadTestResult(pub Box<loadtest_result::Results>);

impl LoadTestResult {
    pub fn read(path: &std::path::Path) -> Result<Self, SourceError> {
        loadtest_result::Results::read(path)
            .map(|results| Self(Box::new(results)))
            .map_err(|e| SourceError::LoadTest(e.to_string()))
    }

    pub fn measure(&self, slo: &Slo, windows: &[AlertWindow]) -> Result<Measured, SourceError> {
        let o = &self.0.overall;
        let total = (o.requests + o.dropped) as f64;
        let counts = match &slo.sli {
            Sli::Availability { .. } => {
                Counts::new((o.requests - o.failed.min(o.requests)) as f64, total)
            }
            Sli::Latency {
                threshold_seconds, ..
            } => {
                let within = o
                    .count_within(Duration::from_secs_f64(*threshold_seconds))
                    .map_err(|e| SourceError::LoadTest(e.to_string()))?;
                Counts::new(within as f64, total)
            }
            Sli::Ratio { .. } => return Err(SourceError::NeedsPrometheus(slo.name.clone())),
        };
        let label = format!("load test {} ({:.0}s)", self.0.scenario, self.0.duration_s);
        Ok(Measured {
            period: counts,
            period_label: label.clone(),
            windows: vec![(label, counts.error_ratio())],
            current_ratio: counts.error_ratio(),
            alert_inputs: windows
                .iter()
                .map(|w| (*w, counts.error_ratio(), counts.error_ratio()))
                .collect(),
            // A load test's result counts requests per scenario step, not per route.
            breakdown: Vec::new(),
            calendar: None,
            history: Vec::new(),
        })
    }
}

/// A Prometheus server's HTTP API. Every query of one report is evaluated at the same
/// instant, so errors and totals come from one snapshot even while scrapes continue.
pub struct Prometheus {
    base: String,
    client: reqwest::blocking::Client,
    at: f64,
}

impl Prometheus {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            client: http_client(Duration::from_secs(30)),
            at: unix_now(),
        }
    }

    /// The 1h error ratio every 15m over the last day, as (hours before now, ratio).
    fn history(&self, sli: &Sli) -> Result<Vec<(f64, f64)>, SourceError> {
        const DAY: f64 = 86_400.0;
        let query = error_ratio(sli, Duration::from_secs(3600));
        let points = self.points(&query, self.at - DAY, self.at, Duration::from_secs(900))?;
        Ok(points
            .into_iter()
            .map(|(t, ratio)| ((t - self.at) / 3600.0, ratio))
            .collect())
    }

    /// Every series of `query` at this source's instant, as its labels and value.
    pub fn vector(&self, query: &str) -> Result<Vec<Group>, SourceError> {
        let time = self.at.to_string();
        let body = self.get("/api/v1/query", &[("query", query), ("time", &time)])?;
        Ok(body["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|series| {
                let labels = series["metric"]
                    .as_object()?
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect();
                let value = series["value"][1].as_str()?.parse::<f64>().ok()?;
                Some((labels, value))
            })
            .collect())
    }

    /// Evaluates `query` at this source's instant; an empty result is 0 (no series: no events).
    pub fn instant(&self, query: &str) -> Result<f64, SourceError> {
        Ok(self.sample(query)?.filter(|v| v.is_finite()).unwrap_or(0.0))
    }

    /// The first sample of `query` at this source's instant, `None` when the answer is
    /// empty; a scalar answer counts as a sample.
    pub fn sample(&self, query: &str) -> Result<Option<f64>, SourceError> {
        let time = self.at.to_string();
        let body = self.get("/api/v1/query", &[("query", query), ("time", &time)])?;
        let data = &body["data"];
        let value = if data["resultType"] == "scalar" {
            &data["result"][1]
        } else {
            &data["result"][0]["value"][1]
        };
        Ok(value.as_str().and_then(|v| v.parse::<f64>().ok()))
    }

    /// Values of `query` every `step` over the last `span`.
    pub fn range(
        &self,
        query: &str,
        span: Duration,
        step: Duration,
    ) -> Result<Vec<f64>, SourceError> {
        let points = self.points(query, self.at - span.as_secs_f64(), self.at, step)?;
        Ok(points.into_iter().map(|(_, v)| v).collect())
    }

    /// `(unix time, value)` of `query` every `step` from `start` to `end` (unix seconds).
    pub fn points(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: Duration,
    ) -> Result<Vec<(f64, f64)>, SourceError> {
        let (start, end) = (start.to_string(), end.to_string());
        let step = step.as_secs().max(1).to_string();
        let body = self.get(
            "/api/v1/query_range",
            &[
                ("query", query),
                ("start", &start),
                ("end", &end),
                ("step", &step),
            ],
        )?;
        Ok(body["data"]["result"][0]["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|pair| Some((pair[0].as_f64()?, pair[1].as_str()?.parse::<f64>().ok()?)))
            .collect())
    }

    fn get(&self, path: &str, params: &[(&str, &str)]) -> Result<serde_json::Value, SourceError> {
        let url = format!("{}{path}", self.base);
        let (status, text) = fetch(self.client.get(&url).query(params), &url)?;
        // Prometheus explains a bad query in a JSON body even on a 400; prefer that.
        let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if body["status"] == "error" {
            return Err(SourceError::Query {
                query: params.first().map(|p| p.1.to_owned()).unwrap_or_default(),
                message: body["error"].as_str().unwrap_or("unknown error").to_owned(),
            });
        }
        if status >= 400 || body["status"] != "success" {
            return Err(SourceError::Status {
                url,
                status,
                body: text,
            });
        }
        Ok(body)
    }

    /// Good and total events of each `slice` over the last `span`.
    fn slices(
        &self,
        sli: &Sli,
        span: Duration,
        slice: Duration,
    ) -> Result<Vec<Counts>, SourceError> {
        let errors = self.range(&errors_rate(sli, slice), span, slice)?;
        let totals = self.range(&total_rate(sli, slice), span, slice)?;
        Ok(errors
            .iter()
            .zip(&totals)
            .map(|(e, t)| Counts::new((t - e).max(0.0), *t))
            .collect())
    }

    pub fn measure(&self, slo: &Slo, windows: &[AlertWindow]) -> Result<Measured, SourceError> {
        let mut ratios = Vec::new();
        for range in crate::rules::recorded_ranges(windows) {
            ratios.push((range, self.instant(&error_ratio(&slo.sli, range))?));
        }
        // What the period SLI covers: the rolling window, or this calendar period so far.
        let (span, period_label, calendar) = match &slo.window {
            Window::Rolling(d) => (*d, prom_duration(*d), None),
            Window::Calendar(calendar) => {
                let now = jiff::Timestamp::from_second(self.at as i64).unwrap_or_default();
                let (start, end) = calendar.period_at(now);
                let elapsed = calendar.elapsed_at(now);
                let progress = CalendarProgress {
                    elapsed,
                    length: Duration::from_secs((end.as_second() - start.as_second()).max(1) as u64),
                };
                // A rate needs a range of a few samples, even a minute into a new month.
                let span = elapsed.max(Duration::from_secs(60));
                (
                    span,
                    format!("{} since {start}", calendar.describe()),
                    Some(progress),
                )
            }
        };
        let counts = match slo.budgeting {
            Budgeting::Occurrences => {
                let seconds = span.as_secs_f64();
                let total = self.instant(&total_rate(&slo.sli, span))? * seconds;
                let errors = self.instant(&errors_rate(&slo.sli, span))? * seconds;
                Counts::new((total - errors).max(0.0), total)
            }
            Budgeting::Timeslices {
                slice,
                slice_objective,
            } => timeslice_counts(&self.slices(&slo.sli, span, slice)?, slice_objective),
            Budgeting::RatioTimeslices { slice } => {
                ratio_timeslice_counts(&self.slices(&slo.sli, span, slice)?)
            }
        };
        let ratio_of = |d: Duration| {
            ratios
                .iter()
                .find(|(r, _)| *r == d)
                .map(|(_, v)| *v)
                .unwrap_or(0.0)
        };
        Ok(Measured {
            period: counts,
            period_label,
            windows: ratios
                .iter()
                .map(|(r, v)| (prom_duration(*r), *v))
                .collect(),
            current_ratio: ratios.first().map(|(_, v)| *v).unwrap_or(0.0),
            alert_inputs: windows
                .iter()
                .map(|w| (*w, ratio_of(w.long), ratio_of(w.short)))
                .collect(),
            breakdown: match errors_by(&slo.sli, span, &breakdown::labels(&slo.breakdown)) {
                Some(query) => self.vector(&query)?,
                None => Vec::new(),
            },
            calendar,
            history: self.history(&slo.sli)?,
        })
    }
}

fn http_client(timeout: Duration) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(timeout)
        .build()
        .expect("a client with a time-out always builds")
}

/// Sends `request` and reads the whole body; only transport failures are errors here.
fn fetch(
    request: reqwest::blocking::RequestBuilder,
    url: &str,
) -> Result<(u16, String), SourceError> {
    let unreachable = |source| SourceError::Unreachable {
        url: url.to_owned(),
        source,
    };
    let response = request.send().map_err(unreachable)?;
    let status = response.status().as_u16();
    Ok((status, response.text().map_err(unreachable)?))
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// Two scrapes of the same `/metrics` endpoints, `interval` apart.
pub struct Scrapes {
    pub first: Vec<Sample>,
    pub second: Vec<Sample>,
    pub interval: Duration,
}

impl Scrapes {
    /// Scrapes every URL, waits `interval`, scrapes again.
    pub fn take(
        urls: &[String],
        interval: Duration,
        wait: impl Fn(Duration),
    ) -> Result<Self, SourceError> {
        let client = http_client(Duration::from_secs(10));
        let scrape = || -> Result<Vec<Sample>, SourceError> {
            let mut all = Vec::new();
            for url in urls {
                let (status, text) = fetch(client.get(url), url)?;
                if status >= 400 {
                    return Err(SourceError::Status {
                        url: url.clone(),
                        status,
                        body: text,
                    });
                }
                all.extend(exposition::parse(&text)?);
            }
            Ok(all)
        };
        let first = scrape()?;
        wait(interval);
        let second = scrape()?;
        Ok(Self {
            first,
            second,
            interval,
        })
    }

    pub fn measure(&self, slo: &Slo, windows: &[AlertWindow]) -> Result<Measured, SourceError> {
        let since_start = counts_in(&self.second, slo)?;
        let before = counts_in(&self.first, slo)?;
        let interval = if since_start.total >= before.total {
            Counts::new(
                since_start.good - before.good,
                since_start.total - before.total,
            )
        } else {
            // The process restarted between scrapes: its counters began again at zero.
            since_start
        };
        let interval_label = format!("last {}", humanize(self.interval));
        Ok(Measured {
            period: since_start,
            period_label: "since the process started".into(),
            windows: vec![
                (interval_label, interval.error_ratio()),
                ("since start".into(), since_start.error_ratio()),
            ],
            current_ratio: interval.error_ratio(),
            // Long windows read the whole history, short ones the interval just measured.
            alert_inputs: windows
                .iter()
                .map(|w| (*w, since_start.error_ratio(), interval.error_ratio()))
                .collect(),
            breakdown: errors_in_groups(&self.second, slo)?,
            calendar: None,
            history: Vec::new(),
        })
    }
}

fn counts_in(samples: &[Sample], slo: &Slo) -> Result<Counts, SourceError> {
    match &slo.sli {
        Sli::Availability {
            metric,
            selector,
            error_status,
        } => {
            let base = Selector::parse(selector)?;
            let total = exposition::sum(samples, metric, &base);
            let errors = exposition::sum(
                samples,
                metric,
                &base.and(&format!("status=~\"{error_status}\""))?,
            );
            Ok(Counts::new(total - errors, total))
        }
        Sli::Latency {
            metric,
            selector,
            threshold_seconds,
        } => {
            let base = Selector::parse(selector)?;
            let total = exposition::sum(samples, &format!("{metric}_count"), &base);
            let good: f64 = samples
                .iter()
                .filter(|s| s.name == format!("{metric}_bucket") && base.matches(&s.labels))
                .filter(|s| {
                    s.labels.get("le").and_then(|le| le.parse::<f64>().ok())
                        == Some(*threshold_seconds)
                })
                .map(|s| s.value)
                .sum();
            Ok(Counts::new(good.min(total), total))
        }
        Sli::Ratio { .. } => Err(SourceError::NeedsPrometheus(slo.name.clone())),
    }
}

/// Bad events per group of the breakdown labels in one scrape (since the process started).
fn errors_in_groups(samples: &[Sample], slo: &Slo) -> Result<Vec<Group>, SourceError> {
    let labels = breakdown::labels(&slo.breakdown);
    let key = |s: &Sample| -> BTreeMap<String, String> {
        labels
            .iter()
            .filter_map(|l| Some((l.clone(), s.labels.get(l)?.clone())))
            .collect()
    };
    let mut groups: BTreeMap<BTreeMap<String, String>, f64> = BTreeMap::new();
    match &slo.sli {
        Sli::Availability {
            metric,
            selector,
            error_status,
        } => {
            let bad = Selector::parse(selector)?.and(&format!("status=~\"{error_status}\""))?;
            for s in samples
                .iter()
                .filter(|s| s.name == *metric && bad.matches(&s.labels))
            {
                *groups.entry(key(s)).or_default() += s.value;
            }
        }
        Sli::Latency {
            metric,
            selector,
            threshold_seconds,
        } => {
            let base = Selector::parse(selector)?;
            let (count, bucket) = (format!("{metric}_count"), format!("{metric}_bucket"));
            for s in samples.iter().filter(|s| base.matches(&s.labels)) {
                let within = s.labels.get("le").and_then(|le| le.parse::<f64>().ok())
                    == Some(*threshold_seconds);
                if s.name == count {
                    *groups.entry(key(s)).or_default() += s.value;
                } else if s.name == bucket && within {
                    *groups.entry(key(s)).or_default() -= s.value;
                }
            }
        }
        Sli::Ratio { .. } => return Err(SourceError::NeedsPrometheus(slo.name.clone())),
    }
    Ok(groups.into_iter().collect())
}

/// `90s` → `1m30s`, for labels people read.
pub fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, 0, s) => format!("{s}s"),
        (0, 0, m, 0) => format!("{m}m"),
        (0, 0, m, s) => format!("{m}m{s}s"),
        (0, h, m, _) => format!("{h}h{m:02}m"),
        (d, h, _, _) => format!("{d}d{h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::WORKBOOK_WINDOWS;
    use crate::spec::{Alerting, Window};

    fn availability() -> Slo {
        Slo {
            name: "availability".into(),
            description: String::new(),
            objective: 0.999,
            window: Window::Rolling(Duration::from_secs(30 * 86_400)),
            sli: Sli::Availability {
                metric: "http_server_requests_total".into(),
                selector: "service=\"user\"".into(),
                error_status: "5..".into(),
            },
            budgeting: Budgeting::Occurrences,
            alerting: Alerting::default(),
            labels: vec![],
            breakdown: vec![],
        }
    }

    #[test]
    fn two_scrapes_give_interval_and_cumulative_ratios() {
        let first = exposition::parse(
            "http_server_requests_total{service=\"user\",status=\"200\"} 1000\nhttp_server_requests_total{service=\"user\",status=\"500\"} 0\n",
        )
        .unwrap();
        let second = exposition::parse(
            "http_server_requests_total{service=\"user\",status=\"200\"} 1990\nhttp_server_requests_total{service=\"user\",status=\"500\"} 10\n",
        )
        .unwrap();
        let scrapes = Scrapes {
            first,
            second,
            interval: Duration::from_secs(30),
        };
        let m = scrapes.measure(&availability(), &WORKBOOK_WINDOWS).unwrap();
        assert_eq!(m.period, Counts::new(1990.0, 2000.0));
        assert!(
            (m.current_ratio - 0.01).abs() < 1e-12,
            "10 of the 1000 new requests failed"
        );
        assert_eq!(m.windows[0].0, "last 30s");
    }

    #[test]
    fn humanized_durations() {
        assert_eq!(humanize(Duration::from_secs(90)), "1m30s");
        assert_eq!(humanize(Duration::from_secs(3 * 3600 + 120)), "3h02m");
    }
}
