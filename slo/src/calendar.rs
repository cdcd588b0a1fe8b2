//! Calendar-aligned SLO windows: consecutive weeks or months that start at a local time
//! in a time zone (`2024-01-01 00:00` in `Europe/Berlin`), so "this month" means what the
//! calendar on the wall says, not the last 30 days.

use std::fmt::Write as _;
use std::time::Duration;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Unit, ZonedDateTime};

/// The years the rules' daylight-saving terms cover: 2024-01-01 to 2040-01-01 (UTC).
const RULES_FROM: i64 = 1_704_067_200;
const RULES_UNTIL: i64 = 2_208_988_800;

/// How long each calendar period is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalendarUnit {
    Week,
    Month,
}

/// Periods of one `unit` each, the first starting at `anchor` (wall-clock time in `zone`).
#[derive(Debug, Clone, PartialEq)]
pub struct Calendar {
    pub unit: CalendarUnit,
    pub anchor: DateTime,
    pub zone: TimeZone,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error(
        "time zone `{0}` is not in the IANA time zone database; write it like UTC, Europe/Berlin or America/New_York"
    )]
    UnknownZone(String),
    #[error("start time `{0}` is not a date and time like 2024-01-01 00:00:00")]
    BadStart(String),
    #[error(
        "calendar months start on the 1st at midnight in sloop's rules; set the start time to a first of the month at 00:00:00 (got {0})"
    )]
    MonthStart(String),
}

impl Calendar {
    /// Months from the 1st at midnight UTC; weeks from Monday at midnight UTC.
    pub fn utc(unit: CalendarUnit) -> Self {
        let anchor = match unit {
            // 2024-01-01 was a Monday.
            CalendarUnit::Week | CalendarUnit::Month => {
                jiff::civil::date(2024, 1, 1).at(0, 0, 0, 0)
            }
        };
        Self {
            unit,
            anchor,
            zone: TimeZone::UTC,
        }
    }

    /// A calendar from OpenSLO's `startTime` (`2022-01-01 12:00:00`) and `timeZone`.
    pub fn new(unit: CalendarUnit, start: &str, zone: &str) -> Result<Self, CalendarError> {
        let zone = match zone {
            "UTC" | "Etc/UTC" => TimeZone::UTC,
            name => TimeZone::get(name).map_err(|_| CalendarError::UnknownZone(name.into()))?,
        };
        let anchor: DateTime = start
            .trim()
            .replace('T', " ")
            .parse()
            .map_err(|_| CalendarError::BadStart(start.into()))?;
        let midnight_first = anchor.day() == 1 && anchor.time() == jiff::civil::Time::midnight();
        if unit == CalendarUnit::Month && !midnight_first {
            return Err(CalendarError::MonthStart(start.into()));
        }
        // Dates at the edge of what can be computed with are refused here, not later.
        if anchor.to_zoned_datetime(zone.clone()).is_err() {
            return Err(CalendarError::BadStart(start.into()));
        }
        Ok(Self { unit, anchor, zone })
    }

    fn step(&self, n: i64) -> jiff::Span {
        match self.unit {
            CalendarUnit::Week => n.weeks(),
            CalendarUnit::Month => n.months(),
        }
    }

    fn anchor_zoned(&self) -> ZonedDateTime {
        // The anchor is a wall-clock time; one that a DST change skips resolves forward.
        // `new` has checked that it converts.
        self.anchor
            .to_zoned_datetime(self.zone.clone())
            .unwrap_or_else(|_| Timestamp::UNIX_EPOCH.to_zoned_datetime(self.zone.clone()))
    }

    /// The period holding `now`: its start and its end (exclusive).
    pub fn period_at(&self, now: Timestamp) -> (Timestamp, Timestamp) {
        let anchor = self.anchor_zoned();
        let now = now.to_zoned_datetime(self.zone.clone());
        let unit = match self.unit {
            CalendarUnit::Week => Unit::Week,
            CalendarUnit::Month => Unit::Month,
        };
        let whole = anchor
            .until((unit, &now))
            .map(|span| match self.unit {
                CalendarUnit::Week => span.get_weeks() as i64,
                CalendarUnit::Month => span.get_months() as i64,
            })
            .unwrap_or(0);
        // `until` truncates towards zero; before the anchor, the period starts one earlier.
        let mut n = whole;
        let start_of = |n: i64| anchor.checked_add(self.step(n)).map(|z| z.timestamp());
        while start_of(n).is_ok_and(|s| s > now.timestamp()) {
            n -= 1;
        }
        let start = start_of(n).unwrap_or(now.timestamp());
        let end = start_of(n + 1).unwrap_or(now.timestamp());
        (start, end)
    }

    /// How far into its period `now` is.
    pub fn elapsed_at(&self, now: Timestamp) -> Duration {
        let (start, _) = self.period_at(now);
        Duration::from_secs_f64((now.as_second() - start.as_second()).max(0) as f64)
    }

    /// The zone's offset from UTC in seconds as a PromQL scalar expression of `time()`,
    /// daylight-saving changes included from 2024 to 2040 (PromQL knows only UTC). It does
    /// not depend on when the rules are generated, so generating them again gives the same
    /// file.
    pub fn offset_expr(&self) -> String {
        let from = Timestamp::from_second(RULES_FROM).unwrap_or(Timestamp::UNIX_EPOCH);
        let mut previous = self.zone.to_offset(from).seconds();
        let mut expr = previous.to_string();
        for transition in self.zone.following(from) {
            let at = transition.timestamp().as_second();
            if at >= RULES_UNTIL {
                break;
            }
            let offset = transition.offset().seconds();
            if offset != previous {
                let _ = write!(expr, " + {} * (time() >= bool {at})", offset - previous);
                previous = offset;
            }
        }
        if expr.contains(' ') {
            format!("({expr})")
        } else {
            expr
        }
    }

    /// The anchor as seconds since the epoch, in shifted (local) time.
    pub fn anchor_local_epoch(&self) -> i64 {
        self.anchor
            .to_zoned_datetime(TimeZone::UTC)
            .map(|z| z.timestamp().as_second())
            .unwrap_or(0)
    }

    /// The nominal length the burn-rate math spreads the budget over.
    pub fn nominal(&self) -> Duration {
        match self.unit {
            CalendarUnit::Week => Duration::from_secs(7 * 86_400),
            CalendarUnit::Month => Duration::from_secs(30 * 86_400),
        }
    }

    /// `calendar month (Europe/Berlin)`.
    pub fn describe(&self) -> String {
        let unit = match self.unit {
            CalendarUnit::Week => "week",
            CalendarUnit::Month => "month",
        };
        match self.zone.iana_name() {
            Some("UTC") | None => format!("calendar {unit}"),
            Some(zone) => format!("calendar {unit} ({zone})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn months_follow_the_calendar_across_a_boundary() {
        let month = Calendar::utc(CalendarUnit::Month);
        let (start, end) = month.period_at(at("2026-01-31T23:59:00Z"));
        assert_eq!(
            (start, end),
            (at("2026-01-01T00:00:00Z"), at("2026-02-01T00:00:00Z"))
        );
        let (start, end) = month.period_at(at("2026-02-01T00:01:00Z"));
        assert_eq!(
            (start, end),
            (at("2026-02-01T00:00:00Z"), at("2026-03-01T00:00:00Z"))
        );
        // February is 28 days, not 30.
        assert_eq!((end.as_second() - start.as_second()) / 86_400, 28);
        assert_eq!(
            month.elapsed_at(at("2026-02-01T00:01:00Z")),
            Duration::from_secs(60)
        );
        // Before the anchor too.
        let (start, _) = month.period_at(at("1999-12-15T00:00:00Z"));
        assert_eq!(start, at("1999-12-01T00:00:00Z"));
    }

    #[test]
    fn months_start_at_local_midnight_in_their_zone() {
        let month = Calendar::new(
            CalendarUnit::Month,
            "2024-01-01 00:00:00",
            "America/New_York",
        )
        .unwrap();
        // 03:00 UTC on March 1st is still February in New York.
        let (start, end) = month.period_at(at("2026-03-01T03:00:00Z"));
        assert_eq!(start, at("2026-02-01T05:00:00Z"));
        assert_eq!(end, at("2026-03-01T05:00:00Z"));
        // The rules' offset: -5h, +1h from the second Sunday of March, -1h from November's
        // first, every year; UTC's is 0.
        let offset = month.offset_expr();
        assert!(
            offset.starts_with(
                "(-18000 + 3600 * (time() >= bool 1710054000) + -3600 * (time() >= bool 1730613600)"
            ),
            "{offset}"
        );
        assert_eq!(offset.matches("time()").count(), 32, "{offset}");
        assert_eq!(Calendar::utc(CalendarUnit::Month).offset_expr(), "0");
        assert_eq!(month.describe(), "calendar month (America/New_York)");
    }

    #[test]
    fn weeks_start_on_the_anchors_weekday() {
        // 2022-01-01 was a Saturday.
        let week = Calendar::new(CalendarUnit::Week, "2022-01-01 12:00:00", "UTC").unwrap();
        let (start, end) = week.period_at(at("2026-12-04T10:00:00Z"));
        assert_eq!(start, at("2026-11-28T12:00:00Z"));
        assert_eq!(end, at("2026-12-05T12:00:00Z"));
    }

    #[test]
    fn bad_calendars_say_what_to_write() {
        let zone =
            Calendar::new(CalendarUnit::Month, "2024-01-01 00:00:00", "Mars/Olympus").unwrap_err();
        assert!(zone.to_string().contains("Europe/Berlin"), "{zone}");
        let start = Calendar::new(CalendarUnit::Month, "2024-01-15 00:00:00", "UTC").unwrap_err();
        assert!(start.to_string().contains("first of the month"), "{start}");
        assert!(Calendar::new(CalendarUnit::Week, "yesterday", "UTC").is_err());
    }
}
