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

#[cfg(test)]
mod tests {
    use super::*;

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
