//! Events of the chat service, on topic `sloop.chat`. A message's subject is its room's id,
//! so the messages of one room keep their order on the bus; a presence change's subject is
//! its user's id.
//!
//! Every chat instance consumes `ChatMessageSent` in a consumer group of its own, which is
//! how a message reaches members connected to any instance; notification consumes it too,
//! for the members a message mentions.

use serde::{Deserialize, Serialize};
use sloop_kit::EventType;

pub const TOPIC: &str = "sloop.chat";

/// `ChatMessageSent`: a member posted a message to a room.
pub const MESSAGE_SENT: EventType = EventType {
    name: "sloop.chat.message_sent",
    topic: TOPIC,
    version: 1,
};

/// `ChatPresenceChanged`: a user's first WebSocket opened (`online`), or their last one
/// closed, on any instance. Every chat instance tells the user's room mates connected to it.
pub const PRESENCE_CHANGED: EventType = EventType {
    name: "sloop.chat.presence_changed",
    topic: TOPIC,
    version: 1,
};

pub const ALL: [EventType; 2] = [MESSAGE_SENT, PRESENCE_CHANGED];

/// Data of [`MESSAGE_SENT`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessageSent {
    /// UUIDv7; ordering by id is ordering by sending.
    pub message_id: String,
    pub room_id: String,
    /// The sender's user id.
    pub sender_id: String,
    pub text: String,
    /// Members of the room the text mentions (`@<user id>`), sender excluded, each once,
    /// in the order they first appear.
    pub mentions: Vec<String>,
    /// RFC 3339 UTC, when the message was stored.
    pub sent_at: String,
}

/// Data of [`PRESENCE_CHANGED`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatPresenceChanged {
    pub user_id: String,
    pub online: bool,
    /// RFC 3339 UTC.
    pub at: String,
}
