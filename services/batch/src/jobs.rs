//! The jobs batch runs, a fixed set defined here: what each is called, what it does and the
//! work itself. Report jobs read only the service's own read model (filled by
//! `events.rs`); cleanup deletes only the service's own rows.
//!
//! Adding a job: a variant in [`Job`] with its name and description, a schedule in
//! [`crate::BatchSettings`], a read model table and the events that fill it in
//! `events.rs`, and its work in [`run`].

use std::time::Duration;

use serde_json::{Map, Value, json};
use sloop_kit::Database;
use sloop_kit::clock::{now_millis, now_rfc3339};
use time::Date;

use crate::BatchSettings;
use crate::error::BatchError;
use crate::report::Report;
use crate::schedule::{JobSchedule, day_of_ms, format_day};
use crate::store;

/// The longest period a report may cover, in days (a year, leap day included).
pub const MAX_PERIOD_DAYS: u32 = 366;

/// One of the service's jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Job {
    UserStats,
    SalesReport,
    ChatActivity,
    Cleanup,
}

impl Job {
    /// Every job, in the order the API lists them.
    pub const ALL: [Job; 4] = [
        Job::UserStats,
        Job::SalesReport,
        Job::ChatActivity,
        Job::Cleanup,
    ];

    /// The name the API, the flags and the metrics use.
    pub fn name(self) -> &'static str {
        match self {
            Self::UserStats => "user-stats",
            Self::SalesReport => "sales-report",
            Self::ChatActivity => "chat-activity",
            Self::Cleanup => "cleanup",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|job| job.name() == name)
    }

    pub fn description(self) -> &'static str {
        match self {
            Self::UserStats => {
                "Accounts created per day (from UserCreated events), for the days before the run"
            }
            Self::SalesReport => {
                "Orders confirmed and cancelled, and revenue (confirmed totals in minor units), \
                 per day and currency, for the days before the run"
            }
            Self::ChatActivity => {
                "Chat messages, mentions, active rooms and active senders per day (from \
                 ChatMessageSent events), for the days before the run"
            }
            Self::Cleanup => {
                "Deletes this service's run history and read-model rows older than the retention"
            }
        }
    }

    /// Whether a run stores a report (and covers a period of days).
    pub fn makes_report(self) -> bool {
        !matches!(self, Self::Cleanup)
    }

    /// The job's schedule in `settings`.
    pub fn schedule(self, settings: &BatchSettings) -> &JobSchedule {
        match self {
            Self::UserStats => &settings.user_stats_schedule,
            Self::SalesReport => &settings.sales_report_schedule,
            Self::ChatActivity => &settings.chat_activity_schedule,
            Self::Cleanup => &settings.cleanup_schedule,
        }
    }

    /// The days a report run covers when not told: the `days` whole days before the day of
    /// `reference_ms` (UTC). A scheduled run's reference is its slot, not the clock, so a
    /// late or repeated attempt reports on the same days as the first.
    pub fn default_period(self, settings: &BatchSettings, reference_ms: i64) -> Option<Period> {
        let days = match self {
            Self::UserStats => settings.user_stats_days,
            Self::SalesReport => settings.sales_report_days,
            Self::ChatActivity => settings.chat_activity_days,
            Self::Cleanup => return None,
        };
        Period::before(day_of_ms(reference_ms)?, days)
    }
}

impl std::fmt::Display for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The days a report covers, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: Date,
    pub to: Date,
}

impl Period {
    /// The `days` days ending the day before `reference`: yesterday for one day.
    pub fn before(reference: Date, days: u32) -> Option<Self> {
        let to = reference.previous_day()?;
        let from = to.checked_sub(time::Duration::days(i64::from(days.max(1)) - 1))?;
        Some(Self { from, to })
    }

    /// Days in the period.
    pub fn day_count(&self) -> i64 {
        (self.to - self.from).whole_days() + 1
    }

    /// Every day of the period, in order.
    pub fn days(&self) -> impl Iterator<Item = Date> + '_ {
        std::iter::successors(Some(self.from), |day| day.next_day()).take_while(|d| *d <= self.to)
    }

    pub fn from_text(&self) -> String {
        format_day(self.from)
    }

    pub fn to_text(&self) -> String {
        format_day(self.to)
    }
}

/// What a run did: log lines, and the report of a report job.
#[derive(Debug, Default)]
pub struct Output {
    pub log: Vec<String>,
    pub report: Option<Report>,
}

/// Does `job`'s work for run `run_id`; `period` is set for report jobs.
pub async fn run(
    job: Job,
    db: &Database,
    settings: &BatchSettings,
    run_id: &str,
    period: Option<Period>,
) -> Result<Output, BatchError> {
    match (job, period) {
        (Job::UserStats, Some(period)) => user_stats(db, run_id, period).await,
        (Job::SalesReport, Some(period)) => sales_report(db, run_id, period).await,
        (Job::ChatActivity, Some(period)) => chat_activity(db, run_id, period).await,
        (Job::Cleanup, _) => cleanup(db, settings.retention).await,
        (job, None) => Err(BatchError::Data(format!(
            "a {job} run needs the days it covers, and this one has none"
        ))),
    }
}

/// Signups per day of the period, every day listed (0 when nobody signed up).
async fn user_stats(db: &Database, run_id: &str, period: Period) -> Result<Output, BatchError> {
    let counted = store::signups(db, &period.from_text(), &period.to_text()).await?;
    let mut total = 0;
    let rows: Vec<Map<String, Value>> = period
        .days()
        .map(|day| {
            let day = format_day(day);
            let signups = counted.get(&day).copied().unwrap_or(0);
            total += signups;
            object(json!({ "day": day, "signups": signups }))
        })
        .collect();
    let log = vec![format!(
        "counted {total} signups over {} day(s), {} to {}",
        period.day_count(),
        period.from_text(),
        period.to_text()
    )];
    let report = Report::new(
        Job::UserStats,
        run_id,
        period,
        &["day", "signups"],
        rows,
        &now_rfc3339(),
    );
    Ok(Output {
        log,
        report: Some(report),
    })
}

/// Orders and revenue per day and currency; days without orders have no row (there is no
/// currency to give them).
async fn sales_report(db: &Database, run_id: &str, period: Period) -> Result<Output, BatchError> {
    let sales = store::sales(db, &period.from_text(), &period.to_text()).await?;
    let (mut confirmed, mut cancelled) = (0, 0);
    let mut revenue: std::collections::BTreeMap<&str, i64> = Default::default();
    for row in &sales {
        confirmed += row.orders_confirmed;
        cancelled += row.orders_cancelled;
        *revenue.entry(row.currency.as_str()).or_default() += row.revenue;
    }
    let revenue_text: Vec<String> = revenue
        .iter()
        .map(|(currency, minor)| format!("{minor} {currency}"))
        .collect();
    let log = vec![format!(
        "{confirmed} orders confirmed, {cancelled} cancelled from {} to {}; revenue in minor units: {}",
        period.from_text(),
        period.to_text(),
        if revenue_text.is_empty() {
            "none".to_owned()
        } else {
            revenue_text.join(", ")
        }
    )];
    let rows = sales
        .iter()
        .map(|row| {
            object(json!({
                "day": row.day,
                "currency": row.currency,
                "orders_confirmed": row.orders_confirmed,
                "orders_cancelled": row.orders_cancelled,
                "revenue": row.revenue,
            }))
        })
        .collect();
    let report = Report::new(
        Job::SalesReport,
        run_id,
        period,
        &[
            "day",
            "currency",
            "orders_confirmed",
            "orders_cancelled",
            "revenue",
        ],
        rows,
        &now_rfc3339(),
    );
    Ok(Output {
        log,
        report: Some(report),
    })
}

/// Chat activity per day of the period, every day listed (zeros on a quiet day).
async fn chat_activity(db: &Database, run_id: &str, period: Period) -> Result<Output, BatchError> {
    let counted: std::collections::BTreeMap<String, store::ChatDay> =
        store::chat_activity(db, &period.from_text(), &period.to_text())
            .await?
            .into_iter()
            .map(|day| (day.day.clone(), day))
            .collect();
    let mut messages = 0;
    let rows: Vec<Map<String, Value>> = period
        .days()
        .map(|day| {
            let day = format_day(day);
            let seen = counted.get(&day);
            let count = |field: fn(&store::ChatDay) -> i64| seen.map(field).unwrap_or(0);
            messages += count(|d| d.messages);
            object(json!({
                "day": day,
                "messages": count(|d| d.messages),
                "mentions": count(|d| d.mentions),
                "active_rooms": count(|d| d.active_rooms),
                "active_senders": count(|d| d.active_senders),
            }))
        })
        .collect();
    let log = vec![format!(
        "counted {messages} chat messages over {} day(s), {} to {}",
        period.day_count(),
        period.from_text(),
        period.to_text()
    )];
    let report = Report::new(
        Job::ChatActivity,
        run_id,
        period,
        &[
            "day",
            "messages",
            "mentions",
            "active_rooms",
            "active_senders",
        ],
        rows,
        &now_rfc3339(),
    );
    Ok(Output {
        log,
        report: Some(report),
    })
}

/// Deletes finished runs started before the retention and read-model days before it.
async fn cleanup(db: &Database, retention: Duration) -> Result<Output, BatchError> {
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let cutoff_ms = now_millis().saturating_sub(retention_ms);
    let cutoff_day = day_of_ms(cutoff_ms).map(format_day).ok_or_else(|| {
        BatchError::Data(format!(
            "the retention {} reaches before any date",
            sloop_duration::format(retention)
        ))
    })?;
    let deleted = store::delete_older(db, cutoff_ms, &cutoff_day).await?;
    Ok(Output {
        log: vec![
            format!(
                "kept {} ({cutoff_day} onwards)",
                sloop_duration::format(retention)
            ),
            format!(
                "deleted {} runs, {} days of signups, {} rows of sales, {} rows of chat activity",
                deleted.runs, deleted.signup_days, deleted.sales_rows, deleted.chat_rows
            ),
        ],
        report: None,
    })
}

/// The map inside a `json!` object literal.
fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for job in Job::ALL {
            assert_eq!(Job::from_name(job.name()), Some(job));
        }
        assert_eq!(Job::from_name("chat"), None);
    }

    #[test]
    fn a_period_is_the_days_before_the_reference() {
        let day = crate::schedule::parse_day("2026-03-01").unwrap();
        let yesterday = Period::before(day, 1).unwrap();
        assert_eq!(
            (yesterday.from_text(), yesterday.to_text()),
            ("2026-02-28".to_owned(), "2026-02-28".to_owned())
        );
        let week = Period::before(day, 7).unwrap();
        assert_eq!(week.from_text(), "2026-02-22");
        assert_eq!(week.day_count(), 7);
        assert_eq!(week.days().count(), 7);
    }
}
