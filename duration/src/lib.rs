//! Durations as people write them: `500ms`, `30s`, `5m`, `1h30m`, `30d`, `2w`. Every sloop
//! tool (service flags, SLO specs, load scenarios, chaos rules) reads them with this one
//! parser, so a duration that works in one place works in all of them.
//!
//! The grammar is humantime's: numbers with units (`ns`, `us`, `ms`, `s`, `m`, `h`, `d`,
//! `w`, and long forms such as `min` or `days`), summed when several follow each other.

use std::time::Duration;

/// A duration that could not be read; its message says how to write one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a duration ({reason}); write it like 500ms, 30s, 5m, 1h30m or 30d")]
pub struct DurationError {
    text: String,
    reason: String,
}

/// Reads a duration; zero (`0s`) is allowed.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    humantime::parse_duration(text.trim()).map_err(|err| DurationError {
        text: text.to_owned(),
        reason: err.to_string(),
    })
}

/// Reads a duration that must be longer than zero: a timeout, an interval, a window.
pub fn parse_positive(text: &str) -> Result<Duration, DurationError> {
    let duration = parse(text)?;
    if duration.is_zero() {
        return Err(DurationError {
            text: text.to_owned(),
            reason: "it is zero and must be positive".into(),
        });
    }
    Ok(duration)
}

/// Writes a duration back in the same grammar: `1m 30s`, `250ms`.
pub fn format(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// `#[serde(with = "sloop_duration::serde")]` for `Duration` fields written as text.
pub mod serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&super::format(*value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_unit_sloop_writes() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse(" 5m "), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse("30days"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn errors_say_how_to_write_one() {
        let err = parse("soon").unwrap_err().to_string();
        assert!(err.contains("`soon`") && err.contains("500ms"), "{err}");
        let err = parse("10").unwrap_err().to_string();
        assert!(err.contains("`10`"), "{err}");
        let err = parse_positive("0m").unwrap_err().to_string();
        assert!(err.contains("zero"), "{err}");
    }

    #[test]
    fn formats_back_into_the_grammar() {
        for text in ["250ms", "90s", "5m", "1h30m", "3days"] {
            let d = parse(text).unwrap();
            assert_eq!(parse(&format(d)), Ok(d), "{text}");
        }
    }
}
