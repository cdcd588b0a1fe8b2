//! Job schedules and the calendar they run on: cron patterns read by croner, always in UTC,
//! turned into slots (Unix milliseconds); and the days (`YYYY-MM-DD`, UTC) reports cover.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use croner::Cron;
use time::{Date, OffsetDateTime};

/// When a job runs by itself: on a cron pattern, or never (`off`: only when triggered).
#[derive(Debug, Clone, PartialEq)]
pub enum JobSchedule {
    Off,
    Cron(Schedule),
}

impl JobSchedule {
    /// `off`, or a cron pattern; the error says how to write one.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().eq_ignore_ascii_case("off") {
            return Ok(Self::Off);
        }
        Schedule::parse(text).map(Self::Cron)
    }

    pub fn cron(&self) -> Option<&Schedule> {
        match self {
            Self::Off => None,
            Self::Cron(schedule) => Some(schedule),
        }
    }
}

impl fmt::Display for JobSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::Cron(schedule) => f.write_str(schedule.pattern()),
        }
    }
}

/// A cron pattern: five fields (minute hour day-of-month month day-of-week), or six with
/// seconds first. Evaluated in UTC, so a schedule means the same on every instance.
#[derive(Debug, Clone)]
pub struct Schedule {
    pattern: String,
    /// Boxed: a parsed pattern is large, and settings hold three.
    cron: Box<Cron>,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
    }
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Self, String> {
        let pattern = text.trim();
        let cron = Cron::from_str(pattern).map_err(|err| {
            format!(
                "`{text}` is not a cron pattern ({err}); write five fields, minute hour \
                 day-of-month month day-of-week (e.g. `5 0 * * *`), six with seconds first, \
                 or `off`"
            )
        })?;
        // A pattern that never matches (the 30th of February) would leave the job idle
        // without a word; refuse it at start instead.
        cron.find_next_occurrence(&Utc::now(), false)
            .map_err(|err| format!("`{text}` never comes due ({err})"))?;
        Ok(Self {
            pattern: pattern.to_owned(),
            cron: Box::new(cron),
        })
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The pattern in words, e.g. "At 00:05".
    pub fn describe(&self) -> String {
        self.cron.describe()
    }

    /// The latest slot at or before `now_ms`. Slots fall on whole seconds, so the search
    /// starts from the second `now_ms` is in.
    pub fn latest_at_or_before(&self, now_ms: i64) -> Option<i64> {
        let now = DateTime::<Utc>::from_timestamp(now_ms.div_euclid(1000), 0)?;
        self.cron
            .find_previous_occurrence(&now, true)
            .ok()
            .map(|slot| slot.timestamp_millis())
    }

    /// The first slot after `now_ms`.
    pub fn next_after(&self, now_ms: i64) -> Option<i64> {
        let now = DateTime::<Utc>::from_timestamp_millis(now_ms)?;
        self.cron
            .find_next_occurrence(&now, false)
            .ok()
            .map(|slot| slot.timestamp_millis())
    }
}

const DAY: &[time::format_description::BorrowedFormatItem<'_>] =
    time::macros::format_description!("[year]-[month]-[day]");

/// `2026-12-05`.
pub fn format_day(day: Date) -> String {
    day.format(DAY).unwrap_or_else(|_| day.to_string())
}

/// A day written `YYYY-MM-DD`.
pub fn parse_day(text: &str) -> Option<Date> {
    Date::parse(text, DAY).ok()
}

/// The UTC day of an instant in Unix milliseconds.
pub fn day_of_ms(ms: i64) -> Option<Date> {
    at_ms(ms).map(OffsetDateTime::date)
}

/// An instant in Unix milliseconds, in UTC.
pub fn at_ms(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// Unix milliseconds as RFC 3339 UTC text, as the API shows times.
pub fn rfc3339_of_ms(ms: i64) -> String {
    at_ms(ms)
        .map(sloop_kit::clock::format_rfc3339)
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-05T10:07:30.250Z.
    const NOW: i64 = 1_796_465_250_250;

    #[test]
    fn five_and_six_field_patterns_give_slots() {
        let daily = Schedule::parse("5 0 * * *").unwrap();
        let slot = daily.latest_at_or_before(NOW).unwrap();
        assert_eq!(rfc3339_of_ms(slot), "2026-12-05T00:05:00.000000Z");
        let next = daily.next_after(NOW).unwrap();
        assert_eq!(rfc3339_of_ms(next), "2026-12-06T00:05:00.000000Z");

        let every_second = Schedule::parse("* * * * * *").unwrap();
        assert_eq!(every_second.latest_at_or_before(NOW), Some(NOW - 250));
        assert_eq!(every_second.next_after(NOW), Some(NOW - 250 + 1000));
    }

    #[test]
    fn bad_and_never_due_patterns_are_refused() {
        assert!(JobSchedule::parse("every day").is_err());
        assert!(JobSchedule::parse("0 0 30 2 *").is_err());
        assert_eq!(JobSchedule::parse(" OFF ").unwrap(), JobSchedule::Off);
        assert_eq!(
            JobSchedule::parse("5 0 * * *").unwrap().to_string(),
            "5 0 * * *"
        );
    }

    #[test]
    fn days_are_utc_dates() {
        assert_eq!(format_day(day_of_ms(NOW).unwrap()), "2026-12-05");
        assert_eq!(parse_day("2026-12-05"), day_of_ms(NOW));
        assert!(parse_day("2026-13-01").is_none());
        assert!(parse_day("5.12.2026").is_none());
    }
}
