//! Wall-clock time in the two forms the services store: fixed-width RFC 3339 text (sorts
//! chronologically as text, on SQLite and PostgreSQL alike) and Unix milliseconds.

const RFC3339_MICROS: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
);

/// Now, as `2026-11-22T10:07:30.123456Z`.
pub fn now_rfc3339() -> String {
    format_rfc3339(time::OffsetDateTime::now_utc())
}

/// `at` in UTC, as `2026-11-22T10:07:30.123456Z`.
pub fn format_rfc3339(at: time::OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(RFC3339_MICROS)
        .expect("UTC timestamps always format")
}

/// `at` in UTC, or `None` when UTC would leave the years 0000 to 9999 (a time of
/// 9999-12-31 at -01:00 is in year 10000 in UTC).
pub fn utc_rfc3339(at: time::OffsetDateTime) -> Option<String> {
    let utc = at.checked_to_offset(time::UtcOffset::UTC)?;
    utc.format(RFC3339_MICROS).ok()
}

/// Parses any RFC 3339 time.
pub fn parse_rfc3339(text: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_fixed_width_and_round_trip() {
        let now = now_rfc3339();
        assert_eq!(now.len(), 27, "{now}");
        assert!(now.ends_with('Z'));
        let parsed = parse_rfc3339(&now).unwrap();
        assert_eq!(format_rfc3339(parsed), now);
        assert!(now_millis() > 1_700_000_000_000);
    }
}
