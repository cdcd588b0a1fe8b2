//! One WebSocket, from upgrade to close. The socket receives every message of the user's
//! rooms (rooms joined while it is open included: fan-out looks membership up per message)
//! and presence changes of their room mates. Clients only listen; they post over HTTP.
//!
//! Three things end a socket besides the client: its queue filling up (the hub tells it to
//! close, code 1013), no pong or other frame for two heartbeats (code 1008), and shutdown
//! (code 1001). The close frame gets a moment to go out; a peer that reads nothing does not
//! keep the task waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use sloop_events::chat as chat_events;
use sloop_kit::clock::{now_millis, now_rfc3339};
use sloop_kit::{Database, Outbox};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::ChatError;
use crate::hub::{Hub, Outgoing};
use crate::metrics::{self, DropReason};
use crate::model::Frame;
use crate::store;

/// Close codes (RFC 6455 §7.4.1).
const GOING_AWAY: u16 = 1001;
const POLICY_VIOLATION: u16 = 1008;
const INTERNAL_ERROR: u16 = 1011;
const TRY_AGAIN_LATER: u16 = 1013;

/// How long a close frame may take to go out before the connection is just dropped.
const CLOSE_GRACE: Duration = Duration::from_millis(250);

/// What a socket needs from the service.
#[derive(Clone)]
pub struct Sockets {
    pub hub: Arc<Hub>,
    pub db: Database,
    pub outbox: Outbox,
    /// Names this instance's rows in `chat_connections`.
    pub instance: Arc<str>,
    pub heartbeat: Duration,
    pub stopping: CancellationToken,
}

/// Why a socket ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client closed it or the connection broke.
    Client,
    Dropped(DropReason),
    Shutdown,
}

impl Sockets {
    /// Connections seen since this time (Unix ms) count as live: three heartbeats, since
    /// every instance refreshes its rows once a heartbeat.
    pub fn live_since_ms(&self) -> i64 {
        now_millis() - 3 * self.heartbeat.as_millis() as i64
    }

    /// Serves `socket` for `user` until it ends.
    pub async fn serve(self, mut socket: WebSocket, user: String) {
        let connection = uuid::Uuid::now_v7().to_string();
        let welcome = match self.open(&connection, &user).await {
            Ok(rooms) => Frame::Welcome {
                user_id: user.clone(),
                rooms,
                instance: self.instance.to_string(),
            },
            Err(err) => {
                tracing::error!(error = %err, "cannot record the connection; closing it");
                close(
                    &mut socket,
                    INTERNAL_ERROR,
                    "the server cannot take sockets now; retry",
                )
                .await;
                return;
            }
        };
        metrics::connected(1.0);
        let registration = self.hub.register(&user);
        let (mut sink, mut stream) = socket.split();
        let end = if sink.send(text(&welcome)).await.is_err() {
            End::Client
        } else {
            let seen = AtomicI64::new(now_millis());
            let mut queue = registration.queue;
            tokio::select! {
                end = self.write(&mut sink, &mut queue) => end,
                end = read(&mut stream, &seen) => end,
                end = self.watch_silence(&seen) => end,
                Ok(reason) = registration.close => End::Dropped(reason),
                _ = self.stopping.cancelled() => End::Shutdown,
            }
        };
        self.hub.unregister(&user, registration.id);
        // Slow sockets are counted by the hub, which decides they are slow.
        if end == End::Dropped(DropReason::Heartbeat) {
            metrics::dropped(DropReason::Heartbeat);
        }
        metrics::connected(-1.0);
        if let Some((code, reason)) = self.close_frame(end) {
            let frame = WsMessage::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            }));
            let _ = tokio::time::timeout(CLOSE_GRACE, sink.send(frame)).await;
        }
        if let Err(err) = self.close_connection(&connection, &user).await {
            tracing::warn!(error = %err, "cannot forget the connection; it expires by itself");
        }
    }

    /// Writes queued frames, and a ping every heartbeat; ends when a write fails.
    async fn write(
        &self,
        sink: &mut SplitSink<WebSocket, WsMessage>,
        queue: &mut mpsc::Receiver<Outgoing>,
    ) -> End {
        let start = tokio::time::Instant::now() + self.heartbeat;
        let mut pings = tokio::time::interval_at(start, self.heartbeat);
        loop {
            tokio::select! {
                frame = queue.recv() => {
                    let Some(frame) = frame else { return End::Client };
                    if sink.send(WsMessage::Text(frame.text)).await.is_err() {
                        return End::Client;
                    }
                    if let Some(sent_at) = frame.sent_at {
                        let age = time::OffsetDateTime::now_utc() - sent_at;
                        metrics::delivered(age.try_into().unwrap_or_default());
                    }
                }
                _ = pings.tick() => {
                    if sink.send(WsMessage::Ping(Default::default())).await.is_err() {
                        return End::Client;
                    }
                }
            }
        }
    }

    /// Ends once the peer has sent nothing for two heartbeats. Apart from the writer, so a
    /// write stuck on a dead peer's full buffer cannot keep the socket open. Checking four
    /// times a heartbeat closes a silent socket soon after 2N rather than up to 3N.
    async fn watch_silence(&self, seen: &AtomicI64) -> End {
        let limit = 2 * self.heartbeat.as_millis() as i64;
        let mut checks = tokio::time::interval(self.heartbeat / 4);
        loop {
            checks.tick().await;
            if now_millis() - seen.load(Ordering::Relaxed) > limit {
                return End::Dropped(DropReason::Heartbeat);
            }
        }
    }

    /// The close frame to send, if any: none when the client ended it.
    fn close_frame(&self, end: End) -> Option<(u16, String)> {
        match end {
            End::Client => None,
            End::Shutdown => Some((GOING_AWAY, "the server is shutting down; reconnect".into())),
            End::Dropped(DropReason::Slow) => Some((
                TRY_AGAIN_LATER,
                "too slow: messages piled up unread; reconnect and read missed ones over HTTP"
                    .into(),
            )),
            End::Dropped(DropReason::Heartbeat) => Some((
                POLICY_VIOLATION,
                format!(
                    "no pong or frame for {}; answer pings",
                    sloop_duration::format(2 * self.heartbeat)
                ),
            )),
        }
    }

    /// Records the connection, telling room mates when it is the user's first; returns the
    /// user's rooms.
    async fn open(&self, connection: &str, user: &str) -> Result<Vec<String>, ChatError> {
        let mut tx = self.db.begin().await?;
        // Writing first takes SQLite's write lock up front: a read-then-write transaction
        // fails at once (SQLITE_BUSY) when another writer got in between.
        store::connect(&mut tx, connection, &self.instance, user, now_millis()).await?;
        if store::live_connections(&mut tx, user, self.live_since_ms()).await? == 1 {
            self.presence(&mut tx, user, true).await?;
        }
        tx.commit().await?;
        self.outbox.wake();
        store::rooms_of(&self.db, user).await
    }

    /// Forgets the connection, telling room mates when it was the user's last.
    async fn close_connection(&self, connection: &str, user: &str) -> Result<(), ChatError> {
        let mut tx = self.db.begin().await?;
        store::disconnect(&mut tx, connection).await?;
        if store::live_connections(&mut tx, user, self.live_since_ms()).await? == 0 {
            self.presence(&mut tx, user, false).await?;
        }
        tx.commit().await?;
        self.outbox.wake();
        Ok(())
    }

    async fn presence(
        &self,
        tx: &mut sloop_kit::Tx,
        user: &str,
        online: bool,
    ) -> Result<(), ChatError> {
        let data = chat_events::ChatPresenceChanged {
            user_id: user.to_owned(),
            online,
            at: now_rfc3339(),
        };
        self.outbox
            .append(tx, chat_events::PRESENCE_CHANGED, user, &data)
            .await?;
        Ok(())
    }
}

/// Reads the client's frames: any frame (a pong above all) shows it is alive. Their content
/// is ignored, since the socket only sends.
async fn read(stream: &mut SplitStream<WebSocket>, seen: &AtomicI64) -> End {
    while let Some(Ok(message)) = stream.next().await {
        seen.store(now_millis(), Ordering::Relaxed);
        if matches!(message, WsMessage::Close(_)) {
            break;
        }
    }
    End::Client
}

/// A frame as a WebSocket text message.
pub fn text(frame: &Frame) -> WsMessage {
    WsMessage::Text(frame_text(frame))
}

/// A frame's JSON text.
pub fn frame_text(frame: &Frame) -> Utf8Bytes {
    // Frames are plain data (strings, booleans, lists of strings): serializing cannot fail.
    serde_json::to_string(frame).unwrap_or_default().into()
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let frame = WsMessage::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }));
    let _ = tokio::time::timeout(CLOSE_GRACE, socket.send(frame)).await;
}
