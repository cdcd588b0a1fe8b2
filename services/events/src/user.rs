//! Events of the user service, on topic `sloop.user`, each about one user (subject = the
//! user's id).

use serde::{Deserialize, Serialize};
use sloop_kit::EventType;

pub const TOPIC: &str = "sloop.user";

/// `UserCreated`: an account was created.
pub const CREATED: EventType = EventType {
    name: "sloop.user.created",
    topic: TOPIC,
    version: 1,
};

/// `UserUpdated`: an account's email or name changed.
pub const UPDATED: EventType = EventType {
    name: "sloop.user.updated",
    topic: TOPIC,
    version: 1,
};

/// `UserStatusChanged`: an account was suspended, reactivated or deleted.
pub const STATUS_CHANGED: EventType = EventType {
    name: "sloop.user.status_changed",
    topic: TOPIC,
    version: 1,
};

pub const ALL: [EventType; 3] = [CREATED, UPDATED, STATUS_CHANGED];

/// Where an account is in its life; `deleted` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    Active,
    Suspended,
    Deleted,
}

/// Data of [`CREATED`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserCreated {
    pub id: String,
    pub email: String,
    pub name: String,
    pub status: UserStatus,
    pub version: i64,
}

/// Data of [`UPDATED`]: the account as it is now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserUpdated {
    pub id: String,
    pub email: String,
    pub name: String,
    pub version: i64,
}

/// Data of [`STATUS_CHANGED`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserStatusChanged {
    pub id: String,
    pub status: UserStatus,
    pub previous_status: UserStatus,
    pub version: i64,
}
