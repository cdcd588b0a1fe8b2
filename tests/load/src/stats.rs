//! What a run measured: HdrHistograms of latency from the intended send time (the honest
//! number) and of service time from the actual send (what a closed-model tool reports),
//! status counts, failures, dropped requests, and a per-second timeline.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
pub use loadtest_result::{LatencyHistogram, Percentiles, Second, Summary};

/// Microseconds, 1 µs to 1 hour, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds are valid")
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, 3_600_000_000)
}

/// Measurements for one step, or for the whole run.
#[derive(Debug, Clone)]
pub struct StepStats {
    /// From when the request should have been sent to the end of its response.
    pub latency: Histogram<u64>,
    /// From when it was actually sent: hides stalls (coordinated omission). Kept to show it.
    pub service_time: Histogram<u64>,
    /// `200`, `404`, ... or `error` when no response came.
    pub statuses: BTreeMap<String, u64>,
    pub failed: u64,
    /// Due but never sent: the tester could not send it on time.
    pub dropped: u64,
}

impl Default for StepStats {
    fn default() -> Self {
        Self::new()
    }
}

impl StepStats {
    pub fn new() -> Self {
        Self {
            latency: histogram(),
            service_time: histogram(),
            statuses: BTreeMap::new(),
            failed: 0,
            dropped: 0,
        }
    }

    /// Records one completed request; `status` is `None` when no response came.
    pub fn record(
        &mut self,
        latency: Duration,
        service_time: Duration,
        status: Option<u16>,
        failed: bool,
    ) {
        let _ = self.latency.record(micros(latency));
        let _ = self.service_time.record(micros(service_time));
        let key = status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "error".into());
        *self.statuses.entry(key).or_default() += 1;
        if failed {
            self.failed += 1;
        }
    }

    pub fn merge(&mut self, other: &StepStats) {
        let _ = self.latency.add(&other.latency);
        let _ = self.service_time.add(&other.service_time);
        for (k, v) in &other.statuses {
            *self.statuses.entry(k.clone()).or_default() += v;
        }
        self.failed += other.failed;
        self.dropped += other.dropped;
    }

    pub fn completed(&self) -> u64 {
        self.latency.len()
    }

    pub fn latency_ms(&self, percentile: f64) -> f64 {
        self.latency.value_at_percentile(percentile) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.latency.max() as f64 / 1000.0
    }

    pub fn service_ms(&self, percentile: f64) -> f64 {
        self.service_time.value_at_percentile(percentile) as f64 / 1000.0
    }

    /// Failed share of requests that were due (dropped ones count as failed).
    pub fn failure_rate(&self) -> f64 {
        let due = self.completed() + self.dropped;
        if due == 0 {
            0.0
        } else {
            (self.failed + self.dropped) as f64 / due as f64
        }
    }

    pub fn summary(&self) -> Summary {
        Summary {
            requests: self.completed(),
            failed: self.failed,
            dropped: self.dropped,
            failure_rate: self.failure_rate(),
            latency_ms: percentiles(|p| self.latency_ms(p), self.max_ms()),
            service_time_ms: percentiles(
                |p| self.service_ms(p),
                self.service_time.max() as f64 / 1000.0,
            ),
            statuses: self.statuses.clone(),
            latency_histogram: LatencyHistogram::encode(&self.latency),
        }
    }

    /// The percentile spectrum in HdrHistogram's `.hgrm` text format (milliseconds).
    pub fn hgrm(&self) -> String {
        let h = &self.latency;
        let mut out = format!(
            "{:>12} {:>14} {:>10} {:>14}\n\n",
            "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
        );
        for v in h.iter_quantiles(1) {
            let q = v.quantile_iterated_to();
            let inverse = if q < 1.0 {
                format!("{:.2}", 1.0 / (1.0 - q))
            } else {
                "inf".into()
            };
            let _ = writeln!(
                out,
                "{:>12.3} {:>14.12} {:>10} {:>14}",
                v.value_iterated_to() as f64 / 1000.0,
                q,
                v.count_since_last_iteration(),
                inverse
            );
        }
        let _ = writeln!(
            out,
            "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]\n#[Max     = {:>12.3}, Total count    = {:>12}]\n#[Buckets = {:>12}, SubBuckets     = {:>12}]",
            h.mean() / 1000.0,
            h.stdev() / 1000.0,
            h.max() as f64 / 1000.0,
            h.len(),
            h.buckets(),
            h.distinct_values()
        );
        out
    }
}

fn percentiles(at: impl Fn(f64) -> f64, max: f64) -> Percentiles {
    Percentiles {
        p50: at(50.0),
        p90: at(90.0),
        p99: at(99.0),
        p99_9: at(99.9),
        max,
    }
}

/// Per-second latency and throughput, keyed by when each request completed.
#[derive(Debug, Default)]
pub struct Timeline {
    seconds: BTreeMap<u64, (Histogram<u64>, u64)>,
}

impl Timeline {
    pub fn record(&mut self, at: Duration, latency: Duration, failed: bool) {
        let (h, f) = self
            .seconds
            .entry(at.as_secs())
            .or_insert_with(|| (histogram(), 0));
        let _ = h.record(micros(latency));
        if failed {
            *f += 1;
        }
    }

    pub fn seconds(&self) -> Vec<Second> {
        self.seconds
            .iter()
            .map(|(s, (h, f))| Second {
                second: *s,
                requests: h.len(),
                failed: *f,
                p50_ms: h.value_at_percentile(50.0) as f64 / 1000.0,
                p99_ms: h.value_at_percentile(99.0) as f64 / 1000.0,
            })
            .collect()
    }
}
