//! What the chat API and its WebSocket send and take, as JSON; `/openapi.json` describes
//! the HTTP shapes, `Frame` the WebSocket ones.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Page size when `limit` is not given, and the largest page.
pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 200;
/// Longest room name, in characters.
pub const MAX_ROOM_NAME: usize = 100;
/// Longest message, in characters.
pub const MAX_TEXT: usize = 4000;

/// A room to create.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRoom {
    /// 1 to 100 characters on one line.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub name: String,
}

/// A room. Any signed-in user may see it and join it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Room {
    #[schema(format = "uuid")]
    pub id: String,
    pub name: String,
    /// The user who created it (its first member).
    pub created_by: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(minimum = 0)]
    pub member_count: i64,
}

/// A page of rooms, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RoomPage {
    pub items: Vec<Room>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Query of `GET /rooms`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RoomParams {
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<String>, format = "uuid")]
    pub cursor: Option<String>,
    /// 1 to 200; 50 when absent.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// `true`: only the rooms the caller is a member of.
    pub mine: Option<bool>,
}

/// A member of a room.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Member {
    pub user_id: String,
    #[schema(format = DateTime)]
    pub joined_at: String,
    /// Whether the member has a WebSocket open now, on any instance.
    pub online: bool,
}

/// A room's members, in the order they joined.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MemberList {
    pub items: Vec<Member>,
}

/// Who of a room's members is connected now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Presence {
    pub room_id: String,
    /// User ids of the members with a WebSocket open, on any instance, sorted.
    pub online: Vec<String>,
}

/// A message to send.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    /// 1 to 4000 characters. `@<user id>` mentions that member of the room (see `mentions`).
    /// Tabs and line breaks are kept; other control characters are refused.
    #[schema(
        min_length = 1,
        max_length = 4000,
        pattern = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"
    )]
    pub text: String,
}

/// A message in a room.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Message {
    #[schema(format = "uuid")]
    pub id: String,
    #[schema(format = "uuid")]
    pub room_id: String,
    pub sender_id: String,
    pub text: String,
    /// Members the text mentions: each `@<user id>` in the text naming a member of the room
    /// other than the sender, once each, in order of first appearance. Mentioned members
    /// get a notification.
    pub mentions: Vec<String>,
    #[schema(format = DateTime)]
    pub sent_at: String,
}

/// A page of messages, in the order asked for.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessagePage {
    pub items: Vec<Message>,
    /// Pass as `cursor` (with the same `order`) for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Query of `GET /rooms/{id}/messages`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessageParams {
    /// `newest` (the default): newest first, the cursor leads to older messages.
    /// `oldest`: oldest first, the cursor leads to newer ones; with the id of the last
    /// message a client saw as `cursor`, it reads what it missed.
    #[param(pattern = "^(newest|oldest)$")]
    pub order: Option<String>,
    /// A message id: `next_cursor` of the previous page, or the last message seen.
    #[param(value_type = Option<String>, format = "uuid")]
    pub cursor: Option<String>,
    /// 1 to 200; 50 when absent.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
}

/// Which way a message page runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    NewestFirst,
    OldestFirst,
}

/// A frame the server sends on the WebSocket, as JSON text with a `type`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Frame {
    /// First frame: who the socket belongs to, the rooms it receives, and the chat instance
    /// holding it (behind a balancing gateway, which one the socket landed on).
    Welcome {
        user_id: String,
        rooms: Vec<String>,
        instance: String,
    },
    /// A message posted to one of the user's rooms (the sender's own included).
    Message(Message),
    /// A member of a shared room connected (`online`) or disconnected.
    Presence {
        room_id: String,
        user_id: String,
        online: bool,
    },
}
