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

impl From<Status> for sloop_events::user::UserStatus {
    fn from(status: Status) -> Self {
        match status {
            Status::Active => Self::Active,
            Status::Suspended => Self::Suspended,
            Status::Deleted => Self::Deleted,
        }
    }
}

/// A user account.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct User {
    /// UUIDv7, assigned by the service (or by the caller of `PUT /users/{id}`).
    #[schema(format = "uuid")]
    pub id: String,
    /// Lower-cased; unique across all users, deleted ones included.
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    pub status: Status,
    /// RFC 3339, UTC.
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// Increases by one on every change.
    #[schema(minimum = 1)]
    pub version: i64,
}

/// Body of `POST /users` and `PUT /users/{id}`. Emails are trimmed and lower-cased; names
/// trimmed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    #[schema(format = Email, min_length = 3, max_length = 254)]
    pub email: String,
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub name: String,
}

/// Body of `PATCH /users/{id}`: only the fields present change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct UserPatch {
    #[schema(nullable = false, format = Email, min_length = 3, max_length = 254)]
    #[serde(default, deserialize_with = "present")]
    pub email: Option<String>,
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    #[serde(default, deserialize_with = "present")]
    pub name: Option<String>,
}

/// A field that may be left out but, when sent, must be a string: `null` is refused rather
/// than read as "no change", as the OpenAPI document says.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    String::deserialize(deserializer).map(Some)
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
    #[schema(format = "uuid")]
    pub next_cursor: Option<String>,
}

/// Query of `GET /users`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page: the id of its last user.
    #[param(format = "uuid")]
    pub cursor: Option<String>,
    /// Only users in this status.
    pub status: Option<Status>,
}

pub const DEFAULT_PAGE: u32 = 20;
pub const MAX_PAGE: u32 = 100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleted_is_final() {
        assert!(Status::Active.can_become(Status::Suspended));
        assert!(Status::Suspended.can_become(Status::Active));
        assert!(Status::Suspended.can_become(Status::Deleted));
        assert!(Status::Deleted.can_become(Status::Deleted));
        assert!(!Status::Deleted.can_become(Status::Active));
    }
}
