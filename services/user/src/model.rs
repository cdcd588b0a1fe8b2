//! The user resource as clients see it, and the rules its inputs must follow.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Where an account is in its life. `deleted` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Suspended,
    Deleted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Deleted => "deleted",
        }
    }

    /// Reads the stored text; the CHECK constraint keeps anything else out of the table.
    pub fn from_db(value: &str) -> Option<Self> {
        match value {
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            "deleted" => Some(Self::Deleted),
            _ => None,
        }
    }

    /// Whether an account may move from `self` to `to`. Staying put is allowed (idempotent).
    pub fn can_become(self, to: Status) -> bool {
        self == to || self != Status::Deleted
    }
}

/// A user account.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct User {
    /// UUIDv7, assigned by the service.
    pub id: String,
    /// Lower-cased; unique across all users, deleted ones included.
    pub email: String,
    pub name: String,
    pub status: Status,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub updated_at: String,
    /// Increases by one on every change.
    pub version: i64,
}

/// Body of `POST /users`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub email: String,
    pub name: String,
}

/// Body of `PATCH /users/{id}`: only the fields present change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub email: Option<String>,
    pub name: Option<String>,
}

/// Body of `PUT /users/{id}/status`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusChange {
    pub status: Status,
}

/// One page of users, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserPage {
    pub items: Vec<User>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Query of `GET /users`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
    /// Only users in this status.
    pub status: Option<Status>,
}

pub const DEFAULT_PAGE: u32 = 20;
pub const MAX_PAGE: u32 = 100;
const MAX_EMAIL: usize = 254;
const MAX_NAME: usize = 100;

/// Trims and lower-cases an email, or says what is wrong with it. Deliberately simple: the
/// only proof an address works is mail reaching it.
pub fn normalize_email(raw: &str) -> Result<String, String> {
    let email = raw.trim().to_lowercase();
    if email.is_empty() {
        return Err("email is required".into());
    }
    if email.len() > MAX_EMAIL {
        return Err(format!("email is longer than {MAX_EMAIL} characters"));
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
pub fn normalize_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err("name must not be empty".into());
    }
    if name.chars().count() > MAX_NAME {
        return Err(format!("name is longer than {MAX_NAME} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("name must not contain control characters".into());
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalized_or_explained() {
        assert_eq!(
            normalize_email("  Ada@Example.COM ").unwrap(),
            "ada@example.com"
        );
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
            assert!(normalize_email(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(normalize_email(&format!("{}@x.io", "a".repeat(300))).is_err());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(normalize_name("  Ada Lovelace ").unwrap(), "Ada Lovelace");
        assert!(normalize_name("   ").is_err());
        assert!(normalize_name(&"x".repeat(101)).is_err());
        assert!(normalize_name("a\u{0}b").is_err());
    }

    #[test]
    fn deleted_is_final() {
        assert!(Status::Active.can_become(Status::Suspended));
        assert!(Status::Suspended.can_become(Status::Active));
        assert!(Status::Suspended.can_become(Status::Deleted));
        assert!(Status::Deleted.can_become(Status::Deleted));
        assert!(!Status::Deleted.can_become(Status::Active));
    }
}
