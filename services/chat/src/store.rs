//! SQL for the chat service's own tables: rooms, members, messages and open connections.
//! One query text serves SQLite and PostgreSQL.

use sloop_kit::{Database, Tx};
use sqlx::FromRow;

use crate::error::ChatError;
use crate::model::{Member, Message, Order, Room};

/// Columns of a room with its member count.
const ROOM_COLUMNS: &str = "SELECT r.id, r.name, r.created_by, r.created_at, \
     (SELECT COUNT(*) FROM chat_members m WHERE m.room_id = r.id) AS member_count \
     FROM chat_rooms r";

#[derive(Debug, Clone, FromRow)]
struct RoomRow {
    id: String,
    name: String,
    created_by: String,
    created_at: String,
    member_count: i64,
}

impl From<RoomRow> for Room {
    fn from(row: RoomRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            created_by: row.created_by,
            created_at: row.created_at,
            member_count: row.member_count,
        }
    }
}

/// Creates a room with its creator as the first member.
pub async fn create_room(
    db: &Database,
    id: &str,
    name: &str,
    creator: &str,
    now: &str,
) -> Result<(), ChatError> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO chat_rooms (id, name, created_by, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(name)
    .bind(creator)
    .bind(now)
    .execute(tx.executor())
    .await?;
    add_member(&mut tx, id, creator, now).await?;
    Ok(tx.commit().await?)
}

/// Room `id`, or [`ChatError::RoomNotFound`].
pub async fn room(db: &Database, id: &str) -> Result<Room, ChatError> {
    sqlx::query_as::<_, RoomRow>(sqlx::AssertSqlSafe(format!(
        "{ROOM_COLUMNS} WHERE r.id = $1"
    )))
    .bind(id)
    .fetch_optional(db.executor())
    .await?
    .map(Room::from)
    .ok_or_else(|| ChatError::RoomNotFound(id.to_owned()))
}

/// Rooms newest first, older than `before` when given; only `member`'s when given.
pub async fn list_rooms(
    db: &Database,
    member: Option<&str>,
    before: Option<&str>,
    limit: u32,
) -> Result<Vec<Room>, ChatError> {
    let sql = format!(
        "{ROOM_COLUMNS} WHERE (CAST($1 AS TEXT) IS NULL OR r.id < $1) \
         AND (CAST($2 AS TEXT) IS NULL OR EXISTS \
              (SELECT 1 FROM chat_members m WHERE m.room_id = r.id AND m.user_id = $2)) \
         ORDER BY r.id DESC LIMIT $3"
    );
    let rows = sqlx::query_as::<_, RoomRow>(sqlx::AssertSqlSafe(sql))
        .bind(before)
        .bind(member)
        .bind(i64::from(limit))
        .fetch_all(db.executor())
        .await?;
    Ok(rows.into_iter().map(Room::from).collect())
}

/// Adds `user` to `room`; false when they were a member already.
pub async fn add_member(
    tx: &mut Tx,
    room: &str,
    user: &str,
    now: &str,
) -> Result<bool, sqlx::Error> {
    let added = sqlx::query(
        "INSERT INTO chat_members (room_id, user_id, joined_at) VALUES ($1, $2, $3) \
         ON CONFLICT (room_id, user_id) DO NOTHING",
    )
    .bind(room)
    .bind(user)
    .bind(now)
    .execute(tx.executor())
    .await?;
    Ok(added.rows_affected() == 1)
}

/// Joins `user` to `room`; false when they were a member already.
pub async fn join(db: &Database, room: &str, user: &str, now: &str) -> Result<bool, ChatError> {
    let mut tx = db.begin().await?;
    let added = add_member(&mut tx, room, user, now).await?;
    tx.commit().await?;
    Ok(added)
}

/// Removes `user` from `room`; false when they were not a member.
pub async fn leave(db: &Database, room: &str, user: &str) -> Result<bool, ChatError> {
    let removed = sqlx::query("DELETE FROM chat_members WHERE room_id = $1 AND user_id = $2")
        .bind(room)
        .bind(user)
        .execute(db.executor())
        .await?;
    Ok(removed.rows_affected() == 1)
}

pub async fn is_member(db: &Database, room: &str, user: &str) -> Result<bool, ChatError> {
    let found: Option<(String,)> =
        sqlx::query_as("SELECT user_id FROM chat_members WHERE room_id = $1 AND user_id = $2")
            .bind(room)
            .bind(user)
            .fetch_optional(db.executor())
            .await?;
    Ok(found.is_some())
}

/// The members of `room` in the order they joined, each marked online when a connection of
/// theirs was seen since `live_since_ms`.
pub async fn members(
    db: &Database,
    room: &str,
    live_since_ms: i64,
) -> Result<Vec<Member>, ChatError> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT m.user_id, m.joined_at, \
         (SELECT COUNT(*) FROM chat_connections c WHERE c.user_id = m.user_id AND c.seen_at_ms >= $2) \
         FROM chat_members m WHERE m.room_id = $1 ORDER BY m.joined_at, m.user_id",
    )
    .bind(room)
    .bind(live_since_ms)
    .fetch_all(db.executor())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(user_id, joined_at, live)| Member {
            user_id,
            joined_at,
            online: live > 0,
        })
        .collect())
}

/// User ids of `room`'s members, for fan-out, read in the consumer's transaction.
pub async fn member_ids(tx: &mut Tx, room: &str) -> Result<Vec<String>, sqlx::Error> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT user_id FROM chat_members WHERE room_id = $1")
            .bind(room)
            .fetch_all(tx.executor())
            .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// User ids of `room`'s members, outside a transaction.
pub async fn room_members(db: &Database, room: &str) -> Result<Vec<String>, ChatError> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT user_id FROM chat_members WHERE room_id = $1")
            .bind(room)
            .fetch_all(db.executor())
            .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// Members of any room `user` is in (themselves included), for presence fan-out.
pub async fn room_mates(tx: &mut Tx, user: &str) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT o.room_id, o.user_id FROM chat_members m \
         JOIN chat_members o ON o.room_id = m.room_id WHERE m.user_id = $1",
    )
    .bind(user)
    .fetch_all(tx.executor())
    .await
}

/// Ids of the rooms `user` is a member of.
pub async fn rooms_of(db: &Database, user: &str) -> Result<Vec<String>, ChatError> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT room_id FROM chat_members WHERE user_id = $1 ORDER BY room_id")
            .bind(user)
            .fetch_all(db.executor())
            .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// Stores `message` inside `tx` (the caller adds its event to the outbox in the same one).
pub async fn insert_message(tx: &mut Tx, message: &Message) -> Result<(), ChatError> {
    let mentions = serde_json::to_string(&message.mentions)
        .map_err(|e| ChatError::Data(format!("mentions do not serialize: {e}")))?;
    sqlx::query(
        "INSERT INTO chat_messages (id, room_id, sender_id, text, mentions, sent_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&message.id)
    .bind(&message.room_id)
    .bind(&message.sender_id)
    .bind(&message.text)
    .bind(mentions)
    .bind(&message.sent_at)
    .execute(tx.executor())
    .await?;
    Ok(())
}

#[derive(Debug, Clone, FromRow)]
struct MessageRow {
    id: String,
    room_id: String,
    sender_id: String,
    text: String,
    mentions: String,
    sent_at: String,
}

impl TryFrom<MessageRow> for Message {
    type Error = ChatError;

    fn try_from(row: MessageRow) -> Result<Self, ChatError> {
        let mentions = serde_json::from_str(&row.mentions)
            .map_err(|e| ChatError::Data(format!("message {} has bad mentions: {e}", row.id)))?;
        Ok(Self {
            id: row.id,
            room_id: row.room_id,
            sender_id: row.sender_id,
            text: row.text,
            mentions,
            sent_at: row.sent_at,
        })
    }
}

/// A page of `room`'s messages in `order`, after `cursor` in that order.
pub async fn messages(
    db: &Database,
    room: &str,
    order: Order,
    cursor: Option<&str>,
    limit: u32,
) -> Result<Vec<Message>, ChatError> {
    let (compare, direction) = match order {
        Order::NewestFirst => ("<", "DESC"),
        Order::OldestFirst => (">", "ASC"),
    };
    let sql = format!(
        "SELECT id, room_id, sender_id, text, mentions, sent_at FROM chat_messages \
         WHERE room_id = $1 AND (CAST($2 AS TEXT) IS NULL OR id {compare} $2) \
         ORDER BY id {direction} LIMIT $3"
    );
    let rows = sqlx::query_as::<_, MessageRow>(sqlx::AssertSqlSafe(sql))
        .bind(room)
        .bind(cursor)
        .bind(i64::from(limit))
        .fetch_all(db.executor())
        .await?;
    rows.into_iter().map(Message::try_from).collect()
}

/// Records an open connection inside `tx`.
pub async fn connect(
    tx: &mut Tx,
    id: &str,
    instance: &str,
    user: &str,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO chat_connections (id, instance_id, user_id, connected_at_ms, seen_at_ms) \
         VALUES ($1, $2, $3, $4, $4)",
    )
    .bind(id)
    .bind(instance)
    .bind(user)
    .bind(now_ms)
    .execute(tx.executor())
    .await?;
    Ok(())
}

/// Forgets a closed connection inside `tx`.
pub async fn disconnect(tx: &mut Tx, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM chat_connections WHERE id = $1")
        .bind(id)
        .execute(tx.executor())
        .await?;
    Ok(())
}

/// Live connections of `user` (seen since `live_since_ms`), read inside `tx`.
pub async fn live_connections(
    tx: &mut Tx,
    user: &str,
    live_since_ms: i64,
) -> Result<i64, sqlx::Error> {
    let (count,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM chat_connections WHERE user_id = $1 AND seen_at_ms >= $2",
    )
    .bind(user)
    .bind(live_since_ms)
    .fetch_one(tx.executor())
    .await?;
    Ok(count)
}

/// Marks every connection of `instance` as seen now, and deletes connections of any
/// instance not seen since `stale_before_ms` (their instance died without closing them).
pub async fn refresh_connections(
    db: &Database,
    instance: &str,
    now_ms: i64,
    stale_before_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE chat_connections SET seen_at_ms = $1 WHERE instance_id = $2")
        .bind(now_ms)
        .bind(instance)
        .execute(db.executor())
        .await?;
    sqlx::query("DELETE FROM chat_connections WHERE seen_at_ms < $1")
        .bind(stale_before_ms)
        .execute(db.executor())
        .await?;
    Ok(())
}

/// User ids of `room`'s members with a live connection, sorted.
pub async fn online(
    db: &Database,
    room: &str,
    live_since_ms: i64,
) -> Result<Vec<String>, ChatError> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT DISTINCT m.user_id FROM chat_members m JOIN chat_connections c \
         ON c.user_id = m.user_id WHERE m.room_id = $1 AND c.seen_at_ms >= $2 ORDER BY m.user_id",
    )
    .bind(room)
    .bind(live_since_ms)
    .fetch_all(db.executor())
    .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}
