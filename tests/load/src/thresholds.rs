//! Pass/fail criteria in k6's style: `p(99)<200` (milliseconds), `rate<0.001` (failed
//! share), `dropped==0`, on the whole run or one step.

use crate::stats::StepStats;

#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// The text as written, for messages.
    pub text: String,
    /// Only this step; `None` for the whole run.
    pub step: Option<String>,
    metric: Metric,
    op: Op,
    value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Metric {
    Percentile(f64),
    Max,
    FailureRate,
    Dropped,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Lt,
    Le,
    Eq,
    Gt,
    Ge,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error(
    "threshold `{text}`: {reason}; write it like p(99)<200, max<1000, rate<0.001 or dropped==0"
)]
pub struct ThresholdError {
    pub text: String,
    pub reason: String,
}

impl Threshold {
    pub fn parse(text: &str, step: Option<&str>) -> Result<Self, ThresholdError> {
        let error = |reason: &str| ThresholdError {
            text: text.into(),
            reason: reason.into(),
        };
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let (lhs, op, rhs) = ["<=", ">=", "==", "<", ">"]
            .iter()
            .find_map(|op| {
                compact
                    .split_once(op)
                    .map(|(l, r)| (l.to_owned(), *op, r.to_owned()))
            })
            .ok_or_else(|| error("no comparison (<, <=, ==, >=, >)"))?;
        let op = match op {
            "<" => Op::Lt,
            "<=" => Op::Le,
            "==" => Op::Eq,
            ">" => Op::Gt,
            _ => Op::Ge,
        };
        let value: f64 = rhs
            .parse()
            .map_err(|_| error("the right side is not a number"))?;
        let metric = match lhs.as_str() {
            "rate" => Metric::FailureRate,
            "dropped" => Metric::Dropped,
            "max" => Metric::Max,
            _ => {
                let inner = lhs
                    .strip_prefix("p(")
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| error("unknown metric; use p(N), max, rate or dropped"))?;
                let p: f64 = inner
                    .parse()
                    .map_err(|_| error("the percentile is not a number"))?;
                if !(0.0..=100.0).contains(&p) {
                    return Err(error("percentiles run from 0 to 100"));
                }
                Metric::Percentile(p)
            }
        };
        Ok(Self {
            text: text.into(),
            step: step.map(str::to_owned),
            metric,
            op,
            value,
        })
    }

    /// The measured value and whether it passes.
    pub fn check(&self, stats: &StepStats) -> (f64, bool) {
        let measured = match self.metric {
            Metric::Percentile(p) => stats.latency_ms(p),
            Metric::Max => stats.max_ms(),
            Metric::FailureRate => stats.failure_rate(),
            Metric::Dropped => stats.dropped as f64,
        };
        let pass = match self.op {
            Op::Lt => measured < self.value,
            Op::Le => measured <= self.value,
            Op::Eq => (measured - self.value).abs() < f64::EPSILON,
            Op::Gt => measured > self.value,
            Op::Ge => measured >= self.value,
        };
        (measured, pass)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_k6_style() {
        assert!(Threshold::parse("p(99)<200", None).is_ok());
        assert!(Threshold::parse("p(99.9) <= 200", Some("get")).is_ok());
        assert!(Threshold::parse("rate<0.001", None).is_ok());
        assert!(Threshold::parse("dropped==0", None).is_ok());
        for bad in ["p99<200", "p(101)<1", "latency<5", "p(99)<fast", "p(99)"] {
            let err = Threshold::parse(bad, None).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn checks_against_stats() {
        let mut stats = StepStats::new();
        for ms in 1..=100 {
            stats.record(
                std::time::Duration::from_millis(ms),
                std::time::Duration::from_millis(ms),
                Some(200),
                false,
            );
        }
        stats.record(
            std::time::Duration::from_millis(5),
            std::time::Duration::from_millis(5),
            Some(500),
            true,
        );
        stats.dropped = 2;
        let (p99, pass) = Threshold::parse("p(99)<200", None).unwrap().check(&stats);
        assert!(pass && (99.0..=101.0).contains(&p99), "{p99}");
        assert!(!Threshold::parse("p(99)<50", None).unwrap().check(&stats).1);
        let (rate, pass) = Threshold::parse("rate<0.001", None).unwrap().check(&stats);
        // Dropped requests were due and never served: they count as failed.
        assert!(!pass && (rate - 3.0 / 103.0).abs() < 1e-9, "{rate}");
        assert!(
            !Threshold::parse("dropped==0", None)
                .unwrap()
                .check(&stats)
                .1
        );
        assert!(Threshold::parse("dropped<3", None).unwrap().check(&stats).1);
    }
}
