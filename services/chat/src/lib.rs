//! The chat service: rooms any signed-in user may create and join, messages posted over
//! HTTP and read back by cursor, and real-time delivery over one WebSocket per client
//! connection (`GET /socket`), which receives every room the user is a member of, with
//! presence (who of a room is connected) beside it.
//!
//! Several instances may share one database: each consumes the chat topic in a consumer
//! group of its own and pushes events to the sockets it holds (`events.rs`), so a member
//! connected to any instance gets every message. A socket that stops reading is closed
//! rather than allowed to slow its rooms (`hub.rs`); one that stops answering pings is
//! closed after two heartbeats (`socket.rs`). Mentions (`@<user id>` of a member) travel
//! in the `ChatMessageSent` event, which the notification service turns into notifications.

pub mod cli;
mod error;
mod events;
mod hub;
pub mod mentions;
mod metrics;
pub mod model;
mod socket;
mod store;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use sloop_events::chat as chat_events;
use sloop_kit::clock::{now_millis, now_rfc3339};
use sloop_kit::{Caller, Context, Json, Path, Problem, Query, Service, validate};
use sqlx::migrate::Migrator;
use utoipa::OpenApi;

pub use error::ChatError;
use hub::Hub;
use model::{
    DEFAULT_PAGE, Frame, MAX_PAGE, MAX_ROOM_NAME, MAX_TEXT, Member, MemberList, Message,
    MessagePage, MessageParams, NewMessage, NewRoom, Order, Presence, Room, RoomPage, RoomParams,
};
use socket::Sockets;

/// The service's name and conventional port.
pub const NAME: &str = "chat";
pub const PORT: u16 = 8083;

/// Portable migrations, run at start on SQLite and PostgreSQL alike.
pub static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// How the service runs its sockets; `sloop-chat` reads it from flags and the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatSettings {
    /// How often the server pings each socket; one silent for twice this is closed. Each
    /// instance also refreshes its presence rows this often.
    pub heartbeat: Duration,
    /// Frames a socket may have waiting to be written; when a frame finds the queue full,
    /// the socket is closed as too slow.
    pub socket_queue: usize,
}

impl Default for ChatSettings {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(15),
            socket_queue: 256,
        }
    }
}

impl ChatSettings {
    /// Says which setting cannot work, if any.
    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat < Duration::from_millis(40) {
            return Err(format!(
                "the heartbeat must be at least 40ms, got {}",
                sloop_duration::format(self.heartbeat)
            ));
        }
        if self.socket_queue == 0 {
            return Err("the socket queue must hold at least one frame".to_owned());
        }
        Ok(())
    }
}

/// The chat service, described once for `sloop-chat`, the platform binary and tests. Each
/// call is a new instance, with an id of its own for its consumer group and presence rows.
pub fn service(settings: ChatSettings) -> Service {
    let instance: Arc<str> = uuid::Uuid::new_v4().simple().to_string().into();
    let hub = Arc::new(Hub::new(settings.socket_queue));
    let (for_consumer, for_api, for_worker) = (hub.clone(), hub.clone(), instance.clone());
    let consumer_instance = instance.clone();
    Service::new(NAME, PORT)
        .database(&MIGRATIONS)
        .metrics(metrics::describe)
        .publishes(&chat_events::ALL)
        .consumes(&events::group(&instance), move |_| {
            events::consumer(&consumer_instance, for_consumer)
        })
        .worker("presence", move |ctx, stop| {
            refresh_presence(ctx, for_worker, settings.heartbeat, stop)
        })
        .api(move |ctx| router(AppState::new(ctx, for_api, instance, settings)))
        .openapi(ApiDoc::openapi())
}

/// Keeps this instance's connection rows fresh, and sweeps those of dead instances.
async fn refresh_presence(
    ctx: Context,
    instance: Arc<str>,
    heartbeat: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut ticks = tokio::time::interval(heartbeat);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let now = now_millis();
        let stale = now - 3 * heartbeat.as_millis() as i64;
        if let Err(err) = store::refresh_connections(ctx.db(), &instance, now, stale).await {
            tracing::warn!(error = %err, "cannot refresh presence; retrying next heartbeat");
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    ctx: Context,
    sockets: Sockets,
}

impl AppState {
    fn new(ctx: &Context, hub: Arc<Hub>, instance: Arc<str>, settings: ChatSettings) -> Self {
        let sockets = Sockets {
            hub,
            db: ctx.db().clone(),
            outbox: ctx.outbox().clone(),
            instance,
            heartbeat: settings.heartbeat,
            stopping: ctx.stopping().clone(),
        };
        Self {
            ctx: ctx.clone(),
            sockets,
        }
    }
}

/// The chat API, for signed-in users. `/openapi.json` describes it.
fn router(state: AppState) -> Router {
    Router::new()
        .route("/rooms", get(list_rooms).post(create_room))
        .route("/rooms/{id}", get(get_room))
        .route("/rooms/{id}/members", get(list_members))
        .route(
            "/rooms/{id}/members/{user_id}",
            put(join_room).delete(leave_room),
        )
        .route("/rooms/{id}/presence", get(presence))
        .route(
            "/rooms/{id}/messages",
            get(list_messages).post(send_message),
        )
        .route("/socket", get(open_socket))
        .with_state(state)
}

impl From<ChatError> for Problem {
    fn from(err: ChatError) -> Self {
        match &err {
            ChatError::RoomNotFound(_) | ChatError::NoSuchMember { .. } => {
                Problem::not_found(err.to_string())
            }
            ChatError::NotMember(_) => Problem::forbidden(err.to_string()),
            ChatError::Data(_) | ChatError::Outbox(_) | ChatError::Database(_) => {
                Problem::internal(&err)
            }
        }
    }
}

/// Room and message ids are UUIDs; anything else names nothing.
fn parse_id(what: &str, raw: &str) -> Result<String, Problem> {
    uuid::Uuid::parse_str(raw)
        .map(|id| id.hyphenated().to_string())
        .map_err(|_| {
            let shown: String = raw.chars().take(64).collect();
            Problem::bad_request(format!(
                "`{shown}` is not a {what} id; {what} ids are UUIDs"
            ))
        })
}

fn parse_limit(raw: Option<&str>) -> Result<u32, Problem> {
    validate::page_limit(raw, DEFAULT_PAGE, MAX_PAGE).map_err(Problem::bad_request)
}

/// A cursor is the id of the last item of the previous page (keyset pagination: pages stay
/// stable while new items arrive).
fn parse_cursor(raw: Option<&str>, what: &str) -> Result<Option<String>, Problem> {
    raw.map(|raw| {
        uuid::Uuid::parse_str(raw)
            .map(|id| id.hyphenated().to_string())
            .map_err(|_| {
                Problem::bad_request(format!(
                    "cursor must be the `next_cursor` of the previous page (a {what} id, a UUID), got `{raw}`"
                ))
            })
    })
    .transpose()
}

/// Room `id` exists and `caller` is a member of it.
async fn require_member(state: &AppState, room: &str, caller: &Caller) -> Result<(), Problem> {
    let db = state.ctx.db();
    if store::is_member(db, room, &caller.user_id).await? {
        return Ok(());
    }
    store::room(db, room).await?;
    Err(ChatError::NotMember(room.to_owned()).into())
}

#[utoipa::path(
    post, path = "/rooms", request_body = NewRoom,
    responses(
        (status = 201, description = "The room; its creator is its first member", body = Room,
            headers(("location" = String, description = "The room's URL"))),
        (status = 401, description = "Not signed in", body = Problem),
        (status = 422, description = "A bad name", body = Problem),
    )
)]
/// Creates a room; the caller becomes its first member.
async fn create_room(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<NewRoom>,
) -> Result<Response, Problem> {
    let name = sloop_kit::validate::name("name", &body.name, 1, MAX_ROOM_NAME)
        .map_err(Problem::validation)?;
    let id = uuid::Uuid::now_v7().to_string();
    store::create_room(state.ctx.db(), &id, &name, &caller.user_id, &now_rfc3339()).await?;
    let room = store::room(state.ctx.db(), &id).await?;
    let location = format!("/rooms/{id}");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(room),
    )
        .into_response())
}

#[utoipa::path(
    get, path = "/rooms", params(RoomParams),
    responses(
        (status = 200, description = "A page of rooms, newest first", body = RoomPage),
        (status = 400, description = "A bad cursor or limit", body = Problem),
        (status = 401, description = "Not signed in", body = Problem),
    )
)]
/// Every room, newest first, or only the caller's with `mine=true`.
async fn list_rooms(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<RoomParams>,
) -> Result<Json<RoomPage>, Problem> {
    let limit = parse_limit(params.limit.as_deref())?;
    let before = parse_cursor(params.cursor.as_deref(), "room")?;
    let member = params
        .mine
        .unwrap_or(false)
        .then_some(caller.user_id.as_str());
    // One extra row tells whether another page follows without a count query.
    let mut items = store::list_rooms(state.ctx.db(), member, before.as_deref(), limit + 1).await?;
    let next_cursor = next_cursor(&mut items, limit, |room| &room.id);
    Ok(Json(RoomPage { items, next_cursor }))
}

/// Cuts `items` to `limit`; the id of the last item kept when more followed.
fn next_cursor<T>(items: &mut Vec<T>, limit: u32, id: impl Fn(&T) -> &String) -> Option<String> {
    if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|last| id(last).clone())
    } else {
        None
    }
}

#[utoipa::path(
    get, path = "/rooms/{id}",
    params(("id" = String, Path, format = "uuid", description = "The room's id")),
    responses(
        (status = 200, description = "The room", body = Room),
        (status = 400, description = "Not a room id", body = Problem),
        (status = 401, description = "Not signed in", body = Problem),
        (status = 404, description = "No such room", body = Problem),
    )
)]
async fn get_room(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Room>, Problem> {
    let id = parse_id("room", &id)?;
    Ok(Json(store::room(state.ctx.db(), &id).await?))
}

#[utoipa::path(
    put, path = "/rooms/{id}/members/{user_id}",
    params(
        ("id" = String, Path, format = "uuid", description = "The room's id"),
        ("user_id" = String, Path, description = "Who joins: the caller (an admin may add anyone)"),
    ),
    responses(
        (status = 201, description = "Joined", body = Member),
        (status = 200, description = "A member already", body = Member),
        (status = 400, description = "Not a room id", body = Problem),
        (status = 401, description = "Not signed in", body = Problem),
        (status = 403, description = "Joining for someone else", body = Problem),
        (status = 404, description = "No such room", body = Problem),
    )
)]
/// Joins a room. Rooms are open: any signed-in user may join one, for themselves.
async fn join_room(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, user_id)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let id = parse_id("room", &id)?;
    acting_for(&caller, &user_id, "join")?;
    let db = state.ctx.db();
    store::room(db, &id).await?;
    let now = now_rfc3339();
    let added = store::join(db, &id, &user_id, &now).await?;
    let member = store::members(db, &id, state.sockets.live_since_ms())
        .await?
        .into_iter()
        .find(|m| m.user_id == user_id)
        .ok_or_else(|| ChatError::Data(format!("{user_id} joined {id} but is not listed")))?;
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(member)).into_response())
}

/// Members act for themselves; admins for anyone.
fn acting_for(caller: &Caller, user_id: &str, what: &str) -> Result<(), Problem> {
    if caller.may_act_for(user_id) {
        Ok(())
    } else {
        Err(Problem::forbidden(format!(
            "you may {what} only for yourself: use your own user id ({}) in the path",
            caller.user_id
        )))
    }
}

#[utoipa::path(
    delete, path = "/rooms/{id}/members/{user_id}",
    params(
        ("id" = String, Path, format = "uuid", description = "The room's id"),
        ("user_id" = String, Path, description = "Who leaves: the caller (an admin may remove anyone)"),
    ),
    responses(
        (status = 204, description = "Left the room"),
        (status = 400, description = "Not a room id", body = Problem),
        (status = 401, description = "Not signed in", body = Problem),
        (status = 403, description = "Leaving for someone else", body = Problem),
        (status = 404, description = "No such room, or not a member", body = Problem),
    )
)]
/// Leaves a room; the user's sockets stop receiving it at once.
async fn leave_room(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, user_id)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    let id = parse_id("room", &id)?;
    acting_for(&caller, &user_id, "leave")?;
    let db = state.ctx.db();
    store::room(db, &id).await?;
    if !store::leave(db, &id, &user_id).await? {
        return Err(ChatError::NoSuchMember {
            room: id,
            user: user_id,
        }
        .into());
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get, path = "/rooms/{id}/members",
    params(("id" = String, Path, format = "uuid", description = "The room's id")),
    responses(
        (status = 200, description = "The members, in the order they joined, each with whether it is online", body = MemberList),
        (status = 400, description = "Not a room id", body = Problem),
        (status = 401, description = "Not signed in", body = Problem),
        (status = 403, description = "Not a member of the room", body = Problem),
        (status = 404, description = "No such room", body = Problem),
    )
)]
async fn list_members(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<MemberList>, Problem> {
    let id = parse_id("room", &id)?;
    require_member(&state, &id, &caller).await?;
    let items: Vec<Member> =
        store::members(state.ctx.db(), &id, state.sockets.live_since_ms()).await?;
    Ok(Json(MemberList { items }))
}

#[utoipa::path(
    get, path = "/rooms/{id}/presence",
    params(("id" = String, Path, format = "uuid", description = "The room's id")),
    responses(
        (status = 200, description = "The members connected now, on any instance", body = Presence),
        (status = 400, description = "Not a room id", body = Problem),
        (status = 401, description = "Not signed in", body = Problem),
        (status = 403, description = "Not a member of the room", body = Problem),
        (status = 404, description = "No such room", body = Problem),
    )
)]
async fn presence(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Presence>, Problem> {
    let id = parse_id("room", &id)?;
    require_member(&state, &id, &caller).await?;
    let online = store::online(state.ctx.db(), &id, state.sockets.live_since_ms()).await?;
    Ok(Json(Presence {
        room_id: id,
        online,
    }))
}

#[utoipa::path(
    post, path = "/rooms/{id}/messages", request_body = NewMessage,
    params(("id" = String, Path, format = "uuid", description = "The room's id")),
    responses(
        (status = 201, description = "The message, stored and on its way to the room's sockets", body = Message),
        (status = 400, description = "Not a room id", body = Problem),
        (status = 401, description = "Not signed in", body = Problem),
        (status = 403, description = "Not a member of the room", body = Problem),
        (status = 404, description = "No such room", body = Problem),
        (status = 422, description = "Empty or too long text", body = Problem),
    )
)]
/// Posts a message. It is stored with its `ChatMessageSent` event in one transaction; the
/// event carries it to every member's sockets, on every instance, and its mentions to the
/// notification service.
async fn send_message(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<NewMessage>,
) -> Result<(StatusCode, Json<Message>), Problem> {
    let id = parse_id("room", &id)?;
    let text =
        sloop_kit::validate::text("text", &body.text, 1, MAX_TEXT).map_err(Problem::validation)?;
    require_member(&state, &id, &caller).await?;
    let message = store_message(&state.ctx, &id, &caller.user_id, text).await?;
    Ok((StatusCode::CREATED, Json(message)))
}

/// Stores the message and its event in one transaction. Mentions are resolved against the
/// members just before it: the transaction writes first, which takes SQLite's write lock up
/// front (a read-then-write transaction fails when another writer got in between).
async fn store_message(
    ctx: &Context,
    room: &str,
    sender: &str,
    text: String,
) -> Result<Message, ChatError> {
    let members = store::room_members(ctx.db(), room).await?;
    let message = Message {
        id: uuid::Uuid::now_v7().to_string(),
        room_id: room.to_owned(),
        sender_id: sender.to_owned(),
        mentions: mentions::resolve(&text, sender, &members),
        text,
        sent_at: now_rfc3339(),
    };
    let mut tx = ctx.db().begin().await?;
    store::insert_message(&mut tx, &message).await?;
    let event = chat_events::ChatMessageSent {
        message_id: message.id.clone(),
        room_id: message.room_id.clone(),
        sender_id: message.sender_id.clone(),
        text: message.text.clone(),
        mentions: message.mentions.clone(),
        sent_at: message.sent_at.clone(),
    };
    ctx.outbox()
        .append(&mut tx, chat_events::MESSAGE_SENT, room, &event)
        .await?;
    tx.commit().await?;
    ctx.outbox().wake();
    Ok(message)
}

#[utoipa::path(
    get, path = "/rooms/{id}/messages",
    params(("id" = String, Path, format = "uuid", description = "The room's id"), MessageParams),
    responses(
        (status = 200, description = "A page of the room's messages in the order asked for", body = MessagePage),
        (status = 400, description = "Not a room id, or a bad order, cursor or limit", body = Problem),
        (status = 401, description = "Not signed in", body = Problem),
        (status = 403, description = "Not a member of the room", body = Problem),
        (status = 404, description = "No such room", body = Problem),
    )
)]
/// The room's messages, newest first unless `order=oldest`.
async fn list_messages(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(params): Query<MessageParams>,
) -> Result<Json<MessagePage>, Problem> {
    let id = parse_id("room", &id)?;
    let order = match params.order.as_deref() {
        None | Some("newest") => Order::NewestFirst,
        Some("oldest") => Order::OldestFirst,
        Some(other) => {
            return Err(Problem::bad_request(format!(
                "order must be `newest` or `oldest`, got `{other}`"
            )));
        }
    };
    let limit = parse_limit(params.limit.as_deref())?;
    let cursor = parse_cursor(params.cursor.as_deref(), "message")?;
    require_member(&state, &id, &caller).await?;
    let mut items =
        store::messages(state.ctx.db(), &id, order, cursor.as_deref(), limit + 1).await?;
    let next_cursor = next_cursor(&mut items, limit, |m| &m.id);
    Ok(Json(MessagePage { items, next_cursor }))
}

#[utoipa::path(
    get, path = "/socket",
    responses(
        (status = 101, description = "Switching to a WebSocket. The server sends JSON text frames, each with a `type`: \
            `welcome` first (the user, their rooms and the instance holding the socket), then `message` for every message posted to any room the user is a member of \
            (joined later included), and `presence` when a room mate connects or disconnects. The server pings every heartbeat; \
            a socket that sends nothing (not even a pong) for two heartbeats is closed with code 1008. A socket that lets \
            messages pile up unread is closed with code 1013; read what was missed with `GET /rooms/{id}/messages?order=oldest&cursor=<last id seen>`.",
            body = Frame),
        (status = 400, description = "Not a WebSocket handshake", body = Problem),
        (status = 401, description = "Not signed in", body = Problem),
    )
)]
/// One WebSocket per client connection, receiving all of the user's rooms.
async fn open_socket(
    State(state): State<AppState>,
    caller: Caller,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, Problem> {
    let upgrade = upgrade.map_err(|rejection| {
        Problem::bad_request(format!(
            "this endpoint takes a WebSocket handshake (GET with `Upgrade: websocket`): {}",
            rejection.body_text()
        ))
    })?;
    let sockets = state.sockets.clone();
    let user = caller.user_id;
    // Browsers that sign in through the gateway's `bearer` subprotocol expect it selected.
    Ok(upgrade
        .protocols(["bearer"])
        .max_message_size(64 * 1024)
        .on_failed_upgrade(|err| tracing::info!(error = %err, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| sockets.serve(socket, user)))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sloop chat service",
        description = "Rooms, members and messages, with real-time delivery and presence over one WebSocket per client connection (`GET /socket`)."
    ),
    paths(
        create_room,
        list_rooms,
        get_room,
        join_room,
        leave_room,
        list_members,
        presence,
        send_message,
        list_messages,
        open_socket
    ),
    components(schemas(
        Room,
        RoomPage,
        NewRoom,
        Member,
        MemberList,
        Presence,
        NewMessage,
        Message,
        MessagePage,
        Frame
    ))
)]
struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        ChatSettings::default().validate().unwrap();
        let no_queue = ChatSettings {
            socket_queue: 0,
            ..ChatSettings::default()
        };
        assert!(no_queue.validate().is_err());
    }

    #[test]
    fn frames_carry_their_type() {
        let frame = Frame::Presence {
            room_id: "r".into(),
            user_id: "u".into(),
            online: true,
        };
        let json: serde_json::Value =
            serde_json::from_str(socket::frame_text(&frame).as_str()).unwrap();
        assert_eq!(json["type"], "presence");
        assert_eq!(json["online"], true);
    }
}
