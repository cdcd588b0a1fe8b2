//! Finding the highest rate a target sustains: constant-rate trials, doubling while they
//! pass, then bisecting between the best pass and the lowest failure until the two are
//! within the requested precision. A trial passes when every threshold holds and nothing
//! was dropped.

use serde::Serialize;

/// One constant-rate trial and its verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    pub rate: f64,
    pub achieved_rps: f64,
    pub p99_ms: f64,
    pub failure_rate: f64,
    pub dropped: u64,
    pub passed: bool,
}

/// Where the search stands: the best rate that passed and the lowest that failed.
#[derive(Debug, Clone)]
pub struct Search {
    start: f64,
    precision: f64,
    max_rate: f64,
    best_pass: Option<f64>,
    lowest_fail: Option<f64>,
}

/// Rates below this are not worth a trial: the target is down, not slow.
const MIN_RATE: f64 = 1.0;

impl Search {
    /// `precision` is relative: 0.05 stops when the lowest failure is within 5 % of the best
    /// pass. `max_rate` caps the doubling, so a target faster than the tester ends there.
    pub fn new(start: f64, precision: f64, max_rate: f64) -> Self {
        Self {
            start: start.max(MIN_RATE),
            precision: precision.max(0.001),
            max_rate: max_rate.max(start),
            best_pass: None,
            lowest_fail: None,
        }
    }

    pub fn record(&mut self, rate: f64, passed: bool) {
        if passed {
            self.best_pass = Some(self.best_pass.map_or(rate, |b| b.max(rate)));
        } else {
            self.lowest_fail = Some(self.lowest_fail.map_or(rate, |f| f.min(rate)));
        }
    }

    /// The next rate to try, or `None` when the search is done.
    pub fn next_rate(&self) -> Option<f64> {
        match (self.best_pass, self.lowest_fail) {
            (None, None) => Some(self.start),
            // Everything so far passed: double, up to the cap.
            (Some(pass), None) => (pass < self.max_rate).then(|| (pass * 2.0).min(self.max_rate)),
            // Everything so far failed: halve, down to the floor.
            (None, Some(fail)) => (fail / 2.0 >= MIN_RATE).then_some(fail / 2.0),
            (Some(pass), Some(fail)) => {
                ((fail - pass) / pass > self.precision).then(|| ((pass + fail) / 2.0).round())
            }
        }
        .filter(|rate| {
            // Bisection rounds to whole requests per second; stop rather than repeat a rate.
            Some(*rate) != self.best_pass && Some(*rate) != self.lowest_fail
        })
    }

    /// The highest rate that passed, once the search is done.
    pub fn result(&self) -> Option<f64> {
        self.best_pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a search against a target that passes exactly the rates up to `capacity`.
    fn search(capacity: f64, start: f64, max_rate: f64) -> (Option<f64>, Vec<f64>) {
        let mut search = Search::new(start, 0.05, max_rate);
        let mut tried = Vec::new();
        while let Some(rate) = search.next_rate() {
            tried.push(rate);
            search.record(rate, rate <= capacity);
            assert!(tried.len() < 40, "search does not converge: {tried:?}");
        }
        (search.result(), tried)
    }

    #[test]
    fn doubles_then_bisects_to_within_the_precision() {
        let (found, tried) = search(3300.0, 500.0, 100_000.0);
        assert_eq!(&tried[..4], &[500.0, 1000.0, 2000.0, 4000.0]);
        let found = found.unwrap();
        assert!(
            (3300.0 / 1.05..=3300.0).contains(&found),
            "{found} {tried:?}"
        );
    }

    #[test]
    fn halves_when_the_start_rate_already_fails() {
        let (found, tried) = search(90.0, 1000.0, 100_000.0);
        assert_eq!(&tried[..5], &[1000.0, 500.0, 250.0, 125.0, 62.5]);
        let found = found.unwrap();
        assert!((90.0 / 1.05..=90.0).contains(&found), "{found} {tried:?}");
    }

    #[test]
    fn stops_at_the_cap_when_everything_passes() {
        let (found, tried) = search(f64::INFINITY, 500.0, 3000.0);
        assert_eq!(tried, vec![500.0, 1000.0, 2000.0, 3000.0]);
        assert_eq!(found, Some(3000.0));
    }

    #[test]
    fn a_dead_target_ends_without_a_result() {
        let (found, tried) = search(0.0, 8.0, 100.0);
        assert_eq!(tried, vec![8.0, 4.0, 2.0, 1.0]);
        assert_eq!(found, None);
    }
}
