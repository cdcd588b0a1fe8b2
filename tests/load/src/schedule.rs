//! When each request is due: an open model with a constant arrival rate per stage, or a
//! linear ramp between two rates. Arrival times do not depend on responses, so a slow
//! server cannot slow the offered load down.

use std::time::Duration;

/// One stage of the load profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    pub duration: Duration,
    /// Requests per second at the start of the stage.
    pub from_rate: f64,
    /// Requests per second at the end (equal to `from_rate` for a constant stage).
    pub to_rate: f64,
}

/// Intended send times, offsets from the start of the run, in order.
pub fn arrival_times(stages: &[Stage]) -> Vec<Duration> {
    let mut times = Vec::new();
    let mut stage_start = 0.0;
    for stage in stages {
        let d = stage.duration.as_secs_f64();
        let (a, b) = (stage.from_rate.max(0.0), stage.to_rate.max(0.0));
        // Requests due by time t into the stage: N(t) = a t + (b - a) t² / 2d. The k-th
        // request is due when N(t) = k, solved for t.
        let total = (a + b) / 2.0 * d;
        let mut k = 0.0_f64;
        while k < total.floor() {
            let t = if (b - a).abs() < 1e-12 {
                k / a
            } else {
                let slope = (b - a) / d;
                (-a + (a * a + 2.0 * slope * k).max(0.0).sqrt()) / slope
            };
            times.push(Duration::from_secs_f64(stage_start + t));
            k += 1.0;
        }
        stage_start += d;
    }
    times
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_rate_is_evenly_spaced() {
        let times = arrival_times(&[Stage {
            duration: Duration::from_secs(2),
            from_rate: 100.0,
            to_rate: 100.0,
        }]);
        assert_eq!(times.len(), 200);
        assert_eq!(times[0], Duration::ZERO);
        assert_eq!(times[1], Duration::from_millis(10));
        assert_eq!(times[199], Duration::from_millis(1990));
    }

    #[test]
    fn ramps_accelerate_and_stages_follow_each_other() {
        let times = arrival_times(&[
            Stage {
                duration: Duration::from_secs(10),
                from_rate: 0.0,
                to_rate: 100.0,
            },
            Stage {
                duration: Duration::from_secs(1),
                from_rate: 50.0,
                to_rate: 50.0,
            },
        ]);
        // A ramp from 0 to 100 rps over 10 s sends 500 requests, then 50 more.
        assert_eq!(times.len(), 550);
        let first_half = times
            .iter()
            .filter(|t| **t < Duration::from_secs(5))
            .count();
        assert!(
            (120..=130).contains(&first_half),
            "a quarter of the ramp's load falls in its first half: {first_half}"
        );
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        assert!(times[500] >= Duration::from_secs(10));
    }
}
