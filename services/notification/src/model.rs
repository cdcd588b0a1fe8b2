//! Notifications and their deliveries as clients see them, and the query of the list.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Sent once, when the account is created.
    Welcome,
    /// An order was paid.
    OrderConfirmed,
    /// An order was cancelled; the body says why.
    OrderCancelled,
    /// Someone mentioned the user (`@<user id>`) in a chat room.
    Mention,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Welcome => "welcome",
            Self::OrderConfirmed => "order_confirmed",
            Self::OrderCancelled => "order_cancelled",
            Self::Mention => "mention",
        }
    }

    /// Reads the stored text; the CHECK constraint keeps anything else out of the table.
    pub fn from_db(value: &str) -> Option<Self> {
        match value {
            "welcome" => Some(Self::Welcome),
            "order_confirmed" => Some(Self::OrderConfirmed),
            "order_cancelled" => Some(Self::OrderCancelled),
            "mention" => Some(Self::Mention),
            _ => None,
        }
    }

    /// The channels a notification of this kind goes out through: the more it matters to
    /// the user, the more channels. Every notification is at least an email.
    pub fn channels(self) -> &'static [Channel] {
        match self {
            Self::Welcome => &[Channel::Email],
            Self::OrderConfirmed => &[Channel::Email, Channel::Push],
            Self::OrderCancelled => &[Channel::Email, Channel::Push, Channel::Sms],
            // A mention wants an answer soon: push, with an email to find it by later.
            Self::Mention => &[Channel::Email, Channel::Push],
        }
    }
}

/// A way of reaching the user, each with its own simulated sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Push,
    Sms,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Email, Channel::Push, Channel::Sms];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Push => "push",
            Self::Sms => "sms",
        }
    }

    pub fn from_db(value: &str) -> Option<Self> {
        match value {
            "email" => Some(Self::Email),
            "push" => Some(Self::Push),
            "sms" => Some(Self::Sms),
            _ => None,
        }
    }
}

/// Where a delivery is: `pending` until sent, or until it failed its last attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Sent,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }

    pub fn from_db(value: &str) -> Option<Self> {
        match value {
            "pending" => Some(Self::Pending),
            "sent" => Some(Self::Sent),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// A notification for the signed-in user.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Notification {
    /// UUIDv7, assigned when the notification was made.
    #[schema(format = "uuid")]
    pub id: String,
    pub kind: Kind,
    pub title: String,
    pub body: String,
    /// The order it is about, for order notifications.
    pub order_id: Option<String>,
    /// Whether the user has marked it read.
    pub read: bool,
    /// RFC 3339, UTC.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it was first marked read; absent while unread.
    #[schema(format = DateTime)]
    pub read_at: Option<String>,
}

/// One channel's delivery of a notification.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Delivery {
    pub channel: Channel,
    pub status: DeliveryStatus,
    /// Sends attempted so far (including one in progress).
    #[schema(minimum = 0)]
    pub attempts: i64,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    #[schema(format = DateTime)]
    pub sent_at: Option<String>,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// A notification with how it went out on each channel.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct NotificationDetail {
    #[serde(flatten)]
    pub notification: Notification,
    pub deliveries: Vec<Delivery>,
}

/// One page of notifications, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NotificationPage {
    pub items: Vec<Notification>,
    /// Pass as `cursor` to get the next (older) page; absent on the last page.
    #[schema(format = "uuid")]
    pub next_cursor: Option<String>,
}

/// How many notifications the signed-in user has not read.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UnreadCount {
    #[schema(minimum = 0)]
    pub unread: i64,
}

/// Result of `POST /notifications/read-all`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MarkedRead {
    /// Notifications that were unread and are read now (0 when all already were).
    #[schema(minimum = 0)]
    pub marked_read: u64,
}

/// Query of `GET /notifications`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page: the id of its last (oldest) notification.
    #[param(format = "uuid")]
    pub cursor: Option<String>,
    /// `true`: only notifications not yet read.
    pub unread: Option<bool>,
}

pub const DEFAULT_PAGE: u32 = 20;
pub const MAX_PAGE: u32 = 100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_round_trip() {
        for kind in [
            Kind::Welcome,
            Kind::OrderConfirmed,
            Kind::OrderCancelled,
            Kind::Mention,
        ] {
            assert_eq!(Kind::from_db(kind.as_str()), Some(kind));
            assert_eq!(kind.channels()[0], Channel::Email);
        }
        for channel in Channel::ALL {
            assert_eq!(Channel::from_db(channel.as_str()), Some(channel));
        }
        for status in [
            DeliveryStatus::Pending,
            DeliveryStatus::Sent,
            DeliveryStatus::Failed,
        ] {
            assert_eq!(DeliveryStatus::from_db(status.as_str()), Some(status));
        }
    }
}
