//! What burned the budget: the period's bad events grouped by route and status class (and
//! any label the spec names), biggest first, each with the share of the budget it spent.
//! The first question an on-call engineer asks of a burning SLO.

use std::collections::BTreeMap;

use serde::Serialize;

/// Labels every breakdown groups by when the series carry them.
pub const DEFAULT_LABELS: [&str; 3] = ["route", "status", "code"];

/// How many groups a report names before folding the rest into one line.
pub const TOP: usize = 5;

/// Bad events of one group of series over the period, as a source measured them.
pub type Group = (BTreeMap<String, String>, f64);

/// One line of the breakdown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Offender {
    /// The group's label values, e.g. `route=/users/{id}`, `status=5xx`; `other` for the
    /// rest.
    pub labels: BTreeMap<String, String>,
    pub errors: f64,
    /// Share of the period's whole error budget this group spent (1 = all of it): its
    /// share of the bad events times the budget spent. For time-slice SLOs, whose budget
    /// is counted in slices, that attributes the spent slices by the bad events in them.
    pub budget_spent: f64,
    /// Share of all bad events in the period.
    pub share_of_errors: f64,
}

impl Offender {
    /// `route=/users/{id} status=5xx`.
    pub fn describe(&self) -> String {
        self.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The labels a breakdown groups by: the defaults, then what the spec adds.
pub fn labels(extra: &[String]) -> Vec<String> {
    let mut labels: Vec<String> = DEFAULT_LABELS.iter().map(|l| (*l).to_owned()).collect();
    for label in extra {
        if !labels.contains(label) {
            labels.push(label.clone());
        }
    }
    labels
}

/// A status code as its class: `503` → `5xx`. Other values stay as they are.
fn class(value: &str) -> String {
    let bytes = value.as_bytes();
    if bytes.len() == 3 && bytes.iter().all(u8::is_ascii_digit) {
        format!("{}xx", &value[..1])
    } else {
        value.to_owned()
    }
}

/// Folds status codes into classes, merges the groups that become one, ranks them by bad
/// events and keeps the top [`TOP`], the rest summed in one line. `spent` is the share of
/// the period's budget spent so far (1 = all of it).
pub fn offenders(groups: Vec<Group>, spent: f64) -> Vec<Offender> {
    let mut merged: BTreeMap<BTreeMap<String, String>, f64> = BTreeMap::new();
    for (labels, errors) in groups {
        if !(errors > 0.0 && errors.is_finite()) {
            continue;
        }
        let folded: BTreeMap<String, String> = labels
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| {
                let v = if k == "status" || k == "code" {
                    class(&v)
                } else {
                    v
                };
                (k, v)
            })
            .collect();
        *merged.entry(folded).or_default() += errors;
    }
    let all_errors: f64 = merged.values().sum();
    let offender = |labels: BTreeMap<String, String>, errors: f64| {
        let share = if all_errors > 0.0 {
            errors / all_errors
        } else {
            0.0
        };
        Offender {
            labels,
            errors,
            budget_spent: share * spent.max(0.0),
            share_of_errors: share,
        }
    };
    let mut ranked: Vec<(BTreeMap<String, String>, f64)> = merged.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let rest: f64 = ranked.iter().skip(TOP).map(|(_, e)| e).sum();
    let mut out: Vec<Offender> = ranked
        .into_iter()
        .take(TOP)
        .map(|(labels, errors)| offender(labels, errors))
        .collect();
    if rest > 0.0 {
        out.push(offender(
            BTreeMap::from([("group".to_owned(), "all others".to_owned())]),
            rest,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(route: &str, status: &str, errors: f64) -> Group {
        (
            BTreeMap::from([
                ("route".to_owned(), route.to_owned()),
                ("status".to_owned(), status.to_owned()),
            ]),
            errors,
        )
    }

    #[test]
    fn statuses_fold_into_classes_and_the_biggest_comes_first() {
        let groups = vec![
            group("/users", "503", 3.0),
            group("/orders", "500", 10.0),
            group("/users", "500", 2.0),
            group("/health", "500", 0.0),
        ];
        // 15 bad events spent 1.5 budgets (1000 events at a 1 % budget).
        let offenders = offenders(groups, 1.5);
        assert_eq!(offenders.len(), 2);
        assert_eq!(offenders[0].describe(), "route=/orders status=5xx");
        assert_eq!(offenders[0].budget_spent, 1.0);
        assert_eq!(offenders[1].describe(), "route=/users status=5xx");
        assert_eq!(offenders[1].errors, 5.0);
        assert!((offenders[1].share_of_errors - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn beyond_the_top_the_rest_is_one_line() {
        let groups = (0..8)
            .map(|i| group(&format!("/r{i}"), "500", 1.0 + i as f64))
            .collect();
        let offenders = offenders(groups, 3.6);
        assert_eq!(offenders.len(), TOP + 1);
        assert_eq!(offenders[0].describe(), "route=/r7 status=5xx");
        assert_eq!(offenders[TOP].describe(), "group=all others");
        assert_eq!(offenders[TOP].errors, 1.0 + 2.0 + 3.0);
        // 36 bad events spent 3.6 budgets: each bad event a tenth of one.
        assert!((offenders[TOP].budget_spent - 0.6).abs() < 1e-12);
    }
}
