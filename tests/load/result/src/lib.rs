//! The `result.json` a load test run writes: one definition, used by `loadtest` to write it
//! and by `slo` to read it.
//!
//! Besides percentiles and counts, each summary carries its whole latency histogram
//! (HdrHistogram, V2 deflate encoding, base64), so the share of requests faster than *any*
//! threshold an SLO names can be read back exactly, not only at a few fixed bounds.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

/// Why a result file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a loadtest result.json: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("the latency histogram in the result cannot be decoded: {0}")]
    Histogram(String),
}

/// The whole run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub scenario: String,
    pub target: String,
    pub duration_s: f64,
    /// Requests that were due by the schedule.
    pub planned: u64,
    pub achieved_rps: f64,
    pub overall: Summary,
    pub steps: BTreeMap<String, Summary>,
    pub thresholds: Vec<ThresholdResult>,
    pub passed: bool,
    pub timeline: Vec<Second>,
}

impl Results {
    pub fn read(path: &Path) -> Result<Self, ResultError> {
        let text = std::fs::read_to_string(path).map_err(|source| ResultError::Read {
            path: path.display().to_string(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ResultError::Parse {
            path: path.display().to_string(),
            source,
        })
    }
}

/// One threshold and how the run did against it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThresholdResult {
    pub threshold: String,
    pub step: Option<String>,
    pub value: f64,
    pub passed: bool,
}

/// One step's measurements, or the whole run's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// Completed requests.
    pub requests: u64,
    pub failed: u64,
    /// Due but never sent: a user would have been failed, so SLOs count them as bad.
    pub dropped: u64,
    pub failure_rate: f64,
    /// From the intended send time.
    pub latency_ms: Percentiles,
    /// From the actual send time (for comparison only).
    pub service_time_ms: Percentiles,
    pub statuses: BTreeMap<String, u64>,
    /// The latency histogram (microseconds, from the intended send time).
    pub latency_histogram: LatencyHistogram,
}

impl Summary {
    /// Completed requests whose latency was at most `threshold`.
    pub fn count_within(&self, threshold: Duration) -> Result<u64, ResultError> {
        let histogram = self.latency_histogram.decode()?;
        let micros = u64::try_from(threshold.as_micros()).unwrap_or(u64::MAX);
        Ok(histogram.count_between(0, micros))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

/// One second of the run, for charts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Second {
    pub second: u64,
    pub requests: u64,
    pub failed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// An HdrHistogram of microseconds, as base64 of its V2 deflate encoding (the format
/// HdrHistogram's own tools read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LatencyHistogram(pub String);

impl LatencyHistogram {
    pub fn encode(histogram: &Histogram<u64>) -> Self {
        let mut bytes = Vec::new();
        V2DeflateSerializer::new()
            .serialize(histogram, &mut bytes)
            .expect("serializing a histogram into memory cannot fail");
        Self(STANDARD.encode(bytes))
    }

    pub fn decode(&self) -> Result<Histogram<u64>, ResultError> {
        let bytes = STANDARD
            .decode(&self.0)
            .map_err(|e| ResultError::Histogram(e.to_string()))?;
        Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| ResultError::Histogram(format!("{e:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_threshold_can_be_read_back_from_the_histogram() {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for ms in [10u64, 150, 199, 250, 299, 301, 900] {
            histogram.record(ms * 1000).unwrap();
        }
        let encoded = LatencyHistogram::encode(&histogram);
        let round_trip: LatencyHistogram =
            serde_json::from_str(&serde_json::to_string(&encoded).unwrap()).unwrap();
        let summary = Summary {
            requests: 7,
            failed: 0,
            dropped: 0,
            failure_rate: 0.0,
            latency_ms: Percentiles {
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                p99_9: 0.0,
                max: 0.0,
            },
            service_time_ms: Percentiles {
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                p99_9: 0.0,
                max: 0.0,
            },
            statuses: BTreeMap::new(),
            latency_histogram: round_trip,
        };
        assert_eq!(summary.count_within(Duration::from_millis(200)).unwrap(), 3);
        assert_eq!(summary.count_within(Duration::from_millis(300)).unwrap(), 5);
        assert_eq!(summary.count_within(Duration::from_secs(1)).unwrap(), 7);
        assert!(
            LatencyHistogram("not base64!".into()).decode().is_err(),
            "garbage is an error, not an empty histogram"
        );
    }
}
