//! Input rules more than one service applies the same way: email addresses and display
//! names. Each function normalises its input or says, in words a client can act on, what
//! is wrong with it.

/// Longest email accepted, as sent (RFC 5321's path limit).
pub const MAX_EMAIL: usize = 254;
/// Longest display name accepted, as sent.
pub const MAX_NAME: usize = 100;

/// Trims and lower-cases an email, or says what is wrong with it. Deliberately simple: the
/// only proof an address works is mail reaching it. Lengths count the input as sent, as the
/// OpenAPI document states them.
pub fn email(raw: &str) -> Result<String, String> {
    if raw.chars().count() > MAX_EMAIL {
        return Err(format!("email is longer than {MAX_EMAIL} characters"));
    }
    let email = raw.trim().to_lowercase();
    if email.is_empty() {
        return Err("email is required".into());
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("email must not contain spaces or control characters".into());
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err(format!("`{email}` is not an email address: it has no @"));
    };
    let domain_ok = domain.contains('.')
        && !domain.contains('@')
        && domain.split('.').all(|label| !label.is_empty());
    if local.is_empty() || local.len() > 64 || !domain_ok {
        return Err(format!(
            "`{email}` is not an email address; expected the form name@example.com"
        ));
    }
    Ok(email)
}

/// Trims a display name, or says what is wrong with it.
pub fn display_name(raw: &str) -> Result<String, String> {
    if raw.chars().count() > MAX_NAME {
        return Err(format!("name is longer than {MAX_NAME} characters"));
    }
    let name = raw.trim();
    if name.is_empty() {
        return Err("name must not be empty".into());
    }
    if name.chars().any(char::is_control) {
        return Err("name must not contain control characters".into());
    }
    Ok(name.to_owned())
}

/// Trims free text and checks its length in characters is within `min..=max`; control
/// characters other than tab and line breaks are refused (PostgreSQL rejects NUL in text,
/// and none belongs in a name or a label). The error names `field`.
pub fn text(field: &str, raw: &str, min: usize, max: usize) -> Result<String, String> {
    let value = raw.trim();
    let chars = value.chars().count();
    if chars < min || chars > max {
        return Err(format!(
            "{field} must be {min} to {max} characters, got {chars}"
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(format!("{field} must not contain control characters"));
    }
    Ok(value.to_owned())
}

/// Checks a one-line name (a product's, a category's, a reason): trimmed, `min..=max`
/// characters, no control characters at all. The error names `field`.
pub fn name(field: &str, raw: &str, min: usize, max: usize) -> Result<String, String> {
    if raw.chars().any(char::is_control) {
        return Err(format!("{field} must not contain control characters"));
    }
    text(field, raw, min, max)
}

/// Deserializes a whole number written as an integer or as a float without a fraction
/// (`2.0`): JSON Schema's `integer` admits both, so clients (and fuzzers) may send either.
pub fn whole_i64<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    use serde::Deserialize;
    use serde::de::Error;
    let number = serde_json::Number::deserialize(deserializer)?;
    if let Some(whole) = number.as_i64() {
        return Ok(whole);
    }
    match number.as_f64() {
        // 2^63 is the first float past i64::MAX.
        Some(f)
            if f.fract() == 0.0
                && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f) =>
        {
            Ok(f as i64)
        }
        _ => Err(D::Error::custom(format!(
            "{number} is not a whole number within 64 bits"
        ))),
    }
}

/// [`whole_i64`] for a `u32`.
pub fn whole_u32<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    use serde::de::Error;
    let whole = whole_i64(deserializer)?;
    u32::try_from(whole)
        .map_err(|_| D::Error::custom(format!("{whole} is not between 0 and {}", u32::MAX)))
}

/// What an identifier another system chose may contain (an order id, an event subject):
/// the pattern OpenAPI documents declare for such fields.
pub const ID_PATTERN: &str = "^[A-Za-z0-9._:@/-]+$";

/// Checks an identifier: 1 to `max` characters of [`ID_PATTERN`]. The error names `field`.
pub fn id<'a>(field: &str, raw: &'a str, max: usize) -> Result<&'a str, String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._:@/-".contains(c);
    if raw.is_empty() || raw.len() > max || !raw.chars().all(allowed) {
        return Err(format!(
            "{field} must be 1 to {max} letters, digits or . _ : @ / -, got {raw:?}"
        ));
    }
    Ok(raw)
}

/// A page size from a `limit` query parameter: `default` when absent, else a whole number
/// from 1 to `max`. Taken as text so a bad one gets this message, not serde's.
pub fn page_limit(raw: Option<&str>, default: u32, max: u32) -> Result<u32, String> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    raw.parse()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| format!("limit must be a whole number from 1 to {max}, got `{raw}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_limits_default_and_stay_in_range() {
        assert_eq!(page_limit(None, 50, 100), Ok(50));
        assert_eq!(page_limit(Some("100"), 50, 100), Ok(100));
        for bad in ["0", "101", "ten", "-1", ""] {
            let err = page_limit(Some(bad), 50, 100).unwrap_err();
            assert!(err.contains("from 1 to 100"), "{err}");
        }
    }

    #[test]
    fn emails_are_normalized_or_explained() {
        assert_eq!(email("  Ada@Example.COM ").unwrap(), "ada@example.com");
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@x.io",
            "a@@x.io",
            "a@x..io",
        ] {
            assert!(email(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(email(&format!("{}@x.io", "a".repeat(300))).is_err());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(display_name("  Ada Lovelace ").unwrap(), "Ada Lovelace");
        assert!(display_name("   ").is_err());
        assert!(display_name(&"x".repeat(101)).is_err());
        assert!(display_name("a\u{0}b").is_err());
    }

    #[test]
    fn whole_numbers_may_be_written_as_floats() {
        #[derive(serde::Deserialize)]
        struct Line {
            #[serde(deserialize_with = "whole_u32")]
            quantity: u32,
            #[serde(deserialize_with = "whole_i64")]
            amount: i64,
        }
        let line: Line = serde_json::from_str(r#"{"quantity": 3.0, "amount": -7}"#).unwrap();
        assert_eq!((line.quantity, line.amount), (3, -7));
        for bad in [
            r#"{"quantity": 3.5, "amount": 1}"#,
            r#"{"quantity": -1, "amount": 1}"#,
            r#"{"quantity": 1, "amount": 1e300}"#,
            r#"{"quantity": 1, "amount": "1"}"#,
        ] {
            assert!(serde_json::from_str::<Line>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_are_plain_and_bounded() {
        assert_eq!(id("order_id", "order-1", 10).unwrap(), "order-1");
        assert!(id("order_id", "", 10).is_err());
        assert!(id("order_id", "a b", 10).is_err());
        assert!(id("order_id", "x\u{91}", 10).is_err());
        assert!(
            id("order_id", &"x".repeat(11), 10)
                .unwrap_err()
                .contains("1 to 10")
        );
    }

    #[test]
    fn text_is_trimmed_bounded_and_free_of_control_characters() {
        assert_eq!(text("name", " Kettle ", 1, 10).unwrap(), "Kettle");
        assert!(
            text("name", "", 1, 10)
                .unwrap_err()
                .contains("name must be 1 to 10")
        );
        assert!(text("q", "a\u{0}b", 0, 10).unwrap_err().contains("control"));
        assert_eq!(
            text("description", "two\nlines", 0, 20).unwrap(),
            "two\nlines"
        );
    }
}
