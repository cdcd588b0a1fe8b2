//! Error-budget arithmetic: budgets, burn rates, multi-window alert thresholds, time to
//! exhaustion, timeslice budgeting and the error-budget policy verdict.
//!
//! Shares are fractions (0.001, not 0.1 %). Every function is total: no traffic is no error,
//! never NaN.

use std::time::Duration;

/// Good and total events over some window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Counts {
    pub good: f64,
    pub total: f64,
}

impl Counts {
    pub fn new(good: f64, total: f64) -> Self {
        Self { good, total }
    }

    pub fn bad(&self) -> f64 {
        (self.total - self.good).max(0.0)
    }

    /// Share of bad events; 0 when there were none at all (no traffic spends no budget).
    pub fn error_ratio(&self) -> f64 {
        if self.total > 0.0 {
            (self.bad() / self.total).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// Share of good events; 1 when there was no traffic.
    pub fn sli(&self) -> f64 {
        1.0 - self.error_ratio()
    }
}

/// How fast the budget burns: 1 spends exactly the budget over the period.
pub fn burn_rate(error_ratio: f64, error_budget: f64) -> f64 {
    if error_budget > 0.0 {
        error_ratio / error_budget
    } else if error_ratio > 0.0 {
        f64::INFINITY
    } else {
        0.0
    }
}

/// Share of the period's budget spent by burning at `burn` for `window`.
pub fn budget_spent(burn: f64, window: Duration, period: Duration) -> f64 {
    burn * window.as_secs_f64() / period.as_secs_f64()
}

/// Share of the budget left after a period whose error ratio was `error_ratio`. Negative
/// when overspent: how far over is worth showing.
pub fn budget_remaining(error_ratio: f64, error_budget: f64) -> f64 {
    1.0 - burn_rate(error_ratio, error_budget)
}

/// Minutes of total outage the budget allows over the period.
pub fn budget_minutes(error_budget: f64, period: Duration) -> f64 {
    error_budget * period.as_secs_f64() / 60.0
}

/// How long the remaining budget lasts at the current burn. `None` when it is not being
/// spent (burn 0) and `Some(ZERO)` when it is already gone.
pub fn time_to_exhaustion(remaining: f64, burn: f64, period: Duration) -> Option<Duration> {
    if remaining <= 0.0 {
        return Some(Duration::ZERO);
    }
    if burn <= 0.0 || !burn.is_finite() {
        return if burn.is_infinite() {
            Some(Duration::ZERO)
        } else {
            None
        };
    }
    Some(Duration::from_secs_f64(
        remaining * period.as_secs_f64() / burn,
    ))
}

/// Who gets told when a window pair burns too fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    Page,
    Ticket,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Page => "page",
            Severity::Ticket => "ticket",
        }
    }
}

/// One multi-window rule: alert when both windows burn faster than the rate that would
/// spend `budget_share` of the budget over `long`. Kept as data so any period works.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlertWindow {
    pub severity: Severity,
    pub long: Duration,
    pub short: Duration,
    pub budget_share: f64,
}

const MIN: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 86_400;

/// The SRE workbook's table: 2 % in 1h and 5 % in 6h page; 10 % in 1d and 3d ticket.
/// Over 30 days these are burns of 14.4, 6, 3 and 1.
pub const WORKBOOK_WINDOWS: [AlertWindow; 4] = [
    AlertWindow {
        severity: Severity::Page,
        long: Duration::from_secs(HOUR),
        short: Duration::from_secs(5 * MIN),
        budget_share: 0.02,
    },
    AlertWindow {
        severity: Severity::Page,
        long: Duration::from_secs(6 * HOUR),
        short: Duration::from_secs(30 * MIN),
        budget_share: 0.05,
    },
    AlertWindow {
        severity: Severity::Ticket,
        long: Duration::from_secs(DAY),
        short: Duration::from_secs(2 * HOUR),
        budget_share: 0.10,
    },
    AlertWindow {
        severity: Severity::Ticket,
        long: Duration::from_secs(3 * DAY),
        short: Duration::from_secs(6 * HOUR),
        budget_share: 0.10,
    },
];

impl AlertWindow {
    /// The burn rate that spends `budget_share` of a `period` budget within `long`.
    pub fn burn_threshold(&self, period: Duration) -> f64 {
        self.budget_share * period.as_secs_f64() / self.long.as_secs_f64()
    }

    /// Whether this rule fires given the error ratios of its two windows.
    pub fn fires(
        &self,
        long_ratio: f64,
        short_ratio: f64,
        error_budget: f64,
        period: Duration,
    ) -> bool {
        let limit = self.burn_threshold(period) * error_budget;
        long_ratio > limit && short_ratio > limit
    }

    /// How long until this rule fires if errors keep arriving at `current_ratio`, from
    /// windows now at `long_ratio` and `short_ratio`: each window's mean moves linearly
    /// from its value towards the current ratio, replacing the old traffic as it leaves.
    /// `Some(ZERO)` when firing now, `None` when the current ratio never gets there.
    pub fn time_to_fire(
        &self,
        long_ratio: f64,
        short_ratio: f64,
        current_ratio: f64,
        error_budget: f64,
        period: Duration,
    ) -> Option<Duration> {
        let limit = self.burn_threshold(period) * error_budget;
        let reach = |ratio: f64, window: Duration| -> Option<f64> {
            if ratio > limit {
                Some(0.0)
            } else if current_ratio > limit {
                Some(window.as_secs_f64() * (limit - ratio) / (current_ratio - ratio))
            } else {
                None
            }
        };
        let long = reach(long_ratio, self.long)?;
        let short = reach(short_ratio, self.short)?;
        Some(Duration::from_secs_f64(long.max(short)))
    }
}

/// Every distinct window the alert rules read, shortest first.
pub fn alert_ranges(windows: &[AlertWindow]) -> Vec<Duration> {
    let mut ranges: Vec<Duration> = windows.iter().flat_map(|w| [w.long, w.short]).collect();
    ranges.sort();
    ranges.dedup();
    ranges
}

/// Timeslice budgeting: the share of slices whose own good ratio reached `slice_objective`.
/// Slices without traffic count as good: nobody was failed.
pub fn timeslice_counts(slices: &[Counts], slice_objective: f64) -> Counts {
    let good = slices
        .iter()
        .filter(|s| s.total <= 0.0 || s.good / s.total >= slice_objective)
        .count();
    Counts::new(good as f64, slices.len() as f64)
}

/// OpenSLO's RatioTimeslices: the SLI is the mean of the slices' good ratios, as counts
/// of "slices' worth" of good (an empty slice counts as wholly good, as in timeslices).
pub fn ratio_timeslice_counts(slices: &[Counts]) -> Counts {
    let good: f64 = slices
        .iter()
        .map(|s| {
            if s.total <= 0.0 {
                1.0
            } else {
                s.good / s.total
            }
        })
        .sum();
    Counts::new(good, slices.len() as f64)
}

/// The error-budget policy's answer for a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Ok,
    AtRisk,
    /// Budget gone: freeze releases, work on reliability.
    Exhausted,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::AtRisk => "at risk",
            Verdict::Exhausted => "exhausted: freeze releases",
        }
    }
}

/// Exhausted when nothing is left; at risk when less than `at_risk_below` is left or a
/// page-level burn is under way; ok otherwise.
pub fn verdict(remaining: f64, paging: bool, at_risk_below: f64) -> Verdict {
    if remaining <= 0.0 {
        Verdict::Exhausted
    } else if remaining < at_risk_below || paging {
        Verdict::AtRisk
    } else {
        Verdict::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THIRTY_DAYS: Duration = Duration::from_secs(30 * DAY);

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn workbook_budget_is_43_2_minutes() {
        assert!(close(budget_minutes(0.001, THIRTY_DAYS), 43.2));
    }

    #[test]
    fn time_to_fire_follows_the_windows_filling_up() {
        let page = WORKBOOK_WINDOWS[0];
        let period = Duration::from_secs(30 * DAY);
        let budget = 0.001;
        // Quiet so far, now failing at 28.8x (twice the 14.4x threshold): the hour window
        // reaches 14.4x half-way through, the 5m window sooner.
        let t = page.time_to_fire(0.0, 0.0, 0.0288, budget, period).unwrap();
        assert_eq!(t, Duration::from_secs(30 * MIN));
        // Already over in both windows: firing now.
        assert_eq!(
            page.time_to_fire(0.02, 0.02, 0.02, budget, period),
            Some(Duration::ZERO)
        );
        // Below the threshold, it never fires at this pace.
        assert_eq!(page.time_to_fire(0.0, 0.0, 0.01, budget, period), None);
        // The hour is over already; the 5m window, quiet, fills at 28.8x in 2m30s.
        assert_eq!(
            page.time_to_fire(0.02, 0.0, 0.0288, budget, period),
            Some(Duration::from_secs(150))
        );
    }

    #[test]
    fn a_14_4_burn_for_an_hour_spends_2_percent() {
        assert!(close(
            budget_spent(14.4, Duration::from_secs(HOUR), THIRTY_DAYS),
            0.02
        ));
        assert!(close(
            budget_spent(6.0, Duration::from_secs(6 * HOUR), THIRTY_DAYS),
            0.05
        ));
        assert!(close(budget_spent(1.0, THIRTY_DAYS, THIRTY_DAYS), 1.0));
    }

    #[test]
    fn workbook_thresholds_come_from_the_window_data() {
        let burns: Vec<f64> = WORKBOOK_WINDOWS
            .iter()
            .map(|w| w.burn_threshold(THIRTY_DAYS))
            .collect();
        for (got, want) in burns.iter().zip([14.4, 6.0, 3.0, 1.0]) {
            assert!(close(*got, want), "{got} != {want}");
        }
        // Other periods keep the same share of budget per window.
        let week = Duration::from_secs(7 * DAY);
        assert!(close(
            WORKBOOK_WINDOWS[0].burn_threshold(week),
            0.02 * 168.0
        ));
    }

    #[test]
    fn burn_rate_and_remaining() {
        assert!(close(burn_rate(0.0144, 0.001), 14.4));
        assert!(close(budget_remaining(0.0005, 0.001), 0.5));
        assert!(close(budget_remaining(0.002, 0.001), -1.0));
        assert_eq!(burn_rate(0.0, 0.0), 0.0);
    }

    #[test]
    fn no_traffic_is_no_error_not_nan() {
        let idle = Counts::new(0.0, 0.0);
        assert_eq!(idle.error_ratio(), 0.0);
        assert_eq!(idle.sli(), 1.0);
        assert_eq!(burn_rate(idle.error_ratio(), 0.001), 0.0);
    }

    #[test]
    fn exhaustion_forecast() {
        // A full budget at burn 14.4 lasts 30 d / 14.4 = 50 h.
        let eta = time_to_exhaustion(1.0, 14.4, THIRTY_DAYS).unwrap();
        assert_eq!(eta, Duration::from_secs(50 * HOUR));
        // Half a budget at burn 1 lasts half the period.
        assert_eq!(
            time_to_exhaustion(0.5, 1.0, THIRTY_DAYS).unwrap(),
            Duration::from_secs(15 * DAY)
        );
        assert_eq!(time_to_exhaustion(0.5, 0.0, THIRTY_DAYS), None);
        assert_eq!(
            time_to_exhaustion(-0.1, 2.0, THIRTY_DAYS),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn alerts_fire_only_when_both_windows_burn() {
        let page = WORKBOOK_WINDOWS[0];
        let budget = 0.001;
        assert!(page.fires(0.015, 0.015, budget, THIRTY_DAYS));
        assert!(
            !page.fires(0.015, 0.010, budget, THIRTY_DAYS),
            "short window recovered"
        );
        assert!(
            !page.fires(0.014, 0.020, budget, THIRTY_DAYS),
            "long window below 14.4x"
        );
    }

    #[test]
    fn timeslices_and_occurrences_differ_on_the_same_data() {
        // Ten one-minute slices of 1000 requests; one slice has a 10 % outage, one a 0.5 %
        // blip. By occurrences: 105 bad of 10 000 = 1.05 % errors. By timeslices with a
        // 99 % slice objective only the outage slice is bad: 1 of 10 = 10 % bad time.
        let mut slices = vec![Counts::new(1000.0, 1000.0); 10];
        slices[3] = Counts::new(900.0, 1000.0);
        slices[7] = Counts::new(995.0, 1000.0);
        let occurrences = slices.iter().fold(Counts::default(), |acc, s| {
            Counts::new(acc.good + s.good, acc.total + s.total)
        });
        assert!(close(occurrences.error_ratio(), 0.0105));
        let by_time = timeslice_counts(&slices, 0.99);
        assert_eq!(by_time, Counts::new(9.0, 10.0));
        assert!(close(by_time.error_ratio(), 0.1));
        // A stricter slice objective also counts the blip.
        assert_eq!(timeslice_counts(&slices, 0.999), Counts::new(8.0, 10.0));
    }

    #[test]
    fn policy_verdicts() {
        assert_eq!(verdict(0.8, false, 0.25), Verdict::Ok);
        assert_eq!(verdict(0.8, true, 0.25), Verdict::AtRisk);
        assert_eq!(verdict(0.1, false, 0.25), Verdict::AtRisk);
        assert_eq!(verdict(0.0, false, 0.25), Verdict::Exhausted);
    }

    #[test]
    fn alert_ranges_are_distinct_and_sorted() {
        let ranges = alert_ranges(&WORKBOOK_WINDOWS);
        let minutes: Vec<u64> = ranges.iter().map(|d| d.as_secs() / 60).collect();
        assert_eq!(minutes, vec![5, 30, 60, 120, 360, 1440, 4320]);
    }
}
